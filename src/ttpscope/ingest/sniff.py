"""One content sniffer: what a file is (an event log of which format, a report of which format, or neither,
and why), judged by its bytes; the file name only breaks ties (``.md`` vs ``.txt``, ``.csv``).

Content first: EVTX and Parquet by their magic bytes, PDF by its header, archives by theirs, JSON by its
first record, HTML by its markup, text log formats by the sniffers their readers register in
:data:`TEXT_SNIFFERS`, CSV by a consistent delimited header. ``investigate``, the web upload check and the
ingest all call :func:`sniff` and pass the format on explicitly.
"""

from __future__ import annotations

import csv
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


def _decode(head: bytes) -> str | None:
    """The sniffed bytes as text, or None if they are binary."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return head.decode("utf-16", errors="strict")[:SNIFF_BYTES]
        except UnicodeDecodeError:
            return None
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:  # cut in the middle of a multi-byte character by the sniff
            return head[: exc.start].decode("utf-8", errors="replace")
        printable = sum(1 for b in head if b >= 32 or b in (9, 10, 13))
        return head.decode("latin-1") if printable / max(1, len(head)) > 0.95 else None


def _looks_like_csv(text: str, suffix: str) -> bool:
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if len(lines) < 2:
        return False
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines[:10]), delimiters=",;\t|")
    except csv.Error:
        return suffix in (".csv", ".tsv")
    rows = list(csv.reader(lines[:10], dialect))
    width = len(rows[0])
    if width < 3 or any(len(r) != width for r in rows[1:-1]):  # the last sniffed line may be cut short
        return False
    header = rows[0]
    # a log header names fields: short tokens without sentence punctuation
    return all(h.strip() and len(h) <= 64 and not h.strip().endswith(".") for h in header)


def sniff(path: str | Path) -> Sniffed:
    """What one file is by its content: a log (which format), a report (which format), or unknown (why)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        return Sniffed(UNKNOWN, problem=f"cannot read: {exc.strerror or exc}")
    suffix = path.suffix.lower()
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
        return Sniffed(LOG, "tar" if path.name.lower().endswith((".tar.gz", ".tgz")) else "gz")
    if head[257:262] == b"ustar":
        return Sniffed(LOG, "tar")
    if head.startswith((b"7z\xbc\xaf", b"BZh", b"\xfd7zXZ", b"Rar!")):
        return Sniffed(UNKNOWN, problem="an archive of a kind not read (7z, bzip2, xz, rar): unpack it "
                        "and give the files inside")
    text = _decode(head)
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
            return Sniffed(LOG, "jsonl")
        return Sniffed(LOG, "json")  # a pretty-printed object or records spread over lines
    if stripped.startswith("["):
        return Sniffed(LOG, "json")
    low = stripped[:2048].lower()
    if low.startswith(("<!doctype html", "<html")) or "<body" in low or "<html" in low:
        return Sniffed(REPORT, "html")
    if low.startswith("<?xml") or low.startswith("<events") or low.startswith("<event "):
        return Sniffed(UNKNOWN, problem="XML event export: convert to EVTX or JSON lines first")
    if suffix in (".yml", ".yaml") and ("detection:" in text and "logsource:" in text):
        return Sniffed(UNKNOWN, problem="a Sigma rule: give rule folders with --rules")
    import ttpscope.ingest.formats  # noqa: F401  (registers the text formats' sniffers)

    for text_sniffer in TEXT_SNIFFERS:  # formats registered by their readers (Zeek TSV, auditd, ...)
        fmt = text_sniffer(text, suffix)
        if fmt:
            return Sniffed(LOG, fmt)
    if _looks_like_csv(text, suffix):
        return Sniffed(LOG, "csv")
    if suffix in (".yml", ".yaml", ".py", ".js", ".sh", ".ps1", ".exe", ".dll"):
        return Sniffed(UNKNOWN, problem=f"a {suffix} file is neither an event log nor a report")
    return Sniffed(REPORT, "md" if suffix in (".md", ".markdown") else "txt")
