"""Attribution: which known groups (and, separately, which ATT&CK campaigns) best explain observed techniques.

Method (a log-likelihood ratio with rarity built in). For each candidate ``e`` and observed technique ``q``:

* ``m_e(q)`` in [0, 1] is how well ``e``'s profile covers ``q``: the path weight when ``e`` uses ``q``
  itself (direct ``uses`` 1.0, via one of its campaigns ``campaign``, via its software ``software``);
  partial credit ``parent_credit`` when ``e`` is known for the parent technique or a sub-technique of ``q``
  (sub-technique roll-up), ``sibling_credit`` for a sibling sub-technique.
* ``bg(q)`` is the average coverage of ``q`` over all candidates: how common the technique is.
* the score is ``sum_q c_q * log((lam * m_e(q) + (1 - lam) * bg(q)) / bg(q))`` where ``c_q`` is the
  observation confidence. A technique every group uses adds almost nothing (``bg`` near 1); a rare one the
  candidate is known for adds a lot; a technique the candidate is not known for costs ``log(1 - lam)``,
  whatever it is, so a few noise techniques lower every candidate alike.
* where observations carry report text, ``text_weight`` times the best TF-IDF cosine between that text and
  the candidate's own procedure examples for the technique is added (names of groups and campaigns are
  masked so that a sentence naming its actor does not decide the answer).

``confidence`` is a softmax of the scores at temperature ``temperature``, i.e. a posterior over the known
candidates, fitted on the leak-free benchmark (``bench/attribution_bench.py``) so that, across benchmark
queries, a top candidate with confidence p is right about p of the time. Below ``min_confidence`` for the
top group, or when the observed techniques carry less than ``min_information`` nats of rarity in all
(``sum_q -log bg(q)``: a few common techniques), the answer is flagged ``insufficient_evidence``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ttpscope.analyze._inputs import ResolvedInput, TechniqueInput, resolve_input
from ttpscope.analyze._profiles import CAMPAIGN, DIRECT, SOFTWARE, Corpus, Path, Profiles, default_profiles
from ttpscope.kb.base import KnowledgeBase


@dataclass(frozen=True)
class AttributionParams:
    """Tunable weights of the attribution score (defaults chosen on the benchmark, see module doc)."""

    direct: float = 1.0  # weight of a technique the group uses itself
    campaign: float = 1.0  # ... that one of its attributed campaigns used
    software: float = 0.5  # ... that one of its software uses
    parent_credit: float = 0.5  # observed technique matched through parent / sub-technique
    sibling_credit: float = 0.25  # observed sub-technique matched through a sibling sub-technique
    lam: float = 0.9  # probability mass on the candidate's profile (rest: background)
    text_weight: float = 1.0  # bonus per technique for procedure-text similarity (0..1 cosine)
    temperature: float = 1.0  # softmax temperature for confidence
    min_confidence: float = 0.2  # top group confidence below this: insufficient evidence
    min_information: float = 4.0  # total rarity (nats) of the observed techniques below this: insufficient


@dataclass
class Match:
    """One observed technique a candidate explains."""

    technique_id: str
    name: str
    contribution: float  # its share of the score
    match: str  # exact | parent | subtechnique | sibling
    matched_id: str  # the profile technique that matched
    via: list[str]  # direct, software:S0154, campaign:C0024
    text_similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    """A ranked group or campaign."""

    id: str
    kind: str  # group | campaign
    name: str
    rank: int
    score: float
    confidence: float
    explained: list[Match]
    missing: list[dict[str, Any]]  # techniques it is known for that were not observed: hunting leads
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        key = "group_id" if self.kind == "group" else "campaign_id"
        return {
            key: self.id, "id": self.id, "kind": self.kind, "name": self.name, "rank": self.rank,
            "score": round(self.score, 4), "confidence": round(self.confidence, 4),
            "explained": [m.technique_id for m in self.explained],
            "missing": [m["technique_id"] for m in self.missing],
            "explanation": [m.to_dict() for m in self.explained],
            "hunting_leads": self.missing,
            "context": self.context,
        }


@dataclass
class Attribution:
    """The answer of ``attribute``: ranked groups, ranked campaigns, and how much to trust them."""

    groups: list[Candidate]
    campaigns: list[Candidate]
    observed: list[str]
    unexplained: list[str]  # observed techniques the top group does not explain
    information: float  # total rarity of the observed techniques, nats
    insufficient_evidence: bool
    verdict: str
    notes: list[str]
    unresolved: list[str]
    params: dict[str, Any]
    provenance: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "insufficient_evidence": self.insufficient_evidence,
            "information": round(self.information, 3),
            "observed": self.observed,
            "unexplained": self.unexplained,
            "groups": [c.to_dict() for c in self.groups],
            "campaigns": [c.to_dict() for c in self.campaigns],
            "notes": self.notes,
            "unresolved": self.unresolved,
            "params": self.params,
            "provenance": self.provenance,
        }


class TechniqueStructure:
    """Parent / sub-technique / sibling relations over a fixed technique index."""

    def __init__(self, kb: KnowledgeBase, techniques: list[str]):
        self.ids = techniques
        self.index = {t: i for i, t in enumerate(techniques)}
        self.parent: dict[str, str] = {}
        self.children: dict[str, list[str]] = {}
        for t in techniques:
            tech = kb.techniques[t]
            if tech.is_subtechnique and tech.parent in self.index:
                self.parent[t] = tech.parent
                self.children.setdefault(tech.parent, []).append(t)

    def siblings(self, t: str) -> list[str]:
        p = self.parent.get(t)
        return [s for s in self.children.get(p, []) if s != t] if p else []


_MASK_LINK = re.compile(r"\[([^\]]+)\]\(https?://attack\.mitre\.org/(groups|campaigns)/[^)]*\)")
_ANY_LINK = re.compile(r"\[([^\]]+)\]\((?:https?://[^)]*)\)")
_CITATION = re.compile(r"\(Citation:[^)]*\)")


def mask_actor_names(text: str) -> str:
    """Procedure markdown -> text with group and campaign names masked (they would give the answer away)."""
    text = _MASK_LINK.sub(" actor ", text or "")
    text = _ANY_LINK.sub(r"\1", text)
    return _CITATION.sub(" ", text)


class AttributionModel:
    """Scores candidates (groups or campaigns) against observed techniques. Built once per profile set."""

    def __init__(self, kb: KnowledgeBase, profiles: dict[str, dict[str, list[Path]]],
                 params: AttributionParams | None = None, kind: str = "group",
                 texts: dict[tuple[str, str], list[str]] | None = None):
        self.kb = kb
        self.kind = kind
        self.params = params or AttributionParams()
        self.ids = sorted(e for e, prof in profiles.items() if prof)
        self.profiles = profiles
        self.structure = TechniqueStructure(kb, sorted(t.id for t in kb.live_techniques()))
        p = self.params
        path_weight = {DIRECT: p.direct, CAMPAIGN: p.campaign, SOFTWARE: p.software}
        self.W = np.zeros((len(self.ids), len(self.structure.ids)), dtype=np.float64)
        for i, eid in enumerate(self.ids):
            for tid, paths in profiles[eid].items():
                j = self.structure.index.get(tid)
                if j is not None:
                    self.W[i, j] = max(path_weight[v] for v, _ in paths)
        self._coverage: dict[str, np.ndarray] = {}
        self._texts = texts
        self._text_index = None
        self._sim_cache: dict[tuple[str, tuple[str, ...]], np.ndarray | None] = {}

    # -------------------------------------------------------------- coverage
    def coverage(self, q: str) -> np.ndarray:
        """m_e(q) for every candidate: best of exact, parent/sub-technique and sibling credit."""
        hit = self._coverage.get(q)
        if hit is not None:
            return hit
        st, W, p = self.structure, self.W, self.params
        j = st.index.get(q)
        if j is None:
            m = np.zeros(len(self.ids))
        else:
            m = W[:, j].copy()
            related = []
            if q in st.parent:
                related.append((p.parent_credit, [st.parent[q]]))
                related.append((p.sibling_credit, st.siblings(q)))
            if q in st.children:
                related.append((p.parent_credit, st.children[q]))
            for credit, tids in related:
                if tids and credit > 0:
                    cols = [st.index[t] for t in tids]
                    m = np.maximum(m, credit * W[:, cols].max(axis=1))
        self._coverage[q] = m
        return m

    def background(self, q: str) -> float:
        m = self.coverage(q)
        return (float(m.sum()) + 0.5) / (len(self.ids) + 1.0)

    def information(self, weights: dict[str, float]) -> float:
        """Total rarity of a technique set, nats: how much it can say about who did it."""
        return sum(c * -math.log(self.background(q)) for q, c in weights.items())

    # -------------------------------------------------------------- text
    def _text_similarity(self, q: str, texts: list[str]) -> np.ndarray | None:
        """Best cosine between evidence texts for q and each candidate's own procedure texts for q."""
        if not self._texts or not texts:
            return None
        key = (q, tuple(texts))
        if key in self._sim_cache:
            return self._sim_cache[key]
        if self._text_index is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            wanted = set(self.ids)
            keys = sorted(k for k in self._texts if k[0] in wanted)
            docs = [mask_actor_names(" ".join(self._texts[k])) for k in keys]
            vec = TfidfVectorizer(sublinear_tf=True, stop_words="english")
            matrix = vec.fit_transform(docs) if docs else None
            rows: dict[str, list[int]] = {}
            for r, k in enumerate(keys):
                rows.setdefault(k[1], []).append(r)
            self._text_index = (vec, keys, matrix, rows)
        vec, keys, matrix, rows_of = self._text_index
        rows = rows_of.get(q)
        out = None
        if matrix is not None and rows:
            query = vec.transform([mask_actor_names(" ".join(texts))])
            sims = (matrix[rows] @ query.T).toarray().ravel()
            out = np.zeros(len(self.ids))
            pos = {e: i for i, e in enumerate(self.ids)}
            for r, sim in zip(rows, sims):
                i = pos[keys[r][0]]
                out[i] = max(out[i], float(sim))
        self._sim_cache[key] = out
        return out

    # -------------------------------------------------------------- scoring
    def term(self, q: str) -> np.ndarray:
        """Per-candidate score contribution of one observed technique at confidence 1."""
        lam = self.params.lam
        bg = self.background(q)
        return np.log((lam * self.coverage(q) + (1.0 - lam) * bg) / bg)

    def scores(self, weights: dict[str, float], texts: dict[str, list[str]] | None = None) -> np.ndarray:
        total = np.zeros(len(self.ids))
        for q, c in weights.items():
            total += c * self.term(q)
            if texts and self.params.text_weight > 0 and q in texts:
                sim = self._text_similarity(q, texts[q])
                if sim is not None:
                    total += c * self.params.text_weight * sim
        return total

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        if len(scores) == 0:
            return scores
        z = scores / max(self.params.temperature, 1e-9)
        z = np.exp(z - z.max())
        return z / z.sum()

    def rank(self, weights: dict[str, float], texts: dict[str, list[str]] | None = None
             ) -> list[tuple[str, float, float]]:
        """(candidate id, score, confidence), best first; ties by id."""
        s = self.scores(weights, texts)
        conf = self.confidence(s)
        order = sorted(range(len(self.ids)), key=lambda i: (-s[i], self.ids[i]))
        return [(self.ids[i], float(s[i]), float(conf[i])) for i in order]

    # -------------------------------------------------------------- explanation
    def explain(self, eid: str, weights: dict[str, float], texts: dict[str, list[str]] | None = None,
                leads: int = 10) -> tuple[list[Match], list[dict[str, Any]]]:
        """Observed techniques the candidate explains (with contributions), and its unobserved ones."""
        i = self.ids.index(eid)
        prof = self.profiles[eid]
        st, p = self.structure, self.params
        explained: list[Match] = []
        for q, c in sorted(weights.items()):
            m = self.coverage(q)[i]
            if m <= 0:
                continue
            matched, how = q, "exact"
            if q not in prof:
                options = []
                if q in st.parent:
                    options += [(p.parent_credit, st.parent[q], "parent")]
                    options += [(p.sibling_credit, s, "sibling") for s in st.siblings(q)]
                options += [(p.parent_credit, s, "subtechnique") for s in st.children.get(q, [])]
                best = max((o for o in options if o[1] in prof),
                           key=lambda o: (o[0] * self.W[i, st.index[o[1]]], o[1]), default=None)
                if best is None:
                    continue
                matched, how = best[1], best[2]
            sim = None
            if texts and q in texts:
                arr = self._text_similarity(q, texts[q])
                sim = None if arr is None else round(float(arr[i]), 4)
            contribution = c * float(self.term(q)[i]) + (c * p.text_weight * sim if sim else 0.0)
            explained.append(Match(q, self.kb.name_of(q), round(contribution, 4), how, matched,
                                   sorted(_via_label(v) for v in prof[matched]), sim))
        explained.sort(key=lambda m: (-m.contribution, m.technique_id))
        observed = set(weights)
        near = set(observed)
        for q in observed:
            near.update(st.children.get(q, []))
            if q in st.parent:
                near.add(st.parent[q])
        missing = []
        for tid, paths in prof.items():
            if tid in near or tid not in st.index:
                continue
            rarity = -math.log(self.background(tid))
            value = self.W[i, st.index[tid]] * rarity
            missing.append({"technique_id": tid, "name": self.kb.name_of(tid), "weight": round(value, 4),
                            "via": sorted(_via_label(v) for v in paths)})
        missing.sort(key=lambda d: (-d["weight"], d["technique_id"]))
        return explained, missing[:leads]


