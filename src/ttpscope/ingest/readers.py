"""Format readers: EVTX, JSON lines / JSON, Parquet, CSV, and the archives that carry them (zip, tar, gz).

Each reader yields ``(record, fields)``: the record number (EVTX EventRecordID, else the 1-based line or
row) and the flat Sigma fields. A bad record is counted in the source's :class:`IngestStats` with its
reason and skipped; the records beside it are kept. Readers are registered in
:data:`ttpscope.ingest.base.READERS` (format name → ``reader(opener, stats)``) and :func:`read` dispatches
through it; a file's format comes from :func:`ttpscope.ingest.sniff.sniff` (content), never its name.

Bounded by construction, whatever the input:

- Every byte stream is a :class:`Guarded` stream: it reads in blocks, turns decompression and archive
  errors (zlib, LZMA, bad CRC, encrypted or unsupported members, truncation) into the end of the stream
  with a reason, and stops a member that expands beyond :data:`MAX_RATIO` times its compressed size (past a
  free :data:`FREE_EXPANSION`) or :data:`MAX_EXPANDED` bytes: the data before the fault is read, the fault
  is one counted rejection.
- Text formats are split into lines with a bounded buffer: a line longer than :data:`MAX_LINE` bytes is a
  counted rejection, skipped without being held.
- EVTX and Parquet, which need a seekable file, are spooled from archives to a temporary file on disk
  (never memory), under the same expansion limits.
"""

from __future__ import annotations

import codecs
import csv
import io
import lzma
import os
import re
import struct
import tarfile
import tempfile
import zipfile
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

import orjson

from ttpscope.ingest.base import READERS, IngestStats, detect_format
from ttpscope.ingest.flatten import flatten_evtx_event, flatten_json_event
from ttpscope.ingest.formats import FORMAT_READERS, expand, read_records_document, records_document
from ttpscope.ingest.sniff import LOG, SNIFF_BYTES, csv_delimiter, sniff, sniff_bytes, utf16_order
from ttpscope.procs import die_with_parent

Opener = Callable[[], IO[bytes]]

BLOCK = 1 << 20  # bytes read from a stream at once
MAX_LINE = 16 << 20  # a JSON line / CSV record longer than this is rejected (not held)
MAX_DOCUMENT = 64 << 20  # a JSON array document is read whole up to this size, then split element-wise
MAX_OBJECT_DOCUMENT = 16 << 20  # a single-object JSON document is parsed whole up to this size
MAX_EXPANDED = 8 << 30  # bytes one archive member or compressed file may expand to
MAX_RATIO = 200  # ... and at most this many times its compressed size,
FREE_EXPANSION = 64 << 20  # ... beyond a first allowance that any member gets
ARCHIVES = ("zip", "tar", "gz")
INTERNAL_ERROR = "internal error"  # the reason of a rejection no reader foresaw (a bug to fix)
JSON_BLOCK = 4 << 20  # bytes of JSON lines read at once
# what a damaged stream raises, from the stdlib decompressors and archive modules
STREAM_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, tarfile.TarError,
                 NotImplementedError, RuntimeError, ValueError, struct.error, OverflowError)


# ---------------------------------------------------------------------------------------------- streams
class Budget:
    """How many bytes an archive (all members) or one member may expand to."""

    def __init__(self, compressed: int, parent: Budget | None = None):
        self.limit = min(MAX_EXPANDED, max(FREE_EXPANSION, MAX_RATIO * max(0, compressed)))
        self.used = 0
        self.parent = parent

    def take(self, n: int) -> str | None:
        """Count n more bytes; the reason when that passes a limit."""
        self.used += n
        if self.used > self.limit:
            return (f"decompression bomb? expands beyond {self.limit:,} bytes ({MAX_RATIO}x its compressed "
                    f"size, at most {MAX_EXPANDED >> 30} GiB), the rest is not read")
        return self.parent.take(n) if self.parent else None


