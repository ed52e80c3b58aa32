"""Knowledge-base speed: ttpscope vs mitreattack-python's MitreAttackData on the same Enterprise bundle.

Each measurement runs in a fresh Python process (median of --runs): library import, bundle load, then five
queries (technique by id, techniques of a group, groups using a technique, sub-techniques, mitigations).
ttpscope is measured cold (no warm cache: parse + index) and warm (its own cache, written by the cold
run). Answers of both libraries are compared so the speed-up is for the same work.

    python bench/kb_bench.py [--runs 5] [--bundle PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
which, bundle = sys.argv[1], sys.argv[2]
if which == "mitreattack":
    from mitreattack.stix20 import MitreAttackData
    t1 = time.perf_counter()
    m = MitreAttackData(bundle)
    t2 = time.perf_counter()
    tech = m.get_object_by_attack_id("T1003.001", "attack-pattern")
    q1 = time.perf_counter()
    group = m.get_object_by_attack_id("G0016", "intrusion-set")
    used = m.get_techniques_used_by_group(group["id"])
    q2 = time.perf_counter()
    users = m.get_groups_using_technique(tech["id"])
    q3 = time.perf_counter()
    parent = m.get_object_by_attack_id("T1003", "attack-pattern")
    subs = m.get_subtechniques_of_technique(parent["id"])
    q4 = time.perf_counter()
    mits = m.get_mitigations_mitigating_technique(tech["id"])
    q5 = time.perf_counter()
    ext = lambda o: next(r["external_id"] for r in o["external_references"] if r.get("source_name") == "mitre-attack")
    answers = {"technique": tech["name"],
               "group_techniques": sorted({ext(u["object"]) for u in used}),
               "groups_using": sorted({ext(u["object"]) for u in users}),
               "subtechniques": sorted({ext(s["object"]) for s in subs}),
               "mitigations": sorted({ext(x["object"]) for x in mits})}
else:
    from ttpscope.kb import load_kb
    t1 = time.perf_counter()
    kb = load_kb("enterprise", bundle)
    t2 = time.perf_counter()
    tech = kb.technique("T1003.001")
    q1 = time.perf_counter()
    used = kb.group_techniques("G0016", via={"direct", "campaign"})  # what mitreattack-python folds in
    q2 = time.perf_counter()
    users = kb.groups_using("T1003.001", via={"direct", "campaign"})
    q3 = time.perf_counter()
    subs = kb.subtechniques("T1003")
    q4 = time.perf_counter()
    mits = kb.mitigations_of("T1003.001")
    q5 = time.perf_counter()
    answers = {"technique": tech.name, "group_techniques": sorted(used), "groups_using": sorted(users),
               "subtechniques": sorted(s.id for s in subs), "mitigations": sorted(m.id for m, _ in mits)}
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "technique": q1 - t2, "group_techniques": q2 - q1,
                  "groups_using": q3 - q2, "subtechniques": q4 - q3, "mitigations": q5 - q4,
                  "total": q5 - t0, "answers": answers}))
"""

STEPS = ["import", "load", "technique", "group_techniques", "groups_using", "subtechniques", "mitigations", "total"]


def run(which: str, bundle: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, which, bundle], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout)


def median_of(results: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in results) for k in STEPS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bundle", default=None, help="Enterprise bundle (default: the embedded v15.1)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "kb_bench.json"))
    args = parser.parse_args()
    from ttpscope.kb.sources import embedded_path

    bundle = args.bundle or str(embedded_path("enterprise"))
    home = tempfile.mkdtemp(prefix="kb-bench-")
    base_env = {**os.environ, "TTPSCOPE_HOME": home}
    cold_env = {**base_env, "TTPSCOPE_NO_KB_CACHE": "1"}

    peer = [run("mitreattack", bundle, base_env) for _ in range(args.runs)]
    cold = [run("ttpscope", bundle, cold_env) for _ in range(args.runs)]
    run("ttpscope", bundle, base_env)  # writes the warm cache
    warm = [run("ttpscope", bundle, base_env) for _ in range(args.runs)]

    # same answers? (mitreattack-python folds nothing else in for these queries)
    agree = {k: peer[0]["answers"][k] == warm[0]["answers"][k] for k in peer[0]["answers"]}
    p, c, w = median_of(peer), median_of(cold), median_of(warm)
    print(f"bundle: {bundle}  runs: {args.runs} (median, fresh process each)")
    print(f"{'step':<18}{'mitreattack-python':>20}{'ttpscope cold':>16}{'ttpscope warm':>16}{'cold x':>9}{'warm x':>9}")
    for step in STEPS:
        ratio_c = p[step] / c[step] if c[step] else float("inf")
        ratio_w = p[step] / w[step] if w[step] else float("inf")
        print(f"{step:<18}{p[step]*1000:>17.1f} ms{c[step]*1000:>13.1f} ms{w[step]*1000:>13.1f} ms"
              f"{ratio_c:>8.1f}x{ratio_w:>8.1f}x")
    print("same answers:", ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in agree.items()))
    for k, v in agree.items():
        if not v:
            a, b = peer[0]["answers"][k], warm[0]["answers"][k]
            print(f"  {k}: mitreattack-python only {sorted(set(a) - set(b))}, ttpscope only {sorted(set(b) - set(a))}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"bundle": bundle, "runs": args.runs, "mitreattack_python": p,
                                          "ttpscope_cold": c, "ttpscope_warm": w, "same_answers": agree}, indent=2))


if __name__ == "__main__":
    main()
