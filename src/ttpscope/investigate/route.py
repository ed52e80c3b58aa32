"""Sort evidence files by what they contain, not by their names: event logs go to detection, threat reports
to extraction, the rest is reported and left out.

Content first: EVTX and Parquet by their magic bytes, PDF by its header, JSON by its first record, HTML by
its markup, CSV by a consistent delimited header; the file name only breaks ties (``.md`` vs ``.txt``,
``.csv``). Folders are walked in sorted order, skipping hidden entries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ttpscope.ingest.sniff import LOG, REPORT, UNKNOWN, sniff  # noqa: F401 (LOG, REPORT: re-exported)



@dataclass(slots=True)
class EvidenceFile:
    """One evidence file and what it was taken for."""

    path: Path
    kind: str  # log | report | unknown
    format: str | None = None  # evtx, jsonl, json, parquet, csv | txt, md, html, pdf
    problem: str | None = None  # why it is unknown

    def to_dict(self) -> dict[str, str | None]:
        return {"path": str(self.path), "kind": self.kind, "format": self.format, "problem": self.problem}


def classify(path: str | Path) -> EvidenceFile:
    """What one file is: a log (which format), a report (which format), or unknown (why)."""
    found = sniff(path)
    return EvidenceFile(Path(path), found.kind, found.format, found.problem)


def collect(paths: Iterable[str | Path]) -> list[EvidenceFile]:
    """Every file under the given files and folders, classified; missing paths are reported as unknown."""
    out: list[EvidenceFile] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            out.append(EvidenceFile(path, UNKNOWN, problem="no such file or folder"))
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
