"""Everything ttpscope can say about a case, gathered section by section from the parts that say it.

Each section comes from one part of ttpscope (lifecycle, attribution, overlap, anticipation, coverage,
mitigations from ``ttpscope.analyze``; IOCs and CVEs from ``ttpscope.extract``). A section whose part is
not in this build, or has nothing to work on, or failed, is kept with a status and a plain message, so that
every output says what it could not say instead of silently leaving it out.

This runs on a stored case as well as on a fresh one: it reads no evidence files.
"""

from __future__ import annotations

import importlib
import logging
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from ttpscope.export.evidence import TechniqueEvidence, observation_text, technique_evidence
from ttpscope.model import Case

log = logging.getLogger(__name__)

OK, EMPTY, UNAVAILABLE, ERROR, SKIPPED = "ok", "empty", "unavailable", "error", "skipped"
LEVELS = {"critical": 0, "high": 1, "medium": 2, "low": 3, "informational": 4}

SECTIONS = [  # key, title, the part that provides it
    ("lifecycle", "Attack lifecycle", "ttpscope.analyze.lifecycle"),
    ("attribution", "Attribution to known groups", "ttpscope.analyze.attribution"),
    ("overlap", "Overlaps with other cases and campaigns", "ttpscope.analyze.overlap"),
    ("anticipation", "Anticipated next techniques", "ttpscope.analyze.anticipate"),
    ("coverage", "Detection coverage gaps against the top attributed groups", "ttpscope.analyze.coverage"),
    ("mitigations", "Mitigations", "ttpscope.analyze.mitigations"),
    ("indicators", "Indicators (IOCs) and vulnerabilities (CVEs)", "ttpscope.extract"),
]


class PartMissing(Exception):
    """The part that computes a section is not in this build of ttpscope."""


@dataclass
class Section:
    key: str
    title: str
    status: str  # ok | empty | unavailable | error | skipped
    message: str = ""
    data: Any = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "status": self.status, "message": self.message,
                "data": self.data}


