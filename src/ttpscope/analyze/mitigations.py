"""Mitigations and detection guidance for a set of techniques (observed, predicted, or a gap list).

``mitigation_plan`` orders ATT&CK mitigations (M-ids) by a greedy weighted set cover: each step takes the
mitigation that covers the most still-uncovered technique weight, so the first k mitigations cover close to
the most that any k could (greedy set cover is within a factor 1 - 1/e of optimal for this objective).
Alongside: the data components to collect for the techniques (legacy ``detects`` links and, in v18 bundles,
the log sources of the analytics), and the v18 detection strategies with their analytics.
"""

from __future__ import annotations

from typing import Iterable

from ttpscope.kb import KnowledgeBase, plain


def _resolve(kb: KnowledgeBase, technique_ids: Iterable[str]) -> tuple[list[str], list[str], list[str]]:
    """(resolved ids in input order, unknown inputs, notes)."""
    ids: list[str] = []
    unknown: list[str] = []
    notes: list[str] = []
    for raw in technique_ids:
        res = kb.resolve_technique(raw)
        if res.id is None:
            unknown.append(raw)
            notes.append(res.note or f"{raw}: unknown technique")
            continue
        if res.note:
            notes.append(res.note)
        if res.id not in ids:
            ids.append(res.id)
    return ids, unknown, notes


def greedy_cover(sets: dict[str, set[str]], weights: dict[str, float]) -> list[tuple[str, list[str]]]:
    """Greedy weighted set cover: [(set key, elements it newly covers)] until nothing more can be covered.

    Ties go to the larger whole set, then to the smaller key, so the order is deterministic.
    """
    uncovered = set().union(*sets.values()) if sets else set()
    order: list[tuple[str, list[str]]] = []
    remaining = dict(sets)
    while uncovered and remaining:
        best = min(remaining, key=lambda k: (-sum(weights.get(e, 1.0) for e in remaining[k] & uncovered),
                                             -len(remaining[k]), k))
        new = remaining.pop(best) & uncovered
        if not new:
            break
        order.append((best, sorted(new)))
        uncovered -= new
    return order


def mitigation_plan(kb: KnowledgeBase, technique_ids: Iterable[str],
                    weights: dict[str, float] | None = None) -> dict:
    """Mitigations, data components and detection strategies for a technique set.

    Returns ``{techniques, unknown, notes, mitigations: [{id, name, covers, new, in_cover, cumulative}],
    uncovered, data_components: [{id, name, data_source, techniques}], detection_strategies: [...]}``.
    ``mitigations`` lists the greedy cover first (``in_cover`` true, ``new`` = techniques it adds), then every
    other relevant mitigation by how many techniques it covers. ``cumulative`` is the weighted share of the
    techniques covered after that step. ``weights`` (technique -> weight) lets a profile's prevalence count.
    """
    ids, unknown, notes = _resolve(kb, technique_ids)
    w = {t: float((weights or {}).get(t, 1.0)) for t in ids}
    total = sum(w.values()) or 1.0
    covers: dict[str, set[str]] = {}
    advice: dict[tuple[str, str], str] = {}
    for tid in ids:
        for mit, text in kb.mitigations_of(tid):
            if mit.deprecated:
                continue
            covers.setdefault(mit.id, set()).add(tid)
            advice[(mit.id, tid)] = plain(text)
    cover = greedy_cover(covers, w)
    rows = []
    done = 0.0
    for mid, new in cover:
        done += sum(w[t] for t in new)
        rows.append({"id": mid, "name": kb.mitigations[mid].name, "covers": sorted(covers[mid]), "new": new,
                     "in_cover": True, "cumulative": round(done / total, 4)})
    in_cover = {mid for mid, _ in cover}
    rest = sorted((m for m in covers if m not in in_cover), key=lambda m: (-len(covers[m]), m))
    for mid in rest:
        rows.append({"id": mid, "name": kb.mitigations[mid].name, "covers": sorted(covers[mid]), "new": [],
                     "in_cover": False, "cumulative": round(done / total, 4)})
    for row in rows:
        row["how"] = {t: advice[(row["id"], t)] for t in row["covers"] if advice.get((row["id"], t))}
    covered = set().union(*covers.values()) if covers else set()
    return {
        "techniques": [{"id": t, "name": kb.techniques[t].name, "weight": w[t]} for t in ids],
        "unknown": unknown,
        "notes": notes,
        "mitigations": rows,
        "uncovered": [t for t in ids if t not in covered],
        "data_components": data_components_for(kb, ids),
        "detection_strategies": detection_strategies_for(kb, ids),
        **kb.provenance(),
    }


def data_components_for(kb: KnowledgeBase, technique_ids: Iterable[str]) -> list[dict]:
    """Data components that detect the techniques, most techniques first: what to collect."""
    by_dc: dict[str, list[str]] = {}
    for tid in technique_ids:
        for dc in kb.data_components_of(tid):
            by_dc.setdefault(dc.id, []).append(tid)
    out = []
    for dcid, tids in by_dc.items():
        dc = kb.data_components[dcid]
        source = kb.data_sources[dc.data_source].name if dc.data_source in kb.data_sources else None
        out.append({"id": dcid, "name": dc.name, "data_source": source, "techniques": sorted(set(tids))})
    return sorted(out, key=lambda d: (-len(d["techniques"]), d["name"], d["id"]))


def detection_strategies_for(kb: KnowledgeBase, technique_ids: Iterable[str]) -> list[dict]:
    """v18 detection strategies of the techniques with their analytics' platforms and log sources."""
    out: dict[str, dict] = {}
    for tid in technique_ids:
        for det in kb.detection_strategies_of(tid):
            entry = out.setdefault(det.id, {"id": det.id, "name": det.name, "techniques": [], "analytics": [
                {"id": a, "name": kb.analytics[a].name, "platforms": kb.analytics[a].platforms,
                 "log_sources": kb.analytics[a].log_sources, "description": plain(kb.analytics[a].description)}
                for a in det.analytics if a in kb.analytics]})
            entry["techniques"].append(tid)
    return sorted(out.values(), key=lambda d: (-len(d["techniques"]), d["id"]))
