"""The learned sentence → technique classifier, over every technique of the domain, trained from the KB.

Training text (see :func:`kb_training_set`): ATT&CK's procedure examples (the ``uses`` relationship
descriptions, labelled with their technique), the sentences of every technique description, and as
negatives the sentences of group, software and campaign descriptions plus the detection, mitigation and
data source prose (security text that describes no adversary action). Labelled report sentences (TRAM/MAT, the
single-label JSON...) can be added; their negatives are the best teachers of what a report sentence
without a technique looks like.

Model: TF-IDF over report-aware word uni/bigrams (:mod:`ttpscope.extract.features`) and one linear
hinge-loss classifier per technique (one-vs-rest, stochastic gradient descent). Chosen because it trains
on all ~640 Enterprise techniques in well under a minute on one core and scores thousands of sentences a
second; see ``bench/extract_eval.py`` for its figures against a TF-IDF + logistic-regression baseline.

Sub-techniques and parents: an example of a sub-technique is also an example of its parent (ATT&CK's
semantics: T1059.001 *is* T1059), so the parent's classifier learns from the whole family. When a
sentence passes for a sub-technique, the parent is implied and not claimed separately; the parent is
claimed alone when no sub-technique passes.

Calibration: scores become probabilities through a logistic (Platt) curve, and the default threshold is
the probability with the best sentence-level F1, both fitted on held-out labelled *report* sentences,
because ATT&CK's own text scores far higher than report prose and a threshold set on it misses most
report sentences. With labelled reports in the training data, a fifth of those reports (whole
documents) is held out, a model trained on the rest is scored on them, and the final model is then
trained on everything. The default model (ATT&CK text only) uses ``REPORT_CALIBRATION``, measured the
same way on TRAM's 120 training reports (never its test reports) by
``bench/extract_eval.py --derive-calibration``.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from ttpscope.extract.explicit import ExplicitMatcher
from ttpscope.extract.features import analyze
from ttpscope.extract.labelled import LabelledSentence
from ttpscope.kb import plain

MODEL_SCHEMA = "ttpscope-extract-techniques-1"
# Platt curve (a, c) and probability threshold of the ATT&CK-text-only model on TRAM's training reports.
REPORT_CALIBRATION = {"platt": (2.758, -0.9307), "threshold": 0.08,
                      "measured_on": "TRAM's 120 training reports, 14,881 sentences (bench/extract_eval.py)"}
REPORT_WEIGHT = 1.0  # weight of a labelled report sentence against an ATT&CK sentence (2.0 measured worse)
# L2 strength, chosen on 30 held-out TRAM training reports: ATT&CK text alone wants more regularisation
# (1e-4: +0.026 sentence F1 over 1e-5; 3e-4 and masking actor names in procedures did not help); with
# labelled reports 3e-5 (1e-5: -0.01, 1e-4: -0.005, 3e-6: -0.035).
SGD_ALPHA_KB_ONLY = 1e-4
SGD_ALPHA_WITH_REPORTS = 3e-5
SGD_EPOCHS = 6
POSITIVE_WEIGHT = 1.0  # class weight of a technique's positive examples in its one-vs-rest classifier
TOP_K = 5  # candidates kept per sentence before thresholds
MIN_REPORT_SENTENCES_FOR_PHRASES = 1000
BATCH = 2048

Progress = Callable[[str, int, int], None]


@dataclass
class TrainingSet:
    texts: list[str] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # held-out split unit: a document or procedure source
    in_report: list[bool] = field(default_factory=list)  # labelled report sentence (vs ATT&CK text)

    def add(self, text: str, labels: Sequence[str], weight: float, group: str, in_report: bool) -> None:
        self.texts.append(text)
        self.labels.append(list(labels))
        self.weights.append(weight)
        self.groups.append(group)
        self.in_report.append(in_report)

    def __len__(self) -> int:
        return len(self.texts)

    def digest(self) -> str:
        h = hashlib.sha256()
        for t, l, w in zip(self.texts, self.labels, self.weights):
            h.update(f"{t}\x1f{','.join(l)}\x1f{w}\x1e".encode())
        return h.hexdigest()[:16]


_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")


def _sentences(text: str) -> list[str]:
    return [s for s in _SENT_SPLIT.split(plain(text)) if len(s) > 20]


def norm_url(url: str) -> str:
    """URL identity for leak checks: scheme, ``www.``, fragment and trailing slash ignored."""
    return re.sub(r"^https?://(www\.)?", "", url.strip()).split("#")[0].rstrip("/").lower()


def kb_training_set(kb, exclude_urls: Iterable[str] = (), techniques: Iterable[str] | None = None) -> TrainingSet:
    """ATT&CK's own text as training data (see the module docstring).

    ``exclude_urls``: procedure examples citing any of these references are left out (an evaluation
    must not train on the reports it tests on). ``techniques``: only these techniques (and their
    sub-techniques) are learnt, for a small, quick model; the negatives are kept.
    """
    excluded = {norm_url(u) for u in exclude_urls}
    live = {t.id for t in kb.live_techniques()}
    if techniques is not None:
        wanted = {kb.technique(t).id for t in techniques}
        live = {t for t in live if t in wanted or (kb.techniques[t].parent or "") in wanted}
    ts = TrainingSet()
    for proc in kb.procedures:
        if proc.technique_id not in live:
            continue
        if excluded and any(norm_url(u) in excluded for u in proc.urls):
            continue
        text = plain(proc.description)
        if len(text) > 10:
            ts.add(text, [proc.technique_id], 1.0, proc.source_id, False)
    for tech in kb.live_techniques():
        if tech.id not in live:
            continue
        for s in _sentences(tech.description):
            ts.add(s, [tech.id], 1.0, tech.id, False)
    negatives: list[tuple[str, str]] = []
    for table in (kb.groups, kb.software, kb.campaigns):
        negatives += [(o.id, o.description) for o in table.values() if not o.deprecated]
    negatives += [(t.id + "-detection", t.detection) for t in kb.live_techniques() if t.detection]
    negatives += [(m.id, m.description) for m in kb.mitigations.values() if not m.deprecated]
    negatives += [(c.id, c.description) for c in kb.data_components.values()]
    negatives += [(d.id, d.description) for d in kb.data_sources.values()]
    for gid, text in negatives:
        for s in _sentences(text):
            ts.add(s, [], 1.0, gid, False)
    return ts


def add_labelled(ts: TrainingSet, sentences: Iterable[LabelledSentence], kb, weight: float = REPORT_WEIGHT) -> int:
    """Append labelled report sentences (ids resolved through the KB; unknown ids dropped). Returns count."""
    n = 0
    for s in sentences:
        ids = []
        for label in s.labels:
            res = kb.resolve_technique(label)
            if res.id and res.id not in ids:
                ids.append(res.id)
        ts.add(s.text, ids, weight, "doc:" + (s.document or f"#{n // 50}"), True)
        n += 1
    return n


def _family_labels(kb, labels: list[str]) -> list[str]:
    out = list(labels)
    for tid in labels:
        tech = kb.techniques.get(tid)
        if tech is not None and tech.parent and tech.parent not in out:
            out.append(tech.parent)
    return out


@dataclass
class Candidate:
    technique_id: str
    confidence: float
    method: str  # classifier | id | name
    detail: str | None = None  # the explicit surface text, or the revocation note


class TechniqueClassifier:
    """TF-IDF + one-vs-rest linear classifier with a calibrated score → probability map."""

    def __init__(self, vectorizer, weights, bias, labels: list[str], parents: dict[str, str],
                 platt: tuple[float, float], threshold: float, explicit: ExplicitMatcher | None,
                 info: dict):
        self.vectorizer = vectorizer
        self.weights = weights  # scipy CSR, features × labels
        self.bias = bias
        self.labels = labels
        self.parents = parents  # sub-technique → parent, for labels of this model
        self.platt = platt
        self.threshold = threshold
        self.explicit = explicit
        self.info = info
        self.document: dict[str, float] | None = None  # the document step's {floor, threshold}, when fitted

    # -------------------------------------------------------------- training
    @classmethod
    def train(cls, kb, ts: TrainingSet, progress: Progress | None = None,
              calibration: Sequence[LabelledSentence] | None = None, seed: int = 0) -> TechniqueClassifier:
        """Train on ``ts`` and calibrate (see the module docstring).

        ``calibration``: held-out labelled report sentences to fit the score→probability map on; if not
        given, a fifth of the report documents in ``ts`` are held out, and without any the shipped
        ``REPORT_CALIBRATION`` is used.
        """
        import time

        started = time.perf_counter()
        reports = sorted({g for g, r in zip(ts.groups, ts.in_report) if r})
        model = None
        document = None
        if calibration:
            model = _fit(kb, ts, progress, "training")
            calib_texts = [s.text for s in calibration]
            calib_gold = [list(s.labels) for s in calibration]
            platt, threshold, calib = _calibrate(kb, model, model.decision(calib_texts), calib_gold)
            calib["on"] = f"{len(calibration)} held-out labelled report sentences given"
            model.explicit = ExplicitMatcher.build(kb, _phrase_examples(ts))  # ATT&CK text: no held-out leak
            document = _calibrate_document(model, platt, threshold, calib_texts, calib_gold,
                                           [s.document or "" for s in calibration], calib)
        elif len(reports) >= 5:
            held_docs = {g for g in reports if zlib.crc32(f"{seed}:{g}".encode()) % 5 == 0} or {reports[0]}
            held = np.array([g in held_docs for g in ts.groups])
            rest = _subset(ts, ~held)
            part = _fit(kb, rest, progress, "calibrating")
            idx = np.where(held)[0]
            texts = [ts.texts[i] for i in idx]
            gold = [ts.labels[i] for i in idx]
            platt, threshold, calib = _calibrate(kb, part, part.decision(texts), gold)
            calib["on"] = f"{len(held_docs)} of {len(reports)} labelled reports held out"
            part.explicit = ExplicitMatcher.build(kb, _phrase_examples(rest))
            document = _calibrate_document(part, platt, threshold, texts, gold, [ts.groups[i] for i in idx], calib)
        else:
            platt, threshold = tuple(REPORT_CALIBRATION["platt"]), float(REPORT_CALIBRATION["threshold"])
            calib = {"on": f"shipped: {REPORT_CALIBRATION['measured_on']}", "platt": list(platt)}
        if model is None:
            model = _fit(kb, ts, progress, "training")
        model.platt, model.threshold = platt, threshold
        model.document = document
        model.explicit = ExplicitMatcher.build(kb, _phrase_examples(ts))
        model.info = {
            "schema": MODEL_SCHEMA,
            "kb": kb.label,
            "kb_provenance": kb.provenance(),
            "examples": len(ts),
            "report_sentences": int(sum(ts.in_report)),
            "techniques": len(model.labels),
            "training_digest": ts.digest(),
            "threshold": round(threshold, 4),
            "calibration": calib,
            "train_seconds": round(time.perf_counter() - started, 2),
        }
        return model

    # -------------------------------------------------------------- scoring
    def decision(self, texts: Sequence[str]) -> np.ndarray:
        """Raw linear scores (n × labels)."""
        X = self.vectorizer.transform(texts)
        return np.asarray((X @ self.weights).todense()) + self.bias

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        a, c = self.platt
        return 1.0 / (1.0 + np.exp(-(a * scores + c)))

    def predict(self, texts: Sequence[str], min_confidence: float | None = None,
                explicit: bool = True) -> list[list[Candidate]]:
        """Techniques of each sentence with their confidence, best first.

        Sub-technique vs parent: a passing sub-technique implies its parent, which is then not listed; a
        parent is listed when none of its sub-techniques passes. Explicit mentions (ids, names) are
        merged in: a technique found both ways gets ``1 - (1 - p_classifier)(1 - p_explicit)``.
        """
        floor = self.threshold if min_confidence is None else min_confidence
        return [self._resolve_family(cands, floor) for cands in self.candidates(texts, explicit)]

    def candidates(self, texts: Sequence[str], explicit: bool = True) -> list[dict[str, Candidate]]:
        """Every sentence's top classifier candidates merged with its explicit mentions, before thresholds."""
        out: list[dict[str, Candidate]] = []
        for lo in range(0, len(texts), BATCH):
            batch = texts[lo:lo + BATCH]
            probs = self.probabilities(self.decision(batch))
            top = np.argsort(-probs, axis=1)[:, :TOP_K]
            for row, text in enumerate(batch):
                cands: dict[str, Candidate] = {}
                for j in top[row]:
                    p = float(probs[row, j])
                    cands[self.labels[j]] = Candidate(self.labels[j], p, "classifier")
                if explicit and self.explicit is not None:
                    for m in self.explicit.find(text):
                        prev = cands.get(m.technique_id)
                        detail = m.note or m.surface
                        if prev is None:
                            cands[m.technique_id] = Candidate(m.technique_id, m.confidence, m.method, detail)
                        else:
                            fused = 1 - (1 - prev.confidence) * (1 - m.confidence)
                            method = prev.method if prev.method != "classifier" else f"classifier+{m.method}"
                            cands[m.technique_id] = Candidate(m.technique_id, fused, method, detail)
                out.append(cands)
        return out

    def document_techniques(self, sentence_candidates: Iterable[dict[str, Candidate]]) -> dict[str, float]:
        """The document step: a technique's document score is the noisy-or of its sentences' confidences at
        or above ``document["floor"]``, and the document states it when that reaches
        ``document["threshold"]`` — several sentences that each fall short of the sentence threshold add
        up, a single weak one does not. Both values are fitted on held-out reports with the calibration;
        without them (the shipped calibration) a technique is stated when one sentence passes the
        sentence threshold. Returns {technique: document score} of the stated ones."""
        doc = getattr(self, "document", None) or {"floor": self.threshold, "threshold": self.threshold}
        miss: dict[str, float] = {}
        for cands in sentence_candidates:
            for t, c in cands.items():
                if c.confidence >= doc["floor"]:
                    miss[t] = miss.get(t, 1.0) * (1.0 - min(1.0, c.confidence))
        return {t: 1.0 - m for t, m in miss.items() if 1.0 - m >= doc["threshold"] - 1e-12}

    def _resolve_family(self, cands: dict[str, Candidate], floor: float) -> list[Candidate]:
        passing = {t: c for t, c in cands.items() if c.confidence >= floor}
        implied = {self.parents.get(t) for t in passing}
        kept = [c for t, c in passing.items() if t not in implied or cands[t].method in ("id", "name")]
        return sorted(kept, key=lambda c: (-c.confidence, c.technique_id))


