"""Rank CVEs (e.g. a scanner's findings) by the techniques they enable, weighted by who uses them.

A CVE's score is the sum over its mapped techniques of ``TYPE_WEIGHT[mapping type] * weight(technique)``,
where a technique's weight comes from a threat profile: the summed weight of the profile's groups that use
it or any of its sub-techniques (without a profile: every group, so the weight is the technique's
prevalence, the share of ATT&CK groups using it). Exploitation and primary impact count fully, secondary
impact and uncategorized links half: they are what an attacker *may* do next, not what the flaw gives.
"""

from __future__ import annotations

from typing import Iterable

from ttpscope.kb import KnowledgeBase
from ttpscope.kb.vulns import VulnMappings, normalize_cve, resolve_mapping_techniques

from ttpscope.analyze.crosswalk import resolve_any_release
from ttpscope.analyze.profile import ThreatProfile, profile_all_groups

TYPE_WEIGHT = {"exploitation_technique": 1.0, "primary_impact": 1.0, "secondary_impact": 0.5, "uncategorized": 0.5}


def _family_actors(kb: KnowledgeBase, profile: ThreatProfile, tid: str) -> list[str]:
    actors = set(profile.actors.get(tid, ()))
    for sub in kb.techniques[tid].subtechniques:
        actors.update(profile.actors.get(sub, ()))
    return sorted(actors)


def rank_cves(kb: KnowledgeBase, mappings: VulnMappings, cves: Iterable[str],
              profile: ThreatProfile | None = None) -> dict:
    """``{ranked: [{cve, score, description, actors, techniques: [{id, name, mapping_type, weight, actors}]}],
    unmapped: [cve], profile, counts, notes}``; ranked by score, then CVE id."""
    profile = profile or profile_all_groups(kb)
    wanted = list(dict.fromkeys(normalize_cve(c) for c in cves))
    ranked, unmapped, notes = [], [], []
    for cve in wanted:
        maps, n = resolve_mapping_techniques(mappings.mappings_for_cve(cve), kb, resolve_any_release)
        notes.extend(n)
        if not maps:
            unmapped.append(cve)
            continue
        best: dict[str, dict] = {}
        for m in maps:
            actors = _family_actors(kb, profile, m.technique_id)
            w = round(sum(profile.group_weights.get(g, 1.0) for g in actors), 6)
            row = {"id": m.technique_id, "name": m.technique_name, "mapping_type": m.mapping_type,
                   "weight": w, "actors": actors}
            old = best.get(m.technique_id)
            if old is None or TYPE_WEIGHT.get(m.mapping_type, 0.5) > TYPE_WEIGHT.get(old["mapping_type"], 0.5):
                best[m.technique_id] = row
        score = sum(TYPE_WEIGHT.get(r["mapping_type"], 0.5) * r["weight"] for r in best.values())
        techniques = sorted(best.values(), key=lambda r: (-TYPE_WEIGHT.get(r["mapping_type"], 0.5) * r["weight"],
                                                           r["id"]))
        ranked.append({"cve": cve, "score": round(score, 4), "description": mappings.describe(cve),
                       "actors": sorted({g for r in techniques for g in r["actors"]}),
                       "techniques": techniques})
    ranked.sort(key=lambda r: (-r["score"], r["cve"]))
    return {"ranked": ranked, "unmapped": unmapped, "profile": profile.to_dict(kb),
            "counts": {"cves": len(wanted), "mapped": len(ranked), "unmapped": len(unmapped)},
            "type_weight": TYPE_WEIGHT, "notes": sorted(set(notes)), **kb.provenance()}
