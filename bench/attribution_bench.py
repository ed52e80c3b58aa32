"""Attribution benchmark: can a method name the group behind techniques it has never been told about?

Run from the repository root:  python bench/attribution_bench.py  [--quick] [--split all|dev|test]

Leakage is the trap. ATT&CK folds a campaign's techniques into its group's profile, and the same source
reports feed campaign, group and software pages, so a naive test asks a method to find a profile that
contains the very answer (simple overlap then scores ~90% top-1 and measures nothing). Both protocols
rebuild every profile per query without the held-out evidence:

(a) campaign -> group. Each ATT&CK campaign attributed to a group, with >= 3 techniques, is a query: its
    techniques. The campaign is removed, and so is every relationship (technique ``uses`` of groups,
    software and other campaigns, and group -> software links) whose citations all come from the
    campaign's own citations (its technique links, software links, attribution link, description and
    object references). Target: the attributed group.
(b) leave-one-report-out. Each report cited by exactly one group's technique links is held out: every
    relationship whose only citation is that report is removed; the query is k in {3, 5, 10} of the
    report's techniques for that group plus m in {0, 3} noise techniques drawn by popularity (share of
    groups using them), 3 draws per report with fixed seeds. Target: that group.

Metrics: top-1, top-5 and MRR, as expected values under random tie-breaking, with 95% bootstrap intervals
over queries (fixed seed). Baselines run in the same process on the same leak-free profiles: group-size
prior, Jaccard, TF-IDF cosine, IDF-weighted overlap, multinomial naive Bayes and report-instance kNN (a
group scores as its single most similar past report, campaign or software). ``ttpscope`` is
``ttpscope.analyze.attribution`` on technique ids only; ``ttpscope+text`` also gets the query's procedure
text (group and campaign names masked), as a report-derived case would.

(c) named entities in real report text. TRAM's 151 annotated reports (``tram/mjson_files``, full text and
    URL) that ATT&CK's procedure examples cite are held out: every relationship citing them is removed
    (and group -> software links cited only by them); the query is what ttpscope's text extraction finds
    in the report (techniques with their confidence, and the groups and software it names), with a
    classifier trained on ATT&CK text that cites none of TRAM's reports. Targets: the groups whose
    procedure examples cite the report (or whose campaigns do, or who operate the software whose
    examples cite it). Only 12 of the 151 reports are cited by ATT&CK v15.1 at all. Methods: ``ttpscope`` (techniques only),
    ``ttpscope+named`` (the same plus the named-entity part of ``ttpscope.analyze.attribution``,
    operators taken from the leak-free group -> software links) and the trivial peer "most-mentioned
    actor" (the named group with most mentions, operators of named software counted per mention).
    Reported separately for reports that name a target (or its software): goal top-3 >= 80% there.
    Large-profile bias: over all 151 reports (the cited ones against their leak-free profiles, the others
    against the whole KB, which no relationship of theirs is in), how often one of the 5 largest profiles
    tops the ranking, and, among reports that name a group, how often the top is a large profile the
    report does not name; for technique-only ttpscope, the same with ``prior_correction`` =
    ``SIZE_CORRECTION`` (part 5 of ``ttpscope.analyze.attribution``) and ttpscope+named.
    ``--named`` runs (c) only; ``--named-limit N`` on the first N reports.

The reports of (b) are split into a dev half and a test half by a hash of their name; every parameter of
ttpscope's method was chosen on the dev half of (b) only; (a) and the test half of (b) are held out.
Writes bench/results/attribution.json.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import re
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from ttpscope.analyze._evaluation import attribution_metrics, bootstrap_ci, paired_bootstrap_ci  # noqa: E402
from ttpscope.analyze._profiles import Corpus, Profiles  # noqa: E402
from ttpscope.analyze.attribution import AttributionParams, build_model  # noqa: E402
from ttpscope.kb import load_kb  # noqa: E402
from ttpscope.kb.sources import resolve_source  # noqa: E402

_CITE = re.compile(r"\(Citation: ([^)]*)\)")
METHODS = ["prior", "jaccard", "tfidf-cosine", "idf-overlap", "naive-bayes", "instance-knn", "ttpscope",
           "text-tfidf", "ttpscope+text"]
BASELINES = METHODS[:6]  # technique ids only; text-tfidf is the peer of ttpscope+text
SIZE_CORRECTION = 0.5  # the prior_correction (c) also measures, beside the library's default
LARGEST = 5  # "large profile": one of the 5 largest groups of the (leak-free) corpus


# ---------------------------------------------------------------------------------------------- data
def relationship_citations(bundle: Path) -> tuple[dict, dict]:
    """Citations the KB model does not keep: group -> software links, and everything a campaign cites."""
    data = orjson.loads(bundle.read_bytes())["objects"]
    ext = {}
    for o in data:
        for r in o.get("external_references") or ():
            if r.get("source_name") == "mitre-attack" and r.get("external_id"):
                ext[o["id"]] = r["external_id"]
    group_sw: dict[tuple[str, str], tuple[str, ...]] = {}
    campaign_cites: dict[str, set[str]] = defaultdict(set)
    for o in data:
        if o.get("type") == "campaign" and o["id"] in ext:
            cid = ext[o["id"]]
            campaign_cites[cid].update(r["source_name"] for r in o.get("external_references") or ()
                                       if r.get("source_name") != "mitre-attack")
            campaign_cites[cid].update(_CITE.findall(o.get("description", "")))
    for o in data:
        if o.get("type") != "relationship" or o.get("revoked"):
            continue
        src, dst = ext.get(o["source_ref"]), ext.get(o["target_ref"])
        if not src or not dst:
            continue
        cites = tuple(r.get("source_name", "") for r in o.get("external_references") or ())
        if o["relationship_type"] == "uses" and src.startswith("G") and dst.startswith("S"):
            group_sw[(src, dst)] = cites
        elif src.startswith("C") and o["relationship_type"] in ("uses", "attributed-to"):
            campaign_cites[src].update(cites)
    return group_sw, campaign_cites


def split_of(report: str) -> str:
    return "dev" if int(hashlib.sha256(report.encode()).hexdigest(), 16) % 2 == 0 else "test"


def seed_of(*parts) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12], 16)


# ---------------------------------------------------------------------------------------------- methods
class Scorers:
    """Every method, fitted on one leak-free corpus; each returns scores over ``self.groups``."""

    def __init__(self, kb, corpus: Corpus, params: AttributionParams):
        self.kb = kb
        self.profiles = Profiles.build(corpus)
        self.model = build_model(kb, self.profiles, params, "group")
        self.groups = self.model.ids  # groups with a non-empty profile
        techs = self.model.structure.ids
        self.col = self.model.structure.index
        G, T = len(self.groups), len(techs)
        self.B = np.zeros((G, T))  # binary profile, all paths
        self.C = np.zeros((G, T))  # supporting relationships per technique
        for i, g in enumerate(self.groups):
            for t, paths in self.profiles.group[g].items():
                self.B[i, self.col[t]] = 1.0
                self.C[i, self.col[t]] = len(paths)
        df = self.B.sum(axis=0)
        self.idf = np.log((1 + G) / (1 + df)) + 1.0
        self.size = self.B.sum(axis=1)
        tf = self.B * self.idf
        self.tfidf = tf / np.maximum(np.linalg.norm(tf, axis=1, keepdims=True), 1e-12)
        alpha = 0.1
        self.lognb = np.log((self.C + alpha) / (self.C.sum(axis=1, keepdims=True) + alpha * T))

    def query(self, ids: list[str]) -> np.ndarray:
        q = np.zeros(len(self.col))
        for t in ids:
            if t in self.col:
                q[self.col[t]] = 1.0
        return q

    def score(self, method: str, ids: list[str], texts: dict[str, list[str]] | None = None) -> np.ndarray:
        q = self.query(ids)
        if method == "prior":
            return self.size.copy()
        if method == "jaccard":
            inter = self.B @ q
            return inter / (self.size + q.sum() - inter)
        if method == "tfidf-cosine":
            v = q * self.idf
            return self.tfidf @ (v / max(np.linalg.norm(v), 1e-12))
        if method == "idf-overlap":
            return self.B @ (q * self.idf)
        if method == "naive-bayes":
            return self.lognb @ q
        if method == "instance-knn":  # the single most similar past report, campaign or software
            sims = self.model.instance_similarity({t: 1.0 for t in ids})
            out = np.zeros(len(self.groups))
            np.maximum.at(out, self.model.instance_owner, sims)
            return out
        if method == "text-tfidf":  # procedure text alone, names masked
            qvec = self.model.text_vector(texts)
            return np.zeros(len(self.groups)) if qvec is None else self.model.text_similarity(qvec)
        if method == "ttpscope":
            return self.model.scores({t: 1.0 for t in ids})
        if method == "ttpscope+text":
            return self.model.scores({t: 1.0 for t in ids}, texts)
        raise ValueError(method)


# ---------------------------------------------------------------------------------------------- protocols
def protocol_a(kb, base: Corpus, group_sw_cites, campaign_cites, params, log) -> list[dict]:
    rows = []
    for cid in base.campaigns:
        targets = base.campaign_groups.get(cid, ())
        procs = [p for p in base.procedures if p.source_id == cid]
        techniques = sorted({p.technique_id for p in procs if p.technique_id in base.techniques})
        if not targets or len(techniques) < 3:
            continue
        cites = set(campaign_cites.get(cid, set()))
        for p in procs:
            cites.update(p.citations)
        corpus = base.without(forget_citations=cites, drop_campaigns=[cid],
                              drop_group_software=[k for k, c in group_sw_cites.items() if c and set(c) <= cites])
        sc = Scorers(kb, corpus, params)
        texts = _texts(procs)
        rows.append({"query": cid, "name": kb.name_of(cid), "target": list(targets), "k": len(techniques),
                     **_evaluate(sc, techniques, texts, targets)})
        log(f"  (a) {cid} -> {targets}: ttpscope rank top1={rows[-1]['ttpscope']['top1']:.2f}")
    return rows


def _texts(procs) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in procs:
        if p.description:
            out.setdefault(p.technique_id, []).append(p.description)
    return out


def _evaluate(sc: Scorers, ids: list[str], texts, targets) -> dict:
    out = {}
    idx = [sc.groups.index(g) for g in targets if g in sc.groups]
    for m in METHODS:
        s = sc.score(m, ids, texts)
        # several attributed groups: the best-placed one counts
        res = [attribution_metrics(s, i) for i in idx] or [{"top1": 0.0, "top5": 0.0, "mrr": 0.0}]
        out[m] = max(res, key=lambda r: r["mrr"])
        if m == "ttpscope":  # kept for calibrating the confidence (not written out)
            out[m] = {**out[m], "_scores": s, "_targets": idx,
                      "_information": sc.model.information({t: 1.0 for t in ids})}
    return out


def protocol_b(kb, base: Corpus, group_sw_cites, params, ks, ms, draws, split, limit, log) -> list[dict]:
    by_report: dict[str, set[str]] = defaultdict(set)
    techs_of: dict[str, set[str]] = defaultdict(set)
    for p in base.procedures:
        if p.source_type == "group":
            for c in p.citations:
                by_report[c].add(p.source_id)
                if p.technique_id in base.techniques:
                    techs_of[c].add(p.technique_id)
    reports = sorted(r for r, g in by_report.items() if len(g) == 1 and len(techs_of[r]) >= min(ks)
                     and (split == "all" or split_of(r) == split))
    if limit:
        reports = reports[:limit]
    full = Profiles.build(base)
    popularity: dict[str, int] = defaultdict(int)
    for prof in full.group.values():
        for t in prof:
            popularity[t] += 1
    pop_ids = sorted(popularity)
    pop_w = [popularity[t] for t in pop_ids]
    rows = []
    t0 = time.time()
    for n, report in enumerate(reports):
        gid = next(iter(by_report[report]))
        corpus = base.without(forget_citations={report},
                              drop_group_software=[k for k, c in group_sw_cites.items() if set(c) == {report}])
        sc = Scorers(kb, corpus, params)
        pool = sorted(techs_of[report])
        # evidence text only from links the report alone supports: a link it shares with another report
        # stays in the profile, word for word, and its text would match itself
        own = [p for p in base.procedures if p.source_id == gid and set(p.citations) == {report}]
        for k in ks:
            if len(pool) < k:
                continue
            for m in ms:
                for d in range(draws):
                    rng = random.Random(seed_of(report, k, m, d))
                    ids = rng.sample(pool, k)
                    noise: list[str] = []
                    while len(noise) < m:
                        t = rng.choices(pop_ids, weights=pop_w)[0]
                        if t not in pool and t not in noise:
                            noise.append(t)
                    texts = _texts([p for p in own if p.technique_id in ids])
                    rows.append({"query": report, "target": [gid], "k": k, "m": m, "draw": d,
                                 "split": split_of(report), **_evaluate(sc, ids + noise, texts, [gid])})
        if (n + 1) % 50 == 0:
            log(f"  (b) {n + 1}/{len(reports)} reports, {time.time() - t0:.0f}s")
    return rows


def protocol_c(kb, base: Corpus, group_sw_cites, params, limit: int, log) -> list[dict]:
    """Named-entity protocol (c), see the module docstring."""
    import json

    from ttpscope.analyze.attribution import named_evidence
    from ttpscope.extract import document_from_text, extract_document
    from ttpscope.extract.classifier import TechniqueClassifier, kb_training_set, norm_url

    tram = (ROOT / ".." / "shared" / "data" / "tram" / "mjson_files").resolve()
    reports = []
    for f in sorted(tram.glob("*.mjson")):
        text = json.loads(f.read_bytes())["signal"]
        m = re.search(r"^url:\s*(\S+)", text, re.M)
        if m:
            reports.append((f.stem.strip(), norm_url(m.group(1)), text))
    urls = {u for _, u, _ in reports}
    cites_of: dict[str, set[str]] = defaultdict(set)  # report url -> citation names
    targets_of: dict[str, set[str]] = defaultdict(set)
    for p in kb.procedures:
        for u, c in zip(p.urls, p.citations) if len(p.urls) == len(p.citations) else ():
            nu = norm_url(u)
            if nu not in urls:
                continue
            cites_of[nu].add(c)
            if p.source_type == "group":
                targets_of[nu].add(p.source_id)
            elif p.source_type == "campaign":
                targets_of[nu].update(base.campaign_groups.get(p.source_id, ()))
            elif p.source_type == "software":  # a report on a software: its operators are the answer
                targets_of[nu].update(g for g, sws in base.group_software.items() if p.source_id in sws)
    held = [(n, u, t) for n, u, t in reports if targets_of.get(u)]
    if limit:
        held = held[:limit]
        reports = held
    log(f"  (c) {len(held)} TRAM reports cited by ATT&CK group/campaign procedure examples; all "
        f"{len(reports)} read for the large-profile measure")
    t0 = time.time()
    clf = TechniqueClassifier.train(kb, kb_training_set(kb, exclude_urls=sorted(urls)))
    log(f"  (c) classifier trained without any TRAM-cited procedure example in {time.time() - t0:.0f}s")
    corrected = replace(params, prior_correction=SIZE_CORRECTION)
    full = None  # reports no ATT&CK relationship cites are leak-free against the whole KB
    rows, bias = [], []
    held_urls = {u for _, u, _ in held}
    for n, (name, url, text) in enumerate(reports):
        if url in held_urls:
            cites = cites_of[url]
            corpus = base.without(forget_citations=cites, drop_group_software=[
                k for k, c in group_sw_cites.items() if c and set(c) <= cites])
            sc, scc = Scorers(kb, corpus, params), Scorers(kb, corpus, corrected)
        else:
            if full is None:
                full = (base, Scorers(kb, base, params), Scorers(kb, base, corrected))
            corpus, sc, scc = full
        ex = extract_document(document_from_text(text, name, "txt"), kb, classifier=clf, with_iocs=False)
        weights: dict[str, float] = {}
        for t in ex.techniques:
            if t.id in sc.col:
                weights[t.id] = max(weights.get(t.id, 0.0), t.confidence)
        named = [{"kind": "group", "id": g["id"], "mentions": g["count"]} for g in ex.groups] + \
                [{"kind": "software", "id": s_["id"], "mentions": s_["count"]} for s_ in ex.software]
        # operators of named software from the leak-free links only
        held_kb = _GroupSoftwareView(kb, corpus.group_software)
        bonus, _ = named_evidence(named, held_kb, params)
        zero = np.zeros(len(sc.groups))
        tech = sc.model.scores(weights) if weights else zero
        tech_c = scc.model.scores(weights) if weights else zero
        plus = tech + np.array([bonus.get(g, 0.0) for g in sc.groups])
        mentions = np.zeros(len(sc.groups))
        for row in named:
            if row["kind"] == "group" and row["id"] in sc.groups:
                mentions[sc.groups.index(row["id"])] += row["mentions"]
            elif row["kind"] == "software":
                ops = [g for g, sws in corpus.group_software.items() if row["id"] in sws and g in sc.groups]
                for g in ops:
                    mentions[sc.groups.index(g)] += row["mentions"] / len(ops)
        methods = (("ttpscope", tech), (f"ttpscope, size-corrected {SIZE_CORRECTION}", tech_c),
                   ("ttpscope+named", plus), ("most-mentioned actor", mentions))
        if weights:
            largest = set(np.array(sc.groups)[np.argsort(-sc.size, kind="stable")[:LARGEST]])
            named_groups = {r["id"] for r in named if r["kind"] == "group"}
            tops = {m: sc.groups[int(np.argmax(s))] for m, s in methods if m != "most-mentioned actor"}
            bias.append({"query": name, "names_group": bool(named_groups & set(sc.groups)),
                         **{m: {"top1": g, "large": g in largest, "named": g in named_groups}
                            for m, g in tops.items()}})
        targets = [g for g in sorted(targets_of.get(url, ())) if g in sc.groups]
        if url not in held_urls or not targets:
            continue
        names_target = any(mentions[sc.groups.index(g)] > 0 for g in targets)
        res = {}
        for method, scores in methods:
            per = [attribution_metrics(scores, sc.groups.index(g), ks=(1, 3, 5)) for g in targets]
            res[method] = max(per, key=lambda r: r["mrr"])
        rows.append({"query": name, "target": targets, "names_target": names_target,
                     "techniques": len(weights), "named": len(named), **res})
        if (n + 1) % 25 == 0:
            log(f"  (c) {n + 1}/{len(reports)} reports, {time.time() - t0:.0f}s")
    return rows, bias


def summarize_bias(bias: list[dict]) -> dict:
    """How often one of the LARGEST biggest profiles tops a report: over all reports read, and over the
    reports naming a group where the top one is a large profile the report does not name."""
    out = {}
    naming = [b for b in bias if b["names_group"]]
    for m in [k for k in (bias[0] if bias else {}) if k not in ("query", "names_group")]:
        out[m] = {"reports": len(bias), "top1_largest": sum(b[m]["large"] for b in bias),
                  "naming_reports": len(naming),
                  "top1_largest_not_named": sum(b[m]["large"] and not b[m]["named"] for b in naming)}
    return out


class _GroupSoftwareView:
    """The KB seen through a leak-free corpus's group -> software links (for ``named_evidence``)."""

    def __init__(self, kb, group_software):
        self.groups, self.software, self.name_of = kb.groups, kb.software, kb.name_of
        self.group_software = {g: list(s) for g, s in group_software.items()}


