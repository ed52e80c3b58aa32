"""The main job: evidence in (event logs, threat reports, or both), one case with every answer out.

    from ttpscope.investigate import investigate
    result = investigate(["examples/evidence"], rules="examples/rules")
    result.case            # all observations, from logs and reports together
    result.outputs         # {"html": Path(".../report.html"), "layer": ..., "stix": ..., ...}

Stages: route the files by content (:mod:`ttpscope.investigate.route`); event logs through ingest and
Sigma detection; reports through extraction; save the case in the workspace; analyse it
(:mod:`ttpscope.investigate.analysis`); write the outputs (the registry :data:`ttpscope.export.outputs.EXPORTS`). One bad file is
reported with its reason and never stops the others; the run fails only when nothing usable was given.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ttpscope.analyze.report import CaseAnalysis
from ttpscope.analyze.review import apply_reviews
from ttpscope.analyze.sections import SECTIONS
from ttpscope.errors import InputError, NotFoundError
from ttpscope.export.outputs import FORMATS, write_outputs
from ttpscope.feeds.knowledge import kb_with_feeds
from ttpscope.feeds.use import current_terms, feed_layer, match_feeds, summarise
from ttpscope.investigate.analysis import analyse_case
from ttpscope.investigate.route import LOG, REPORT, collect
from ttpscope.ingest.links import combine as combine_links
from ttpscope.investigate.stages import SourceReport, detect_logs, extract_reports, find_rules
from ttpscope.kb import load_kb
from ttpscope.model import Case, utcnow
from ttpscope.store import Workspace

__all__ = ["investigate", "InvestigationResult", "SourceReport", "default_case_name", "Progress"]

# progress(stage, done, total, detail): stages route, logs, reports, save, analyse, export
Progress = Callable[[str, int, int | None, str], None]
# what to do when the case name is already taken: refuse, add the new evidence to it, or replace it
NEW, ADD, REPLACE = "new", "add", "replace"
MODES = (NEW, ADD, REPLACE)


@dataclass
class InvestigationResult:
    case: Case
    analysis: CaseAnalysis | None  # None when no output was asked for
    sources: list[SourceReport]
    outputs: dict[str, Path]
    out_dir: Path
    workspace: Path | None
    rules: Path | None
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (see investigate())
    matching: dict[str, Any] | None = None  # feed indicators matched on the logs (None: not run)

    def to_dict(self) -> dict[str, Any]:
        return {"case": {"id": self.case.id, "name": self.case.name}, "out_dir": str(self.out_dir),
                "outputs": {k: str(v) for k, v in self.outputs.items()},
                "workspace": str(self.workspace) if self.workspace else None,
                "rules": str(self.rules) if self.rules else None,
                "summary": self.analysis.summary() if self.analysis else None,
                "sources": [s.to_dict() for s in self.sources],
                "sections": {k: {"status": s.status, "message": s.message}
                             for k, s in (self.analysis.sections.items() if self.analysis else ())},
                "warnings": self.warnings, "knowledge_base": self.case.meta.get("knowledge_base"),
                "timings": {k: round(v, 3) for k, v in self.timings.items()},
                "indicator_matching": self.matching}


def slug(name: str) -> str:
    """A file-system-safe form of a case name, for its output folder."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "case"


def default_case_name(paths: Iterable[str | Path]) -> str:
    """The first evidence path's name (a folder's or a file's stem), '+N' when more were given; re-running
    on the same evidence therefore updates the same case."""
    items = [Path(p) for p in paths]
    if not items:
        return "case"
    first = items[0].expanduser().resolve()
    base = first.name if first.is_dir() else first.stem
    return base + (f"+{len(items) - 1}" if len(items) > 1 else "")


