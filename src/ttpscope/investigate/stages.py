"""The evidence stages of an investigation: event logs through ingest + Sigma detection, reports through
extraction. Each returns observations, the records to keep with the case, and a report per file; a file
that fails is reported with its reason and never stops the others."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ttpscope.detect import detect
from ttpscope.detect.rules import default_rules_dir
from ttpscope.errors import InputError, TtpscopeError
from ttpscope.extract import extract_file
from ttpscope.investigate.route import EvidenceFile
from ttpscope.kb.vulns import configured_mappings
from ttpscope.model import Detection, Observation, ReportDocument

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


def _not_analysed(reports: dict[Path, SourceReport], what: str, why: Exception
                  ) -> tuple[list, list, dict[Path, SourceReport], list[str]]:
    """A stage that could not run at all: every file says why, and so does one note."""
    for rep in reports.values():
        rep.note = f"not analysed: {why}"
    return [], [], reports, [f"{len(reports)} {what} not analysed: {why}"]


def find_rules(rules: str | Path | None) -> tuple[Path | None, str]:
    """The Sigma rule set to run: the one given (which must exist), else the SigmaHQ release cached by
    ``ttpscope rules update``; (None, why) when there is none."""
    if rules is not None:
        path = Path(rules).expanduser()
        if not path.exists():
            raise InputError(str(path), None, "no such Sigma rule file or folder (--rules)")
        return path, ""
    try:
        cached = default_rules_dir()
    except TtpscopeError:
        cached = None
    if cached is None:
        return None, "no Sigma rule set was given and none is cached"
    return Path(cached), ""


def _owner(source: str, files: list[Path]) -> Path | None:
    """The evidence file an ingest source belongs to (a file, or a member inside an archive file)."""
    for path in files:
        text = str(path)
        if source == text or source.startswith(text + "!"):
            return path
    return None


def detect_logs(logs: list[EvidenceFile], rules: Path, kb, progress: Progress, links: dict | None = None,
                workers: int = 0, timings: dict | None = None, indicators=None, sightings: list | None = None
                ) -> tuple[list[Observation], list[Detection], dict[Path, SourceReport], list[str]]:
    """Run the Sigma rules over the event logs (``ttpscope.detect.detect``): observations, detections (rule
    hits with their event), a report per file, notes. ``links``, when given, receives the bounded entity
    co-occurrence of the logs (``DetectResult.entity_links``) under ``"entity_links"``. ``workers``: detection
    processes (0: one per CPU, when the logs are several files large enough to pay for them; the same case as
    one process). ``timings``, when given, receives the detection's own split (rules, compile, scan, results,
    workers). With ``indicators`` (feed indicator comparisons) the same pass matches them; their sightings are
    added to ``sightings``."""
    reports = {e.path: SourceReport(str(e.path), e.kind, e.format) for e in logs}
    total = len(logs)

    def on_progress(stage: str, done: int, files_done: int) -> None:
        if stage == "compile":
            progress("logs", 0, total, f"compiling rules {done}/{files_done}")
        else:  # events: done = events read, files_done = files finished
            progress("logs", min(files_done, total), total, f"{done:,} events read")

    try:  # the ingest judges each file's format by content, with the same sniffer as the routing
        result = detect([(e.path, e.format) for e in logs], rules, kb=kb, progress=on_progress, workers=workers,
                        indicators=indicators)
    except TtpscopeError as exc:  # e.g. a rule folder with no usable rule: the reports can still be read
        return _not_analysed(reports, "event log file(s)", exc)
    progress("logs", total, total, f"{len(result.detections):,} detections")
    if timings is not None:
        timings.update({f"detect_{k}": v for k, v in result.timings.items()}, detect_workers=result.workers)
    if sightings is not None and result.sightings:
        sightings.extend(result.sightings)
    files = [e.path for e in logs]
    for stats in result.ingest:
        owner = _owner(str(stats.source), files)
        if owner is None:
            continue
        rep = reports[owner]
        rep.read = (rep.read or 0) + stats.read
        rep.accepted = (rep.accepted or 0) + stats.accepted
        rep.rejected = (rep.rejected or 0) + stats.rejected
        for reason, count in stats.reasons.most_common():
            if len(rep.reasons) < MAX_REASONS:
                rep.reasons.append(f"{reason} ({count})")
    observations = result.observations()
    detections = list(result.detections)
    if links is not None:
        links["entity_links"] = result.entity_links()
    for det in result.detections:
        owner = _owner(str(det.source), files)
        if owner is not None:
            reports[owner].observations += len(det.techniques)
    for rep in reports.values():
        rep.used = bool(rep.accepted)
        if rep.read is None:
            rep.note = "nothing read"
        elif not rep.accepted:
            rep.note = "no event accepted"
    notes = []
    if result.compile_errors or result.engine_errors:
        failed = result.compile_errors + [(rid, None, msg) for rid, msg in result.engine_errors]
        rid, _path, why = failed[0]
        notes.append(f"{len(failed)} of {len(result.rules.rules)} Sigma rules could not run (first: {rid}: {why})")
    untagged = sum(1 for d in result.detections if not d.techniques)
    if untagged:
        notes.append(f"{untagged} detection(s) from rules without an ATT&CK technique tag are kept as detections "
                     "but give no technique")
    return observations, detections, reports, notes


def _cve_mappings(notes: list[str]):
    """The configured CTID CVE -> technique mappings (``TTPSCOPE_CVE_MAPPINGS``), else None: the main job
    stays offline, and CVEs are then listed without their technique links."""
    try:
        return configured_mappings()
    except TtpscopeError as exc:
        notes.append(f"CVE mappings not loaded ({exc}); CVEs are listed without their techniques")
        return None


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _documentation(path: Path) -> str | None:
    """Why a file routed as a report is documentation (``ttpscope.extract.documents.is_documentation``)."""
    from ttpscope.extract.documents import is_documentation

    try:
        with open(path, "rb") as fh:
            head = fh.read(65536).decode("utf-8", errors="replace")
    except OSError:
        head = None
    return is_documentation(path, head)


def extract_reports(docs: list[EvidenceFile], kb, progress: Progress, force: set[Path] | frozenset[Path] = frozenset()
                    ) -> tuple[list[Observation], list[ReportDocument], dict[Path, SourceReport], list[str]]:
    """Read the threat reports (``ttpscope.extract.extract_file``): observations (technique + sentence),
    documents (text, techniques, named groups and software, IOCs, CVEs), a report per file, notes."""
    reports = {e.path: SourceReport(str(e.path), e.kind, e.format) for e in docs}
    notes: list[str] = []
    mappings = _cve_mappings(notes)
    observations: list[Observation] = []
    documents: list[ReportDocument] = []
    for i, ev in enumerate(docs):
        rep = reports[ev.path]
        progress("reports", i, len(docs), ev.path.name)

        def on_progress(stage: str, done: int, total: int, name: str = ev.path.name, i: int = i) -> None:
            what = "training the report model (first use)" if stage.startswith("train") else name
            progress("reports", i, len(docs), f"{what} {100 * done // max(1, total)}%")

        skip = None if ev.path.expanduser().resolve() in force else _documentation(ev.path)
        if skip:  # README, LICENSE, changelog, data documentation: not a threat report
            rep.note = f"skipped: documentation, not a report ({skip})"
            continue
        try:
            ex = extract_file(str(ev.path), kb, progress=on_progress, cve_mappings=mappings)
        except TtpscopeError as exc:  # an unreadable or empty report: said, and the others go on
            rep.note = f"not read: {exc}"
            continue
        rep.read = rep.accepted = ex.sentences
        rep.rejected = 0
        rep.note = "; ".join(ex.warnings)  # a budget hit (time or size): what was read is kept
        rep.observations = len(ex.observations)
        rep.used = True
        observations += ex.observations
        documents.append(report_document(ex, str(ev.path), _sha256(ev.path)))
    progress("reports", len(docs), len(docs), f"{len(observations)} technique claims")
    return observations, documents, reports, notes


def report_document(ex, path: str, sha256: str | None) -> ReportDocument:
    """The workspace record of one extracted report (``ex``: a :class:`ttpscope.extract.Extraction`)."""
    return ReportDocument(
        name=ex.document.name, path=path, kind=ex.document.kind, title=ex.document.title, sha256=sha256,
        characters=len(ex.document.text), sentences=ex.sentences, techniques=[t.to_dict() for t in ex.techniques],
        groups=ex.groups, software=ex.software, campaigns=ex.campaigns,
        iocs=[{"type": kind, "value": value} for kind, values in sorted(ex.iocs.items()) for value in values],
        cves=ex.cves, model=ex.model, min_confidence=ex.min_confidence, text=ex.document.text,
        date=ex.document.date, tlp=ex.document.tlp, not_indicators=ex.not_indicators,
        vendor_domains=ex.vendor_domains)
