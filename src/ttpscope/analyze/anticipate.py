"""Anticipation: given observed techniques, the techniques most likely to come next, and what to watch.

Learned from co-occurrence across the technique profiles ("baskets") of ATT&CK groups, campaigns and
software, the way CTID's Technique Inference Engine learns from reports. Two recommenders are blended,
each min-max scaled over the candidate techniques:

* neighbours (weight ``1 - ease_weight``): the ``neighbours`` baskets most like the observed set
  (rarity-weighted cosine) vote for their techniques with weight ``cosine ** sharpness``: actors that did
  what this one did, and what else they did. Measured on ``bench/anticipation_bench.py`` this is the
  strongest single signal (a sharp vote of a few close actors beats averaging over all of them).
* EASE (Steck 2019, weight ``ease_weight``): a closed-form item-item linear model, ``B = I - P / diag(P)``
  with ``P = (X'X + l2 I)^-1``: which techniques predict which, discounting those that merely co-occur
  with everything.

Techniques whose tactics lie later in the lifecycle than the furthest tactic reached get ``later_bias``
more weight (``1 + later_bias``), those only earlier than every reached tactic ``earlier_penalty`` less:
after credential access, lateral movement is the next question, initial access is history. Observed
sub-techniques can also count their parent (``parent_credit``; 0 by default: it did not help on the
benchmark).

Each prediction carries why (the profiles that vote for it and the observed techniques that predict it)
and what to watch: the data components and detection strategies that see it and the mitigations that
counter it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from ttpscope.analyze._inputs import TechniqueInput, resolve_input
from ttpscope.analyze._profiles import Profiles, default_profiles
from ttpscope.kb.base import KnowledgeBase


@dataclass(frozen=True)
class AnticipationParams:
    """Weights of the anticipation score (chosen on folds 1-2 of ``bench/anticipation_bench.py``)."""

    neighbours: int = 50  # baskets that vote
    sharpness: float = 7.0  # vote weight = cosine ** sharpness
    ease_weight: float = 0.5  # share of EASE in the blend (rest: neighbours)
    l2: float = 100.0  # EASE ridge
    parent_credit: float = 0.0  # an observed sub-technique counts its parent this much
    later_bias: float = 0.2  # boost for techniques with a tactic after the furthest reached
    earlier_penalty: float = 0.2  # cut for techniques whose tactics all precede the earliest reached
    kinds: tuple[str, ...] = ("group", "campaign", "software")  # which profiles are baskets


def baskets_of(profiles: Profiles, kinds: Iterable[str]) -> dict[str, set[str]]:
    """Profiles as baskets of technique ids, keyed by entity id."""
    out: dict[str, set[str]] = {}
    for kind in kinds:
        for eid, prof in profiles.of_kind(kind).items():
            if prof:
                out[eid] = set(prof)
    return out


class AnticipationModel:
    """Neighbour vote + EASE over technique baskets; ``scores`` ranks every technique for an observed set."""

    def __init__(self, kb: KnowledgeBase, baskets: Mapping[str, set[str]], params: AnticipationParams | None = None):
        self.kb = kb
        self.params = params or AnticipationParams()
        self.items = sorted(t.id for t in kb.live_techniques())
        self.index = {t: i for i, t in enumerate(self.items)}
        self.basket_ids = sorted(baskets)
        X = np.zeros((len(self.basket_ids), len(self.items)), dtype=np.float64)
        for r, bid in enumerate(self.basket_ids):
            for t in baskets[bid]:
                j = self.index.get(t)
                if j is not None:
                    X[r, j] = 1.0
        self.X = X
        self.popularity = X.sum(axis=0)
        self.idf = np.log((1.0 + len(self.basket_ids)) / (1.0 + self.popularity))
        weighted = X * self.idf
        self.basket_vectors = weighted / np.maximum(np.linalg.norm(weighted, axis=1, keepdims=True), 1e-12)
        G = X.T @ X
        P = np.linalg.inv(G + self.params.l2 * np.eye(len(self.items)))
        B = -P / np.diag(P)[None, :]
        np.fill_diagonal(B, 0.0)
        self.ease = B
        order = {s: i for i, s in enumerate(kb.tactic_order())}
        self.tactic_pos = [sorted(order[s] for s in kb.techniques[t].tactics if s in order) for t in self.items]

    def query_vector(self, observed: Mapping[str, float]) -> np.ndarray:
        x = np.zeros(len(self.items))
        for t, c in observed.items():
            j = self.index.get(t)
            if j is None:
                continue
            x[j] = max(x[j], c)
            parent = self.kb.techniques[t].parent
            if parent in self.index and self.params.parent_credit > 0:
                k = self.index[parent]
                x[k] = max(x[k], self.params.parent_credit * c)
        return x

    def neighbours(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row indexes of the voting baskets (closest first, ties by id) and their vote weights."""
        q = x * self.idf
        n = np.linalg.norm(q)
        if n == 0:
            return np.zeros(0, dtype=int), np.zeros(0)
        sims = self.basket_vectors @ (q / n)
        top = np.lexsort((np.arange(len(sims)), -sims))[:self.params.neighbours]
        return top, np.clip(sims[top], 0.0, None) ** self.params.sharpness

    def scores(self, observed: Mapping[str, float]) -> np.ndarray:
        """A score for every technique in ``self.items``; observed ones get -inf."""
        p = self.params
        x = self.query_vector(observed)
        mask = np.array([t in observed for t in self.items])
        if not x.any():
            s = self.popularity.astype(float).copy()
        else:
            top, votes = self.neighbours(x)
            s = (1 - p.ease_weight) * _scale(votes @ self.X[top], mask) + p.ease_weight * _scale(x @ self.ease, mask)
        s = s * self.tactic_factor(observed)
        s[mask] = -np.inf
        return s

    def tactic_factor(self, observed: Iterable[str]) -> np.ndarray:
        p = self.params
        reached = sorted({pos for t in observed if t in self.index for pos in self.tactic_pos[self.index[t]]})
        f = np.ones(len(self.items))
        if not reached or (p.later_bias == 0 and p.earlier_penalty == 0):
            return f
        first, last = reached[0], reached[-1]
        for j, pos in enumerate(self.tactic_pos):
            if pos and pos[-1] > last:
                f[j] += p.later_bias
            elif pos and pos[-1] < first:
                f[j] -= p.earlier_penalty
        return f