C_METHODS = ("ttpscope", "ttpscope, size-corrected {}", "ttpscope+named", "most-mentioned actor")


def summarize_c(rows: list[dict]) -> dict:
    out = {}
    for subset, sel in (("all", rows), ("names a target", [r for r in rows if r["names_target"]]),
                        ("names none", [r for r in rows if not r["names_target"]])):
        if not sel:
            continue
        out[subset] = {"reports": len(sel)}
        for m in [x.format(SIZE_CORRECTION) for x in C_METHODS]:
            out[subset][m] = {k: float(np.mean([r[m][k] for r in sel])) for k in ("top1", "top3", "top5", "mrr")}
    return out


# ---------------------------------------------------------------------------------------------- report
def summarize(rows: list[dict], unit: str = "query") -> dict:
    """Per method: mean top1/top5/MRR with bootstrap CIs over query units (draws averaged per unit)."""
    units: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        units[r[unit]].append(r)
    keys = sorted(units)
    out = {"queries": len(keys)}
    for m in METHODS:
        res = {}
        for metric in ("top1", "top5", "mrr"):
            vals = [float(np.mean([r[m][metric] for r in units[k]])) for k in keys]
            lo, hi = bootstrap_ci(vals)
            res[metric] = {"mean": float(np.mean(vals)) if vals else float("nan"), "ci95": [lo, hi]}
            res[metric]["_values"] = vals
        out[m] = res
    best = max(BASELINES, key=lambda m: out[m]["top1"]["mean"])
    out["best_baseline"] = best
    for m in ("ttpscope", "ttpscope+text"):
        peer = best if m == "ttpscope" else max((best, "text-tfidf"), key=lambda x: out[x]["top1"]["mean"])
        lo, hi = paired_bootstrap_ci(out[m]["top1"]["_values"], out[peer]["top1"]["_values"])
        out[m]["top1_gain"] = {"over": peer, "mean": out[m]["top1"]["mean"] - out[peer]["top1"]["mean"],
                               "ci95": [lo, hi]}
    return out


