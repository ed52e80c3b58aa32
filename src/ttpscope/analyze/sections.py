"""The report sections: one registry, ``SECTIONS``, of key → (title, function of a :class:`Context`).

Each function returns its typed result (:mod:`ttpscope.analyze.report`) and a message, raises
:class:`Empty` when it has nothing to work on, or :class:`Skipped` when it is not run on purpose; any other
failure is contained by :func:`run_section` so that a broken section never costs the others. Pure functions of
records and the knowledge base: the Sigma rule set and the other stored cases come in through the context.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, NamedTuple

from ttpscope.analyze.anticipate import anticipate
from ttpscope.analyze.attribution import attribute
from ttpscope.analyze.coverage import coverage_report
from ttpscope.analyze.entities import entity_graph
from ttpscope.analyze.intrusions import CONCURRENT, ENTITY_GAP, activity_clusters, cluster_row
from ttpscope.analyze.evidence import TechniqueSummary, observation_text, technique_evidence
from ttpscope.analyze.lifecycle import lifecycle, weak_note
from ttpscope.analyze.mitigations import mitigation_plan
from ttpscope.analyze.overlap import overlap
from ttpscope.analyze.profile import profile_from_ranking
from ttpscope.analyze.report import (EMPTY, ERROR, OK, SKIPPED, AnticipationSection, AttributionSection,
                                     CaseAnalysis, EntitiesSection, GapsSection, IndicatorsSection, IntrusionsSection,
                                     LifecycleSection, MitigationsSection, OverlapSection, Section, SectionData)
from ttpscope.model import Case, Detection, ReportDocument

log = logging.getLogger(__name__)


class Empty(Exception):
    """A section with nothing to work on (e.g. no timed observation, no rules given)."""


class Skipped(Exception):
    """A section not run on purpose (an option, or a prerequisite section that had no answer)."""


@dataclass
class Context:
    """What a section function may use. ``rules`` loads the Sigma rule set the logs were checked with (None:
    there is none), ``rules_source`` names it; ``other_cases`` gives the other stored cases to compare with."""

    case: Case
    kb: Any
    evidence: list[TechniqueSummary]
    detections: list[Detection]
    documents: list[ReportDocument]
    sections: dict[str, Section]
    rules: Callable[[], list] | None = None
    rules_source: str = ""
    other_cases: Callable[[], list[Case]] = list

    def technique_ids(self) -> list[str]:
        return [e.id for e in self.evidence if e.known]


SectionFn = Callable[[Context], tuple[SectionData, str]]


class ReportSection(NamedTuple):
    title: str
    compute: SectionFn


SECTIONS: dict[str, ReportSection] = {}  # in report order


def section(key: str, title: str):
    """Register a report section (the order of registration is the order of the report)."""
    def register(fn: SectionFn) -> SectionFn:
        SECTIONS[key] = ReportSection(title, fn)
        return fn
    return register


TIMELINE_POINTS = 3000  # the figure keeps the first step of each (host, technique, tactic, minute)
TOP_GROUPS = 3  # the threat profile of the coverage section
PREDICTED_WEIGHT = 0.5  # anticipated techniques count half as much as observed ones for mitigations
CLUSTERS_ATTRIBUTED = 8  # the largest clusters of a case that looks like several intrusions get an attribution
MAX_CLUSTERS = 200  # clusters kept in the section (the largest; the rest are counted): case.json stays small


@section("lifecycle", "Attack lifecycle")
def _lifecycle(ctx: Context):
    """Tactics reached, furthest stage, intent and the timeline (``ttpscope.analyze.lifecycle``)."""
    lc = lifecycle(ctx.case, ctx.kb)
    reached = {t["shortname"]: t for t in lc.tactics}
    stages = [{"tactic": t.shortname, "name": t.name, "id": t.id, "reached": t.shortname in reached,
               "decisive": bool(reached.get(t.shortname, {}).get("decisive")),
               "techniques": [{"id": x["technique_id"], "name": x["name"], "observations": x["observations"],
                               "placed_by": x.get("placed_by"), "decisive": x["decisive"], "weak": x["weak"]}
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
    weak_stages = [{"tactic": t["shortname"], "name": t["name"],
                    "techniques": [{"id": x["technique_id"], "name": x["name"], "weak": x["weak"]}
                                   for x in t["techniques"]]} for t in lc.weak_tactics]
    furthest_weak = None
    if lc.furthest_weak:
        furthest_weak = {"tactic": lc.furthest_weak["shortname"], "name": lc.furthest_weak["name"],
                         "why": weak_note([lc.furthest_weak])}
    message = "; ".join(lc.notes[:3])
    if len(lc.timeline) > len(points):
        message = (message + "; " if message else "") + (
            f"timeline figure: {len(points)} of {len(lc.timeline)} timed steps (repeats within a minute merged)")
    return LifecycleSection(stages=stages, furthest=furthest, intent=lc.reading, timeline=points,
                            hosts=sorted(lc.timelines), timed_steps=len(lc.timeline),
                            unresolved=lc.unresolved, furthest_weak=furthest_weak, weak_stages=weak_stages), message


@section("intrusions", "One intrusion or several")
def _intrusions(ctx: Context):
    """Clusters of related activity (shared hosts, users, IPs, accounts; time gaps), each with its furthest
    stage and, when there are several, its own attribution (``ttpscope.analyze.intrusions``)."""
    clusters = activity_clusters(ctx.case.observations, ctx.detections)
    if not clusters:
        raise Empty("no observation carries a time, so activity cannot be grouped")
    untimed = sum(1 for o in ctx.case.observations if o.time is None)
    separate = len(clusters) > 1
    rows = []
    for number, cluster in enumerate(clusters[:MAX_CLUSTERS], 1):
        row = cluster_row(cluster, number)
        sub = Case(name=f"{ctx.case.name} {row['id']}", observations=cluster.observations, id=f"{ctx.case.id}-{row['id']}")
        lc = lifecycle(sub, ctx.kb)
        row["furthest"] = lc.furthest["name"] if lc.furthest else None
        row["attribution"] = None
        if separate and number <= CLUSTERS_ATTRIBUTED:
            att = attribute(sub, ctx.kb, top=3, campaigns=False)
            top = att.groups[0] if att.groups else None
            row["attribution"] = {"verdict": att.verdict, "insufficient": att.insufficient_evidence,
                                  "group": {"id": top.id, "name": top.name} if top else None,
                                  "confidence": round(top.confidence, 3) if top else None}
        rows.append(row)
    days = lambda td: f"{td.days} days" if td.days else f"{td.seconds // 3600} hours"  # noqa: E731
    method = (f"observations are linked when they share a host, user, IP address or account seen again within "
              f"{days(ENTITY_GAP)}, or fall within {days(CONCURRENT)} of each other on hosts of one network domain")
    first = clusters[0]
    span = (min(c.first for c in clusters), max(c.last for c in clusters))
    if separate:
        hosts = {h.lower() for c in clusters for h in c.hosts}
        note = (f"This looks like more than one intrusion: the activity falls into {len(clusters)} separate clusters "
                f"({len(hosts)} hosts, {span[0]:%Y-%m-%d} to {span[1]:%Y-%m-%d}) with no host, user, IP address or "
                f"account seen in two of them within {days(ENTITY_GAP)}. The whole-case attribution mixes them; "
                "each cluster has its own.")
    else:
        note = (f"The timed evidence forms one cluster of related activity ({len(first.hosts)} host(s), "
                f"{first.first:%Y-%m-%d} to {first.last:%Y-%m-%d}).")
    data = IntrusionsSection(separate=separate, note=note, clusters=rows, method=method, untimed=untimed,
                             count=len(clusters))
    message = note if not separate else f"{len(clusters)} clusters; the largest: " + "; ".join(
        f"{r['id']} {r['first'][:10]}–{r['last'][:10]} ({r['host_count']} host(s))" for r in rows[:3])
    if untimed:
        message = message.rstrip(".") + f"; {untimed} untimed observation(s) (report sentences) belong to no cluster"
    return data, message


def _context_line(ctx_dict: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in ctx_dict.items():
        if key == "url" or value in (None, "", [], {}):
            continue
        if isinstance(value, list):
            value = ", ".join(v.get("name", str(v)) if isinstance(v, dict) else str(v) for v in value[:8])
        out[key.replace("_", " ")] = str(value)
    return out


@section("attribution", "Attribution to known groups")
def _attribution(ctx: Context):
    """Known groups (and ATT&CK campaigns) ranked by how well they explain the case
    (``ttpscope.analyze.attribution``)."""
    named = named_in_reports(ctx.documents)
    att = attribute(ctx.case, ctx.kb, top=10, named=named)
    n = len(att.observed)

    def row(c) -> dict[str, Any]:
        explained = [{"id": m.technique_id, "name": m.name, "weight": round(m.contribution, 3), "match": m.match}
                     for m in c.explained]
        missing = [{"id": m["technique_id"], "name": m["name"]} for m in c.missing]
        exact = sum(1 for m in c.explained if m.match == "exact")
        why = f"explains {len(explained)} of {n} observed techniques ({exact} exactly)"
        return {"id": c.id, "name": c.name, "score": c.score, "confidence": c.confidence,
                "similarity": round(c.similarity, 4),
                "technique_score": c.technique_score, "named_as": c.named, "explained": explained,
                "missing": missing, "context": _context_line(c.context), "why": why,
                "groups": [g["name"] for g in c.context.get("groups", [])] if c.kind == "campaign" else []}

    caveat = ""
    clusters = ctx.sections.get("intrusions")
    if clusters is not None and clusters.ok and clusters.data.separate:
        caveat = (f"the case looks like {clusters.data.count} separate intrusions, so this ranking mixes "
                  "their techniques; see the attribution of each cluster")
    return AttributionSection(
        verdict=att.verdict, insufficient=att.insufficient_evidence, information=att.information,
        groups=[row(c) for c in att.groups], campaigns=[row(c) for c in att.campaigns[:5]],
        unexplained=att.unexplained, unresolved=att.unresolved,
        named=named, caveat=caveat), "; ".join(x for x in [caveat, *att.notes[:3]] if x)


def named_in_reports(documents: list[ReportDocument]) -> list[dict[str, Any]]:
    """Groups and software the reports name (context for the attribution, never a claim of it)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in documents:
        name = doc.label
        for kind in ("groups", "software"):
            for ent in getattr(doc, kind):
                row = rows.setdefault((kind, ent["id"]), {"kind": kind[:-1] if kind == "groups" else "software",
                                                          "id": ent["id"], "name": ent.get("name", ent["id"]),
                                                          "mentions": 0, "documents": []})
                row["mentions"] += int(ent.get("count") or 1)
                if name not in row["documents"]:
                    row["documents"].append(name)
    return sorted(rows.values(), key=lambda r: (r["kind"], -r["mentions"], r["id"]))