def _via_label(path: Path) -> str:
    via, via_id = path
    return via if via_id is None else f"{via}:{via_id}"


def group_context(kb: KnowledgeBase, gid: str) -> dict[str, Any]:
    g = kb.groups[gid]
    ctx = {k: g.context[k] for k in ("country", "suspected_state_sponsor", "suspected_victims",
                                     "target_categories", "incident_type") if g.context.get(k)}
    return {"aliases": [a for a in g.aliases if a != g.name], "url": g.url, **ctx}


def campaign_context(kb: KnowledgeBase, cid: str) -> dict[str, Any]:
    c = kb.campaigns[cid]
    return {"aliases": [a for a in c.aliases if a != c.name], "first_seen": c.first_seen,
            "last_seen": c.last_seen, "groups": [{"id": g, "name": kb.name_of(g)} for g in c.groups],
            "url": c.url}


_models: dict[tuple[int, AttributionParams, str], tuple[KnowledgeBase, AttributionModel]] = {}


def model_for(kb: KnowledgeBase, params: AttributionParams | None = None, kind: str = "group",
              profiles: Profiles | None = None) -> AttributionModel:
    """The model over ``kb``'s own profiles (memoised), or over the given ``profiles``."""
    params = params or AttributionParams()
    if profiles is not None:
        return AttributionModel(kb, profiles.of_kind(kind), params, kind, profiles.texts)
    key = (id(kb), params, kind)
    hit = _models.get(key)
    if hit is None or hit[0] is not kb:
        _, prof = default_profiles(kb)
        hit = (kb, AttributionModel(kb, prof.of_kind(kind), params, kind, prof.texts))
        _models[key] = hit
    return hit[1]


