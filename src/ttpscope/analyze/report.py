"""The case report model: a case, its per-technique evidence and one typed result per report section.

:class:`CaseAnalysis` is the input of every export (:mod:`ttpscope.export`) and of the web case page. Each
section is a :class:`Section` whose ``data`` is one small dataclass of this module (``LifecycleSection``,
``AttributionSection``, ...) when its status is ``ok``, else None with a plain message saying why. The
sections themselves are computed by :mod:`ttpscope.analyze.sections`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from ttpscope.analyze.evidence import ENVELOPE, TechniqueSummary, observation_text
from ttpscope.model import Case, Detection, ReportDocument

OK, EMPTY, ERROR, SKIPPED = "ok", "empty", "error", "skipped"
CASE_JSON_DETECTIONS = 1000  # raw hits in case.json; all of them: `ttpscope case hits CASE`
LEVELS = {"critical": 0, "high": 1, "medium": 2, "low": 3, "informational": 4}


class SectionData:
    """What every section result shares: a JSON-ready ``to_dict`` of its fields, in declaration order."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass
class LifecycleSection(SectionData):
    stages: list[dict[str, Any]]  # every tactic in matrix order: {tactic, name, id, reached, decisive, techniques}
    furthest: dict[str, str] | None  # {tactic, name}: the furthest stage reached on decisive evidence
    intent: str
    timeline: list[dict[str, Any]]  # the figure's points: {time, host, technique_id, technique, tactic, evidence}
    hosts: list[str]
    timed_steps: int
    unresolved: list[Any]
    # a later stage reached on weak evidence only (informational rules, a lone weak claim): {tactic, name, why}
    furthest_weak: dict[str, str] | None = None
    weak_stages: list[dict[str, Any]] = field(default_factory=list)  # {tactic, name, techniques: [{id, name, weak}]}


@dataclass
class IntrusionsSection(SectionData):
    """Whether the case's timed evidence forms one cluster of related activity or several
    (:mod:`ttpscope.analyze.intrusions`); with several, attribution is given per cluster."""

    separate: bool  # more than one cluster: "this looks like more than one intrusion"
    note: str  # the plain sentence every output shows when ``separate``
    clusters: list[dict[str, Any]]  # largest first: {id, first, last, observations, hits, hosts, host_count,
    #   users, ips, accounts, techniques, furthest, attribution: {verdict, insufficient, group, confidence} | None}
    method: str  # how the clusters were found, in one line
    untimed: int = 0  # observations without a time (report sentences): they belong to no cluster
    count: int = 0  # clusters found (``clusters`` keeps the largest MAX_CLUSTERS of them)


@dataclass
class AttributionSection(SectionData):
    verdict: str
    insufficient: bool
    information: Any
    groups: list[dict[str, Any]]  # {id, name, score, confidence, explained, missing, context, why, groups}
    campaigns: list[dict[str, Any]]
    unexplained: list[Any] = field(default_factory=list)
    unresolved: list[Any] = field(default_factory=list)
    named: list[dict[str, Any]] = field(default_factory=list)  # groups and software the reports name
    caveat: str = ""  # why this whole-case ranking should be read with care (several intrusions mixed)


@dataclass
class OverlapSection(SectionData):
    items: list[dict[str, Any]]  # {kind, id, name, similarity, shared, only_case, only_other}
    matrix: dict[str, Any]  # {labels, values}
    clusters: list[Any]


@dataclass
class AnticipationSection(SectionData):
    predictions: list[dict[str, Any]]  # {id, name, tactics, score, why, later_stage, watch}
    reached: list[Any]


@dataclass
class GapsSection(SectionData):
    profile: list[dict[str, str]]  # the groups measured against: {id, name}
    coverage: float | None
    weighted_coverage: float | None
    rules: str  # the rule set measured
    rules_loaded: int
    gaps: list[dict[str, Any]]  # {id, name, tactics, actors, visible, pre_compromise}
    visible_undetected: list[Any]
    counts: dict[str, Any]


