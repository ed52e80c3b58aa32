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

from ttpscope.errors import TtpscopeError
from ttpscope.export.evidence import ENVELOPE, TechniqueEvidence, observation_text, technique_evidence
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
            "documents": [{k: v for k, v in d.items() if k != "text"} for d in self.documents],
            "detections": self.detections,
            "observations": [o.to_dict() for o in self.case.observations],
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


TIMELINE_POINTS = 3000  # the figure keeps the first step of each (host, technique, tactic, minute)
TOP_GROUPS = 3  # the threat profile of the coverage section
PREDICTED_WEIGHT = 0.5  # anticipated techniques count half as much as observed ones for mitigations
OTHER_CASES = 20  # stored cases compared in the overlap section


@section("lifecycle")
def _lifecycle(ctx: Context):
    """Tactics reached, furthest stage, intent and the timeline (``ttpscope.analyze.lifecycle``)."""
    mod = _require("ttpscope.analyze.lifecycle", "lifecycle")
    lc = mod.lifecycle(ctx.case, ctx.kb)
    reached = {t["shortname"]: t for t in lc.tactics}
    stages = [{"tactic": t.shortname, "name": t.name, "id": t.id, "reached": t.shortname in reached,
               "techniques": [{"id": x["technique_id"], "name": x["name"], "observations": x["observations"],
                               "placed_by": x.get("placed_by")}
                              for x in reached.get(t.shortname, {}).get("techniques", [])]}
              for t in ctx.kb.tactic_list()]
    by_id = {o.id: o for o in ctx.case.observations}
    points, seen = [], set()
    for step in lc.timeline:
        key = (step.get("host"), step["technique_id"], step["tactic"], str(step["time"])[:16])
        if key in seen:
            continue
        seen.add(key)
        obs = by_id.get(step.get("observation_id"))
        points.append({"time": step["time"], "host": step.get("host"), "technique_id": step["technique_id"],
                       "technique": step.get("technique_name"), "tactic": step["tactic"],
                       "evidence": observation_text(obs) if obs else ""})
        if len(points) >= TIMELINE_POINTS:
            break
    furthest = {"tactic": lc.furthest["shortname"], "name": lc.furthest["name"]} if lc.furthest else None
    message = "; ".join(lc.notes[:3])
    if len(lc.timeline) > len(points):
        message = (message + "; " if message else "") + (
            f"timeline figure: {len(points)} of {len(lc.timeline)} timed steps (repeats within a minute merged)")
    return message, {"stages": stages, "furthest": furthest, "intent": lc.reading, "timeline": points,
                     "hosts": sorted(lc.timelines), "timed_steps": len(lc.timeline), "unresolved": lc.unresolved}


