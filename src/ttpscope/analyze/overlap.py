"""Overlap: how alike cases, ATT&CK campaigns and groups are, what they share, and how they cluster.

Each item becomes a weighted technique vector: a technique's weight is its rarity across group profiles
(``idf = log((1 + N) / (1 + df)) + 1``) times the strength of the item's use of it (observation confidence
for a case; 1 for a campaign's or group's own ``uses`` link, ``software_weight`` for a technique that only
comes with the group's software). A sub-technique also lends its parent ``parent_credit`` of its weight, so
two cases using different sub-techniques of T1059 still overlap a little. Similarity is the weighted
Jaccard ``sum(min) / sum(max)`` of two vectors (1 = identical, 0 = nothing shared). Clustering is
average-linkage hierarchical clustering on ``1 - similarity``; the output is ready for a heat-map (matrix)
or a dendrogram (scipy's ``dendrogram`` coordinates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Union

import numpy as np

from ttpscope.analyze._inputs import resolve_input
from ttpscope.analyze._profiles import DIRECT, default_profiles
from ttpscope.errors import NotFoundError
from ttpscope.kb.base import KnowledgeBase
from ttpscope.model import Case

OverlapItem = Union[Case, str, tuple[str, Iterable[str]], dict]


@dataclass
class Item:
    """One thing compared: a case, a campaign, a group or a named technique set."""

    key: str  # unique label in the result
    kind: str  # case | campaign | group | set
    id: str | None
    name: str
    vector: dict[str, float]  # technique id -> weight (rarity x strength, with parent roll-up)
    techniques: list[str]  # the item's own techniques
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "id": self.id, "name": self.name,
                "techniques": len(self.techniques), "notes": self.notes}


def rarity(kb: KnowledgeBase) -> dict[str, float]:
    """idf of every live technique over the KB's group profiles (all paths)."""
    _, profiles = default_profiles(kb)
    n = len(profiles.group)
    df: dict[str, int] = {}
    for prof in profiles.group.values():
        for tid in prof:
            df[tid] = df.get(tid, 0) + 1
    return {t.id: math.log((1 + n) / (1 + df.get(t.id, 0))) + 1.0 for t in kb.live_techniques()}


def _vector(kb: KnowledgeBase, strength: dict[str, float], idf: dict[str, float],
            parent_credit: float) -> dict[str, float]:
    vec: dict[str, float] = {}
    for tid, s in strength.items():
        if tid not in idf:
            continue
        vec[tid] = max(vec.get(tid, 0.0), s * idf[tid])
        parent = kb.techniques[tid].parent
        if parent and parent_credit > 0 and parent in idf:
            vec[parent] = max(vec.get(parent, 0.0), parent_credit * s * idf[parent])
    return vec


def to_item(obj: OverlapItem, kb: KnowledgeBase, idf: dict[str, float], software_weight: float = 0.5,
            parent_credit: float = 0.5) -> Item:
    """Resolve one overlap input: a Case, a campaign or group (id or name), or (name, technique ids)."""
    _, profiles = default_profiles(kb)
    if isinstance(obj, Case):
        res = resolve_input(obj, kb)
        return Item(obj.name, "case", obj.id, obj.name, _vector(kb, res.weights, idf, parent_credit),
                    res.techniques, res.notes + [f"unknown technique {u}" for u in res.unresolved])
    if isinstance(obj, dict):
        obj = (obj.get("name") or "set", obj.get("techniques") or [])
    if isinstance(obj, tuple):
        name, ids = obj
        res = resolve_input(list(ids), kb)
        return Item(str(name), "set", None, str(name), _vector(kb, res.weights, idf, parent_credit),
                    res.techniques, res.notes + [f"unknown technique {u}" for u in res.unresolved])
    if not isinstance(obj, str):
        raise TypeError(f"cannot compare a {type(obj).__name__}")
    try:
        camp = kb.campaign(obj)
    except NotFoundError:
        camp = None
    if camp is not None and not camp.deprecated:
        strength = {t: 1.0 if any(v == DIRECT for v, _ in paths) else software_weight
                    for t, paths in profiles.campaign.get(camp.id, {}).items()}
        return Item(camp.id, "campaign", camp.id, camp.name, _vector(kb, strength, idf, parent_credit),
                    sorted(t for t, s in strength.items() if s == 1.0))
    res = kb.resolve_group(obj)
    if res.id is None:
        raise NotFoundError(f"'{obj}' is neither a campaign nor a group in {kb.label}")
    strength = {t: 1.0 if any(v != "software" for v, _ in paths) else software_weight
                for t, paths in profiles.group.get(res.id, {}).items()}
    return Item(res.id, "group", res.id, kb.name_of(res.id), _vector(kb, strength, idf, parent_credit),
                sorted(t for t, s in strength.items() if s == 1.0), [res.note] if res.note else [])