def _scale(v: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Min-max over the candidate (unobserved) techniques."""
    cand = v[~mask]
    if cand.size == 0:
        return v
    lo, hi = float(cand.min()), float(cand.max())
    return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)


@dataclass
class Prediction:
    technique_id: str
    name: str
    tactics: list[str]
    score: float
    later_stage: bool  # has a tactic after the furthest reached
    because_of: list[dict[str, Any]]  # observed techniques that predict it (EASE weight)
    profiles: list[dict[str, Any]]  # closest groups / campaigns / software that vote for it
    watch: dict[str, list[dict[str, Any]]]  # data_components, detection_strategies, mitigations

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Anticipation:
    observed: list[str]
    reached_tactics: list[str]
    predictions: list[Prediction]
    notes: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["predictions"] = [p.to_dict() for p in self.predictions]
        return d


_models: dict[tuple[int, AnticipationParams], tuple[KnowledgeBase, AnticipationModel]] = {}


def model_for(kb: KnowledgeBase, params: AnticipationParams | None = None) -> AnticipationModel:
    """The model over all of ``kb``'s profiles (memoised per KB and parameters)."""
    params = params or AnticipationParams()
    key = (id(kb), params)
    hit = _models.get(key)
    if hit is None or hit[0] is not kb:
        _, profiles = default_profiles(kb)
        hit = (kb, AnticipationModel(kb, baskets_of(profiles, params.kinds), params))
        _models[key] = hit
    return hit[1]


def watch_list(kb: KnowledgeBase, tid: str) -> dict[str, list[dict[str, Any]]]:
    """What sees a technique (data components, detection strategies) and what counters it (mitigations)."""
    comps = []
    for dc in kb.data_components_of(tid):
        ds = kb.data_sources.get(dc.data_source) if dc.data_source else None
        comps.append({"id": dc.id, "name": dc.name, "data_source": ds.name if ds else None})
    return {
        "data_components": sorted(comps, key=lambda d: (d["data_source"] or "", d["name"])),
        "detection_strategies": [{"id": d.id, "name": d.name} for d in kb.detection_strategies_of(tid)],
        "mitigations": [{"id": m.id, "name": m.name} for m, _ in kb.mitigations_of(tid)],
    }


def anticipate(techniques: TechniqueInput, kb: KnowledgeBase, top: int = 10, *,
               params: AnticipationParams | None = None, model: AnticipationModel | None = None,
               explain: int = 3) -> Anticipation:
    """The ``top`` techniques most likely to accompany or follow the observed ones, best first.

    ``techniques``: a Case, Observations or technique ids. Each prediction names the observed techniques
    and the ``explain`` profiles (groups, campaigns, software) that drive it, and what to watch for it.
    """
    res = resolve_input(techniques, kb)
    model = model or model_for(kb, params)
    s = model.scores(res.weights)
    order = sorted((j for j in range(len(model.items)) if np.isfinite(s[j])),
                   key=lambda j: (-s[j], model.items[j]))[:top]
    obs_idx = [model.index[t] for t in res.techniques if t in model.index]
    reached_pos = sorted({p for j in obs_idx for p in model.tactic_pos[j]})
    tactic_names = kb.tactic_order()
    top_rows, votes = model.neighbours(model.query_vector(res.weights))
    preds = []
    for j in order:
        tid = model.items[j]
        because = sorted(((model.ease[k, j], model.items[k]) for k in obs_idx if model.ease[k, j] > 0),
                         key=lambda x: (-x[0], x[1]))[:explain]
        voters = [(v, r) for r, v in zip(top_rows, votes) if model.X[r, j] > 0 and v > 0][:explain]
        pos = model.tactic_pos[j]
        preds.append(Prediction(
            technique_id=tid, name=kb.name_of(tid), tactics=list(kb.techniques[tid].tactics),
            score=round(float(s[j]), 4),
            later_stage=bool(reached_pos and pos and pos[-1] > reached_pos[-1]),
            because_of=[{"technique_id": t, "name": kb.name_of(t), "weight": round(float(w), 4)} for w, t in because],
            profiles=[{"id": model.basket_ids[r], "name": kb.name_of(model.basket_ids[r]),
                       "kind": _kind(model.basket_ids[r]),
                       "similarity": round(float(v) ** (1.0 / model.params.sharpness), 4)} for v, r in voters],
            watch=watch_list(kb, tid)))
    return Anticipation(
        observed=res.techniques, reached_tactics=[tactic_names[p] for p in reached_pos], predictions=preds,
        notes=res.notes, unresolved=res.unresolved, params=asdict(model.params), provenance=kb.provenance())


def _kind(eid: str) -> str:
    return {"G": "group", "C": "campaign", "S": "software"}.get(eid[:1], "other")