def _phrase_examples(ts: TrainingSet) -> Iterable[tuple[str, list[str]]]:
    """Where explicit names are measured: on labelled report sentences when there are enough of them (a
    name's precision in reports is what a claim needs), else on ATT&CK's own text."""
    in_report = [i for i, r in enumerate(ts.in_report) if r]
    idx = in_report if len(in_report) >= MIN_REPORT_SENTENCES_FOR_PHRASES else range(len(ts))
    return [(ts.texts[i], ts.labels[i]) for i in idx]


def _subset(ts: TrainingSet, mask: np.ndarray) -> TrainingSet:
    out = TrainingSet()
    for i in np.where(mask)[0]:
        out.add(ts.texts[i], ts.labels[i], ts.weights[i], ts.groups[i], ts.in_report[i])
    return out


def _fit(kb, ts: TrainingSet, progress: Progress | None, stage: str) -> TechniqueClassifier:
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier

    vectorizer = TfidfVectorizer(analyzer=analyze, min_df=2, sublinear_tf=True, dtype=np.float64)
    X = vectorizer.fit_transform(ts.texts).tocsr()
    targets = [_family_labels(kb, labels) for labels in ts.labels]
    labels = sorted({t for ls in targets for t in ls})
    column = {t: j for j, t in enumerate(labels)}
    Y = np.zeros((len(ts), len(labels)), dtype=np.int8)
    for i, ls in enumerate(targets):
        for t in ls:
            Y[i, column[t]] = 1
    w = np.asarray(ts.weights, dtype=np.float64)
    alpha = SGD_ALPHA_WITH_REPORTS if any(ts.in_report) else SGD_ALPHA_KB_ONLY
    cols, bias = [], np.zeros(len(labels))
    for j, tid in enumerate(labels):
        clf = SGDClassifier(loss="hinge", alpha=alpha, max_iter=SGD_EPOCHS, tol=None, random_state=j,
                            class_weight={0: 1.0, 1: POSITIVE_WEIGHT} if POSITIVE_WEIGHT != 1.0 else None)
        clf.fit(X, Y[:, j], sample_weight=w)
        cols.append(sp.csr_matrix(clf.coef_.astype(np.float32)))
        bias[j] = clf.intercept_[0]
        if progress and (j % 20 == 0 or j == len(labels) - 1):
            progress(stage, j + 1, len(labels))
    weights = sp.vstack(cols).T.tocsr()
    parents = {t: kb.techniques[t].parent for t in labels if kb.techniques.get(t) and kb.techniques[t].parent}
    return TechniqueClassifier(vectorizer, weights, bias, labels, parents, (1.0, 0.0), 0.0, None, {})