def softmax_prob(scores: np.ndarray, tau: float) -> np.ndarray:
    z = scores / tau
    z = np.exp(z - z.max())
    return z / z.sum()


def fit_temperature(rows: list[dict]) -> float:
    """The softmax temperature that minimises the negative log-likelihood of the right group."""
    usable = [r for r in rows if r["ttpscope"]["_targets"]]
    best, best_nll = 1.0, float("inf")
    for tau in np.geomspace(0.1, 30, 80):
        nll = -np.mean([math.log(max(softmax_prob(r["ttpscope"]["_scores"], tau)[r["ttpscope"]["_targets"]].max(),
                                     1e-12)) for r in usable])
        if nll < best_nll:
            best, best_nll = float(tau), nll
    return best


def calibration(rows: list[dict], tau: float, bins=(0, .1, .2, .4, .6, .8, 1.01)) -> list[dict]:
    """Reliability: among queries whose top confidence falls in a bin, how often the top group is right."""
    conf = [float(softmax_prob(r["ttpscope"]["_scores"], tau).max()) for r in rows]
    out = []
    for lo, hi in zip(bins, bins[1:]):
        sel = [i for i, c in enumerate(conf) if lo <= c < hi]
        if sel:
            out.append({"confidence": [lo, min(hi, 1.0)], "queries": len(sel),
                        "mean_confidence": float(np.mean([conf[i] for i in sel])),
                        "top1": float(np.mean([rows[i]["ttpscope"]["top1"] for i in sel]))})
    return out


