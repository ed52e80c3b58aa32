"""One content sniffer: what a file is (an event log of which format, a report of which format, or neither,
and why), judged by its bytes; the file name only breaks ties (``.md`` vs ``.txt``, ``.csv``).

Content first: EVTX and Parquet by their magic bytes, PDF by its header, archives by theirs, JSON by its
first record, HTML by its markup, text log formats by the sniffers their readers register in
:data:`TEXT_SNIFFERS`, CSV by a consistent delimited header. ``investigate``, the web upload check and the
ingest all call :func:`sniff` and pass the format on explicitly.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import orjson

SNIFF_BYTES = 64 * 1024
LOG, REPORT, UNKNOWN = "log", "report", "unknown"
LOG_FORMATS = ("evtx", "jsonl", "json", "parquet", "csv", "zip", "gz", "tar")
REPORT_FORMATS = ("txt", "md", "html", "pdf")
# text log formats: sniffer(text of the first 64 KiB, lower-case suffix) → format name or None
TEXT_SNIFFERS: list[Callable[[str, str], str | None]] = []


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What a file was taken for: ``kind`` log | report | unknown, its ``format``, or the ``problem``."""

    kind: str
    format: str | None = None
    problem: str | None = None


def utf16_order(head: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when the bytes are UTF-16 text (by byte order mark, or by the NULs every
    other byte that ASCII text in UTF-16 has), else None."""
    sample = head[:4096]
    # a byte order mark counts when NULs follow, as in UTF-16 text of logs (mostly ASCII); b"\xff\xfe" before
    # UTF-8 text is damage, not an encoding
    marked = len(sample) <= 4 or sample.count(0) > 0.1 * len(sample)
    if head.startswith(b"\xff\xfe") and marked:
        return "utf-16-le"
    if head.startswith(b"\xfe\xff") and marked:
        return "utf-16-be"
    if len(sample) >= 16:
        even, odd = sample[0::2], sample[1::2]
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
            return "utf-16-le"
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
            return "utf-16-be"
    return None


_PRINTABLE = bytes([9, 10, 13, *range(32, 256)])


def decode_head(head: bytes) -> str | None:
    """The sniffed bytes as text, or None if they are binary. A few stray NUL bytes (a damaged or padded
    log) do not make text binary: binary formats are full of control bytes, not one or two."""
    order = utf16_order(head)
    if order:
        body = head[2:] if head[:2] in (b"\xff\xfe", b"\xfe\xff") else head
        return body[: len(body) & ~1].decode(order, errors="replace")
    nul = head.count(0)
    if nul:
        if nul > max(8, len(head) // 1000):  # more than 0.1 %: binary
            return None
        head = head.replace(b"\x00", b"")
    control = sum(1 for b in head[:4096] if b < 32 and b not in (9, 10, 12, 13, 27))
    if control and control * 50 > len(head[:4096]):  # text has almost no control bytes; binary is full of them
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:  # cut in the middle of a multi-byte character by the sniff
            return head[: exc.start].decode("utf-8", errors="replace")
        printable = len(head) - len(head.translate(None, _PRINTABLE))
        return head.decode("latin-1") if printable / max(1, len(head)) > 0.95 else None


def json_layout(text: str, whole: bool = False) -> str:
    """``jsonl`` (one JSON value a line) or ``json`` (one document spread over lines), judged from the
    first lines. A bad first line (cut short, NaN, invalid UTF-8) does not make a file one document: if
    most of the next lines are whole JSON values, it is JSON lines with one bad line. ``whole``: the text is
    the whole file (else its last line may be cut by the sniff and is not judged)."""
    lines = text.lstrip("\ufeff \t\r\n").split("\n", 65)
    if not whole and len(lines) > 1:
        lines = lines[:-1]
    lines = [ln for ln in lines[:64] if ln.strip()]
    if not lines:
        return "jsonl"
    if _is_json(lines[0]):
        return "jsonl"
    rest = lines[1:]
    if rest and sum(1 for ln in rest if ln.lstrip()[:1] == "{" and _is_json(ln)) * 2 >= len(rest):
        return "jsonl"
    return "json"


def _mostly_objects(text: str, whole: bool) -> bool:
    """At least two of the first lines, and most of them, are JSON objects."""
    lines = text.split("\n", 65)
    lines = [ln for ln in (lines if whole or len(lines) == 1 else lines[:-1])[:64] if ln.strip()]
    good = sum(1 for ln in lines if ln.lstrip()[:1] == "{" and _is_json(ln))
    return good >= 2 and good * 2 >= len(lines)


def _is_json(line: str) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


CSV_DELIMITERS = (",", ";", "\t", "|")


def csv_delimiter(text: str) -> str | None:
    """The delimiter of delimited text (``,`` ``;`` tab ``|``): the one that splits the header into at
    least two fields and the most of the next lines into as many; None when none does."""
    lines = [ln for ln in text.splitlines()[:21] if ln.strip()]
    if not lines:
        return None
    body = lines[1:-1] if len(lines) > 2 else lines[1:]  # the last sniffed line may be cut short
    best, best_score = None, 0
    for delim in CSV_DELIMITERS:
        try:
            rows = list(csv.reader(lines[: len(body) + 1], delimiter=delim))
        except csv.Error:
            continue
        width = len(rows[0])
        if width < 2:
            continue
        score = 1 + sum(1 for r in rows[1:] if len(r) == width)
        if score > best_score:
            best, best_score = delim, score
    return best


def _looks_like_csv(text: str, suffix: str) -> bool:
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if len(lines) < 2:
        return False
    delim = csv_delimiter(text)
    if delim is None or suffix in (".csv", ".tsv"):  # the name breaks the tie for delimited text
        return delim is not None or suffix in (".csv", ".tsv")
    rows = list(csv.reader(lines[:10], delimiter=delim))
    width = len(rows[0])
    if width < 3 or any(len(r) != width for r in rows[1:-1]):  # the last sniffed line may be cut short
        return False
    header = rows[0]
    # a log header names fields: short tokens without sentence punctuation
    return all(h.strip() and len(h) <= 64 and not h.strip().endswith(".") for h in header)


def _gunzip_head(head: bytes) -> bytes:
    """The first decompressed bytes of gzip data (as much as the sniffed bytes give)."""
    try:
        return zlib.decompressobj(31).decompress(head, SNIFF_BYTES)
    except zlib.error:
        return b""


def sniff(path: str | Path) -> Sniffed:
    """What one file is by its content: a log (which format), a report (which format), or unknown (why)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
            whole = len(head) < SNIFF_BYTES or not fh.read(1)
    except OSError as exc:
        return Sniffed(UNKNOWN, problem=f"cannot read: {exc.strerror or exc}")
    return sniff_bytes(head, path.name, whole)


def sniff_bytes(head: bytes, name: str = "", whole: bool = False) -> Sniffed:
    """What a file (or an archive member) is, from its first :data:`SNIFF_BYTES` bytes and its name.
    ``whole``: ``head`` is the whole content."""
    import ttpscope.ingest.formats  # noqa: F401  (registers the text formats' sniffers)

    suffix = Path(name).suffix.lower()
    if not head.strip():
        return Sniffed(UNKNOWN, problem="empty file")
    if head.startswith(b"ElfFile\x00"):
        return Sniffed(LOG, "evtx")
    if head.startswith(b"PAR1"):
        return Sniffed(LOG, "parquet")
    if head.startswith(b"%PDF-"):
        return Sniffed(REPORT, "pdf")
    # zip, gzip and tar archives of event logs are read by the ingest, member by member
    if head.startswith(b"PK\x03\x04"):
        return Sniffed(LOG, "zip")
    if head.startswith(b"\x1f\x8b"):
        inner = _gunzip_head(head)
        return Sniffed(LOG, "tar" if inner[257:262] == b"ustar" else "gz")
    if head[257:262] == b"ustar":
        return Sniffed(LOG, "tar")
    if head.startswith((b"7z\xbc\xaf", b"BZh", b"\xfd7zXZ", b"Rar!")):
        return Sniffed(UNKNOWN, problem="an archive of a kind not read (7z, bzip2, xz, rar): unpack it "
                        "and give the files inside")
    text = decode_head(head)
    if text is None:
        return Sniffed(UNKNOWN, problem="binary content of no known log or report format")
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        first = stripped.split("\n", 1)[0].strip()
        try:
            value = orjson.loads(first)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            if "techniques" in value and "versions" in value:
                return Sniffed(UNKNOWN, problem="a Navigator layer, not evidence")
            if value.get("type") == "bundle":
                return Sniffed(UNKNOWN, problem="a STIX bundle, not evidence")
    if stripped.startswith(("{", "[")):
        for text_sniffer in TEXT_SNIFFERS:  # JSON-shaped formats of their own (CloudTrail Records, ...)
            fmt = text_sniffer(text, suffix)
            if fmt:
                return Sniffed(LOG, fmt)
        return Sniffed(LOG, json_layout(stripped, whole))
    if json_layout(stripped, whole) == "jsonl" and _mostly_objects(stripped, whole):
        return Sniffed(LOG, "jsonl")  # JSON lines whose first line is damaged
    low = stripped[:2048].lower()
    if low.startswith(("<!doctype html", "<html")) or "<body" in low or "<html" in low:
        return Sniffed(REPORT, "html")
    if low.startswith("<?xml") or low.startswith("<events") or low.startswith("<event "):
        return Sniffed(UNKNOWN, problem="XML event export: convert to EVTX or JSON lines first")
    if suffix in (".yml", ".yaml") and ("detection:" in text and "logsource:" in text):
        return Sniffed(UNKNOWN, problem="a Sigma rule: give rule folders with --rules")
    for text_sniffer in TEXT_SNIFFERS:  # formats registered by their readers (Zeek TSV, auditd, ...)
        fmt = text_sniffer(text, suffix)
        if fmt:
            return Sniffed(LOG, fmt)
    if _looks_like_csv(text, suffix):
        return Sniffed(LOG, "csv")
    if suffix in (".yml", ".yaml", ".py", ".js", ".sh", ".ps1", ".exe", ".dll"):
        return Sniffed(UNKNOWN, problem=f"a {suffix} file is neither an event log nor a report")
    return Sniffed(REPORT, "md" if suffix in (".md", ".markdown") else "txt")