@dataclass
class MitigationsSection(SectionData):
    # greedy set-cover order: {id, name, covers, in_cover, new (techniques it adds: its marginal gain),
    #   cumulative (weighted share covered after it), advice}
    mitigations: list[dict[str, Any]]
    data_components: list[dict[str, Any]]
    uncovered: list[str]


@dataclass
class IndicatorsSection(SectionData):
    iocs: list[dict[str, Any]]  # {type, value, documents}
    cves: list[dict[str, Any]]  # {id, techniques, documents}


@dataclass
class EntitiesSection(SectionData):
    """The entity graph across log sources (:func:`ttpscope.analyze.entities.entity_graph`)."""

    environments: list[dict[str, Any]]  # {logsource, product, detections, entities}
    nodes: list[dict[str, Any]]  # {id, kind, value, detections, logsources, products, fields, rules, techniques, first, last}
    edges: list[dict[str, Any]]  # {source, target, relation, detections, logsources, products, rules, first, last}
    bridges: list[dict[str, Any]]  # nodes seen in more than one product
    components: list[dict[str, Any]]  # linked entity groups spanning products: {products, entities, size, entity_hits}
    timeline: list[dict[str, Any]]  # one case timeline across sources: {time, last, count, logsource, rule, entities, ...}
    entity_timelines: dict[str, list[dict[str, Any]]]  # node id -> its runs
    products: list[str] = field(default_factory=list)


@dataclass
class Section:
    key: str
    title: str
    status: str  # ok | empty | error | skipped
    message: str = ""
    data: SectionData | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "status": self.status, "message": self.message,
                "data": self.data.to_dict() if self.data is not None else None}


@dataclass
class CaseAnalysis:
    """A case with its evidence summary and every section: the input of every export."""

    case: Case
    provenance: dict[str, str]
    evidence: list[TechniqueSummary]
    sections: dict[str, Section]
    detections: list[Detection] = field(default_factory=list)  # rule hits as stored
    documents: list[ReportDocument] = field(default_factory=list)  # reports read, as stored
    sightings: list[dict[str, Any]] = field(default_factory=list)  # feed indicators matched, apart from TTPs
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
            row = by_rule.setdefault(det.rule_id, {"rule_id": det.rule_id, "title": det.title or det.rule_id,
                                                   "level": det.level or "", "count": 0, "hosts": set(),
                                                   "techniques": set(), "first": None, "last": None,
                                                   "example": None})
            row["count"] += 1
            if det.host:
                row["hosts"].add(det.host)
            row["techniques"].update(det.techniques)
            if det.time is not None:
                t = det.time.isoformat().replace("+00:00", "Z")
                row["first"] = min(row["first"] or t, t)
                row["last"] = max(row["last"] or t, t)
            if row["example"] is None:
                row["example"] = _event_line(det.event)
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
        """First and last observation times, ISO-8601 UTC to the second."""
        times = sorted(o.time for o in self.case.observations if o.time is not None)
        iso = lambda t: t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
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
            "documents": [{k: v for k, v in d.to_dict().items() if k != "text"} for d in self.documents],
            # the first raw hits only: case.json grows with findings, not events (every hit: `case hits`)
            "detections": [d.to_dict() for d in self.detections[:CASE_JSON_DETECTIONS]],
            "detections_total": len(self.detections),
            "observations": [o.to_dict() for o in self.case.observations],
            "indicator_sightings": [{k: v for k, v in s.items() if k != "indicator"} for s in self.sightings],
        }


def _event_line(event: dict[str, Any], limit: int = 300) -> str:
    keys = ("CommandLine", "ScriptBlockText", "Image", "TargetFilename", "TargetObject", "ServiceName",
            "ServiceFileName", "ImageLoaded", "PipeName", "DestinationIp", "DestinationHostname", "QueryName",
            "TargetUserName", "IpAddress", "ParentImage")
    parts = [f"{k}={event[k]}" for k in keys if event.get(k) not in (None, "")]
    if not parts:
        parts = [f"{k}={v}" for k, v in event.items() if k not in ENVELOPE and not k.startswith("_")
                 and isinstance(v, (str, int, float)) and v not in ("", "-")]
    text = "; ".join(parts[:3])
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