def _calibrate(kb, model: TechniqueClassifier, scores: np.ndarray, gold: list[list[str]]
               ) -> tuple[tuple[float, float], float, dict]:
    """Platt curve on held-out (score, correct?) pairs of each sentence's top candidates (correct: the
    technique or its family is labelled), and the probability threshold whose predictions, made exactly
    as :meth:`TechniqueClassifier.predict` makes them (implied parents dropped), have the best micro F1
    against the held-out labels."""
    from sklearn.linear_model import LogisticRegression

    top = np.argsort(-scores, axis=1)[:, :TOP_K]
    family = [set(_family_labels(kb, g)) for g in gold]
    xs = scores[np.arange(scores.shape[0])[:, None], top]
    ys = np.array([[model.labels[j] in family[i] for j in top[i]] for i in range(scores.shape[0])])
    if ys.all() or not ys.any():
        return tuple(REPORT_CALIBRATION["platt"]), float(REPORT_CALIBRATION["threshold"]), \
            {"note": "held-out sentences had no usable positives/negatives; shipped calibration used"}
    lr = LogisticRegression(C=100.0).fit(xs.reshape(-1, 1), ys.reshape(-1))
    a, c = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    probs = 1 / (1 + np.exp(-(a * xs + c)))
    gold_sets = [set(g) for g in gold]
    n_gold = sum(len(g) for g in gold_sets)
    best = (0.0, 0.5)
    for th in np.round(np.linspace(0.02, 0.95, 94), 2):
        tp = fp = 0
        for i in np.where(probs[:, 0] >= th)[0]:
            passing = {model.labels[j] for j, p in zip(top[i], probs[i]) if p >= th}
            passing -= {model.parents.get(t) for t in passing}
            hit = len(passing & gold_sets[i])
            tp += hit
            fp += len(passing) - hit
        f1 = 2 * tp / (2 * tp + fp + (n_gold - tp)) if tp else 0.0
        if f1 > best[0]:
            best = (f1, float(th))
    info = {"held_out_sentences": int(scores.shape[0]), "platt": [round(a, 4), round(c, 4)],
            "held_out_f1": round(best[0], 4)}
    return (a, c), best[1], info