def _context_line(ctx_dict: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in ctx_dict.items():
        if key == "url" or value in (None, "", [], {}):
            continue
        if isinstance(value, list):
            value = ", ".join(v.get("name", str(v)) if isinstance(v, dict) else str(v) for v in value[:8])
        out[key.replace("_", " ")] = str(value)
    return out


@section("attribution")
def _attribution(ctx: Context):
    """Known groups (and ATT&CK campaigns) ranked by how well they explain the case
    (``ttpscope.analyze.attribution``)."""
    mod = _require("ttpscope.analyze.attribution", "attribute")
    att = mod.attribute(ctx.case, ctx.kb, top=10, named=named_in_reports(ctx.documents))
    n = len(att.observed)

    def row(c) -> dict[str, Any]:
        explained = [{"id": m.technique_id, "name": m.name, "weight": round(m.contribution, 3), "match": m.match}
                     for m in c.explained]
        missing = [{"id": m.get("technique_id") or m.get("id"), "name": m.get("name", "")} for m in c.missing]
        exact = sum(1 for m in c.explained if m.match == "exact")
        why = f"explains {len(explained)} of {n} observed techniques ({exact} exactly)"
        return {"id": c.id, "name": c.name, "score": c.score, "confidence": c.confidence,
                "technique_score": getattr(c, "technique_score", c.score), "named_as": getattr(c, "named", []),
                "explained": explained,
                "missing": missing, "context": _context_line(c.context), "why": why,
                "groups": [g["name"] for g in c.context.get("groups", [])] if c.kind == "campaign" else []}

    return "; ".join(att.notes[:3]), {
        "verdict": att.verdict, "insufficient": att.insufficient_evidence, "information": att.information,
        "groups": [row(c) for c in att.groups], "campaigns": [row(c) for c in att.campaigns[:5]],
        "unexplained": att.unexplained, "unresolved": att.unresolved, "named": named_in_reports(ctx.documents)}


def named_in_reports(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups and software the reports name (context for the attribution, never a claim of it)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in documents:
        name = Path(str(doc.get("name") or doc.get("path") or "")).name
        for kind in ("groups", "software"):
            for ent in doc.get(kind) or []:
                row = rows.setdefault((kind, ent["id"]), {"kind": kind[:-1] if kind == "groups" else "software",
                                                          "id": ent["id"], "name": ent.get("name", ent["id"]),
                                                          "mentions": 0, "documents": []})
                row["mentions"] += int(ent.get("count") or 1)
                if name not in row["documents"]:
                    row["documents"].append(name)
    return sorted(rows.values(), key=lambda r: (r["kind"], -r["mentions"], r["id"]))


@section("overlap")
def _overlap(ctx: Context):
    """Similarity of the case to the other stored cases and to ATT&CK campaigns (``ttpscope.analyze.overlap``)."""
    mod = _require("ttpscope.analyze.overlap", "overlap")
    others: list[Any] = []
    if ctx.workspace is not None:
        for row in ctx.workspace.list_cases():
            if row["id"] != ctx.case.id and row["observations"] and len(others) < OTHER_CASES:
                others.append(ctx.workspace.get_case(row["id"]))
    campaigns = sorted(c.id for c in ctx.kb.campaigns.values() if not c.deprecated)
    result = mod.overlap([ctx.case, *others, *campaigns], ctx.kb)
    me = result.items[0]["key"]
    kinds = {it["key"]: it for it in result.items}
    items = []
    for pair in result.pairs:
        if me not in (pair["a"], pair["b"]) or pair["similarity"] <= 0:
            continue
        other_key = pair["b"] if pair["a"] == me else pair["a"]
        mine, theirs = ("only_a", "only_b") if pair["a"] == me else ("only_b", "only_a")
        other = kinds[other_key]
        items.append({"kind": other["kind"], "id": other.get("id") or "", "name": other["name"],
                      "similarity": pair["similarity"], "shared": [t["technique_id"] for t in pair["shared"]],
                      "only_case": [t["technique_id"] for t in pair[mine]],
                      "only_other": [t["technique_id"] for t in pair[theirs]]})
    items.sort(key=lambda i: (-i["similarity"], i["kind"], i["id"]))
    if not items:
        raise Empty(f"no overlap with {len(others)} other stored case(s) or {len(campaigns)} ATT&CK campaigns")
    top = items[:10]
    index = {it["key"]: i for i, it in enumerate(result.items)}
    keys = [me] + [next(k for k, v in kinds.items() if v["name"] == it["name"] and v["kind"] == it["kind"])
                   for it in top[:8]]
    labels = [kinds[k]["name"] if k != me else f"this case: {ctx.case.name}" for k in keys]
    matrix = [[result.matrix[index[a]][index[b]] for b in keys] for a in keys]
    return (f"compared with {len(others)} other stored case(s) and {len(campaigns)} ATT&CK campaigns",
            {"items": top, "matrix": {"labels": labels, "values": matrix},
             "clusters": result.clustering.get("clusters", [])})


@section("anticipation")
def _anticipation(ctx: Context):
    """Techniques likely to come next, with what to watch (``ttpscope.analyze.anticipate``)."""
    mod = _require("ttpscope.analyze.anticipate", "anticipate")
    ant = mod.anticipate(ctx.case, ctx.kb, top=10)
    names = {t.shortname: t.name for t in ctx.kb.tactic_list()}
    preds = []
    for p in ant.predictions:
        because = ", ".join(b["technique_id"] for b in p.because_of)
        profiles = ", ".join(f"{x['name']} ({x['id']})" for x in p.profiles)
        why = (f"co-occurs with {because}" if because else "common in related profiles") + (
            f"; seen together in {profiles}" if profiles else "")
        if p.later_stage:
            why += "; a later stage than reached so far"
        watch = p.watch or {}
        preds.append({"id": p.technique_id, "name": p.name, "tactics": [names.get(t, t) for t in p.tactics],
                      "score": p.score, "why": why, "later_stage": p.later_stage,
                      "watch": {"data_components": [f"{d['data_source']}: {d['name']}" if d.get("data_source")
                                                    else d["name"] for d in watch.get("data_components", [])],
                                "detection_strategies": [d["name"] for d in watch.get("detection_strategies", [])],
                                "mitigations": watch.get("mitigations", [])}})
    if not preds:
        raise Empty("no technique co-occurs with the observed ones in the knowledge base's profiles")
    return "; ".join(ant.notes[:3]), {"predictions": preds, "reached": ant.reached_tactics}


def _rules_for_coverage(ctx: Context) -> Path | None:
    if ctx.rules is not None:
        return ctx.rules
    try:
        from ttpscope.detect.rules import default_rules_dir
    except ImportError:
        return None
    try:
        path = default_rules_dir()
    except TtpscopeError:  # no SigmaHQ release cached
        return None
    return path if path is not None and Path(path).exists() else None


@section("coverage")
def _coverage(ctx: Context):
    """Coverage of the rule set against the top attributed groups (``ttpscope.analyze.coverage``)."""
    cov = _require("ttpscope.analyze.coverage", "coverage_report")
    prof = _require("ttpscope.analyze.profile", "profile_from_ranking")
    rules_mod = _require("ttpscope.detect.rules", "load_rules")
    at = ctx.sections.get("attribution")
    if at is None or not at.ok or not at.data["groups"]:
        raise Skipped("needs the attribution's top groups, and attribution has none")
    rules_path = _rules_for_coverage(ctx)
    if rules_path is None:
        raise Empty("no Sigma rule set to measure: give --rules (or run 'ttpscope rules update')")
    ranking = [(g["id"], g["score"]) for g in at.data["groups"]]
    profile = prof.profile_from_ranking(ctx.kb, ranking, top=TOP_GROUPS)
    ruleset = rules_mod.load_rules(rules_path, ctx.kb)
    report = cov.coverage_report(ctx.kb, ruleset.rules, profile)
    names = {t.shortname: t.name for t in ctx.kb.tactic_list()}
    gaps = [{"id": g["id"], "name": g["name"], "tactics": [names.get(t, t) for t in g["tactics"]],
             "actors": [ctx.kb.name_of(a) for a in g.get("actors", [])], "visible": g.get("visible"),
             "pre_compromise": g.get("pre_compromise", False)} for g in report["gaps"]]
    message = ("attribution is insufficient evidence, so the profile is its top candidates taken as leads"
               if at.data.get("insufficient") else "")
    return message, {"profile": [{"id": g, "name": ctx.kb.name_of(g)} for g in profile.groups],
                     "coverage": report["coverage"], "weighted_coverage": report.get("weighted_coverage"),
                     "rules": str(rules_path), "rules_loaded": len(ruleset.rules), "gaps": gaps,
                     "visible_undetected": report.get("visible_undetected", []), "counts": report.get("counts", {})}


@section("mitigations")
def _mitigations(ctx: Context):
    """Mitigations covering the observed and anticipated techniques, fewest first
    (``ttpscope.analyze.mitigations``)."""
    mod = _require("ttpscope.analyze.mitigations", "mitigation_plan")
    weights = {tid: 1.0 for tid in ctx.technique_ids()}
    ant = ctx.sections.get("anticipation")
    predicted = [p["id"] for p in ant.data["predictions"]] if ant is not None and ant.ok else []
    for tid in predicted:
        weights.setdefault(tid, PREDICTED_WEIGHT)
    plan = mod.mitigation_plan(ctx.kb, list(weights), weights)
    rows = []
    for m in plan["mitigations"]:
        how = m.get("how") or {}
        advice = next(iter(how.values()), "") if how else ""
        rows.append({"id": m["id"], "name": m["name"], "covers": m["covers"], "in_cover": m.get("in_cover"),
                     "cumulative": m.get("cumulative"), "advice": advice[:300]})
    if not rows:
        raise Empty("ATT&CK lists no mitigation for these techniques")
    comps = [{"name": f"{d['data_source']}: {d['name']}" if d.get("data_source") else d["name"],
              "techniques": d["techniques"]} for d in plan.get("data_components", [])]
    message = f"for {len(ctx.technique_ids())} observed" + (f" and {len(predicted)} anticipated" if predicted else "") + \
        " techniques" + (f"; {len(plan['uncovered'])} have no ATT&CK mitigation" if plan.get("uncovered") else "")
    return message, {"mitigations": rows, "data_components": comps, "uncovered": plan.get("uncovered", [])}


@section("indicators")
def _indicators(ctx: Context):
    """IOCs and CVEs the extraction found in the reports (stored with each document)."""
    if not ctx.documents:
        raise Empty("no report was read, so no indicators were extracted")
    iocs: dict[tuple[str, str], dict[str, Any]] = {}
    cves: dict[str, dict[str, Any]] = {}
    linked = False
    for doc in ctx.documents:
        name = Path(str(doc.get("name") or doc.get("path") or doc.get("id"))).name
        for ioc in doc.get("iocs") or []:
            key = (str(ioc.get("type")), str(ioc.get("value")))
            row = iocs.setdefault(key, {"type": key[0], "value": key[1], "documents": []})
            if name not in row["documents"]:
                row["documents"].append(name)
        for cve in doc.get("cves") or []:
            cid = str(cve.get("id") if isinstance(cve, dict) else cve).upper()
            row = cves.setdefault(cid, {"id": cid, "techniques": [], "documents": []})
            linked = linked or (isinstance(cve, dict) and "mapped" in cve)
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
    if data["cves"] and not linked:
        return ("CVEs are listed without the techniques they enable: point TTPSCOPE_CVE_MAPPINGS at CTID "
                "Mappings Explorer files (e.g. the KEV mappings) to link them"), data
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
