"""The evidence stages of an investigation: event logs through ingest + Sigma detection, reports through
extraction. Each returns observations, the records to keep with the case, and a report per file; a file
that fails is reported with its reason and never stops the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ttpscope.errors import InputError
from ttpscope.investigate.analysis import PartMissing, _require
from ttpscope.investigate.route import Evidence
from ttpscope.model import Observation

Progress = Callable[[str, int, "int | None", str], None]
MAX_REASONS = 5


@dataclass
class SourceReport:
    """What became of one evidence file."""

    path: str
    kind: str  # log | report | unknown
    format: str | None = None
    read: int | None = None  # events or sentences read
    accepted: int | None = None
    rejected: int | None = None
    observations: int = 0
    reasons: list[str] = field(default_factory=list)  # why records were rejected (the first few)
    note: str = ""  # what happened to the file as a whole (not analysed, failed...)
    used: bool = False  # read without a fatal problem: it counts as usable evidence

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "format": self.format, "read": self.read,
                "accepted": self.accepted, "rejected": self.rejected, "observations": self.observations,
                "reasons": self.reasons, "note": self.note, "used": self.used}


def find_rules(rules: str | Path | None) -> tuple[Path | None, str]:
    """The Sigma rule set to run: the one given (which must exist), else the cached SigmaHQ set."""
    if rules is not None:
        path = Path(rules).expanduser()
        if not path.exists():
            raise InputError(str(path), None, "no such Sigma rule file or folder (--rules)")
        return path, ""
    try:
        _require("ttpscope.detect")
    except PartMissing:
        return None, "no Sigma rule set was given"
    return None, "no Sigma rule set was given and none is cached"


def detect_logs(logs: list[Evidence], rules: Path, kb, progress: Progress
                ) -> tuple[list[Observation], list[dict[str, Any]], dict[Path, SourceReport], list[str]]:
    """Run the Sigma rules over the event logs: observations, detections (rule hits with their event)."""
    reports = {e.path: SourceReport(str(e.path), e.kind, e.format) for e in logs}
    try:
        _require("ttpscope.detect")
        _require("ttpscope.ingest")
        raise PartMissing("the detection part is present but not yet wired into investigate")
    except PartMissing as exc:
        for rep in reports.values():
            rep.note = f"not analysed: {exc}"
        return [], [], reports, [f"{len(logs)} event log file(s) not analysed: {exc}"]


def extract_reports(docs: list[Evidence], kb, progress: Progress
                    ) -> tuple[list[Observation], list[dict[str, Any]], dict[Path, SourceReport], list[str]]:
    """Read the threat reports: observations (technique + sentence), documents (with IOCs, CVEs, actors)."""
    reports = {e.path: SourceReport(str(e.path), e.kind, e.format) for e in docs}
    try:
        _require("ttpscope.extract")
        raise PartMissing("the extraction part is present but not yet wired into investigate")
    except PartMissing as exc:
        for rep in reports.values():
            rep.note = f"not analysed: {exc}"
        return [], [], reports, [f"{len(docs)} report(s) not analysed: {exc}"]
