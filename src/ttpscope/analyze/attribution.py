"""Attribution: which known groups (and, separately, which ATT&CK campaigns) best explain observed techniques.

The score of a candidate ``e`` (a group, or a campaign) for observed techniques ``q`` with confidences
``c_q`` has three parts, each measured on ``bench/attribution_bench.py``:

1. Technique likelihood (rarity built in). ``W_e(t)`` is the path weight of technique ``t`` in ``e``'s
   profile: 1 for its own ``uses`` link (``direct``) and its campaigns' (``campaign``), ``software`` for a
   technique only its software has. ``m_e(q)`` rolls sub-techniques up: ``W_e(q)`` itself, else
   ``parent_credit`` x the parent's or a sub-technique's weight, else ``sibling_credit`` x a sibling's.
   ``p_e(q) = m_e(q) / |e|^size_exponent`` (big profiles explain everything a little less each), and the
   part is ``sum_q c_q log((lam p_e(q) + (1 - lam) bg(q)) / bg(q))`` with ``bg(q)`` the mean of ``p`` over
   candidates. A technique every group uses adds ~nothing; a rare one the candidate is known for adds a lot;
   a technique it is not known for costs ``log(1 - lam)`` whatever it is, so noise lowers all alike.
2. Closest past instance. Each candidate's evidence comes in instances (each report its own links cite,
   each of its campaigns, each of its software). ``instance_weight * log sum_i exp(sharpness (cos_i - 1))``
   over its instances, ``cos_i`` the rarity-weighted cosine between the observed set and instance ``i``:
   a candidate with one past report that looks like this case scores well even if its overall profile is
   broad. The closest instance is shown.
3. Procedure text. Where observations carry report sentences, ``text_weight`` x the TF-IDF cosine between
   them and the candidate's own procedure examples (group and campaign names masked on both sides, so a
   sentence naming its actor does not decide the answer); the shared distinctive terms are shown.

4. Named in the evidence. When the reports name a group (or software), that is evidence of another kind than
   the techniques: a group the report names adds ``named_weight x (1 + log mentions)``; each operator of a
   named software adds ``operator_weight x (1 + log mentions) / operators`` (a tool fifty groups use says
   little about which one). The named groups are surfaced next to the verdict, and every candidate keeps
   its technique-only score (``technique_score``) apart, so the two kinds of evidence can be read
   separately. A name is the report author's attribution: strong, but not proof (false flags, shared
   tooling), hence a bounded weight rather than an override.

5. Large-profile correction (``prior_correction``, off by default). A technique observed with confidence
   ``c`` is, with probability ``1 - c``, noise drawn from the background (techniques weighted by how many
   candidates use them); on such noise a candidate expects ``mu_e = sum_t bg(t) term_e(t)``, high for a
   profile that covers much. The part ``-prior_correction x sum_q (1 - c_q) x mu_e`` takes that away, so
   noisy extracted queries stop favouring big profiles while certain techniques (log detections, a
   campaign's links) are scored exactly as before. Measured on TRAM's reports
   (``bench/attribution_bench.py --named``): it does what it says (fewer reports topped by one of the five
   largest profiles) but lowers technique-only accuracy on every real-report measure we have, because the
   groups reports are about are mostly the large profiles; the named-entity part (4) is what keeps a
   large profile from topping a report that names another actor. Hence off by default.

``confidence`` is a softmax of scores at ``temperature``: a posterior over the known candidates, with the
temperature fitted on the benchmark's dev queries. Below ``min_confidence`` for the top group, or when the
observed techniques carry less than ``min_information`` nats of rarity in all (``sum_q -log df(q)``,
``df`` the share of groups whose profile covers ``q``: a few common techniques), the answer is flagged
``insufficient_evidence``. The benchmark's reliability table shows what these numbers mean.
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
    """Weights of the attribution score; defaults chosen on the dev half of benchmark (b) (see module doc)."""

    direct: float = 1.0  # path weight of a technique the group uses itself
    campaign: float = 1.0  # ... that one of its attributed campaigns used
    software: float = 0.4  # ... that only one of its software uses
    parent_credit: float = 0.25  # observed technique matched through its parent / a sub-technique
    sibling_credit: float = 0.125  # observed sub-technique matched through a sibling sub-technique
    size_exponent: float = 0.5  # profile-size normalisation (0: none, 1: multinomial)
    lam: float = 0.5  # mass on the candidate's profile (rest: background)
    instance_weight: float = 1.0  # weight of the closest-past-instance part
    instance_sharpness: float = 10.0  # softmax sharpness over instance cosines
    text_weight: float = 20.0  # weight of the procedure-text cosine (0..1)
    temperature: float = 2.0  # softmax temperature for confidence (fitted on benchmark (b) dev: 2.07)
    min_confidence: float = 0.2  # top group confidence below this: insufficient evidence
    min_information: float = 4.0  # total rarity (nats) of the observed techniques below this: insufficient
    named_weight: float = 6.0  # a group the evidence names: + named_weight * (1 + log mentions)
    operator_weight: float = 3.0  # operators of a named software share + operator_weight * (1 + log mentions)
    prior_correction: float = 0.0  # large-profile correction on uncertain techniques (part 5; measured: off)


@dataclass
class Match:
    """One observed technique a candidate explains."""

    technique_id: str
    name: str
    contribution: float  # its share of the score
    match: str  # exact | parent | subtechnique | sibling
    matched_id: str  # the profile technique that matched
    via: list[str]  # direct, software:S0154, campaign:C0024

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
    parts: dict[str, float] = field(default_factory=dict)  # techniques / instances / text shares of the score
    closest_instance: dict[str, Any] | None = None  # the past report, campaign or software most like this
    text: dict[str, Any] | None = None  # {similarity, shared_terms} when evidence text was given
    named: list[dict[str, Any]] = field(default_factory=list)  # why the evidence names it (group / its software)
    similarity: float = 0.0  # 0..1: rarity-weighted cosine of the observed set and the candidate's whole profile

    @property
    def technique_score(self) -> float:
        """The score without the named-entity part: what the techniques (and their text) alone say."""
        return self.score - self.parts.get("named", 0.0)

    def to_dict(self) -> dict[str, Any]:
        key = "group_id" if self.kind == "group" else "campaign_id"
        return {
            key: self.id, "id": self.id, "kind": self.kind, "name": self.name, "rank": self.rank,
            "score": round(self.score, 4), "confidence": round(self.confidence, 4),
            "explained": [m.technique_id for m in self.explained],
            "missing": [m["technique_id"] for m in self.missing],
            "explanation": [m.to_dict() for m in self.explained],
            "hunting_leads": self.missing,
            "parts": {k: round(v, 4) for k, v in self.parts.items()},
            "closest_instance": self.closest_instance,
            "text": self.text,
            "context": self.context,
            "technique_score": round(self.technique_score, 4),
            "named": self.named,
            "similarity": round(self.similarity, 4),
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
    named: list[dict[str, Any]] = field(default_factory=list)  # groups the evidence names (incl. via software)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "named": self.named,
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
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]|[A-Za-z0-9]")


class ActorNames:
    """Every group and campaign name and alias of a KB, matched as whole word sequences (fast: a dict of
    first words, not a regex alternation of a thousand names)."""

    def __init__(self, kb: KnowledgeBase):
        self.first: dict[str, list[tuple[str, ...]]] = {}
        for obj in [*kb.groups.values(), *kb.campaigns.values()]:
            for name in [obj.name, *obj.aliases]:
                words = tuple(w.lower() for w in _WORD.findall(name))
                if words and len("".join(words)) >= 3:
                    self.first.setdefault(words[0], []).append(words)
        for seqs in self.first.values():
            seqs.sort(key=len, reverse=True)

    def mask(self, text: str) -> str:
        words = [w.lower() for w in _WORD.findall(text)]
        out, i = [], 0
        while i < len(words):
            for seq in self.first.get(words[i], ()):
                if tuple(words[i:i + len(seq)]) == seq:
                    out.append("actor")
                    i += len(seq)
                    break
            else:
                out.append(words[i])
                i += 1
        return " ".join(out)


_actor_names: dict[int, tuple[KnowledgeBase, ActorNames]] = {}


def actor_names(kb: KnowledgeBase) -> ActorNames:
    hit = _actor_names.get(id(kb))
    if hit is None or hit[0] is not kb:
        hit = (kb, ActorNames(kb))
        _actor_names[id(kb)] = hit
    return hit[1]


def mask_actor_names(text: str, names: ActorNames | None = None) -> str:
    """Procedure markdown -> plain text with group and campaign names masked (they would give the answer
    away): ATT&CK links to groups and campaigns always, plain-text names and aliases too when ``names``
    is given (the text then comes back lower-cased, as words)."""
    text = _MASK_LINK.sub(" actor ", text or "")
    text = _ANY_LINK.sub(r"\1", text)
    text = _CITATION.sub(" ", text)
    return names.mask(text) if names is not None else text


class AttributionModel:
    """Scores candidates (groups or campaigns) against observed techniques. Built once per profile set."""

    def __init__(self, kb: KnowledgeBase, profiles: dict[str, dict[str, list[Path]]],
                 params: AttributionParams | None = None, kind: str = "group",
                 instances: dict[str, dict[str, set[str]]] | None = None,
                 documents: dict[str, list[str]] | None = None):
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
        self.norm = np.maximum(self.W.sum(axis=1), 1e-9) ** p.size_exponent
        self._coverage: dict[str, np.ndarray] = {}
        # per-technique memos: explanations ask for the same technique across every candidate
        self._spread: dict[str, float] = {}
        self._term: dict[str, np.ndarray] = {}
        self._prior: np.ndarray | None = None
        # rarity over candidates: idf of each technique (for instance similarity)
        df = (self.W > 0).sum(axis=0)
        self.idf = np.log((1.0 + len(self.ids)) / (1.0 + df)) + 1.0
        self._build_instances(instances or {})
        self._documents = documents or {}
        self._text_index = None

    def _build_instances(self, instances: dict[str, dict[str, set[str]]]) -> None:
        labels, owner, rows, cols = [], [], [], []
        pos = {e: i for i, e in enumerate(self.ids)}
        for eid in self.ids:
            for label in sorted(instances.get(eid, {})):
                cols_i = [self.structure.index[t] for t in instances[eid][label] if t in self.structure.index]
                if cols_i:
                    rows.extend([len(labels)] * len(cols_i))
                    cols.extend(cols_i)
                    labels.append(label)
                    owner.append(pos[eid])
        from scipy import sparse

        m = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(labels), len(self.structure.ids)))
        m = sparse.csr_matrix(m.multiply(self.idf[None, :]))
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        self.instance_matrix = sparse.csr_matrix(m.multiply(1.0 / np.maximum(norms, 1e-12)[:, None]))
        self.instance_labels = labels
        self.instance_owner = np.array(owner, dtype=int)

    # -------------------------------------------------------------- techniques
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

    def spread(self, q: str) -> float:
        """Share of candidates whose profile covers q (smoothed): how common the technique is."""
        hit = self._spread.get(q)
        if hit is None:
            hit = self._spread[q] = (float((self.coverage(q) > 0).sum()) + 0.5) / (len(self.ids) + 1.0)
        return hit

    def information(self, weights: dict[str, float]) -> float:
        """Total rarity of a technique set, nats: how much it can say about who did it."""
        return sum(c * -math.log(self.spread(q)) for q, c in weights.items())

    def term(self, q: str) -> np.ndarray:
        """Per-candidate technique-likelihood contribution of one observed technique at confidence 1."""
        hit = self._term.get(q)
        if hit is None:
            lam = self.params.lam
            prob = self.coverage(q) / self.norm
            bg = float(prob.mean()) + 1e-9
            hit = self._term[q] = np.log((lam * prob + (1.0 - lam) * bg) / bg)
        return hit

    def prior(self) -> np.ndarray:
        """Each candidate's expected technique term for one technique drawn from the background (techniques
        weighted by the share of candidates using them, the way unrelated activity and extraction noise
        look): what a large profile earns from any query just by covering much. Subtracted per unit of
        uncertainty (``1 - c``) of the observed techniques (part 5 of the module docstring)."""
        if self._prior is None:
            cols = np.nonzero(self.W.sum(axis=0) > 0)[0]
            share = (self.W[:, cols] > 0).sum(axis=0).astype(np.float64)
            share /= max(share.sum(), 1e-12)
            mu = np.zeros(len(self.ids))
            for j, w in zip(cols, share):
                mu += w * self.term(self.structure.ids[j])
            self._prior = mu
        return self._prior

    # -------------------------------------------------------------- instances
    def instance_similarity(self, weights: dict[str, float]) -> np.ndarray:
        """Cosine of the observed set with every past instance."""
        v = np.zeros(len(self.structure.ids))
        for q, c in weights.items():
            j = self.structure.index.get(q)
            if j is not None:
                v[j] = c * self.idf[j]
        n = np.linalg.norm(v)
        if n == 0 or not self.instance_labels:
            return np.zeros(len(self.instance_labels))
        return self.instance_matrix @ (v / n)

    def profile_similarity(self, weights: dict[str, float]) -> np.ndarray:
        """0..1 per candidate: the cosine of the observed set and the candidate's profile, both weighted by
        technique rarity (a readable closeness, unlike the score, which is a log-likelihood and can be < 0)."""
        v = np.zeros(len(self.structure.ids))
        for q, c in weights.items():
            j = self.structure.index.get(q)
            if j is not None:
                v[j] = max(0.0, c) * self.idf[j]
        n = np.linalg.norm(v)
        if n == 0 or not self.ids:
            return np.zeros(len(self.ids))
        rows = self.W * self.idf[None, :]
        norms = np.maximum(np.linalg.norm(rows, axis=1), 1e-12)
        return np.clip((rows @ v) / (norms * n), 0.0, 1.0)

    def instance_part(self, sims: np.ndarray) -> np.ndarray:
        out = np.zeros(len(self.ids))
        if not self.instance_labels:  # profiles without instances (hand-built): the part is absent
            return out
        if len(sims):
            np.add.at(out, self.instance_owner, np.exp(self.params.instance_sharpness * (sims - 1.0)))
        return np.log(out + 1e-12)

    # -------------------------------------------------------------- text
    def _text(self):
        if self._text_index is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            pattern = actor_names(self.kb)
            docs = [mask_actor_names(" ".join(self._documents.get(e, [])), pattern) for e in self.ids]
            vec = TfidfVectorizer(sublinear_tf=True, stop_words="english", max_df=0.5)
            try:
                matrix = vec.fit_transform(docs)
            except ValueError:  # no text at all
                vec, matrix = None, None
            self._text_index = (vec, matrix, pattern)
        return self._text_index

    def text_vector(self, texts: dict[str, list[str]] | None):
        """TF-IDF vector of all evidence sentences (names masked), or None."""
        if not texts or self.params.text_weight <= 0 or not self._documents:
            return None
        vec, matrix, pattern = self._text()
        joined = " ".join(t for ts in texts.values() for t in ts)
        if vec is None or not joined.strip():
            return None
        return vec.transform([mask_actor_names(joined, pattern)])

    def text_similarity(self, qvec) -> np.ndarray:
        _, matrix, _ = self._text()
        return (matrix @ qvec.T).toarray().ravel()

    def shared_terms(self, i: int, qvec, limit: int = 8) -> list[str]:
        vec, matrix, _ = self._text()
        prod = matrix[i].multiply(qvec)
        if prod.nnz == 0:
            return []
        names = vec.get_feature_names_out()
        order = np.argsort(-prod.data)[:limit]
        return [str(names[prod.indices[k]]) for k in order]

    # -------------------------------------------------------------- scoring
    def parts(self, weights: dict[str, float], texts: dict[str, list[str]] | None = None
              ) -> dict[str, np.ndarray]:
        """The score's parts per candidate: techniques, instances, text (and size_prior, see part 5)."""
        tech = np.zeros(len(self.ids))
        for q, c in weights.items():
            tech += c * self.term(q)
        out = {"techniques": tech}
        if self.params.prior_correction and weights:
            noise = sum(1.0 - min(1.0, max(0.0, c)) for c in weights.values())
            if noise > 0:
                out["size_prior"] = -self.params.prior_correction * noise * self.prior()
        if weights and self.params.instance_weight > 0:
            out["instances"] = self.params.instance_weight * self.instance_part(self.instance_similarity(weights))
        qvec = self.text_vector(texts)
        if qvec is not None:
            out["text"] = self.params.text_weight * self.text_similarity(qvec)
        return out

    def scores(self, weights: dict[str, float], texts: dict[str, list[str]] | None = None) -> np.ndarray:
        return sum(self.parts(weights, texts).values(), np.zeros(len(self.ids)))

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
    def explain(self, eid: str, weights: dict[str, float], leads: int = 10
                ) -> tuple[list[Match], list[dict[str, Any]]]:
        """Observed techniques the candidate explains (with contributions), and its unobserved ones."""
        i = self.ids.index(eid)
        prof = self.profiles[eid]
        st, p = self.structure, self.params
        explained: list[Match] = []
        for q, c in sorted(weights.items()):
            if self.coverage(q)[i] <= 0:
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
            explained.append(Match(q, self.kb.name_of(q), round(c * float(self.term(q)[i]), 4), how, matched,
                                   sorted(_via_label(v) for v in prof[matched])))
        explained.sort(key=lambda m: (-m.contribution, m.technique_id))
        near = set(weights)
        for q in weights:
            near.update(st.children.get(q, []))
            if q in st.parent:
                near.add(st.parent[q])
        missing = []
        for tid, paths in prof.items():
            if tid in near or tid not in st.index:
                continue
            value = float(self.W[i, st.index[tid]]) * -math.log(self.spread(tid))
            missing.append({"technique_id": tid, "name": self.kb.name_of(tid), "weight": round(value, 4),
                            "via": sorted(_via_label(v) for v in paths)})
        missing.sort(key=lambda d: (-d["weight"], d["technique_id"]))
        return explained, missing[:leads]

    def closest_instance(self, eid: str, sims: np.ndarray) -> dict[str, Any] | None:
        i = self.ids.index(eid)
        rows = np.nonzero(self.instance_owner == i)[0]
        if not len(rows) or not len(sims):
            return None
        best = max(rows, key=lambda r: (sims[r], -r))
        label = self.instance_labels[best]
        kind, _, ref = label.partition(":")
        return {"kind": kind, "id": ref if kind != "report" else None,
                "name": self.kb.name_of(ref) if kind != "report" else ref,
                "similarity": round(float(sims[best]), 4)}