class Guarded(io.RawIOBase):
    """A byte stream that never raises: a read error, a decompression error or the expansion budget ends
    it, with the reason in :attr:`error`. ``head`` (bytes already read, e.g. by the sniffer) is served
    first."""

    def __init__(self, read: Callable[[int], bytes], budget: Budget | None = None, head: bytes = b"",
                 close: Callable[[], None] | None = None):
        super().__init__()
        self._read = read
        self._budget = budget
        self._head = head
        self._close = close
        self.error: str | None = None
        self.position = 0  # bytes served

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.read1(len(b))
        b[: len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes, fewer only at the end of the stream (as a buffered file reads)."""
        if n is None or n < 0:
            return self.readall()
        data = self.read1(n)
        if len(data) >= n or not data:
            return data
        parts, got = [data], len(data)
        while got < n and (more := self.read1(n - got)):
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def read1(self, n: int = -1) -> bytes:
        """At most n bytes from one read of the source."""
        if n is None or n < 0:
            n = BLOCK
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
            self.position += len(data)
            return data
        if self.error is not None or n == 0:
            return b""
        try:
            data = self._read(min(n, BLOCK))
        except STREAM_ERRORS as exc:
            self.error = f"damaged data after byte {self.position:,}: {_why(exc)}"
            return b""
        if len(data) > n:  # a salvage may give more than asked
            data, self._head = data[:n], data[n:]
        if data and self._budget is not None:
            over = self._budget.take(len(data))
            if over:
                self.error = over
                return b""
        self.position += len(data)
        return data

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read1(BLOCK):
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed and self._close is not None:
            try:
                self._close()
            except STREAM_ERRORS:
                pass
        super().close()


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}" if type(exc).__name__ not in text else text[:200]


class _Gunzip:
    """gzip data as a read(n) callable that keeps what it decompressed before a fault (stdlib ``gzip``
    loses the block in which it meets damage or a truncation): on a zlib error the failed input is
    replayed in small pieces from a copy of the decompressor, the data up to the fault is served, and the
    error is raised on the next call. Concatenated gzip members are read on."""

    def __init__(self, fh):
        self.fh = fh
        self.dec = zlib.decompressobj(31)
        self.pending = b""
        self.error: Exception | None = None
        self.done = False

    def __call__(self, n: int) -> bytes:
        if self.error is not None:
            self.done = True
            error, self.error = self.error, None
            raise error
        while not self.done:
            raw, self.pending = self.pending or self.fh.read(16384), b""
            if not raw:
                self.done = True
                if not self.dec.eof:
                    raise EOFError("compressed data ends before the end of the gzip stream (truncated)")
                return b""
            if self.dec.eof:  # a next gzip member, or padding
                if not raw.strip(b"\x00"):
                    continue
                if raw[:2] != b"\x1f\x8b":
                    self.done = True
                    raise zlib.error("data after the end of the gzip stream is not gzip")
                self.dec = zlib.decompressobj(31)
            saved = self.dec.copy()
            try:
                out = self.dec.decompress(raw, n)
            except zlib.error as exc:
                out = _salvage(saved, raw)
                if not out:
                    self.done = True
                    raise
                self.error = exc
                return out
            self.pending = self.dec.unconsumed_tail or (self.dec.unused_data if self.dec.eof else b"")
            if out:
                return out
        return b""


def _salvage(dec, raw: bytes) -> bytes:
    """What a decompressor gives of ``raw`` before the damage, fed 64 bytes at a time."""
    parts = []
    for i in range(0, len(raw), 64):
        try:
            parts.append(dec.decompress(raw[i:i + 64]))
        except zlib.error:
            break
    return b"".join(parts)


def _plain(path: Path) -> Guarded:
    fh = open(path, "rb")
    return Guarded(fh.read, None, close=fh.close)


def _gunzipped(path: Path, budget: Budget) -> Guarded:
    fh = open(path, "rb")
    return Guarded(_Gunzip(fh), budget, close=fh.close)


# ---------------------------------------------------------------------------------------------- members
@dataclass
class Member:
    """One event source: a file, or a member of an archive, with its sniffed format and its stream."""

    name: str
    format: str
    stream: Guarded
    path: Path | None = None  # the file on disk, when the source is a plain file (readers may use it)

    def opener(self) -> Opener:
        """The stream, as readers take it (the opener carries it, so :func:`read` can ask how it ended)."""
        def opener():
            return self.stream
        opener.stream = self.stream
        return opener


def open_members(path: Path, stats: IngestStats, fmt: str | None = None) -> Iterator[Member]:
    """The event sources inside one file: the file itself, or the members of an archive. ``fmt`` is the
    file's format when the caller sniffed it; else it is sniffed here. Members are sniffed by content."""
    if fmt is None:
        found = sniff(path)
        if found.kind != LOG:
            stats.reject(None, f"not an event log: {found.problem or f'a {found.format} report'}")
            return
        fmt = found.format
    try:
        size = path.stat().st_size
    except OSError as exc:
        stats.reject(None, f"cannot read: {exc.strerror or exc}")
        return
    if fmt == "zip":
        yield from _zip_members(path, size, stats)
    elif fmt == "tar":
        yield from _tar_members(path, size, stats)
    elif fmt == "gz":
        stream = _gunzipped(path, Budget(size))
        member = _sniffed(str(path), path.name[:-3] if path.name.lower().endswith(".gz") else path.name,
                          stream, stats)
        if member is not None:
            yield member
    else:
        try:
            stream = _plain(path)
        except OSError as exc:
            stats.reject(None, f"cannot read: {exc.strerror or exc}")
            return
        stream.source_path = path
        yield Member(str(path), fmt, stream, path)


def _sniffed(source: str, name: str, stream: Guarded, stats: IngestStats) -> Member | None:
    """A member stream, sniffed by its first bytes (which it then serves again): None when it is no event
    log (a README in a zip) — a nested archive or an unreadable member is counted as rejected."""
    head = b""
    while len(head) < SNIFF_BYTES:
        more = stream.read(SNIFF_BYTES - len(head))
        if not more:
            break
        head += more
    if not head and stream.error:
        stats.reject(None, f"{source}: member not read: {stream.error}")
        stream.close()
        return None
    found = sniff_bytes(head, name, whole=len(head) < SNIFF_BYTES)
    if found.kind != LOG:
        stream.close()
        if stream.error or detect_format(name):  # damaged, or named as a log: say so; a README is no loss
            stats.reject(None, f"{source}: member not read: {stream.error or found.problem or 'not an event log'}")
        return None
    if found.format in ARCHIVES:
        stats.reject(None, f"{source}: archive inside an archive not read: unpack it and give the files inside")
        stream.close()
        return None
    stream._head = head
    stream.position = 0
    return Member(source, found.format, stream)


def _metadata_member(name: str) -> bool:
    """macOS resource forks (``__MACOSX/``, ``._name``) travel in archives but hold no events."""
    parts = name.replace("\\", "/").split("/")
    return "__MACOSX" in parts or parts[-1].startswith("._")


def _zip_members(path: Path, size: int, stats: IngestStats) -> Iterator[Member]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, *STREAM_ERRORS) as exc:
        stats.reject(None, f"unreadable zip archive: {_why(exc)}")
        return
    archive = Budget(size)
    with zf:
        try:
            infos = sorted(zf.infolist(), key=lambda i: i.filename)
        except STREAM_ERRORS as exc:
            stats.reject(None, f"unreadable zip archive: {_why(exc)}")
            return
        for info in infos:
            # ZipInfo.is_dir() indexes the name: a damaged header can leave it empty (read as unnamed)
            if info.filename.endswith("/") or _metadata_member(info.filename):
                continue
            source = f"{path}!{info.filename or '(no name)'}"
            try:
                handle = zf.open(info)
            except (zipfile.BadZipFile, *STREAM_ERRORS) as exc:
                what = "encrypted" if info.flag_bits & 1 else _why(exc)
                stats.reject(None, f"{source}: member not read: {what}")
                continue
            read = getattr(handle, "read1", handle.read)
            stream = Guarded(read, Budget(info.compress_size, archive), close=handle.close)
            member = _sniffed(source, info.filename, stream, stats)
            if member is not None:
                yield member
                member.stream.close()