DOCUMENT_FLOORS = (0.02, 0.05, 0.08)  # sentence confidences that count towards a document score
DOCUMENT_THRESHOLDS = tuple(round(float(x), 3) for x in np.linspace(0.05, 0.5, 19))


def _calibrate_document(model: TechniqueClassifier, platt, threshold: float, texts: Sequence[str],
                        gold: list[list[str]], docs: Sequence[str], info: dict) -> dict[str, float] | None:
    """The document step's floor and threshold with the best mean per-document F1 on held-out reports
    (the document's labels: the union of its sentences'), kept only if it beats the plain union of
    sentence predictions there (the step is then off: ``None``)."""
    saved = model.platt, model.threshold, model.document
    model.platt, model.threshold, model.document = platt, threshold, None
    try:
        cands = model.candidates(list(texts))
        by_doc: dict[str, list[int]] = {}
        for i, d in enumerate(docs):
            by_doc.setdefault(d, []).append(i)
        gold_doc = {d: set().union(*(set(gold[i]) for i in ii)) for d, ii in by_doc.items()}

        def mean_f1(floor: float, th: float) -> float:
            model.document = {"floor": floor, "threshold": th}
            f1s = []
            for d, ii in by_doc.items():
                pred, g = set(model.document_techniques(cands[i] for i in ii)), gold_doc[d]
                tp = len(pred & g)
                f1s.append(1.0 if not pred and not g else 2 * tp / (len(pred) + len(g)))
            return float(np.mean(f1s)) if f1s else 0.0

        union = mean_f1(threshold, threshold)
        best = max(((mean_f1(f, t), -t, f) for f in DOCUMENT_FLOORS for t in DOCUMENT_THRESHOLDS))
    finally:
        model.platt, model.threshold, model.document = saved
    info["document_step"] = {"held_out_documents": len(by_doc), "union_mean_f1": round(union, 4),
                             "mean_f1": round(best[0], 4), "floor": best[2], "threshold": -best[1]}
    if best[0] <= union:
        info["document_step"]["used"] = False
        return None
    return {"floor": best[2], "threshold": -best[1]}


