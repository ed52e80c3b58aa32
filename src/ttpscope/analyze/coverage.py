"""Detection coverage of a Sigma rule set against a threat profile: scores, coverage %, prioritised gaps.

Inputs are the loaded rules (``ttpscope.detect.rules.RuleInfo`` records: id, title, level, status, logsource,
techniques), the knowledge base, optionally a threat profile (``analyze.profile``) and a data-source
inventory (``ttpscope.kb.inventory.load_inventory``). Per technique the answer holds the rules by level and status, whether the
data it needs is collected (visibility), and a detection score.

Detection score (0..1). Each rule counts ``LEVEL_WEIGHT[level] * STATUS_WEIGHT[status]`` (a stable critical
rule 1.0, an experimental low rule 0.18) and the rules combine as independent chances,
``1 - prod(1 - w)``: more and stronger rules raise the score, with diminishing returns. A technique is
*detected* when at least one alerting rule covers it: level low or above, status neither deprecated nor
unsupported, and (with an inventory) a log source that is collected. Rules tagged with a sub-technique
count for its parent (T1059.001 detects part of T1059); rules tagged only with a parent do not count for
its sub-techniques (a generic T1070 rule says nothing about T1070.004), they are listed as ``parent_rules``.

Visibility (with an inventory): a technique is visible when a platform it runs on collects one of its
ATT&CK data components (legacy ``detects`` links or the log sources of v18 analytics), names one of its
v18 analytic log sources, or collects the Sigma logsource of a rule for it. Sigma logsources also imply
data components through ``ttpscope.kb.inventory.SIGMA_COMPONENTS``.

Gaps are the profile techniques that nothing detects, ordered by profile weight (how many actors use it,
or its prevalence), then by matrix order of the first tactic, then by id. Techniques that only a
pre-compromise platform (PRE: reconnaissance, resource development) can show are put after the others:
host and network logs cannot see them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from ttpscope.kb import KnowledgeBase
from ttpscope.kb.aliases import normalize
from ttpscope.kb.inventory import Inventory

from ttpscope.analyze.crosswalk import resolve_any_release
from ttpscope.analyze.profile import ThreatProfile

_TECH_TAG = re.compile(r"^attack\.t\d{4}(\.\d{3})?$", re.I)
LEVEL_WEIGHT = {"critical": 1.0, "high": 0.8, "medium": 0.6, "low": 0.3, "informational": 0.1}
STATUS_WEIGHT = {"stable": 1.0, "test": 0.8, "experimental": 0.6, "unsupported": 0.3, "deprecated": 0.0}
NON_ALERTING_STATUS = {"deprecated", "unsupported"}
LEVELS = ("critical", "high", "medium", "low", "informational")

# ---------------------------------------------------------------------- rules per technique
def _rule_weight(rule) -> float:
    return LEVEL_WEIGHT.get(str(rule.level or "").lower(), 0.3) * STATUS_WEIGHT.get(str(rule.status or "").lower(), 0.6)


def _alerting(rule) -> bool:
    return str(rule.level or "").lower() in LEVELS[:4] and str(rule.status or "").lower() not in NON_ALERTING_STATUS


def rules_by_technique(rules: Iterable, kb: KnowledgeBase) -> tuple[dict[str, list], list[str]]:
    """Rules indexed by the KB technique ids of their tags; notes for tags mapped across releases or unknown.

    Tags are resolved with ``crosswalk.resolve_any_release`` (revoked ids, v19 moves, newer sub-techniques).
    """
    out: dict[str, list] = {}
    notes: dict[str, str] = {}
    cache: dict[str, str | None] = {}
    for rule in rules:
        seen: set[str] = set()
        # RuleInfo keeps tags its KB could not map (e.g. v19 ids under v15.1) in unknown_tags: try them too
        newer = [tag.split(".", 1)[1].upper() for tag, _ in getattr(rule, "unknown_tags", ()) or ()
                 if _TECH_TAG.match(str(tag))]
        for raw in list(rule.techniques or ()) + newer:
            if raw not in cache:
                res = resolve_any_release(kb, raw)
                cache[raw] = res.id
                if res.note:
                    notes[raw] = res.note
            tid = cache[raw]
            if tid and tid not in seen:
                seen.add(tid)
                out.setdefault(tid, []).append(rule)
    return out, [notes[k] for k in sorted(notes)]


@dataclass
class TechniqueCoverage:
    id: str
    name: str
    rules: list = field(default_factory=list)  # rules tagged with it (or, for a parent, with a sub)
    parent_rules: list = field(default_factory=list)  # rules tagged only with the parent (not counted)
    usable: list = field(default_factory=list)  # rules whose log source is collected (all without inventory)
    visible: bool | None = None
    visible_via: list[str] = field(default_factory=list)
    score: float = 0.0
    detected: bool = False

    def to_dict(self) -> dict:
        by_level = {lv: 0 for lv in LEVELS}
        by_status: dict[str, int] = {}
        for r in self.rules:
            by_level[str(r.level or "").lower()] = by_level.get(str(r.level or "").lower(), 0) + 1
            by_status[str(r.status or "")] = by_status.get(str(r.status or ""), 0) + 1
        return {"id": self.id, "name": self.name, "rules": len(self.rules), "rules_usable": len(self.usable),
                "rules_by_level": {k: v for k, v in by_level.items() if v},
                "rules_by_status": dict(sorted(by_status.items())),
                "rule_ids": sorted(str(r.id) for r in self.rules),
                "parent_rules": len(self.parent_rules),
                "visible": self.visible, "visible_via": self.visible_via,
                "score": round(self.score, 4), "detected": self.detected}


def _visibility(kb: KnowledgeBase, tid: str, inv: Inventory, rules: list) -> list[str]:
    tech = kb.techniques[tid]
    plats = inv.platforms_for(tech.platforms)
    reasons: list[str] = []
    if plats:
        collected = set().union(*(inv.data_components.get(p, set()) for p in plats))
        for dc in kb.data_components_of(tid):
            if normalize(dc.name) in collected or normalize(dc.id) in collected:
                reasons.append(f"data component: {dc.name}")
        logs = set().union(*(inv.log_sources.get(p, set()) for p in plats))
        if logs:
            for det in kb.detection_strategies_of(tid):
                for an in det.analytics:
                    for ls in kb.analytics[an].log_sources if an in kb.analytics else ():
                        if str(ls.get("name", "")).lower() in logs:
                            reasons.append(f"log source: {ls['name']}")
    for r in rules:
        if inv.sigma_collected(r.logsource):
            ls = r.logsource or {}
            reasons.append("sigma logsource: " + "/".join(str(ls[k]) for k in ("product", "category", "service")
                                                          if ls.get(k)))
    return sorted(set(reasons))


def technique_coverage(kb: KnowledgeBase, tid: str, index: dict[str, list],
                       inventory: Inventory | None = None) -> TechniqueCoverage:
    """Coverage of one technique from a rules-by-technique index (see module doc for the scoring)."""
    tech = kb.techniques[tid]
    own = list(index.get(tid, ()))
    seen = {id(r) for r in own}
    for sub in tech.subtechniques:
        for r in index.get(sub, ()):
            if id(r) not in seen:
                seen.add(id(r))
                own.append(r)
    parent = [r for r in index.get(tech.parent, ()) if id(r) not in seen] if tech.parent else []
    tc = TechniqueCoverage(tid, tech.name, own, parent)
    if inventory is not None:
        tc.usable = [r for r in own if inventory.sigma_collected(r.logsource)]
        tc.visible_via = _visibility(kb, tid, inventory, own)
        tc.visible = bool(tc.visible_via)
    else:
        tc.usable = own
    miss = 1.0
    for r in tc.usable:
        miss *= 1.0 - _rule_weight(r)
    tc.score = 1.0 - miss
    tc.detected = any(_alerting(r) for r in tc.usable)
    return tc


def _is_pre(kb: KnowledgeBase, tid: str) -> bool:
    tech = kb.techniques[tid]
    return bool(tech.platforms) and all(p == "PRE" for p in tech.platforms)


def coverage_report(kb: KnowledgeBase, rules: Iterable, profile: ThreatProfile | None = None,
                    inventory: Inventory | None = None, platforms: Iterable[str] | None = None) -> dict:
    """Coverage of ``rules`` over a profile's techniques (or every live technique without a profile).

    Returns ``{coverage, weighted_coverage, coverage_observable, techniques: [...], gaps: [{id, name,
    actors, tactics, weight, pre_compromise, visible}], visible_undetected: [...], blind_rules: [...],
    profile, counts, notes}``; see the module doc for the scoring and ordering. ``platforms`` keeps only
    techniques that run on one of them (e.g. ``["Windows"]``).
    """
    rules = list(rules)
    index, notes = rules_by_technique(rules, kb)
    if profile is not None:
        notes = list(profile.notes) + notes
        targets = dict(profile.weights)
    else:
        targets = {t.id: 1.0 for t in kb.live_techniques()}
    if platforms:
        wanted = {normalize(p) for p in platforms}
        targets = {t: w for t, w in targets.items()
                   if wanted & {normalize(p) for p in kb.techniques[t].platforms}}
    order = {s: i for i, s in enumerate(kb.tactic_order())}
    covs = {t: technique_coverage(kb, t, index, inventory) for t in sorted(targets)}
    total_w = sum(targets.values()) or 1.0
    detected = [t for t, c in covs.items() if c.detected]
    observable = [t for t in covs if not _is_pre(kb, t)]

    def first_tactic(tid: str) -> int:
        return min((order.get(s, 99) for s in kb.techniques[tid].tactics), default=99)

    def gap_row(tid: str) -> dict:
        tech = kb.techniques[tid]
        return {"id": tid, "name": tech.name,
                "actors": list(profile.actors.get(tid, [])) if profile is not None else [],
                "tactics": sorted(tech.tactics, key=lambda s: order.get(s, 99)),
                "weight": round(targets[tid], 6), "pre_compromise": _is_pre(kb, tid),
                "visible": covs[tid].visible, "parent_rules": len(covs[tid].parent_rules),
                "parent_rule_ids": sorted(str(r.id) for r in covs[tid].parent_rules)}

    gaps = sorted((t for t in covs if not covs[t].detected),
                  key=lambda t: (_is_pre(kb, t), -targets[t], first_tactic(t), t))
    gap_rows = [gap_row(t) for t in gaps]
    blind = []
    if inventory is not None:
        for t, c in covs.items():
            unusable = [r for r in c.rules if r not in c.usable]
            if unusable and not c.detected:
                blind.append({"id": t, "name": c.name, "rules": sorted(str(r.id) for r in unusable)})
    tech_rows = sorted((c.to_dict() for c in covs.values()), key=lambda d: (-d["score"], d["id"]))
    for row in tech_rows:
        row["weight"] = round(targets[row["id"]], 6)
    return {
        "coverage": round(len(detected) / len(covs), 4) if covs else 0.0,
        "weighted_coverage": round(sum(targets[t] for t in detected) / total_w, 4),
        "coverage_observable": round(sum(1 for t in observable if covs[t].detected) / len(observable), 4)
        if observable else 0.0,
        "techniques": tech_rows,
        "gaps": gap_rows,
        "visible_undetected": [g for g in gap_rows if g["visible"]],
        "blind_rules": blind,
        "profile": profile.to_dict(kb) if profile is not None else None,
        "inventory": inventory.source if inventory is not None else None,
        "counts": {"rules": len(rules), "rules_with_techniques": sum(1 for r in rules if r.techniques),
                   "techniques": len(covs), "detected": len(detected), "gaps": len(gap_rows),
                   "observable": len(observable)},
        "scoring": {"level_weight": LEVEL_WEIGHT, "status_weight": STATUS_WEIGHT},
        "notes": notes,
        **kb.provenance(),
    }


def hunt_leads(kb: KnowledgeBase, rules: Iterable, technique_ids: Iterable[str], target: str,
               pipeline: str | None = "default") -> dict:
    """Hunting leads: per technique the Sigma rules that cover it (own tag or a sub-technique's), each
    converted to ``target`` (see ``ttpscope.detect.convert``); conversion failures keep their reason.

    Returns ``{target, pipeline, techniques: [{id, name, rules: [{id, title, level, status, path, queries,
    error}]}], unknown, counts}``; rules by level (critical first), then id.
    """
    from ttpscope.detect.convert import convert_rules

    index, notes = rules_by_technique(rules, kb)
    wanted: list[str] = []
    unknown: list[str] = []
    for raw in technique_ids:
        res = resolve_any_release(kb, raw)
        if res.id is None:
            unknown.append(raw)
        elif res.id not in wanted:
            wanted.append(res.id)
    per_tech = {t: technique_coverage(kb, t, index).rules for t in wanted}
    unique = {id(r): r for rs in per_tech.values() for r in rs}
    converted = convert_rules(list(unique.values()), target, pipeline)
    by_obj = dict(zip(unique.keys(), converted.results))
    rank = {lv: i for i, lv in enumerate(LEVELS)}
    techniques = []
    for tid in wanted:
        rows = []
        for r in per_tech[tid]:
            c = by_obj[id(r)]
            rows.append({"id": str(r.id), "title": str(getattr(r, "title", "") or ""), "level": r.level,
                         "status": r.status, "path": str(getattr(r, "path", "") or "") or None,
                         "queries": c.queries, "error": c.error})
        rows.sort(key=lambda x: (rank.get(str(x["level"]).lower(), 9), x["id"]))
        techniques.append({"id": tid, "name": kb.techniques[tid].name, "rules": rows})
    return {"target": converted.target, "pipeline": converted.pipeline, "techniques": techniques,
            "unknown": unknown,
            "counts": {"techniques": len(wanted), "rules": len(unique), "converted": len(converted.queries),
                       "failed": len(converted.failures)},
            "notes": notes, **kb.provenance()}