def by_information(rows: list[dict], bins=(0, 2, 4, 6, 8, 12, 1e9)) -> list[dict]:
    """ttpscope top-1 by the total rarity of the query (nats): where 'insufficient evidence' should start."""
    out = []
    for lo, hi in zip(bins, bins[1:]):
        sel = [r for r in rows if lo <= r["ttpscope"]["_information"] < hi]
        if sel:
            out.append({"information": [lo, hi if hi < 1e9 else None], "queries": len(sel),
                        "top1": float(np.mean([r["ttpscope"]["top1"] for r in sel]))})
    return out


def public(row: dict) -> dict:
    return {k: ({kk: vv for kk, vv in v.items() if not kk.startswith("_")} if isinstance(v, dict) else v)
            for k, v in row.items()}


def print_table(title: str, summary: dict) -> None:
    best = summary["best_baseline"]
    b1 = summary[best]["top1"]["mean"]
    print(f"\n{title}  ({summary['queries']} queries; best baseline: {best})")
    print(f"{'method':<15} {'top-1':>22} {'top-5':>22} {'MRR':>22} {'top-1 / best':>13}")
    for m in METHODS:
        cells = []
        for metric in ("top1", "top5", "mrr"):
            v = summary[m][metric]
            cells.append(f"{v['mean']:.3f} [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]")
        ratio = summary[m]["top1"]["mean"] / b1 if b1 else float("nan")
        print(f"{m:<15} {cells[0]:>22} {cells[1]:>22} {cells[2]:>22} {ratio:>12.2f}x")
    for m in ("ttpscope", "ttpscope+text"):
        g = summary[m]["top1_gain"]
        print(f"  {m} top-1 gain over {g['over']}: {100 * g['mean']:+.1f} points "
              f"(paired 95% CI {100 * g['ci95'][0]:+.1f} .. {100 * g['ci95'][1]:+.1f})")


