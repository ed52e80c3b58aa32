"""Format readers: EVTX, JSON lines / JSON, Parquet, CSV, and the archives that carry them (zip, tar, gz).

Each reader yields ``(record, fields)``: the record number (EVTX EventRecordID, else the 1-based line or
row) and the flat Sigma fields. A bad record is counted in the source's :class:`IngestStats` with its
reason and skipped; the records beside it are kept.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import tarfile
import zipfile
from pathlib import Path
from typing import IO, Callable, Iterator

import orjson

from ttpscope.ingest.base import IngestStats, detect_format
from ttpscope.ingest.flatten import flatten_evtx_event, flatten_json_event
from ttpscope.ingest.formats import FORMAT_READERS, expand, read_records_document, records_document, sniff_text

Opener = Callable[[], IO[bytes]]
WHOLE_JSON_LIMIT = 256 * 1024 * 1024  # a .json document (not lines) is parsed whole up to this size


def open_members(path: Path, stats: IngestStats) -> Iterator[tuple[str, str, Opener]]:
    """The event sources inside one file: the file itself, or the members of an archive."""
    fmt = detect_format(path.name) or _sniffed(path)
    if fmt == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                for info in sorted(zf.infolist(), key=lambda i: i.filename):
                    inner = detect_format(info.filename) or (None if info.is_dir() else _sniffed_member(zf, info))
                    if info.is_dir() or inner in (None, "zip", "tar", "gz") or _metadata_member(info.filename):
                        continue
                    yield f"{path}!{info.filename}", inner, (lambda zf=zf, info=info: zf.open(info))
        except (zipfile.BadZipFile, OSError) as exc:
            stats.reject(None, f"unreadable zip archive: {exc}")
    elif fmt == "tar":
        try:
            with tarfile.open(path, mode="r|*") as tf:
                for member in tf:
                    inner = detect_format(member.name)
                    handle = None
                    if inner is None and member.isfile():  # a text log named by nothing: sniff its head
                        handle = tf.extractfile(member)
                        data = handle.read() if handle is not None else b""
                        inner = sniff_text(data[:SNIFF_HEAD])
                        handle = io.BytesIO(data)
                    if not member.isfile() or inner in (None, "zip", "tar", "gz") or _metadata_member(member.name):
                        continue
                    handle = handle or tf.extractfile(member)
                    if handle is not None:
                        yield f"{path}!{member.name}", inner, (lambda h=handle: h)
        except (tarfile.TarError, OSError, EOFError) as exc:
            stats.reject(None, f"truncated or unreadable tar archive: {exc}")
    elif fmt == "gz":
        inner_name = path.name[:-3]
        inner = detect_format(inner_name)
        if inner is None:
            with gzip.open(path, "rb") as fh:
                inner = sniff_text(fh.read(SNIFF_HEAD)) or "jsonl"
        yield str(path), inner, (lambda: gzip.open(path, "rb"))
    elif fmt is None:
        stats.reject(None, "unknown format: expected .evtx, .json, .jsonl, .ndjson, .parquet, .csv or an archive")
    else:
        yield str(path), fmt, (lambda: open(path, "rb"))


SNIFF_HEAD = 64 * 1024


def _sniffed(path: Path) -> str | None:
    """The text log format of a file whose name says nothing (Zeek ``conn.log``, ``audit.log``)."""
    try:
        with path.open("rb") as fh:
            return sniff_text(fh.read(SNIFF_HEAD), path.suffix.lower())
    except OSError:
        return None


def _sniffed_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    with zf.open(info) as fh:
        return sniff_text(fh.read(SNIFF_HEAD))


def _metadata_member(name: str) -> bool:
    """macOS resource forks (``__MACOSX/``, ``._name``) travel in archives but hold no events."""
    parts = name.replace("\\", "/").split("/")
    return "__MACOSX" in parts or parts[-1].startswith("._")


def read(fmt: str, opener: Opener, stats: IngestStats, evtx_threads: int = 1) -> Iterator[tuple[int, dict]]:
    """Dispatch to the reader of one format; any failure to open is a counted rejection, never fatal."""
    try:
        reader = FORMAT_READERS.get(fmt)  # Zeek TSV, raw auditd, CloudTrail Records (ingest.formats)
        if reader is not None:
            yield from reader(opener, stats)
        elif fmt == "evtx":
            yield from read_evtx(opener, stats, evtx_threads)
        elif fmt in ("jsonl", "json"):
            yield from read_json(opener, stats)
        elif fmt == "parquet":
            yield from read_parquet(opener, stats)
        elif fmt == "csv":
            yield from read_csv(opener, stats)
        else:
            stats.reject(None, f"unsupported format {fmt}")
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile) as exc:
        stats.reject(None, f"read error, rest of source lost: {exc}")


# ---------------------------------------------------------------------------------------------- EVTX
def read_evtx(opener: Opener, stats: IngestStats, threads: int = 1) -> Iterator[tuple[int, dict]]:
    """EVTX via the Rust ``evtx`` parser. Corrupt records/chunks are reported by the parser as warnings
    (``skip_errors=True``): each one is counted as rejected with the parser's message."""
    import warnings

    import evtx

    handle = opener()
    if not isinstance(handle, (io.BufferedReader, io.BytesIO)) or not hasattr(handle, "seek"):
        handle = io.BytesIO(handle.read())  # archive members: the parser needs a seekable file
    _evtx_truncation(handle, stats)
    try:
        parser = evtx.PyEvtxParser(handle, number_of_threads=threads, skip_errors=True)
    except (RuntimeError, OSError, ValueError) as exc:
        stats.reject(None, f"not a readable EVTX file: {exc}")
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        it = iter(parser.records_json())
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except (RuntimeError, OSError, ValueError) as exc:  # unrecoverable: the rest of the file is lost
                stats.reject(None, f"EVTX parse error, rest of file lost: {exc}")
                break
            finally:
                for w in caught:
                    _evtx_warning(stats, str(w.message))
                caught.clear()
            try:
                fields = flatten_evtx_event(orjson.loads(rec["data"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                stats.reject(rec.get("event_record_id"), f"unreadable EVTX record: {exc}")
                continue
            stats.accept()
            try:
                number = int(fields.get("EventRecordID") or rec.get("event_record_id") or 0)
            except ValueError:
                number = int(rec.get("event_record_id") or 0)
            yield number, fields


_RECORD_RANGE = re.compile(r"record IDs (\d+)\.\.(\d+)")
EVTX_HEADER = 4096
EVTX_CHUNK = 65536


def _evtx_warning(stats: IngestStats, message: str) -> None:
    """A chunk the parser skipped: count its records when the parser names their range."""
    m = _RECORD_RANGE.search(message)
    lost = int(m.group(2)) - int(m.group(1)) + 1 if m else 1
    what = f"{lost} records" if m else "a chunk of unknown size"
    stats.reject(None, f"corrupt EVTX chunk skipped ({what}): {' '.join(message.split())[:200]}", count=lost)


def _evtx_truncation(handle, stats: IngestStats) -> None:
    """The parser silently stops at a truncated chunk: compare the size with the header's chunk count."""
    try:
        pos = handle.tell()
        head = handle.read(48)
        handle.seek(0, io.SEEK_END)
        size = handle.tell()
        handle.seek(pos)
    except (OSError, ValueError):
        return
    if len(head) < 48 or head[:8] != b"ElfFile\x00":
        return
    chunks = int.from_bytes(head[42:44], "little")
    expected = EVTX_HEADER + chunks * EVTX_CHUNK
    if chunks and size < expected:
        missing = (expected - size + EVTX_CHUNK - 1) // EVTX_CHUNK
        stats.reject(None, f"truncated EVTX file: {size:,} of {expected:,} bytes, the records of {missing} of "
                           f"{chunks} chunks are lost or partial", count=missing)


# ---------------------------------------------------------------------------------------------- JSON
JSON_BLOCK = 4 << 20  # bytes of JSON lines read at once


def read_json(opener: Opener, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    """JSON lines (one object a line; blank lines skipped), parsed with orjson. A file whose first line is
    not JSON but which starts with ``[`` or ``{`` is read as one JSON document: an object or an array of
    objects. (Arrow's C++ JSON reader was tried for blocks of lines: on Windows event exports, with a
    hundred-odd sparse columns, it parsed at 33 µs a line against orjson's 6.)"""
    with opener() as fh:
        buf = fh.read(JSON_BLOCK)
        while buf and b"\n" not in buf.lstrip() and len(buf) < WHOLE_JSON_LIMIT:
            more = fh.read(JSON_BLOCK)  # the first line must be whole to tell lines from a document
            if not more:
                break
            buf += more
        if records_document(buf[:256]):  # a CloudTrail {"Records": [...]} file: one event per record
            yield from read_records_document(buf + fh.read(WHOLE_JSON_LIMIT), stats)
            return
        first = next((ln for ln in buf.split(b"\n", 64) if ln.strip()), b"")
        if first and first.lstrip()[:1] in (b"{", b"["):
            try:
                orjson.loads(first)
            except orjson.JSONDecodeError:  # not one object a line: a JSON document
                rest = fh.read(WHOLE_JSON_LIMIT + 1)
                if len(buf) + len(rest) > WHOLE_JSON_LIMIT:
                    stats.reject(1, "JSON document larger than 256 MB: write it as JSON lines")
                    return
                yield from _json_document(buf + rest, stats)
                return
        lineno = 1
        eof = False
        while buf or not eof:
            more = b"" if eof else fh.read(JSON_BLOCK)
            eof = eof or not more
            buf += more
            cut = len(buf) - 1 if eof else buf.rfind(b"\n")
            if cut < 0:
                continue
            block, buf = buf[:cut + 1], buf[cut + 1:]
            yield from _json_lines(block, lineno, stats)
            lineno += block.count(b"\n")


def _json_lines(block: bytes, lineno: int, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    for offset, raw in enumerate(block.split(b"\n")):
        if not raw.strip():
            continue
        n = lineno + offset
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            stats.reject(n, f"not valid JSON: {exc}")
            continue
        if n == 1 and isinstance(obj, list):  # a one-line JSON array of objects
            for i, item in enumerate(obj, 1):
                yield from _json_line(item, i, stats)
            continue
        yield from _json_line(obj, n, stats)


def _json_line(obj, lineno: int, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    if not isinstance(obj, dict):
        stats.reject(lineno, f"not a JSON object: a {type(obj).__name__}")
        return
    stats.accept()
    yield lineno, expand(flatten_json_event(obj))


def _json_document(raw: bytes, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        stats.reject(None, f"not valid JSON: {exc}")
        return
    items = doc if isinstance(doc, list) else [doc]
    for i, obj in enumerate(items, 1):
        yield from _json_line(obj, i, stats)


# ---------------------------------------------------------------------------------------------- tables
def read_parquet(opener: Opener, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    """Parquet, streamed by record batch; nested struct columns follow the JSON flattening rule."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(opener())
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError variants for a bad file
        stats.reject(None, f"not a readable Parquet file: {exc}")
        return
    row = 0
    for batch in pf.iter_batches(batch_size=16_384):
        for obj in batch.to_pylist():
            row += 1
            stats.accept()
            yield row, flatten_json_event({k: v for k, v in obj.items() if v is not None})


def read_csv(opener: Opener, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    """CSV with a header row; a row with more or fewer cells than the header is rejected."""
    with opener() as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            stats.reject(1, f"unreadable CSV header: {exc}")
            return
        width = len(header)
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                stats.reject(reader.line_num, f"malformed CSV row: {exc}")
                continue
            if not cells:
                continue
            if len(cells) != width:
                stats.reject(reader.line_num, f"row has {len(cells)} cells, the header {width}")
                continue
            stats.accept()
            yield reader.line_num, flatten_json_event({k: v for k, v in zip(header, cells) if v != ""})