def _tar_members(path: Path, size: int, stats: IngestStats) -> Iterator[Member]:
    """A tar (plain or gzip-compressed), read as a stream: members in order, each sniffed by content."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        archive = Budget(size)
        outer = Guarded(_Gunzip(raw) if magic == b"\x1f\x8b" else raw.read, archive if magic == b"\x1f\x8b" else None)
        try:
            tf = tarfile.open(fileobj=io.BufferedReader(outer, BLOCK), mode="r|")
        except STREAM_ERRORS as exc:
            stats.reject(None, f"unreadable tar archive: {_why(outer.error or exc)}")
            return
        last = None
        try:
            for member in tf:
                if not member.isfile() or _metadata_member(member.name):
                    continue
                handle = tf.extractfile(member)
                if handle is None:
                    continue
                source = f"{path}!{member.name}"
                stream = last = Guarded(handle.read, Budget(size))
                found = _sniffed(source, member.name, stream, stats)
                if found is not None:
                    yield found
        except STREAM_ERRORS as exc:
            stats.reject(None, f"truncated or unreadable tar archive: {outer.error or _why(exc)}")
            return
        if outer.error and (last is None or not last.error):  # cut at a member boundary: tar ends quietly
            stats.reject(None, f"truncated or unreadable tar archive: {outer.error}")


def read(fmt: str, opener: Opener, stats: IngestStats, evtx_threads: int = 1) -> Iterator[tuple[int, dict]]:
    """Dispatch through :data:`READERS` to the reader of one format; a failure to open or read is a counted
    rejection, never fatal. A stream that ended on damage (a corrupt or truncated archive member) adds one
    rejection for its lost tail, unless the reader already counted what was lost."""
    reader = READERS.get(fmt)
    if reader is None:
        stats.reject(None, f"unsupported format {fmt}")
        return
    before = stats.rejected
    try:
        if fmt == "evtx":
            gen = reader(opener, stats, threads=evtx_threads)
        else:
            gen = reader(opener, stats)
        yield from gen
    except STREAM_ERRORS as exc:
        stats.reject(None, f"read error, rest of source lost: {_why(exc)}")
    except (MemoryError, RecursionError) as exc:
        stats.reject(None, f"record too large or too deeply nested, rest of source lost: {_why(exc)}")
    except Exception as exc:  # noqa: BLE001 — a reader bug must not end the run; the fuzz campaign counts these
        stats.reject(None, f"{INTERNAL_ERROR} in the {fmt} reader, rest of source lost: {_why(exc)}")
    error = getattr(getattr(opener, "stream", None), "error", None)
    if error:
        stats.reject(None, f"{error}; the rest of the source is lost",
                     count=0 if stats.rejected > before and fmt in ("evtx", "parquet") else 1)


def _seekable_file(opener: Opener, suffix: str) -> tuple[str, Guarded | None, Callable[[], None]]:
    """A path the EVTX / Parquet libraries can seek in: the file itself, or the member spooled to a
    temporary file on disk (bounded by the member's expansion budget, never held in memory)."""
    stream = opener()
    path = getattr(stream, "source_path", None)
    if path is not None:
        return str(path), stream, lambda: None
    fd, tmp = tempfile.mkstemp(prefix="ttpscope-member-", suffix=suffix)
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(BLOCK):
            out.write(chunk)
    return tmp, stream, lambda: os.unlink(tmp)


# ---------------------------------------------------------------------------------------------- lines
class _Overlong:
    """A line too long to hold: skipped, counted."""

    __slots__ = ("size",)

    def __init__(self, size: int):
        self.size = size


def utf8_blocks(fh, block: int | None = None) -> Iterator[bytes]:
    """A byte stream as blocks of UTF-8: a UTF-8 byte order mark is dropped, UTF-16 (by its mark or its
    NULs) is transcoded."""
    size = block or JSON_BLOCK
    first = fh.read(size)
    if not first:
        return
    order = utf16_order(first)
    if order is None:
        yield first[3:] if first.startswith(codecs.BOM_UTF8) else first
        while chunk := fh.read(size):
            yield chunk
        return
    dec = codecs.getincrementaldecoder(order)(errors="replace")
    chunk = first[2:] if first[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else first
    while chunk:
        yield dec.decode(chunk).encode("utf-8", "replace")
        chunk = fh.read(size)
    tail = dec.decode(b"", final=True)
    if tail:
        yield tail.encode("utf-8", "replace")


def line_blocks(blocks: Iterator[bytes], limit: int = MAX_LINE) -> Iterator[tuple[int, bytes | _Overlong]]:
    """Blocks of bytes → (first line number, block of whole lines) or (line number, :class:`_Overlong`).
    A line is held in pieces (no quadratic ``+=``) and given up once longer than ``limit``; the last line
    need not end with a newline."""
    lineno = 1
    pieces: list[bytes] = []
    held = 0
    skipping = 0  # > 0: inside an over-long line, bytes skipped so far
    for blk in blocks:
        if skipping:
            cut = blk.find(b"\n")
            if cut < 0:
                skipping += len(blk)
                continue
            yield lineno, _Overlong(skipping + cut)
            lineno += 1
            skipping = 0
            blk = blk[cut + 1:]
        cut = blk.rfind(b"\n")
        if cut < 0:
            pieces.append(blk)
            held += len(blk)
            if held > limit:
                skipping, pieces, held = held, [], 0
            continue
        if pieces:
            first = blk.find(b"\n")
            line = b"".join(pieces) + blk[:first + 1]
            pieces, held = [], 0
            if len(line) > limit + 1:
                yield lineno, _Overlong(len(line))
            else:
                yield lineno, line
            lineno += 1
            blk = blk[first + 1:]
            cut -= first + 1
        if cut >= 0:
            body = blk[:cut + 1]
            if len(body) > limit and body.count(b"\n") < len(body) // limit + 1:
                yield from _split_long(body, lineno, limit)
            else:
                yield lineno, body
            lineno += body.count(b"\n")
        rest = blk[cut + 1:]
        if rest:
            pieces.append(rest)
            held = len(rest)
            if held > limit:
                skipping, pieces, held = held, [], 0
    if skipping:
        yield lineno, _Overlong(skipping)
    elif pieces:
        yield lineno, b"".join(pieces)


def _split_long(body: bytes, lineno: int, limit: int) -> Iterator[tuple[int, bytes | _Overlong]]:
    """A block of whole lines some of which may be over-long: line by line."""
    start = 0
    while start < len(body):
        end = body.find(b"\n", start)
        end = len(body) - 1 if end < 0 else end
        line = body[start:end + 1]
        yield lineno, (_Overlong(len(line)) if len(line) > limit + 1 else line)
        lineno += 1
        start = end + 1


# ---------------------------------------------------------------------------------------------- EVTX
EVTX_HEADER = 4096
EVTX_CHUNK = 65536
MAX_RECORDS_PER_CHUNK = (EVTX_CHUNK - 512) // 24  # a record is at least its 24-byte header


@dataclass
class _Span:
    """Record ids a part of the file should hold, and why they may be missing."""

    first: int
    last: int
    why: str

    @property
    def size(self) -> int:
        return self.last - self.first + 1


# evtx 0.14 loops forever, holding the GIL, on some damaged chunks (one bit flipped in a record's data was
# enough); a file whose checksums do not all match is therefore parsed in a child process that is stopped
# when it gives nothing for this long. Intact files, nearly all real ones, are parsed in this process.
EVTX_STALL_SECONDS = 5.0


def read_evtx(opener: Opener, stats: IngestStats, threads: int = 1) -> Iterator[tuple[int, dict]]:
    """EVTX via the Rust ``evtx`` parser. Loss is counted by record: the chunk headers say which record
    ids each chunk holds (the file header how many chunks there are), so records the parser could not give
    — of a damaged chunk, zeroed, or cut off by truncation — are counted one by one, with the reason."""
    path, _stream, cleanup = _seekable_file(opener, ".evtx")
    try:
        spans, problems = _evtx_layout(path)
        guarded = hasattr(os, "fork") and not _evtx_intact(path)
        seen = array("q")
        warned: list[str] = []
        with closing(_evtx_guarded(path, threads) if guarded else _evtx_items(path, threads)) as items:
            for kind, *rest in items:
                if kind == "unreadable":
                    stats.reject(None, f"not a readable EVTX file: {rest[0]}",
                                 count=max(1, sum(s.size for s in spans)))
                    return
                if kind != "record":  # the parser's warnings and its last error: said in the loss reasons
                    warned.append(rest[0])
                    continue
                number, data = rest
                if not 0 <= number < 1 << 63:  # a damaged header's u64: counted with the chunk's losses
                    warned.append(f"EVTX parser gave a record id out of range ({number})")
                    continue
                try:
                    fields = flatten_evtx_event(orjson.loads(data))
                except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError,
                        RecursionError) as exc:
                    stats.reject(number, f"unreadable EVTX record: {_why(exc)}")
                    seen.append(number)
                    continue
                parsed = number
                try:  # the record's own EventRecordID, when the damage left it a number that fits
                    own = int(fields.get("EventRecordID") or number)
                    number = own if 0 <= own < 1 << 63 else number
                except ValueError:
                    pass
                seen.append(parsed or number)
                stats.accept()
                yield number, fields
        _evtx_losses(stats, spans, problems, sorted(seen), warned)
    finally:
        cleanup()


def _evtx_items(path: str, threads: int) -> Iterator[tuple]:
    """The parser's output, in this process: ("record", record id, JSON text), ("warning", text) for a part
    it skipped, ("error", text) when it gave up on the rest, ("unreadable", text) for no EVTX at all."""
    import warnings

    import evtx

    try:
        parser = evtx.PyEvtxParser(path, number_of_threads=threads, skip_errors=True)
    except (RuntimeError, OSError, ValueError) as exc:
        yield "unreadable", _why(exc)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        it = iter(parser.records_json())
        while True:
            rec, stop = None, None
            try:
                rec = next(it)
            except StopIteration:
                stop = ""
            except (RuntimeError, OSError, ValueError) as exc:  # unrecoverable: the rest is lost
                stop = f"EVTX parse error, rest of file lost: {_why(exc)}"
            for w in caught:
                yield "warning", " ".join(str(w.message).split())[:200]
            caught.clear()
            if stop is not None:
                if stop:
                    yield "error", stop
                return
            yield "record", rec.get("event_record_id") or 0, rec.get("data")


def _evtx_guarded(path: str, threads: int) -> Iterator[tuple]:
    """:func:`_evtx_items` run in a forked child, its items sent back as length-prefixed JSON frames; the
    child is killed when it sends nothing for ``EVTX_STALL_SECONDS`` (or when the reader stops early), and
    its death by a signal is said like a parse error: the records it gave stay, the rest counts as lost."""
    import select
    import signal

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: parse, send, exit without running the parent's clean-ups
        code = 0
        try:
            os.close(r)
            die_with_parent()
            for item in _evtx_items(path, threads):
                frame = orjson.dumps(item)
                view = memoryview(len(frame).to_bytes(4, "little") + frame)
                while view:
                    view = view[os.write(w, view):]
        except BaseException:  # noqa: BLE001 — the parent sees the frames stop and says so
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    alive = True
    try:
        buf = bytearray()
        while True:
            ready, _, _ = select.select([r], [], [], EVTX_STALL_SECONDS)
            if not ready:
                yield "error", (f"EVTX parser stopped: no record for {EVTX_STALL_SECONDS:g} s on this damaged "
                                "file (rest of file lost)")
                return
            block = os.read(r, 1 << 16)
            if not block:
                break
            buf += block
            while len(buf) >= 4 and len(buf) >= 4 + (n := int.from_bytes(buf[:4], "little")):
                yield tuple(orjson.loads(bytes(buf[4:4 + n])))
                del buf[:4 + n]
        _, status = os.waitpid(pid, 0)
        alive = False
        if os.WIFSIGNALED(status) or os.WEXITSTATUS(status):
            how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
            yield "error", f"EVTX parser died ({how}) on this damaged file (rest of file lost)"
    finally:
        os.close(r)
        if alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)