@section("overlap", "Overlaps with other cases and campaigns")
def _overlap(ctx: Context):
    """Similarity of the case to the other stored cases and to ATT&CK campaigns (``ttpscope.analyze.overlap``)."""
    others = ctx.other_cases()
    campaigns = sorted(c.id for c in ctx.kb.campaigns.values() if not c.deprecated)
    result = overlap([ctx.case, *others, *campaigns], ctx.kb)
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
    return (OverlapSection(items=top, matrix={"labels": labels, "values": matrix},
                           clusters=result.clustering.get("clusters", [])),
            f"compared with {len(others)} other stored case(s) and {len(campaigns)} ATT&CK campaigns")


@section("anticipation", "Anticipated next techniques")
def _anticipation(ctx: Context):
    """Techniques likely to come next, with what to watch (``ttpscope.analyze.anticipate``)."""
    ant = anticipate(ctx.case, ctx.kb, top=10)
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
    return AnticipationSection(predictions=preds, reached=ant.reached_tactics), "; ".join(ant.notes[:3])


@section("coverage", "Detection coverage gaps against the top attributed groups")
def _coverage(ctx: Context):
    """Coverage of the rule set against the top attributed groups (``ttpscope.analyze.coverage``)."""
    at = ctx.sections.get("attribution")
    if at is None or not at.ok or not at.data.groups:
        raise Skipped("needs the attribution's top groups, and attribution has none")
    if ctx.rules is None:
        raise Empty("no Sigma rule set to measure: give --rules (or run 'ttpscope rules update')")
    ranking = [(g["id"], g["score"]) for g in at.data.groups]
    profile = profile_from_ranking(ctx.kb, ranking, top=TOP_GROUPS)
    rules = ctx.rules()
    report = coverage_report(ctx.kb, rules, profile)
    names = {t.shortname: t.name for t in ctx.kb.tactic_list()}
    gaps = [{"id": g["id"], "name": g["name"], "tactics": [names.get(t, t) for t in g["tactics"]],
             "actors": [ctx.kb.name_of(a) for a in g.get("actors", [])], "visible": g.get("visible"),
             "pre_compromise": g.get("pre_compromise", False)} for g in report["gaps"]]
    message = ("attribution is insufficient evidence, so the profile is its top candidates taken as leads"
               if at.data.insufficient else "")
    return GapsSection(profile=[{"id": g, "name": ctx.kb.name_of(g)} for g in profile.groups],
                       coverage=report["coverage"], weighted_coverage=report.get("weighted_coverage"),
                       rules=ctx.rules_source, rules_loaded=len(rules), gaps=gaps,
                       visible_undetected=report.get("visible_undetected", []),
                       counts=report.get("counts", {})), message