# ------------------------------------------------------------------ cache
def _model_path(kb, key: str):
    from ttpscope.paths import cache_dir

    settings = (SGD_ALPHA_KB_ONLY, SGD_ALPHA_WITH_REPORTS, SGD_EPOCHS, REPORT_WEIGHT, REPORT_CALIBRATION)
    if POSITIVE_WEIGHT != 1.0:
        settings += (POSITIVE_WEIGHT,)  # keeps the cache key of the default model unchanged
    ident = hashlib.sha256(f"{MODEL_SCHEMA}|{settings}|{kb.label}|{kb.source}|{key}".encode()).hexdigest()[:16]
    return cache_dir("models") / f"techniques-{kb.domain}-v{kb.version}-{ident}.pickle"


def custom_model_path(kb):
    """Where ``ttpscope extract train --labelled`` keeps the user's model for this KB (the default then)."""
    from ttpscope.paths import cache_dir

    return cache_dir("models") / f"techniques-{kb.domain}-v{kb.version}-custom.pickle"


def save_model(model: TechniqueClassifier, path) -> None:
    from ttpscope.paths import save_cache

    save_cache(path, model, "classifier model")


def _load(path) -> TechniqueClassifier | None:
    from ttpscope.paths import load_cache

    model = load_cache(path, TechniqueClassifier, "classifier model")  # unreadable: retrained, never fatal
    if model is None or model.info.get("schema") != MODEL_SCHEMA:
        return None
    return model