@dataclass
class CaseAnalysis:
    """A case with its evidence summary and every section: the input of every export."""

    case: Case
    provenance: dict[str, str]
    evidence: list[TechniqueEvidence]
    sections: dict[str, Section]
    detections: list[dict[str, Any]] = field(default_factory=list)  # rule hits as stored
    documents: list[dict[str, Any]] = field(default_factory=list)  # reports read, as stored
    generated: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    # -------------------------------------------------------------- views shared by the exports
    @property
    def ingest(self) -> list[dict[str, Any]]:
        """Per evidence source: what was read, accepted, rejected (kept in the case's meta)."""
        return list(self.case.meta.get("sources") or [])

    def rule_summary(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Detections grouped by rule: most severe first, then most frequent."""
        by_rule: dict[str, dict[str, Any]] = {}
        for det in self.detections:
            key = str(det.get("rule_id") or det.get("title"))
            row = by_rule.setdefault(key, {"rule_id": det.get("rule_id"), "title": det.get("title") or key,
                                           "level": det.get("level") or "", "count": 0, "hosts": set(),
                                           "techniques": set(), "first": None, "last": None, "example": None})
            row["count"] += 1
            if det.get("host"):
                row["hosts"].add(str(det["host"]))
            row["techniques"].update(det.get("techniques") or [])
            t = det.get("time")
            if t:
                t = str(t)
                row["first"] = min(row["first"] or t, t)
                row["last"] = max(row["last"] or t, t)
            if row["example"] is None:
                event = det.get("event") if isinstance(det.get("event"), dict) else {}
                row["example"] = _event_line(event)
        rows = [dict(r, hosts=sorted(r["hosts"]), techniques=sorted(r["techniques"])) for r in by_rule.values()]
        rows.sort(key=lambda r: (LEVELS.get(str(r["level"]).lower(), 5), -r["count"], str(r["title"])))
        return rows[:limit] if limit else rows

    def report_sentences(self, limit: int | None = 30) -> list[dict[str, Any]]:
        """The strongest report sentences behind the case's techniques."""
        rows = []
        for obs in self.case.observations:
            if obs.source_kind != "text":
                continue
            rows.append({"technique_id": obs.technique_id, "technique": self._name(obs.technique_id),
                         "document": obs.document or obs.source_ref.split("#")[0], "ref": obs.source_ref,
                         "sentence": observation_text(obs, 600), "confidence": round(obs.confidence, 3),
                         "method": (obs.evidence or {}).get("method", "")})
        rows.sort(key=lambda r: (-r["confidence"], r["technique_id"], r["ref"]))
        return rows[:limit] if limit else rows

    def hosts(self) -> list[str]:
        return sorted({o.host for o in self.case.observations if o.host})

    def time_span(self) -> tuple[str | None, str | None]:
        times = sorted(o.time for o in self.case.observations if o.time is not None)
        iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
        return (iso(times[0]), iso(times[-1])) if times else (None, None)

    def _name(self, tid: str) -> str:
        for ev in self.evidence:
            if ev.id == tid:
                return ev.name
        return tid

    def summary(self) -> dict[str, Any]:
        """Headline figures for the top of every report."""
        first, last = self.time_span()
        kinds: dict[str, int] = defaultdict(int)
        for obs in self.case.observations:
            kinds[obs.source_kind] += 1
        tactics = []
        for ev in self.evidence:
            for t in ev.tactics:
                if t not in tactics:
                    tactics.append(t)
        return {"observations": len(self.case.observations), "techniques": len(self.evidence),
                "by_kind": dict(sorted(kinds.items())), "detections": len(self.detections),
                "rules_fired": len(self.rule_summary()), "documents": len(self.documents),
                "hosts": self.hosts(), "first_seen": first, "last_seen": last, "tactics": tactics}

    def to_dict(self) -> dict[str, Any]:
        """Everything machine-readable (case.json)."""
        return {
            "ttpscope": "case-analysis/1",
            "generated": self.generated.isoformat().replace("+00:00", "Z"),
            "knowledge_base": self.provenance,
            "case": {k: v for k, v in self.case.to_dict().items() if k != "observations"},
            "summary": self.summary(),
            "sources": self.ingest,
            "techniques": [e.to_dict() for e in self.evidence],
            "sections": {k: s.to_dict() for k, s in self.sections.items()},
            "rules": self.rule_summary(),
            "documents": [{k: v for k, v in d.items() if k != "text"} for d in self.documents],
            "detections": self.detections,
            "observations": [o.to_dict() for o in self.case.observations],
        }


def _event_line(event: dict[str, Any], limit: int = 300) -> str:
    keys = ("CommandLine", "ScriptBlockText", "Image", "TargetFilename", "TargetObject", "ServiceName",
            "ServiceFileName", "ImageLoaded", "PipeName", "DestinationIp", "DestinationHostname", "QueryName",
            "TargetUserName", "IpAddress", "ParentImage")
    parts = [f"{k}={event[k]}" for k in keys if event.get(k) not in (None, "")]
    text = "; ".join(parts[:3]) or "; ".join(f"{k}={v}" for k, v in list(event.items())[:4])
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------------------- sections
def _require(module: str, *names: str):
    """Import a part, or say it is missing from this build."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise PartMissing(f"this build of ttpscope has no {module} ({exc})") from exc
    for name in names:
        if not hasattr(mod, name):
            raise PartMissing(f"this build's {module} has no {name}()")
    return mod


SectionFn = Callable[["Context"], tuple[str, Any] | Any]


@dataclass
class Context:
    """What a section function may use."""

    case: Case
    kb: Any
    evidence: list[TechniqueEvidence]
    detections: list[dict[str, Any]]
    documents: list[dict[str, Any]]
    rules: Path | None
    workspace: Any
    sections: dict[str, Section]
    options: dict[str, Any]

    def technique_ids(self) -> list[str]:
        return [e.id for e in self.evidence if e.known]


_SECTION_FNS: dict[str, SectionFn] = {}


def section(key: str):
    def register(fn: SectionFn) -> SectionFn:
        _SECTION_FNS[key] = fn
        return fn
    return register


class Empty(Exception):
    """A section with nothing to work on (e.g. no timed observation, no rules given)."""


class Skipped(Exception):
    """A section not run on purpose (an option, or a prerequisite section that had no answer)."""


@section("lifecycle")
def _lifecycle(ctx: Context):
    _require("ttpscope.analyze.lifecycle")
    raise PartMissing("the lifecycle part is present but not yet wired into investigate")


@section("attribution")
def _attribution(ctx: Context):
    _require("ttpscope.analyze.attribution")
    raise PartMissing("the attribution part is present but not yet wired into investigate")


@section("overlap")
def _overlap(ctx: Context):
    _require("ttpscope.analyze.overlap")
    raise PartMissing("the overlap part is present but not yet wired into investigate")


@section("anticipation")
def _anticipation(ctx: Context):
    _require("ttpscope.analyze.anticipate")
    raise PartMissing("the anticipation part is present but not yet wired into investigate")


@section("coverage")
def _coverage(ctx: Context):
    _require("ttpscope.analyze.coverage")
    raise PartMissing("the coverage part is present but not yet wired into investigate")


@section("mitigations")
def _mitigations(ctx: Context):
    _require("ttpscope.analyze.mitigations")
    raise PartMissing("the mitigations part is present but not yet wired into investigate")


@section("indicators")
def _indicators(ctx: Context):
    """IOCs and CVEs the extraction found in the reports (stored with each document)."""
    if not ctx.documents:
        raise Empty("no report was read, so no indicators were extracted")
    iocs: dict[tuple[str, str], dict[str, Any]] = {}
    cves: dict[str, dict[str, Any]] = {}
    for doc in ctx.documents:
        name = doc.get("name") or doc.get("path") or doc.get("id")
        for ioc in doc.get("iocs") or []:
            key = (str(ioc.get("type")), str(ioc.get("value")))
            row = iocs.setdefault(key, {"type": key[0], "value": key[1], "documents": []})
            if name not in row["documents"]:
                row["documents"].append(name)
        for cve in doc.get("cves") or []:
            cid = str(cve.get("id") if isinstance(cve, dict) else cve).upper()
            row = cves.setdefault(cid, {"id": cid, "techniques": [], "documents": []})
            for t in (cve.get("techniques") or []) if isinstance(cve, dict) else []:
                tid = t.get("id") if isinstance(t, dict) else t
                if tid and tid not in row["techniques"]:
                    row["techniques"].append(tid)
            if name not in row["documents"]:
                row["documents"].append(name)
    data = {"iocs": sorted(iocs.values(), key=lambda r: (r["type"], r["value"])),
            "cves": sorted(cves.values(), key=lambda r: r["id"])}
    if not data["iocs"] and not data["cves"]:
        raise Empty(f"no IOC or CVE found in {len(ctx.documents)} report(s)")
    return data


def analyse_case(case: Case, kb, *, detections: Iterable[dict[str, Any]] = (),
                 documents: Iterable[dict[str, Any]] = (), rules: str | Path | None = None, workspace=None,
                 only: Iterable[str] | None = None, on_section: Callable[[str], None] | None = None,
                 **options: Any) -> CaseAnalysis:
    """Run every section on a case (no evidence is re-read).

    ``rules``: the Sigma rule set the logs were checked with (the coverage section measures it);
    ``workspace``: the workspace, for overlaps with other stored cases; ``only``: section keys to run
    (the others are marked skipped); ``on_section(key)`` is called before each section (progress).
    """
    evidence = technique_evidence(case, kb)
    ctx = Context(case=case, kb=kb, evidence=evidence, detections=list(detections), documents=list(documents),
                  rules=Path(rules) if rules else None, workspace=workspace, sections={}, options=options)
    wanted = set(only) if only is not None else None
    for key, title, _part in SECTIONS:
        if on_section:
            on_section(key)
        if wanted is not None and key not in wanted:
            ctx.sections[key] = Section(key, title, SKIPPED, "not requested")
            continue
        ctx.sections[key] = run_section(key, title, ctx)
    return CaseAnalysis(case=case, provenance=kb.provenance(), evidence=evidence, sections=ctx.sections,
                        detections=ctx.detections, documents=ctx.documents)


def run_section(key: str, title: str, ctx: Context) -> Section:
    """One section, its failure contained: a broken part never costs the other sections."""
    if not ctx.evidence and key != "indicators":
        return Section(key, title, EMPTY, "the case has no technique observation")
    try:
        data = _SECTION_FNS[key](ctx)
    except PartMissing as exc:
        return Section(key, title, UNAVAILABLE, f"not available: {exc}")
    except Empty as exc:
        return Section(key, title, EMPTY, str(exc))
    except Skipped as exc:
        return Section(key, title, SKIPPED, str(exc))
    except Exception as exc:  # noqa: BLE001 - reported in the output, the run goes on
        log.debug("section %s failed:\n%s", key, traceback.format_exc())
        return Section(key, title, ERROR, f"failed: {type(exc).__name__}: {exc}")
    message = ""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], str):
        message, data = data
    return Section(key, title, OK, message, data)