@section("mitigations", "Mitigations")
def _mitigations(ctx: Context):
    """Mitigations covering the observed and anticipated techniques, fewest first
    (``ttpscope.analyze.mitigations``)."""
    weights = {tid: 1.0 for tid in ctx.technique_ids()}
    ant = ctx.sections.get("anticipation")
    predicted = [p["id"] for p in ant.data.predictions] if ant is not None and ant.ok else []
    for tid in predicted:
        weights.setdefault(tid, PREDICTED_WEIGHT)
    plan = mitigation_plan(ctx.kb, list(weights), weights)
    rows = []
    for m in plan["mitigations"]:
        how = m.get("how") or {}
        advice = next(iter(how.values()), "") if how else ""
        rows.append({"id": m["id"], "name": m["name"], "covers": m["covers"], "in_cover": m.get("in_cover"),
                     "new": m.get("new", []), "cumulative": m.get("cumulative"), "advice": advice[:300]})
    if not rows:
        raise Empty("ATT&CK lists no mitigation for these techniques")
    comps = [{"name": f"{d['data_source']}: {d['name']}" if d.get("data_source") else d["name"],
              "techniques": d["techniques"]} for d in plan.get("data_components", [])]
    message = f"for {len(ctx.technique_ids())} observed" + (f" and {len(predicted)} anticipated" if predicted else "") + \
        " techniques" + (f"; {len(plan['uncovered'])} have no ATT&CK mitigation" if plan.get("uncovered") else "")
    return MitigationsSection(mitigations=rows, data_components=comps, uncovered=plan.get("uncovered", [])), message