def _verdict(res: ResolvedInput, top: Candidate | None, insufficient: bool, information: float,
             params: AttributionParams) -> str:
    if not res.weights:
        return "insufficient evidence: no known technique was observed"
    if top is None:
        return "insufficient evidence: no known group uses any of the observed techniques"
    if insufficient:
        why = (f"the observed techniques are common (rarity {information:.1f} < {params.min_information} nats)"
               if information < params.min_information
               else f"the best match {top.name} has confidence {top.confidence:.2f} < {params.min_confidence}")
        return f"insufficient evidence: {why}; candidates are shown as leads only"
    return (f"best match {top.name} ({top.id}), confidence {top.confidence:.2f}, explaining "
            f"{len(top.explained)} of {len(res.weights)} observed techniques")


def attribute(techniques_or_case: TechniqueInput, kb: KnowledgeBase, top: int = 10, *,
              campaigns: bool = True, params: AttributionParams | None = None,
              profiles: Profiles | None = None, leads: int = 10) -> Attribution:
    """Rank known groups, and separately ATT&CK campaigns, by how well they explain observed techniques.

    ``techniques_or_case``: a Case, Observations, or technique ids/names (revoked ids are followed, unknown
    ones listed in ``unresolved``). Observation confidence weighs each technique; report sentences in the
    evidence add procedure-text similarity. ``profiles``: learn from these instead of the KB's own
    (benchmarks pass leak-free ones). Returns at most ``top`` candidates of each kind, best first (score,
    then id), each with the techniques it explains, up to ``leads`` techniques it is known for that were
    not observed, and MISP context.
    """
    params = params or AttributionParams()
    res = resolve_input(techniques_or_case, kb)
    gmodel = model_for(kb, params, "group", profiles)
    information = gmodel.information(res.weights)

    def ranked(model: AttributionModel, ctx) -> list[Candidate]:
        if not res.weights:
            return []
        out = []
        for eid, score, conf in model.rank(res.weights, res.texts)[:top]:
            explained, missing = model.explain(eid, res.weights, res.texts, leads)
            if explained:  # a candidate that explains nothing is no candidate
                out.append(Candidate(eid, model.kind, model.kb.name_of(eid), len(out) + 1, score, conf,
                                     explained, missing, ctx(kb, eid)))
        return out

    groups = ranked(gmodel, group_context)
    camps = ranked(model_for(kb, params, "campaign", profiles), campaign_context) if campaigns else []
    best = groups[0] if groups else None
    insufficient = (best is None or information < params.min_information
                    or best.confidence < params.min_confidence)
    unexplained = sorted(set(res.weights) - {m.technique_id for m in best.explained}) if best else res.techniques
    return Attribution(
        groups=groups, campaigns=camps, observed=res.techniques, unexplained=unexplained,
        information=information, insufficient_evidence=insufficient,
        verdict=_verdict(res, best, insufficient, information, params), notes=res.notes,
        unresolved=res.unresolved, params=asdict(params), provenance=kb.provenance())


__all__ = ["Attribution", "AttributionModel", "AttributionParams", "Candidate", "Corpus", "Match",
           "Profiles", "attribute", "mask_actor_names", "model_for"]