_memo: dict[str, TechniqueClassifier] = {}


def get_classifier(kb, progress: Progress | None = None, use_custom: bool = True) -> TechniqueClassifier:
    """The domain's classifier: the user's trained one if any, else the default trained from the KB
    alone on first use and cached under ``cache_dir("models")`` keyed by the KB version."""
    paths = []
    if use_custom:
        paths.append(custom_model_path(kb))
    default = _model_path(kb, "default")
    paths.append(default)
    for path in paths:
        if str(path) in _memo:
            return _memo[str(path)]
        if path.is_file():
            model = _load(path)
            if model is not None and model.info.get("kb") == kb.label:
                _memo[str(path)] = model
                return model
    model = TechniqueClassifier.train(kb, kb_training_set(kb), progress=progress)
    save_model(model, default)
    _memo[str(default)] = model
    return model


def train_custom(kb, sentences: Iterable[LabelledSentence], progress: Progress | None = None,
                 source: str = "") -> TechniqueClassifier:
    """Train KB text + labelled report sentences and make it this KB's default model."""
    ts = kb_training_set(kb)
    n = add_labelled(ts, sentences, kb)
    model = TechniqueClassifier.train(kb, ts, progress=progress)
    model.info["labelled_source"] = source
    model.info["labelled_sentences"] = n
    path = custom_model_path(kb)
    save_model(model, path)
    _memo.pop(str(path), None)
    return model