@section("indicators", "Indicators (IOCs) and vulnerabilities (CVEs)")
def _indicators(ctx: Context):
    """IOCs and CVEs the extraction found in the reports (stored with each document)."""
    if not ctx.documents:
        raise Empty("no report was read, so no indicators were extracted")
    iocs: dict[tuple[str, str], dict[str, Any]] = {}
    cves: dict[str, dict[str, Any]] = {}
    linked = False
    for doc in ctx.documents:
        name = doc.label
        for ioc in doc.iocs:
            key = (ioc["type"], ioc["value"])
            row = iocs.setdefault(key, {"type": key[0], "value": key[1], "documents": []})
            if name not in row["documents"]:
                row["documents"].append(name)
        for cve in doc.cves:
            cid = cve["id"].upper()
            row = cves.setdefault(cid, {"id": cid, "techniques": [], "documents": []})
            linked = linked or "mapped" in cve
            for t in cve.get("techniques") or []:
                tid = t.get("id") if isinstance(t, dict) else t
                if tid and tid not in row["techniques"]:
                    row["techniques"].append(tid)
            if name not in row["documents"]:
                row["documents"].append(name)
    data = IndicatorsSection(iocs=sorted(iocs.values(), key=lambda r: (r["type"], r["value"])),
                             cves=sorted(cves.values(), key=lambda r: r["id"]))
    if not data.iocs and not data.cves:
        raise Empty(f"no IOC or CVE found in {len(ctx.documents)} report(s)")
    if data.cves and not linked:
        return data, ("CVEs are listed without the techniques they enable: point TTPSCOPE_CVE_MAPPINGS at CTID "
                      "Mappings Explorer files (e.g. the KEV mappings) to link them")
    return data, ""