def _via_label(path: Path) -> str:
    via, via_id = path
    return via if via_id is None else f"{via}:{via_id}"


def group_context(kb: KnowledgeBase, gid: str) -> dict[str, Any]:
    g = kb.groups[gid]
    ctx = {k: g.context[k] for k in ("country", "suspected_state_sponsor", "suspected_victims",
                                     "target_categories", "incident_type", "source") if g.context.get(k)}
    # every candidate says where its profile came from: ATT&CK, a feed, or ATT&CK enriched by a feed
    return {"aliases": [a for a in g.aliases if a != g.name], "url": g.url, **ctx,
            "source": ctx.get("source") or kb.label}


def campaign_context(kb: KnowledgeBase, cid: str) -> dict[str, Any]:
    c = kb.campaigns[cid]
    return {"aliases": [a for a in c.aliases if a != c.name], "first_seen": c.first_seen,
            "last_seen": c.last_seen, "groups": [{"id": g, "name": kb.name_of(g)} for g in c.groups],
            "url": c.url, "source": getattr(kb, "profile_sources", {}).get(cid, kb.label)}


_models: dict[tuple[int, AttributionParams, str], tuple[KnowledgeBase, AttributionModel]] = {}


def model_for(kb: KnowledgeBase, params: AttributionParams | None = None, kind: str = "group",
              profiles: Profiles | None = None) -> AttributionModel:
    """The model over ``kb``'s own profiles (memoised), or over the given ``profiles``."""
    params = params or AttributionParams()
    if profiles is not None:
        return build_model(kb, profiles, params, kind)
    key = (id(kb), params, kind)
    hit = _models.get(key)
    if hit is None or hit[0] is not kb:
        hit = (kb, build_model(kb, default_profiles(kb)[1], params, kind))
        _models[key] = hit
    return hit[1]