def strip(summary: dict) -> dict:
    return {k: ({m: {kk: vv for kk, vv in v.items() if kk != "_values"} for m, v in val.items()}
                if isinstance(val, dict) else val) for k, val in summary.items()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="(b) on 60 reports, 1 draw: a smoke run")
    ap.add_argument("--split", default="all", choices=["all", "dev", "test"], help="reports of (b) to use")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="(b) on the first N reports only")
    ap.add_argument("--named", action="store_true", help="run the named-entity protocol (c) only")
    ap.add_argument("--named-limit", type=int, default=0, help="(c) on the first N reports only")
    ap.add_argument("--prior-correction", type=float, default=None,
                    help="override AttributionParams.prior_correction (0: no large-profile correction)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "attribution.json"))
    args = ap.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.time()
    kb = load_kb("enterprise", "embedded")
    params = AttributionParams() if args.prior_correction is None else \
        AttributionParams(prior_correction=args.prior_correction)
    base = Corpus.from_kb(kb)
    group_sw, campaign_cites = relationship_citations(resolve_source("enterprise", "embedded").path)
    if args.named:
        rows_c, bias = protocol_c(kb, base, group_sw, params, args.named_limit, log)
        sc_ = summarize_c(rows_c)
        print("| (c) reports | method | top-1 | top-3 | top-5 | MRR |\n|---|---|---|---|---|---|")
        for subset, row in sc_.items():
            for m in [x.format(SIZE_CORRECTION) for x in C_METHODS]:
                r = row[m]
                print(f"| {subset} ({row['reports']}) | {m} | {r['top1']:.3f} | {r['top3']:.3f} | {r['top5']:.3f} | "
                      f"{r['mrr']:.3f} |")
        sb = summarize_bias(bias)
        print(f"\n| large-profile bias (top-1 among the {LARGEST} largest profiles) | method | all reports | "
              "reports naming a group: top-1 a large profile it does not name |\n|---|---|---|---|")
        for m, r in sb.items():
            print(f"| TRAM reports | {m} | {r['top1_largest']} / {r['reports']} | "
                  f"{r['top1_largest_not_named']} / {r['naming_reports']} |")
        out = {"kb": kb.provenance(), "params": params.__dict__,
               "c": {"summary": sc_, "queries": rows_c, "large_profile_bias": sb, "bias_rows": bias},
               "seconds": round(time.time() - t0, 1)}
        path = Path(args.out).with_name("attribution_named.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        print(f"\n{out['seconds']}s; wrote {path}")
        return out
    rows_a = protocol_a(kb, base, group_sw, campaign_cites, params, log)
    ks, ms = (3, 5, 10), (0, 3)
    draws = 1 if args.quick else args.draws
    rows_b = protocol_b(kb, base, group_sw, params, ks, ms, draws, args.split,
                        60 if args.quick else args.limit, log)
    result = {"kb": kb.provenance(), "params": params.__dict__, "split": args.split, "draws": draws,
              "seconds": None, "a": {}, "b": {}}
    tau = fit_temperature([r for r in rows_b if r["split"] == "dev"] or rows_b)
    result["temperature"] = {"fitted_on_dev_b": tau, "default": params.temperature}
    sa = summarize(rows_a)
    print_table("(a) campaign -> group, leak-free", sa)
    result["a"] = {"summary": strip(sa), "calibration": calibration(rows_a, tau),
                   "queries": [public(r) for r in rows_a]}
    for k in ks:
        for m in ms:
            sel = [r for r in rows_b if r["k"] == k and r["m"] == m]
            if not sel:
                continue
            sb = summarize(sel)
            print_table(f"(b) leave-one-report-out, k={k}, m={m}", sb)
            result["b"][f"k{k}_m{m}"] = {"summary": strip(sb)}
            for part in ("dev", "test"):
                sub = [r for r in sel if r["split"] == part]
                if sub and args.split == "all":
                    result["b"][f"k{k}_m{m}"][part] = strip(summarize(sub))
    if args.split == "all":
        for part in ("dev", "test"):
            sel = [r for r in rows_b if r["k"] == 5 and r["m"] == 3 and r["split"] == part]
            if sel:
                print_table(f"(b) k=5, m=3, {part} half only", summarize(sel))
    held = [r for r in rows_b if r["split"] == "test"] or rows_b
    result["b_calibration_test"] = calibration(held, tau)
    result["b_by_information"] = by_information(rows_b)
    print(f"\nconfidence: softmax temperature fitted on (b) dev = {tau:.2f} (library default "
          f"{params.temperature}); reliability on (b) test half, all k and m:")
    for b in result["b_calibration_test"]:
        print(f"  confidence {b['confidence'][0]:.1f}-{b['confidence'][1]:.1f}: {b['queries']:5d} queries, "
              f"mean confidence {b['mean_confidence']:.2f}, top-1 {b['top1']:.2f}")
    print("ttpscope top-1 by the rarity of the query (information, nats), (b) all:")
    for b in result["b_by_information"]:
        print(f"  {b['information'][0]:>4} .. {b['information'][1] or '':<4}: {b['queries']:5d} queries, top-1 {b['top1']:.2f}")
    result["seconds"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"\n{result['seconds']}s; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