def similarity(a: dict[str, float], b: dict[str, float]) -> float:
    """Weighted Jaccard of two technique vectors."""
    keys = a.keys() | b.keys()
    top = sum(min(a.get(k, 0.0), b.get(k, 0.0)) for k in keys)
    bottom = sum(max(a.get(k, 0.0), b.get(k, 0.0)) for k in keys)
    return top / bottom if bottom else 0.0


@dataclass
class Overlap:
    """The answer of ``overlap``: items, similarity matrix, pairs with shared/distinguishing techniques,
    and a clustering."""

    items: list[dict[str, Any]]
    matrix: list[list[float]]
    pairs: list[dict[str, Any]]
    clustering: dict[str, Any]
    provenance: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _ranked(ids: Iterable[str], idf: dict[str, float], kb: KnowledgeBase, limit: int) -> list[dict[str, Any]]:
    rows = sorted(ids, key=lambda t: (-idf.get(t, 0.0), t))
    return [{"technique_id": t, "name": kb.name_of(t), "rarity": round(idf.get(t, 0.0), 3)} for t in rows[:limit]]


def cluster(labels: list[str], matrix: np.ndarray, threshold: float = 0.75) -> dict[str, Any]:
    """Average-linkage clustering on distance ``1 - similarity``; flat clusters cut at ``threshold``.

    Returns the linkage rows, dendrogram coordinates (icoord/dcoord, leaf order) and the flat clusters
    (lists of labels, largest first).
    """
    n = len(labels)
    if n < 2:
        return {"method": "average", "threshold": threshold, "linkage": [], "dendrogram": None,
                "clusters": [labels] if labels else []}
    from scipy.cluster.hierarchy import dendrogram, fcluster, linkage
    from scipy.spatial.distance import squareform

    dist = np.clip(1.0 - matrix, 0.0, 1.0)
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2
    z = linkage(squareform(dist, checks=False), method="average")
    flat = fcluster(z, t=threshold, criterion="distance")
    groups: dict[int, list[str]] = {}
    for label, c in zip(labels, flat):
        groups.setdefault(int(c), []).append(label)
    clusters = sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g))
    d = dendrogram(z, labels=labels, no_plot=True)
    return {
        "method": "average", "distance": "1 - weighted Jaccard", "threshold": threshold,
        "linkage": [[int(r[0]), int(r[1]), round(float(r[2]), 4), int(r[3])] for r in z],
        "dendrogram": {"leaves": d["ivl"], "icoord": [[round(x, 3) for x in r] for r in d["icoord"]],
                       "dcoord": [[round(x, 4) for x in r] for r in d["dcoord"]]},
        "clusters": clusters,
    }


def overlap(items: Iterable[OverlapItem], kb: KnowledgeBase, *, threshold: float = 0.75, limit: int = 10,
            software_weight: float = 0.5, parent_credit: float = 0.5) -> Overlap:
    """Pairwise similarity of cases, campaigns, groups or named technique sets, with clustering.

    ``items``: Cases, campaign or group ids/names, ``(name, technique ids)`` pairs or
    ``{"name", "techniques"}`` dicts. Each pair lists its shared techniques and those only one side has
    (rarest first, ``limit`` each). Pairs are sorted by similarity, then keys.
    """
    idf = rarity(kb)
    resolved: list[Item] = []
    keys: set[str] = set()
    for obj in items:
        item = to_item(obj, kb, idf, software_weight, parent_credit)
        base, n = item.key, 2
        while item.key in keys:  # two cases with one name stay apart
            item.key = f"{base} ({n})"
            n += 1
        keys.add(item.key)
        resolved.append(item)
    n = len(resolved)
    matrix = np.eye(n)
    pairs = []
    for i in range(n):
        for j in range(i + 1, n):
            a, b = resolved[i], resolved[j]
            s = similarity(a.vector, b.vector)
            matrix[i, j] = matrix[j, i] = s
            ta, tb = set(a.techniques), set(b.techniques)
            pairs.append({"a": a.key, "b": b.key, "similarity": round(s, 4),
                          "shared": _ranked(ta & tb, idf, kb, limit),
                          "shared_count": len(ta & tb),
                          "only_a": _ranked(ta - tb, idf, kb, limit),
                          "only_b": _ranked(tb - ta, idf, kb, limit)})
    pairs.sort(key=lambda p: (-p["similarity"], p["a"], p["b"]))
    labels = [it.key for it in resolved]
    return Overlap(items=[it.describe() for it in resolved],
                   matrix=[[round(float(x), 4) for x in row] for row in matrix],
                   pairs=pairs, clustering=cluster(labels, matrix, threshold), provenance=kb.provenance())