def build_model(kb: KnowledgeBase, profiles: Profiles, params: AttributionParams | None = None,
                kind: str = "group") -> AttributionModel:
    """A model over the candidates of one kind ("group" or "campaign") of a profile set."""
    return AttributionModel(kb, profiles.of_kind(kind), params, kind, profiles.instances.get(kind, {}),
                            profiles.documents.get(kind, {}))


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


def named_evidence(named, kb: KnowledgeBase, params: AttributionParams) -> tuple[dict[str, float],
                                                                                dict[str, list[dict[str, Any]]]]:
    """Per group: the named-entity part of its score, and why. ``named``: rows ``{kind: group|software, id,
    mentions}`` (``ttpscope.investigate.analysis.named_in_reports``, or extraction's groups/software)."""
    bonus: dict[str, float] = {}
    why: dict[str, list[dict[str, Any]]] = {}
    for row in named or ():
        kind, eid = str(row.get("kind") or ""), str(row.get("id") or "")
        n = max(1, int(row.get("mentions") or row.get("count") or 1))
        strength = 1.0 + math.log(n)
        if kind == "group" and eid in kb.groups:
            bonus[eid] = bonus.get(eid, 0.0) + params.named_weight * strength
            why.setdefault(eid, []).append({"via": "named", "id": eid, "mentions": n})
        elif kind == "software" and eid in kb.software:
            operators = sorted(g for g, sws in kb.group_software.items() if eid in sws and g in kb.groups)
            for gid in operators:
                bonus[gid] = bonus.get(gid, 0.0) + params.operator_weight * strength / len(operators)
                why.setdefault(gid, []).append({"via": "software", "id": eid, "name": kb.name_of(eid),
                                                "mentions": n, "operators": len(operators)})
    return bonus, why