@section("entities", "Entities across environments")
def _entities(ctx: Context):
    """Hosts, users, IPs and accounts the detections name, linked across log sources."""
    if not ctx.detections:
        raise Empty("no rule hit, so no entity to link")
    g = entity_graph(ctx.detections, ctx.case.meta.get("entity_links"))
    if not g.nodes:
        raise Empty(f"none of the {g.detections} detections names a host, user, IP or account")
    products = sorted({e["product"] for e in g.environments})
    data = EntitiesSection(environments=g.environments, nodes=g.nodes, edges=g.edges, bridges=g.bridges,
                           components=g.components, timeline=g.timeline, entity_timelines=g.entity_timelines,
                           products=products)
    message = (f"{len(g.nodes)} entities and {len(g.edges)} links in {len(g.environments)} log source(s) of "
               f"{len(products)} product(s) ({', '.join(products)})")
    if g.components:
        message += f"; {len(g.components)} linked group(s) span more than one product"
    message += "".join(f"; {note}" for note in g.notes)
    return data, message


def analyse(case: Case, kb, *, detections: Iterable[Detection] = (), documents: Iterable[ReportDocument] = (),
            rules: Callable[[], list] | None = None, rules_source: str = "",
            other_cases: Callable[[], list[Case]] = list, only: Iterable[str] | None = None,
            on_section: Callable[[str], None] | None = None) -> CaseAnalysis:
    """Run every section on a case (no evidence is re-read).

    ``rules`` loads the Sigma rule set the logs were checked with (the coverage section measures it);
    ``other_cases`` gives the stored cases to look for overlaps with; ``only``: section keys to run (the others
    are marked skipped); ``on_section(key)`` is called before each section (progress).
    """
    evidence = technique_evidence(case, kb)
    ctx = Context(case=case, kb=kb, evidence=evidence, detections=list(detections), documents=list(documents),
                  sections={}, rules=rules, rules_source=rules_source, other_cases=other_cases)
    wanted = set(only) if only is not None else None
    for key, spec in SECTIONS.items():
        if on_section:
            on_section(key)
        if wanted is not None and key not in wanted:
            ctx.sections[key] = Section(key, spec.title, SKIPPED, "not requested")
            continue
        ctx.sections[key] = run_section(key, ctx)
    return CaseAnalysis(case=case, provenance=kb.provenance(), evidence=evidence, sections=ctx.sections,
                        detections=ctx.detections, documents=ctx.documents)


def run_section(key: str, ctx: Context) -> Section:
    """One section, its failure contained: a broken part never costs the other sections."""
    title, compute = SECTIONS[key]
    if not ctx.evidence and key != "indicators":
        return Section(key, title, EMPTY, "the case has no technique observation")
    try:
        data, message = compute(ctx)
    except Empty as exc:
        return Section(key, title, EMPTY, str(exc))
    except Skipped as exc:
        return Section(key, title, SKIPPED, str(exc))
    except Exception as exc:  # noqa: BLE001 - reported in the output, the run goes on
        log.debug("section %s failed:\n%s", key, traceback.format_exc())
        return Section(key, title, ERROR, f"failed: {type(exc).__name__}: {exc}")
    return Section(key, title, OK, message, data)