def _noop(stage: str, done: int, total: int | None, detail: str) -> None:
    return None


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of a file's content (how a case knows it has read a file already), None if unreadable."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def investigate(evidence: Iterable[str | Path], *, rules: str | Path | None = None, name: str | None = None,
                out: str | Path | None = None, domain: str = "enterprise", bundle: str | None = None,
                workspace: Any = None, save: bool = True, formats: Iterable[str] = FORMATS,
                progress: Progress | None = None, force_reports: Iterable[str | Path] = (),
                mode: str = NEW, workers: int = 0, feeds: bool = True) -> InvestigationResult:
    """Investigate evidence files and folders into one case, saved in the workspace, with every output.

    ``rules``: a Sigma rule file or folder for the event logs (default: the cached SigmaHQ set of
    ``ttpscope rules update`` when there is one). ``name``: the case name (default: from the evidence).
    ``mode`` says what happens when the workspace has a case of that name already: ``new`` refuses,
    ``add`` adds the files it does not hold yet (a file is known by its SHA-256), ``replace`` replaces its
    evidence, keeping its id, its analyst-added observations and its review decisions. The case's
    ``meta["history"]`` records each of these. ``out``: the output folder (default
    ``./ttpscope-out/<case>``). ``workspace``: a :class:`ttpscope.store.Workspace` (default: the user's).
    ``force_reports``: files read as reports even if they look like documentation (README, LICENSE).
    ``workers``: processes for the Sigma detection (0: one per CPU; see :func:`ttpscope.detect.detect`).
    ``result.timings`` holds the seconds of each stage (ingest and detection together, as they stream).
    ``feeds``: lay the workspace's feed knowledge over ATT&CK and match its current indicators on the event
    logs (sightings, kept apart from the techniques); False leaves the feeds out.
    Raises :class:`InputError` when nothing usable was given.
    """
    progress = progress or _noop
    clock = time.perf_counter
    timings: dict[str, float] = {}
    started = clock()
    if mode not in MODES:
        raise InputError("investigate", None, f"mode {mode!r} is not one of {', '.join(MODES)}")
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InputError("formats", None, f"unknown output format {unknown[0]!r}; one of {', '.join(FORMATS)}")
    paths = [Path(p) for p in evidence]
    if not paths:
        raise InputError("investigate", None, "no evidence given: name files or folders of event logs or reports")
    progress("route", 0, None, "sorting evidence")
    routed = collect(paths)
    progress("route", len(routed), len(routed), f"{len(routed)} file(s)")
    ws = workspace if workspace is not None else (Workspace() if save else None)
    case_name = name or default_case_name(paths)
    old = None
    if ws is not None:
        try:
            old = ws.get_case(case_name)
            case_name = old.name  # named by its id, or in another letter case
        except NotFoundError:
            pass
    if old is not None and mode == NEW:  # asked before any evidence is read: nothing is lost by refusing
        raise InputError(f"case {old.name!r}", None, "already exists in the workspace: add this evidence to it "
                         f"with --case {old.name!r}, or replace it with --replace")
    hashes = {e.path: file_sha256(e.path) for e in routed if e.kind in (LOG, REPORT) and e.path.is_file()}
    sources: dict[Path, SourceReport] = {
        e.path: SourceReport(str(e.path), e.kind, e.format, note=e.problem or "") for e in routed}
    warnings: list[str] = []
    skipped: list[dict[str, str]] = []
    in_case = {s["sha256"]: s["path"] for s in (old.meta.get("sources") or []) if s.get("sha256")} \
        if old is not None and mode == ADD else {}
    this_run: dict[str, str] = {}  # a file identical to one read earlier in this run is read once
    fresh = []
    for e in routed:
        digest = hashes.get(e.path)
        if digest and (digest in in_case or digest in this_run):
            earlier = in_case.get(digest)
            why = "already in the case" if earlier else "same content as another file of this run"
            sources[e.path].note = f"skipped: {why} (same SHA-256 as {Path(earlier or this_run[digest]).name})"
            skipped.append({"path": str(e.path), "sha256": digest, "same_as": earlier or this_run[digest],
                            "why": "in case" if earlier else "duplicate"})
            continue
        if digest:
            this_run[digest] = str(e.path)
        fresh.append(e)
    if skipped:
        for why, label in (("in case", f"already in case '{case_name}'"), ("duplicate", "same content as another "
                                                                           "file of this run")):
            names = [Path(x["path"]).name for x in skipped if x["why"] == why]
            if names:
                warnings.append(f"{len(names)} file(s) skipped: {label} (same SHA-256): "
                                + ", ".join(names[:5]) + (" ..." if len(names) > 5 else ""))
        if not [e for e in fresh if e.kind in (LOG, REPORT)]:
            raise InputError(f"case {case_name!r}", None, f"nothing new to add: all {len(skipped)} evidence "
                             "file(s) are in the case already (same SHA-256)")
    kb = load_kb(domain, bundle)
    timings["route"] = clock() - started
    feed_store = feed_layer(ws) if feeds else None
    if feed_store is not None:
        kb = kb_with_feeds(kb, feed_store)
    logs = [e for e in fresh if e.kind == LOG]
    reports = [e for e in fresh if e.kind == REPORT]
    observations, detections, documents = [], [], []

    terms = current_terms(feed_store) if logs else None  # feed indicators, matched in the Sigma pass
    sightings: list = []
    rules_path = None
    found_links: dict = {}  # the logs' entity co-occurrence, for the case's entity graph
    if logs:
        rules_path, why = find_rules(rules)
        if rules_path is None:
            msg = (f"{len(logs)} event log file(s) not analysed: {why}. Give a Sigma rule folder with --rules, "
                   "or fetch the SigmaHQ set once with 'ttpscope rules update'.")
            warnings.append(msg + (" Continuing with the reports." if reports else ""))
            for e in logs:
                sources[e.path].note = "not analysed: no Sigma rules"
        else:
            mark = clock()
            obs, dets, per_file, notes = detect_logs(logs, rules_path, kb, progress, links=found_links,
                                                     workers=workers, timings=timings, indicators=terms,
                                                     sightings=sightings)
            timings["logs"] = clock() - mark
            observations += obs
            detections += dets
            warnings += notes
            for path, rep in per_file.items():
                _merge(sources[path], rep)
    if reports:
        mark = clock()
        obs, docs, per_file, notes = extract_reports(reports, kb, progress,
                                                     force={Path(p).expanduser().resolve() for p in force_reports})
        observations += obs
        documents += docs
        warnings += notes
        for path, rep in per_file.items():
            _merge(sources[path], rep)
        timings["reports"] = clock() - mark

    matching = None
    if terms is not None:
        if rules_path is None:  # no Sigma pass to ride on: the indicators get a pass of their own
            matching, sightings = match_feeds(feed_store, [e.path for e in logs], progress)
        else:
            matching = summarise(sightings, terms)
    usable = [s for s in sources.values() if s.used]
    if not usable:
        raise InputError(", ".join(str(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else ""), None,
                         _nothing_usable([s for s in sources.values() if not s.note.startswith("skipped:")],
                                         warnings))

    now = utcnow()
    taken = [{**s.to_dict(), "sha256": hashes.get(Path(s.path))} for s in sources.values()
             if not s.note.startswith("skipped:")]
    if old is not None and mode == ADD:
        case = old
        case.add(observations)
        history = list(old.meta.get("history") or []) or [_first_entry(old)]
        case.meta.update({
            "evidence": list(dict.fromkeys([*(old.meta.get("evidence") or []), *(str(p) for p in paths)])),
            "rules": str(rules_path) if rules_path else old.meta.get("rules"),
            "sources": [*(old.meta.get("sources") or []), *taken],
            "warnings": [*(old.meta.get("warnings") or []), *warnings]})
    else:
        case = Case(name=case_name)
        history = []
        if old is not None:  # --replace: the case keeps its identity, its analyst's observations and decisions
            case.id, case.created = old.id, old.created
            case.add([o for o in old.observations if o.source_kind == "manual"])
            history = list(old.meta.get("history") or []) or [_first_entry(old)]
        case.add(observations)
        case.meta.update({"evidence": [str(p) for p in paths], "rules": str(rules_path) if rules_path else None,
                          "sources": taken, "warnings": warnings})
    history.append({"time": now.isoformat().replace("+00:00", "Z"),
                    "action": "added" if old is not None and mode == ADD else
                    "replaced" if old is not None else "created",
                    "files": [{"path": t["path"], "sha256": t["sha256"]} for t in taken],
                    "skipped": skipped, "observations": len(observations), "detections": len(detections),
                    "documents": len(documents)})
    case.meta.update({"domain": domain, "knowledge_base": kb.provenance(), "investigated": now.isoformat(),
                      "history": history})
    if found_links.get("entity_links"):
        case.meta["entity_links"] = combine_links(case.meta.get("entity_links") if old is not None and mode == ADD
                                                  else None, found_links["entity_links"])
    mark = clock()
    if ws is not None:
        progress("save", 0, 1, f"saving case '{case.name}'")
        ws.save_case(case, detections, documents, replace=not (old is not None and mode == ADD))
        if feed_store is not None and (logs or not (old is not None and mode == ADD)):
            feed_store.save_sightings(sightings, case.id, replace=not (old is not None and mode == ADD))
        progress("save", 1, 1, str(ws.path))
    timings["save"] = clock() - mark
    mark = clock()
    analysis = None
    if formats:  # without outputs (e.g. the web app, which renders on demand) there is nothing to analyse for
        keys = list(SECTIONS)
        done = iter(range(1, len(keys) + 1))
        reviewed, all_dets, all_docs = case, detections, documents
        if ws is not None:  # the whole case (all it gathered so far), with the analysts' decisions applied
            if old is not None and mode == ADD:
                all_dets, all_docs = ws.get_detections(case.id), ws.get_documents(case.id)
            reviewed, all_dets, all_docs = apply_reviews(case, ws.get_reviews(case.id), all_dets, all_docs)
        analysis = analyse_case(reviewed, kb, detections=all_dets, documents=all_docs, rules=rules_path,
                                workspace=ws, on_section=lambda key: progress("analyse", next(done), len(keys), key))
    timings["analyse"] = clock() - mark
    mark = clock()
    out_dir = Path(out) if out else Path.cwd() / "ttpscope-out" / slug(case.name)
    counter = iter(range(1, len(formats) + 1))
    outputs = write_outputs(analysis, kb, out_dir, formats,
                            on_file=lambda f: progress("export", next(counter), len(formats), f)) if formats else {}
    timings["export"] = clock() - mark
    timings["total"] = clock() - started
    return InvestigationResult(case=case, analysis=analysis, sources=list(sources.values()), outputs=outputs,
                               out_dir=out_dir, workspace=ws.path if ws is not None else None, rules=rules_path,
                               warnings=warnings, timings=timings, matching=matching)


def _first_entry(case: Case) -> dict[str, Any]:
    """The history entry of a case saved before cases kept a history: what its meta says it was made of."""
    return {"time": case.meta.get("investigated") or case.created.isoformat(), "action": "created",
            "files": [{"path": s.get("path"), "sha256": s.get("sha256")} for s in case.meta.get("sources") or []],
            "skipped": [], "observations": len(case.observations)}


def _merge(target: SourceReport, rep: SourceReport) -> None:
    for attr in ("read", "accepted", "rejected", "observations", "used"):
        setattr(target, attr, getattr(rep, attr))
    target.reasons = rep.reasons
    if rep.note:
        target.note = rep.note


def _nothing_usable(sources: list[SourceReport], warnings: list[str]) -> str:
    if not sources:
        return "no files found in the evidence given"
    reasons = [f"{Path(s.path).name}: {s.note or 'nothing read'}" for s in sources[:5]]
    more = f" (and {len(sources) - 5} more)" if len(sources) > 5 else ""
    head = "nothing usable in the evidence: " + "; ".join(reasons) + more
    if warnings:
        head += ". " + warnings[0]
    return head