def attribute(techniques_or_case: TechniqueInput, kb: KnowledgeBase, top: int = 10, *,
              campaigns: bool = True, params: AttributionParams | None = None,
              profiles: Profiles | None = None, leads: int = 10, named=None) -> Attribution:
    """Rank known groups, and separately ATT&CK campaigns, by how well they explain observed techniques.

    ``techniques_or_case``: a Case, Observations, or technique ids/names (revoked ids are followed, unknown
    ones listed in ``unresolved``). Observation confidence weighs each technique; report sentences in the
    evidence add procedure-text similarity. ``profiles``: learn from these instead of the KB's own
    (benchmarks pass leak-free ones). Returns at most ``top`` candidates of each kind, best first (score,
    then id), each with the techniques it explains, up to ``leads`` techniques it is known for that were
    not observed, and MISP context. ``named``: groups and software the evidence names (rows ``{kind, id,
    mentions}``), weighed as part 4 of the module docstring.
    """
    params = params or AttributionParams()
    res = resolve_input(techniques_or_case, kb)
    gmodel = model_for(kb, params, "group", profiles)
    information = gmodel.information(res.weights)
    bonus, why_named = named_evidence(named, kb, params)

    def ranked(model: AttributionModel, ctx) -> list[Candidate]:
        if not res.weights and not (bonus and model.kind == "group"):
            return []
        parts = model.parts(res.weights, res.texts) if res.weights else {}
        if model.kind == "group" and bonus:
            parts["named"] = np.array([bonus.get(eid, 0.0) for eid in model.ids])
        scores = sum(parts.values(), np.zeros(len(model.ids)))
        conf = model.confidence(scores)
        sims = model.instance_similarity(res.weights) if res.weights else np.zeros(len(model.ids))
        closeness = model.profile_similarity(res.weights) if res.weights else np.zeros(len(model.ids))
        qvec = model.text_vector(res.texts)
        out = []
        for i in sorted(range(len(model.ids)), key=lambda i: (-scores[i], model.ids[i]))[:top]:
            eid = model.ids[i]
            explained, missing = model.explain(eid, res.weights, leads) if res.weights else ([], [])
            if not explained and not (model.kind == "group" and eid in bonus):
                continue  # a candidate that explains nothing (and is not named) is no candidate
            text = None
            if qvec is not None:
                text = {"similarity": round(float(parts["text"][i] / params.text_weight), 4),
                        "shared_terms": model.shared_terms(i, qvec)}
            out.append(Candidate(eid, model.kind, model.kb.name_of(eid), len(out) + 1, float(scores[i]),
                                 float(conf[i]), explained, missing, ctx(kb, eid),
                                 {k: float(v[i]) for k, v in parts.items()},
                                 model.closest_instance(eid, sims) if res.weights else None, text,
                                 why_named.get(eid, []) if model.kind == "group" else [],
                                 float(closeness[i])))
        return out

    groups = ranked(gmodel, group_context)
    camps = ranked(model_for(kb, params, "campaign", profiles), campaign_context) if campaigns else []
    best = groups[0] if groups else None
    insufficient = (best is None or information < params.min_information
                    or best.confidence < params.min_confidence)
    unexplained = sorted(set(res.weights) - {m.technique_id for m in best.explained}) if best else res.techniques
    verdict = _verdict(res, best, insufficient, information, params)
    named_rows = [{"id": gid, "name": kb.name_of(gid), "score": round(b, 4), "why": why_named.get(gid, [])}
                  for gid, b in sorted(bonus.items(), key=lambda kv: (-kv[1], kv[0]))]
    if named_rows:
        direct = [r for r in named_rows if any(w["via"] == "named" for w in r["why"])]
        shown = direct or named_rows[:3]
        verdict += "; the evidence names " + ", ".join(f"{r['name']} ({r['id']})" for r in shown[:3]) + \
            ("" if direct else " (as operators of named software)")
    return Attribution(
        groups=groups, campaigns=camps, observed=res.techniques, unexplained=unexplained,
        information=information, insufficient_evidence=insufficient,
        verdict=verdict, notes=res.notes,
        unresolved=res.unresolved, params=asdict(params), provenance=kb.provenance(), named=named_rows)


__all__ = ["Attribution", "AttributionModel", "AttributionParams", "Candidate", "Corpus", "Match",
           "Profiles", "attribute", "build_model", "mask_actor_names", "model_for"]