def _evtx_intact(path: str) -> bool:
    """Whether the file header and every used chunk pass their checksums (header and records data): only
    then is the parser trusted to finish (see ``EVTX_STALL_SECONDS``)."""
    with open(path, "rb") as fh:
        head = fh.read(EVTX_HEADER)
        if len(head) < 128 or head[:8] != b"ElfFile\x00" \
                or zlib.crc32(head[:120]) != int.from_bytes(head[124:128], "little") \
                or (os.fstat(fh.fileno()).st_size - EVTX_HEADER) % EVTX_CHUNK:
            return False
        while ch := fh.read(EVTX_CHUNK):
            if not ch.strip(b"\x00"):
                continue  # an unused slot
            free = int.from_bytes(ch[48:52], "little")
            if ch[:8] != b"ElfChnk\x00" \
                    or zlib.crc32(ch[128:512], zlib.crc32(ch[:120])) != int.from_bytes(ch[124:128], "little") \
                    or not 512 <= free <= EVTX_CHUNK \
                    or zlib.crc32(ch[512:free]) != int.from_bytes(ch[52:56], "little"):
                return False
    return True


def _evtx_layout(path: str) -> tuple[list[_Span], list[str]]:
    """The record ids the file should hold, span by span, from its file and chunk headers (each checked by
    its CRC32): a good chunk's ids; the gap two good chunks leave around damaged ones; after the last good
    chunk, the ids the (trusted) file header says were written — chunks damaged, zeroed or cut off. Slots
    of zeros past the last chunk the header counts are unused space, not loss."""
    problems: list[str] = []
    with open(path, "rb") as fh:
        head = fh.read(EVTX_HEADER)
        size = os.fstat(fh.fileno()).st_size
        if len(head) < 128 or head[:8] != b"ElfFile\x00":
            return [], problems
        header_ok = zlib.crc32(head[:120]) == int.from_bytes(head[124:128], "little")
        claimed = int.from_bytes(head[42:44], "little") if header_ok else 0
        next_id = int.from_bytes(head[24:32], "little") if header_ok else 0
        if not header_ok:
            problems.append("EVTX file header checksum mismatch (its counts are not trusted)")
        slots = max(0, (size - EVTX_HEADER + EVTX_CHUNK - 1) // EVTX_CHUNK)
        chunks: list[tuple[int, int] | None] = []
        whys: list[str] = []
        blank: list[bool] = []
        for i in range(slots):
            fh.seek(EVTX_HEADER + i * EVTX_CHUNK)
            ch = fh.read(512)
            present = min(EVTX_CHUNK, size - EVTX_HEADER - i * EVTX_CHUNK)
            blank.append(not ch.strip(b"\x00"))
            first, last = int.from_bytes(ch[24:32], "little"), int.from_bytes(ch[32:40], "little")
            if len(ch) < 512:
                why = f"truncated EVTX file: chunk {i} cut at {present:,} bytes"
            elif ch[:8] != b"ElfChnk\x00":
                why = f"corrupt EVTX chunk {i} skipped (bad chunk signature)"
            elif zlib.crc32(ch[128:512], zlib.crc32(ch[:120])) != int.from_bytes(ch[124:128], "little") \
                    or not 0 < last - first + 1 <= MAX_RECORDS_PER_CHUNK:
                why = f"corrupt EVTX chunk {i} skipped (bad chunk header checksum)"
            else:
                chunks.append((first, last))
                whys.append(f"truncated EVTX file: chunk {i} cut at {present:,} bytes" if present < EVTX_CHUNK
                            else f"corrupt EVTX chunk {i}: records unreadable")
                continue
            chunks.append(None)
            whys.append(why)
    valid = [i for i, c in enumerate(chunks) if c is not None]
    per_chunk = max(1, sum(chunks[i][1] - chunks[i][0] + 1 for i in valid) // len(valid)) if valid else 100
    spans: list[_Span] = []
    prev = None
    for i in valid:
        first, last = chunks[i]
        if prev is None:
            lead = [j for j in range(i) if not blank[j]]
            if lead:  # damaged chunks before the first good one
                spans.append(_Span(max(1, first - len(lead) * per_chunk), first - 1, whys[lead[0]]))
        elif first > chunks[prev][1] + 1:  # damaged chunks between two good ones
            between = [j for j in range(prev + 1, i)]
            why = whys[between[0]] if between else "corrupt EVTX chunk: records missing between chunks"
            lo, hi = chunks[prev][1] + 1, first - 1
            spans.append(_Span(lo, min(hi, lo + MAX_RECORDS_PER_CHUNK * max(1, len(between)) - 1), why))
        spans.append(_Span(first, last, whys[i]))
        prev = i
    start = prev + 1 if prev is not None else 0
    tail = [j for j in range(start, slots) if (header_ok and j < claimed) or not blank[j]]
    missing = max(0, claimed - slots)
    if tail or missing:
        n = len(tail) + missing
        lo = chunks[prev][1] + 1 if prev is not None else 1
        hi = next_id - 1 if header_ok and next_id - 1 >= lo else lo + n * per_chunk - 1
        hi = min(hi, lo + n * MAX_RECORDS_PER_CHUNK - 1)
        why = whys[tail[0]] if tail else ""
        if missing:
            why = (f"truncated EVTX file: {size:,} of {EVTX_HEADER + claimed * EVTX_CHUNK:,} bytes, {missing} of "
                   f"{claimed} chunks missing" + (f"; {why}" if why else ""))
        spans.append(_Span(lo, hi, why))
    return spans, problems


def _evtx_losses(stats: IngestStats, spans: list[_Span], problems: list[str], seen: list[int],
                 warned: list[str]) -> None:
    """Count, span by span, the records the file should hold but the parser did not give."""
    for span in spans:
        got = bisect_right(seen, span.last) - bisect_left(seen, span.first)
        lost = span.size - got
        if lost <= 0:
            continue
        why = span.why
        hint = next((w for w in warned if w.startswith("EVTX parser ")), None) or \
            next((w for w in warned if f"{span.first}" in w or "chunk" in w.lower()), None)
        if hint and "truncated" not in why:
            why = f"{why}: {hint}"
        stats.reject(None, f"{why} ({lost} records lost)", count=lost)
    if not spans and (warned or problems):
        for w in (warned or problems)[:5]:
            stats.reject(None, f"corrupt EVTX chunk skipped (a chunk of unknown size): {w}")


# ---------------------------------------------------------------------------------------------- JSON
def read_json_lines(opener: Opener, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    """JSON lines (one object a line; blank lines skipped), parsed with orjson; a bad line — cut short,
    invalid UTF-8, NaN, too deep, too long — is one rejection and the lines after it are read. A first line
    holding a JSON array is read element by element. (Arrow's C++ JSON reader was tried for blocks of
    lines: on Windows event exports, with a hundred-odd sparse columns, it parsed at 33 µs a line against
    orjson's 6.)"""
    with opener() as fh:
        for lineno, block in line_blocks(utf8_blocks(fh)):
            if type(block) is _Overlong:
                stats.reject(lineno, f"line longer than {MAX_LINE:,} bytes ({block.size:,}): not read")
                continue
            if not block.endswith(b"\n") and getattr(fh, "error", None):
                break  # the cut-off last line is the damaged tail, counted once by read()
            yield from _json_lines(block, lineno, stats)


def _json_lines(block: bytes, lineno: int, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    for offset, raw in enumerate(block.split(b"\n")):
        if not raw.strip():
            continue
        n = lineno + offset
        if n == 1 and records_document(raw[:256]):  # a one-line CloudTrail {"Records": [...]} file
            yield from read_records_document(raw, stats)
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            stats.reject(n, f"not valid JSON: {exc}")
            continue
        if n == 1 and isinstance(obj, list):  # a one-line JSON array of objects
            for i, item in enumerate(obj, 1):
                yield from _json_record(item, i, stats)
            continue
        yield from _json_record(obj, n, stats)


def _json_record(obj, number: int, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    if type(obj) is not dict:
        stats.reject(number, f"not a JSON object: a {type(obj).__name__}")
        return
    try:
        fields = flatten_json_event(obj)
    except (TypeError, ValueError, RecursionError) as exc:  # orjson cannot render lists > 254 deep
        stats.reject(number, f"record not flattened (nested too deeply?): {_why(exc)}")
        return
    stats.accept()
    yield number, expand(fields)


def read_json_document(opener: Opener, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    """One JSON document: an array of objects (split element by element, so one bad element costs only
    itself and memory stays that of one element) or a single object."""
    with opener() as fh:
        raw = b"".join(utf8_blocks(fh, MAX_DOCUMENT + 1))
        if len(raw) > MAX_DOCUMENT:
            stats.reject(1, f"JSON document larger than {MAX_DOCUMENT >> 20} MiB: write it as JSON lines")
            return
    if records_document(raw[:256]):  # a CloudTrail {"Records": [...]} file: one event per record
        yield from read_records_document(raw, stats)
        return
    start = raw.lstrip()[:1]
    if start == b"[":
        yield from _json_array(raw, stats)
        return
    if len(raw) > MAX_OBJECT_DOCUMENT:
        stats.reject(1, f"JSON object document larger than {MAX_OBJECT_DOCUMENT >> 20} MiB: write it as JSON lines")
        return
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        stats.reject(1, f"not valid JSON: {exc}")
        return
    yield from _json_record(doc, 1, stats)


# a JSON string (to its end, or to the end of the data when unterminated) or a structural character
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)|[\[\]{},]', re.DOTALL)


def _json_array(raw: bytes, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    """A JSON array split at its top-level commas (string-aware bracket depth); each element parsed on
    its own. An element that is not valid JSON is one rejection; the next element starts after the next
    top-level comma."""
    depth = 0
    start = None
    index = 0
    for m in _JSON_TOKEN.finditer(raw):
        tok = raw[m.start():m.start() + 1]
        if tok == b'"':
            continue
        if tok in b"[{":
            depth += 1
            if depth == 1:
                if tok != b"[":
                    break
                start = m.end()
            continue
        if tok in b"]}":
            depth -= 1
            if depth == 0:
                if start is not None and raw[start:m.start()].strip():
                    index += 1
                    yield from _json_element(raw[start:m.start()], index, stats)
                return
            if depth < 0:
                break
            continue
        if depth == 1:  # a top-level comma
            index += 1
            yield from _json_element(raw[start:m.start()], index, stats)
            start = m.end()
    # unbalanced: the array was cut short or damaged; what follows the last element boundary is lost
    if start is not None and raw[start:].strip():
        index += 1
        stats.reject(index, "JSON array cut short or damaged: the rest of the document is lost")
    elif start is None:
        stats.reject(1, "not valid JSON: no array")


def _json_element(raw: bytes, index: int, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        stats.reject(index, f"not valid JSON: {exc}")
        return
    yield from _json_record(obj, index, stats)


# ---------------------------------------------------------------------------------------------- tables
def read_parquet(opener: Opener, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    """Parquet, streamed row group by row group: a damaged row group costs its own rows (counted from the
    footer), not the others; nested struct columns follow the JSON flattening rule."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, _stream, cleanup = _seekable_file(opener, ".parquet")
    try:
        try:
            pf = pq.ParquetFile(path)
            groups = pf.metadata.num_row_groups
        except Exception as exc:  # noqa: BLE001 — pyarrow raises ArrowInvalid/OSError/... for a bad file
            stats.reject(None, f"not a readable Parquet file: {_why(exc)}")
            return
        size = os.path.getsize(path)
        budget = max(FREE_EXPANSION, MAX_RATIO * size)
        row = 0
        for g in range(groups):
            try:
                meta = pf.metadata.row_group(g)
                expected, unpacked = meta.num_rows, meta.total_byte_size
            except Exception as exc:  # noqa: BLE001
                stats.reject(None, f"Parquet row group {g} unreadable: {_why(exc)}")
                continue
            expected = expected if 0 <= expected < 1 << 31 else 1
            if unpacked > budget:
                stats.reject(None, f"Parquet row group {g} expands to {unpacked:,} bytes, more than {MAX_RATIO}x "
                                   f"the file: not read", count=max(1, expected))
                row += expected
                continue
            got = 0
            try:
                for batch in pf.iter_batches(batch_size=16_384, row_groups=[g]):
                    for obj in batch.to_pylist():
                        row += 1
                        got += 1
                        try:
                            fields = flatten_json_event({k: v for k, v in obj.items() if v is not None})
                        except (TypeError, ValueError, RecursionError) as exc:
                            stats.reject(row, f"Parquet row not flattened: {_why(exc)}")
                            continue
                        stats.accept()
                        yield row, fields
            except (pa.ArrowException, OSError, ValueError, UnicodeDecodeError, TypeError, IndexError,
                    MemoryError, RuntimeError) as exc:
                lost = max(1, expected - got)
                stats.reject(None, f"corrupt Parquet row group {g} ({lost} rows lost): {_why(exc)}", count=lost)
                row += max(0, expected - got)
    finally:
        cleanup()


csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE))
MAX_RECORD_LINES = 10_000  # a quoted CSV field may span this many lines, no more
MAX_CSV_RECORD = 4 << 20  # ... and this many bytes


def read_csv(opener: Opener, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    """CSV with a header row, delimiter ``,`` ``;`` tab or ``|`` (judged from the first lines); a row with
    more or fewer cells than the header is rejected. A quote left open does not swallow the rest of the
    file: a record may span at most :data:`MAX_RECORD_LINES` lines / :data:`MAX_CSV_RECORD` bytes, and one
    whose quotes do not close into a row of the header's width is re-read as the single line it started
    on — rejected if that is not a row either — and reading goes on with the next line."""
    with opener() as fh:
        lines = _text_lines(fh)
        try:
            first = next(lines)
        except StopIteration:
            return
        queue: deque = deque([first])
        sample = []
        while len(sample) < 20:
            nxt = next(lines, None)
            if nxt is None:
                break
            queue.append(nxt)
            sample.append(nxt)
        delim = csv_delimiter("".join(t for _, t in [first, *sample] if isinstance(t, str))) or ","
        dialect = {"delimiter": delim, "quotechar": '"', "doublequote": True, "strict": False}

        def pull():
            return queue.popleft() if queue else next(lines, None)

        header_item = pull()
        while header_item is not None and isinstance(header_item[1], str) and not header_item[1].strip():
            header_item = pull()
        if header_item is None:
            return
        if not isinstance(header_item[1], str):
            stats.reject(header_item[0], f"CSV header longer than {MAX_LINE:,} bytes: file not read")
            return
        header_rows = _csv_rows([header_item[1]], dialect)
        if not header_rows or len(header_rows) != 1:
            stats.reject(header_item[0], "unreadable CSV header")
            return
        header = [h.strip() if i else h.lstrip("\ufeff").strip() for i, h in enumerate(header_rows[0])]
        width = len(header)
        while True:
            item = pull()
            if item is None:
                break
            n, text = item
            if not isinstance(text, str):
                stats.reject(n, f"CSV line longer than {MAX_LINE:,} bytes ({text.size:,}): not read")
                continue
            if not text.strip():
                continue
            group = [item]
            if text.count('"') % 2:  # a quoted field goes on over the next lines
                size, odd = len(text), True
                while odd and size <= MAX_CSV_RECORD and len(group) < MAX_RECORD_LINES:
                    nxt = pull()
                    if nxt is None:
                        break
                    if not isinstance(nxt[1], str):
                        queue.appendleft(nxt)
                        break
                    group.append(nxt)
                    size += len(nxt[1])
                    odd ^= nxt[1].count('"') % 2 == 1
            rows = _csv_rows([t for _, t in group], dialect) if len(group) == 1 or not odd else None
            if rows is not None and len(rows) == 1 and len(rows[0]) == width:
                stats.accept()
                yield n, _csv_record(header, rows[0], n, stats)
                continue
            if len(group) > 1:  # the quote did not close into one row: the first line alone, then go on
                queue.extendleft(reversed(group[1:]))
                rows = _csv_rows([text], dialect)
                if rows is not None and len(rows) == 1 and len(rows[0]) == width:
                    stats.accept()
                    yield n, _csv_record(header, rows[0], n, stats)
                    continue
                stats.reject(n, "malformed CSV row: a quote that does not close")
                continue
            cells = rows[0] if rows else []
            if rows is None or len(rows) != 1:
                stats.reject(n, "malformed CSV row")
            else:
                stats.reject(n, f"row has {len(cells)} cells, the header {width}")


def _csv_rows(texts: list[str], dialect: dict) -> list[list[str]] | None:
    try:
        return [r for r in csv.reader(texts, **dialect) if r]
    except csv.Error:
        return None


def _csv_record(header: list[str], cells: list[str], n: int, stats: IngestStats) -> dict:
    return flatten_json_event({k: v for k, v in zip(header, cells) if v != "" and k})


def _text_lines(fh) -> Iterator[tuple[int, str | _Overlong]]:
    """(line number, line with its ending) of a byte stream, decoded as UTF-8 (bad bytes replaced)."""
    for lineno, block in line_blocks(utf8_blocks(fh, BLOCK)):
        if type(block) is _Overlong:
            yield lineno, block
            continue
        text = block.decode("utf-8", errors="replace").replace("\x00", "")
        lines = text.split("\n")  # only "\n" ends a line (str.splitlines also splits at \x0c, \u2028, ...)
        for i, line in enumerate(lines[:-1]):
            yield lineno + i, line + "\n"
        if lines[-1]:
            yield lineno + len(lines) - 1, lines[-1]


READERS.update(evtx=read_evtx, jsonl=read_json_lines, json=read_json_document, parquet=read_parquet,
               csv=read_csv)
READERS.update(FORMAT_READERS)  # Zeek TSV, raw auditd, syslog text, CloudTrail Records (ingest.formats)
