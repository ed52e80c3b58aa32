"""Sort evidence files by what they contain, not by their names: event logs go to detection, threat reports
to extraction, the rest is reported and left out.

Content first: EVTX and Parquet by their magic bytes, PDF by its header, JSON by its first record, HTML by
its markup, CSV by a consistent delimited header; the file name only breaks ties (``.md`` vs ``.txt``,
``.csv``). Folders are walked in sorted order, skipping hidden entries.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import orjson

SNIFF_BYTES = 64 * 1024
LOG, REPORT, UNKNOWN = "log", "report", "unknown"
LOG_FORMATS = ("evtx", "jsonl", "json", "parquet", "csv", "zip", "gz", "tar")
# the file name ending each format is read under by the ingest (which goes by names)
SUFFIXES = {"evtx": ".evtx", "jsonl": ".jsonl", "json": ".json", "parquet": ".parquet", "csv": ".csv",
            "zip": ".zip", "gz": ".gz", "tar": ".tar"}
REPORT_FORMATS = ("txt", "md", "html", "pdf")


@dataclass(slots=True)
class Evidence:
    """One evidence file and what it was taken for."""

    path: Path
    kind: str  # log | report | unknown
    format: str | None = None  # evtx, jsonl, json, parquet, csv | txt, md, html, pdf
    problem: str | None = None  # why it is unknown

    def to_dict(self) -> dict[str, str | None]:
        return {"path": str(self.path), "kind": self.kind, "format": self.format, "problem": self.problem}


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


def classify(path: str | Path) -> Evidence:
    """What one file is: a log (which format), a report (which format), or unknown (why)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        return Evidence(path, UNKNOWN, problem=f"cannot read: {exc.strerror or exc}")
    suffix = path.suffix.lower()
    if not head.strip():
        return Evidence(path, UNKNOWN, problem="empty file")
    if head.startswith(b"ElfFile\x00"):
        return Evidence(path, LOG, "evtx")
    if head.startswith(b"PAR1"):
        return Evidence(path, LOG, "parquet")
    if head.startswith(b"%PDF-"):
        return Evidence(path, REPORT, "pdf")
    # zip, gzip and tar archives of event logs are read by the ingest, member by member
    if head.startswith(b"PK\x03\x04"):
        return Evidence(path, LOG, "zip")
    if head.startswith(b"\x1f\x8b"):
        return Evidence(path, LOG, "tar" if path.name.lower().endswith((".tar.gz", ".tgz")) else "gz")
    if head[257:262] == b"ustar":
        return Evidence(path, LOG, "tar")
    if head.startswith((b"7z\xbc\xaf", b"BZh", b"\xfd7zXZ", b"Rar!")):
        return Evidence(path, UNKNOWN, problem="an archive of a kind not read (7z, bzip2, xz, rar): unpack it "
                        "and give the files inside")
    text = _decode(head)
    if text is None:
        return Evidence(path, UNKNOWN, problem="binary content of no known log or report format")
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        first = stripped.split("\n", 1)[0].strip()
        try:
            value = orjson.loads(first)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            if "techniques" in value and "versions" in value:
                return Evidence(path, UNKNOWN, problem="a Navigator layer, not evidence")
            if value.get("type") == "bundle":
                return Evidence(path, UNKNOWN, problem="a STIX bundle, not evidence")
            return Evidence(path, LOG, "jsonl")
        return Evidence(path, LOG, "json")  # a pretty-printed object or records spread over lines
    if stripped.startswith("["):
        return Evidence(path, LOG, "json")
    low = stripped[:2048].lower()
    if low.startswith(("<!doctype html", "<html")) or "<body" in low or "<html" in low:
        return Evidence(path, REPORT, "html")
    if low.startswith("<?xml") or low.startswith("<events") or low.startswith("<event "):
        return Evidence(path, UNKNOWN, problem="XML event export: convert to EVTX or JSON lines first")
    if suffix in (".yml", ".yaml") and ("detection:" in text and "logsource:" in text):
        return Evidence(path, UNKNOWN, problem="a Sigma rule: give rule folders with --rules")
    if _looks_like_csv(text, suffix):
        return Evidence(path, LOG, "csv")
    if suffix in (".yml", ".yaml", ".py", ".js", ".sh", ".ps1", ".exe", ".dll"):
        return Evidence(path, UNKNOWN, problem=f"a {suffix} file is neither an event log nor a report")
    return Evidence(path, REPORT, "md" if suffix in (".md", ".markdown") else "txt")


def collect(paths: Iterable[str | Path]) -> list[Evidence]:
    """Every file under the given files and folders, classified; missing paths are reported as unknown."""
    out: list[Evidence] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            out.append(Evidence(path, UNKNOWN, problem="no such file or folder"))
            continue
        if path.is_dir():
            files = []
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files += [Path(root) / n for n in sorted(names) if not n.startswith(".")]
        else:
            files = [path]
        for f in files:
            key = f.resolve()
            if key in seen:
                continue
            seen.add(key)
            out.append(classify(f))
    return out
