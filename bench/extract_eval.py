"""Report → technique extraction on TRAM's human-annotated reports: ttpscope vs a TF-IDF + logistic
regression baseline trained on the same data in the same run.

Protocol (the SoK on TTP extraction, USENIX Security 2025, report-level split of TRAM 2):
- test: the 31 reports / 3,820 sentences of ``tram/sok_splits/tram_test.json``; nothing is trained on them;
- ATT&CK procedure examples citing a test report's URL (URLs read from ``tram/mjson_files``) are dropped
  from the training text;
- training sentences whose text also occurs in the test split are dropped;
- two training regimes: "ATT&CK text only" (what a user gets out of the box; the score→probability map
  and threshold are fitted on TRAM's *training* reports) and "+ TRAM training reports" (the 120 training
  reports added; calibration on a fifth of them held out by report);
- metrics: sentence-level micro/macro P/R/F1 over TRAM's 50 labels (predictions outside them ignored)
  and over all techniques (every predicted technique counts), document-level micro F1 of each report's
  technique set (50 labels), the SoK's mean per-document F1 (empty/empty = 1), throughput (sentences/s,
  one thread) and cold-start time (training incl. calibration);
- the whole document pipeline on the 31 test reports' full texts (``tram/mjson_files``: structure-aware
  segmentation, context blocks never claimed, table cells only through explicit mentions, document-level
  score): document-level precision / recall / F1 of each report's technique set (50 labels), the number of
  claims whose evidence is a heading, TOC line, table header or boilerplate block (goal 0), and how many
  claims the model would have made from those blocks had they been read as prose (what the typing prevents).

    python bench/extract_eval.py [--configs attack,tram] [--out bench/results/extract_eval.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: the throughput goal is per core

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TRAM = (ROOT / ".." / "shared" / "data" / "tram").resolve()

from ttpscope.extract.classifier import (  # noqa: E402
    REPORT_CALIBRATION, TechniqueClassifier, add_labelled, kb_training_set, norm_url)
from ttpscope.extract.labelled import LabelledSentence, read_labelled  # noqa: E402
from ttpscope.kb import load_kb  # noqa: E402


def _key(title: str) -> str:
    return re.sub(r"[^a-z0-9]", "", title.lower())


TEXTS: dict[str, str] = {}  # full text of each TRAM report by title key


def load_tram(kb):
    """(train sentences, test sentences, URL of each report by title key, labels50)."""
    urls = {}
    for f in sorted((TRAM / "mjson_files").glob("*.mjson")):
        signal = json.loads(f.read_bytes())["signal"]
        TEXTS[_key(f.stem)] = signal
        m = re.search(r"^url:\s*(\S+)", signal, re.M)
        if m:
            urls[_key(f.stem)] = m.group(1)
    train = read_labelled(TRAM / "sok_splits" / "tram_train.json", kb).sentences
    test = read_labelled(TRAM / "sok_splits" / "tram_test.json", kb).sentences
    labels50 = (TRAM / "tram2-classes.txt").read_text().split()
    return train, test, urls, labels50


def norm_sentence(s: str) -> str:
    return " ".join(s.lower().split())


# ------------------------------------------------------------------ metrics
def prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def evaluate(preds: list[list[str]], gold: list[LabelledSentence], labels50: list[str],
             doc_preds: dict[str, set[str]] | None = None) -> dict:
    """Sentence and document metrics; a document's predicted set is the union of its sentences' unless
    ``doc_preds`` (the classifier's document step) gives it."""
    L = set(labels50)
    out = {}
    for scope in ("labels50", "all"):
        tp = fp = fn = 0
        per: dict[str, list[int]] = {}
        for pred, g in zip(preds, gold):
            p = set(pred) & L if scope == "labels50" else set(pred)
            gs = set(g.labels)
            tp += len(p & gs)
            fp += len(p - gs)
            fn += len(gs - p)
            for t in p | gs:
                c = per.setdefault(t, [0, 0, 0])
                c[0] += t in p and t in gs
                c[1] += t in p and t not in gs
                c[2] += t in gs and t not in p
        labs = labels50 if scope == "labels50" else sorted(per)
        macro = [prf(*per.get(t, [0, 0, 0])) for t in labs]
        out[scope] = {"micro": dict(zip("prf", prf(tp, fp, fn))),
                      "macro": dict(zip("prf", np.mean(macro, axis=0).tolist() if macro else [0, 0, 0]))}
    docs: dict[str, list[set]] = {}
    for pred, g in zip(preds, gold):
        d = docs.setdefault(g.document, [set(), set()])
        d[0] |= set(pred) & L
        d[1] |= set(g.labels)
    if doc_preds is not None:
        for name, d in docs.items():
            d[0] = set(doc_preds.get(name, ())) & L
    tp = fp = fn = 0
    per_doc = []
    for p, gs in docs.values():
        tp += len(p & gs)
        fp += len(p - gs)
        fn += len(gs - p)
        per_doc.append(1.0 if not p and not gs else prf(len(p & gs), len(p - gs), len(gs - p))[2])
    out["document_micro_f1"] = prf(tp, fp, fn)[2]
    out["sok_mean_document_f1"] = float(np.mean(per_doc))
    return out


# ------------------------------------------------------------------ baseline
class Baseline:
    """TF-IDF word uni+bigrams (scikit-learn's own tokenizer) + one-vs-rest logistic regression (SGD,
    log loss), thresholded on its probabilities; threshold chosen on the same held-out data as ttpscope."""

    def __init__(self):
        self.threshold = 0.5

    def fit(self, texts, labels):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import SGDClassifier

        self.vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        X = self.vec.fit_transform(texts)
        self.labels = sorted({t for ls in labels for t in ls})
        col = {t: j for j, t in enumerate(self.labels)}
        Y = np.zeros((len(texts), len(self.labels)), dtype=np.int8)
        for i, ls in enumerate(labels):
            for t in ls:
                Y[i, col[t]] = 1
        W = np.zeros((X.shape[1], len(self.labels)), dtype=np.float32)
        self.b = np.zeros(len(self.labels))
        for j in range(len(self.labels)):
            clf = SGDClassifier(loss="log_loss", alpha=1e-5, max_iter=6, tol=None, random_state=j).fit(X, Y[:, j])
            W[:, j] = clf.coef_[0]
            self.b[j] = clf.intercept_[0]
        import scipy.sparse as sp

        self.W = sp.csr_matrix(W)
        return self

    def proba(self, texts):
        s = np.asarray((self.vec.transform(texts) @ self.W).todense()) + self.b
        return 1 / (1 + np.exp(-s))

    def predict(self, texts):
        P = self.proba(texts)
        return [[self.labels[j] for j in np.where(row >= self.threshold)[0]] for row in P]

    def choose_threshold(self, sentences: list[LabelledSentence]):
        P = self.proba([s.text for s in sentences])
        best = (0.0, 0.5)
        for th in np.linspace(0.02, 0.95, 94):
            tp = fp = fn = 0
            for row, s in zip(P, sentences):
                p = {self.labels[j] for j in np.where(row >= th)[0]}
                g = set(s.labels)
                tp += len(p & g)
                fp += len(p - g)
                fn += len(g - p)
            f = prf(tp, fp, fn)[2]
            if f > best[0]:
                best = (f, float(th))
        self.threshold = best[1]


def split_held_out(train: list[LabelledSentence], seed: int = 0):
    import zlib

    docs = sorted({s.document for s in train})
    held = {d for d in docs if zlib.crc32(f"{seed}:doc:{d}".encode()) % 5 == 0}
    return [s for s in train if s.document not in held], [s for s in train if s.document in held]


# ------------------------------------------------------------------ runs
def timed_predict(fn, texts):
    t0 = time.perf_counter()
    preds = fn(texts)
    return preds, len(texts) / (time.perf_counter() - t0)


def run_config(name: str, kb, base_ts, train, test, labels50, log) -> dict:
    tests = [s.text for s in test]
    rows = {}
    # ---- ttpscope
    t0 = time.perf_counter()
    ts = kb_training_set(kb) if base_ts is None else base_ts
    if name == "attack":
        model = TechniqueClassifier.train(kb, ts, progress=log, calibration=train)
    else:
        ts = _copy(ts)
        add_labelled(ts, train, kb)
        model = TechniqueClassifier.train(kb, ts, progress=log)
    cold = time.perf_counter() - t0
    log(f"{name}: ttpscope trained in {cold:.1f}s, threshold {model.threshold} ({model.info['calibration']})")
    for variant, explicit in (("ttpscope", True), ("ttpscope, classifier only", False)):
        preds, rate = timed_predict(lambda xs: [[c.technique_id for c in cands]
                                                for cands in model.predict(xs, explicit=explicit)], tests)
        rows[variant] = {"metrics": evaluate(preds, test, labels50), "sentences_per_s": rate,
                         "cold_start_s": cold, "threshold": model.threshold}
        if variant == "ttpscope" and model.document:
            # the document step (a technique several sentences state adds up; see TechniqueClassifier)
            cands = model.candidates(tests, explicit=True)
            by_doc: dict[str, list[int]] = {}
            for i, s in enumerate(test):
                by_doc.setdefault(s.document, []).append(i)
            doc_preds = {d: set(model.document_techniques(cands[i] for i in ii)) for d, ii in by_doc.items()}
            rows["ttpscope + document step"] = {"metrics": evaluate(preds, test, labels50, doc_preds),
                                                "sentences_per_s": rate, "cold_start_s": cold,
                                                "threshold": model.threshold, "document_step": model.document}
    # ---- baseline on the same texts and labels
    t0 = time.perf_counter()
    base = Baseline()
    if name == "attack":
        base.fit(ts.texts, ts.labels)
        base.choose_threshold(train)
    else:
        part, held = split_held_out(train)
        base_ts = kb_training_set(kb) if base_ts is None else base_ts
        texts = base_ts.texts + [s.text for s in part]
        labels = base_ts.labels + [s.labels for s in part]
        base.fit(texts, labels).choose_threshold(held)
        th = base.threshold
        base.fit(ts.texts, ts.labels)
        base.threshold = th
    bcold = time.perf_counter() - t0
    log(f"{name}: baseline trained in {bcold:.1f}s, threshold {base.threshold:.2f}")
    preds, rate = timed_predict(base.predict, tests)
    rows["baseline TF-IDF + LR"] = {"metrics": evaluate(preds, test, labels50), "sentences_per_s": rate,
                                    "cold_start_s": bcold, "threshold": base.threshold}
    rows["_calibration"] = model.info["calibration"]
    rows["ttpscope"]["pipeline"] = pipeline_eval(model, kb, test, labels50, log)
    return rows


def pipeline_eval(model, kb, test: list[LabelledSentence], labels50: list[str], log) -> dict:
    """The document pipeline on the test reports' full texts (see the module docstring)."""
    from ttpscope.extract import document_from_text, extract_document
    from ttpscope.extract.sentences import CONTEXT_KINDS, split_sentences

    L = set(labels50)
    gold: dict[str, set[str]] = {}
    for s in test:
        gold.setdefault(s.document, set()).update(set(s.labels) & L)
    tp = fp = fn = 0
    context_claims = prevented = table_claims = claims = docs = 0
    per_doc = []
    t0 = time.perf_counter()
    for name, g in sorted(gold.items()):
        text = TEXTS.get(_key(name))
        if text is None:
            continue
        docs += 1
        doc = document_from_text(text, name, "txt")
        ex = extract_document(doc, kb, classifier=model, with_iocs=False)
        pred = {t.id for t in ex.techniques} & L
        tp += len(pred & g)
        fp += len(pred - g)
        fn += len(g - pred)
        per_doc.append(prf(len(pred & g), len(pred - g), len(g - pred)))
        claims += len(ex.observations)
        context_claims += sum(1 for o in ex.observations if o.evidence.get("kind") in CONTEXT_KINDS)
        table_claims += sum(1 for o in ex.observations if o.evidence.get("kind") == "table")
        ctx = [s.text for s in split_sentences(text) if s.is_context]
        if ctx:
            prevented += sum(len(c) for c in model.predict([" ".join(x.split()) for x in ctx]))
    p, r, f = prf(tp, fp, fn)
    out = {"reports": docs, "document_precision": p, "document_recall": r, "document_f1": f,
           "mean_document_precision": float(np.mean([x[0] for x in per_doc])) if per_doc else 0.0,
           "claims": claims, "claims_from_context_blocks": context_claims, "claims_from_table_cells": table_claims,
           "context_claims_prevented": prevented, "seconds": round(time.perf_counter() - t0, 1)}
    log(f"pipeline on {docs} test reports: {json.dumps(out)}")
    return out


def _copy(ts):
    from ttpscope.extract.classifier import TrainingSet

    out = TrainingSet()
    for i in range(len(ts)):
        out.add(ts.texts[i], ts.labels[i], ts.weights[i], ts.groups[i], ts.in_report[i])
    return out


def fmt_table(results: dict) -> str:
    head = ("| training data | system | s-P | s-R | s-F1 (50) | s-macroF1 (50) | s-F1 (all) | doc micro-F1 | "
            "SoK mean doc F1 | sent/s | cold start s |")
    lines = [head, "|" + "---|" * 11]
    names = {"attack": "ATT&CK text only", "tram": "+ TRAM training reports"}
    for cfg, rows in results.items():
        base = rows["baseline TF-IDF + LR"]
        for system, r in rows.items():
            if system.startswith("_"):
                continue
            m = r["metrics"]
            lines.append(
                f"| {names[cfg]} | {system} | {m['labels50']['micro']['p']:.3f} | {m['labels50']['micro']['r']:.3f} | "
                f"{m['labels50']['micro']['f']:.3f} | {m['labels50']['macro']['f']:.3f} | {m['all']['micro']['f']:.3f} | "
                f"{m['document_micro_f1']:.3f} | {m['sok_mean_document_f1']:.3f} | {r['sentences_per_s']:.0f} | "
                f"{r['cold_start_s']:.0f} |")
        ours = rows["ttpscope"]
        bm, om = base["metrics"], ours["metrics"]
        lines.append(
            f"| {names[cfg]} | ratio ttpscope / baseline | | | "
            f"{om['labels50']['micro']['f'] / max(bm['labels50']['micro']['f'], 1e-9):.2f}× | | "
            f"{om['all']['micro']['f'] / max(bm['all']['micro']['f'], 1e-9):.2f}× | "
            f"{om['document_micro_f1'] / max(bm['document_micro_f1'], 1e-9):.2f}× | "
            f"{om['sok_mean_document_f1'] / max(bm['sok_mean_document_f1'], 1e-9):.2f}× | "
            f"{ours['sentences_per_s'] / max(base['sentences_per_s'], 1e-9):.2f}× | "
            f"{ours['cold_start_s'] / max(base['cold_start_s'], 1e-9):.2f}× |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="attack,tram", help="attack, tram or both (comma-separated)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "extract_eval.json"))
    args = ap.parse_args()
    started = time.perf_counter()

    def log(*a):
        if len(a) == 3 and isinstance(a[1], int):  # a training progress callback
            stage, done, total = a
            if done == total:
                print(f"  {stage}: {total} techniques", file=sys.stderr, flush=True)
            return
        print(*a, file=sys.stderr, flush=True)

    kb = load_kb("enterprise", "embedded")
    train, test, urls, labels50 = load_tram(kb)
    test_docs = {s.document for s in test}
    test_urls = [u for k, u in urls.items() if k in {_key(d) for d in test_docs}]
    missing = len(test_docs) - len(test_urls)
    ts = kb_training_set(kb, exclude_urls=test_urls)
    full = kb_training_set(kb)
    dropped_procs = len(full) - len(ts)
    test_text = {norm_sentence(s.text) for s in test}
    train_clean = [s for s in train if norm_sentence(s.text) not in test_text]
    protocol = {
        "kb": kb.label, "train_reports": len({s.document for s in train}), "test_reports": len(test_docs),
        "test_sentences": len(test), "test_report_urls_found": len(test_urls), "test_report_urls_missing": missing,
        "procedure_examples_dropped_citing_test_reports": dropped_procs,
        "train_sentences": len(train), "train_sentences_dropped_duplicating_test": len(train) - len(train_clean),
        "kb_training_sentences": len(ts),
        "test_urls_all_tram_reports_cited": sum(1 for p in kb.procedures
                                                if any(norm_url(u) in {norm_url(x) for x in urls.values()}
                                                       for u in p.urls)),
    }
    log(json.dumps(protocol))
    results = {}
    for cfg in [c.strip() for c in args.configs.split(",") if c.strip()]:
        results[cfg] = run_config(cfg, kb, ts, train_clean, test, labels50, log)
    table = fmt_table(results)
    print(table)
    print("\n| training data | document pipeline: doc P | doc R | doc F1 | claims | from heading/TOC/table-header/"
          "boilerplate | from table cells | context claims prevented |\n|---|---|---|---|---|---|---|---|")
    for cfg, rows in results.items():
        pl = rows["ttpscope"].get("pipeline") or {}
        if pl:
            print(f"| {cfg} | {pl['document_precision']:.3f} | {pl['document_recall']:.3f} | {pl['document_f1']:.3f} | "
                  f"{pl['claims']} | {pl['claims_from_context_blocks']} | {pl['claims_from_table_cells']} | "
                  f"{pl['context_claims_prevented']} |")
    if "attack" in results:
        cal = results["attack"]["_calibration"]
        print(f"\nATT&CK-only calibration fitted on TRAM training reports: platt {cal.get('platt')}, "
              f"threshold {results['attack']['ttpscope']['threshold']} (shipped: {REPORT_CALIBRATION})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"protocol": protocol, "results": results, "table": table,
                               "seconds": round(time.perf_counter() - started, 1)}, indent=1, default=str))
    print(f"\nwritten {out} ({time.perf_counter() - started:.0f}s)")


if __name__ == "__main__":
    main()
