"""Rule-based detection coverage: ttpscope vs Dettectinator (DeTT&CT's importer) on the SigmaHQ rules.

Both read the same Sigma folder and answer: which techniques of a group's profile does the rule set detect?

* peer: Dettectinator's ``TechniqueSigmaRules`` plugin (what DeTT&CT users run to fill detection entries
  from Sigma): every ``attack.tNNNN`` tag of every rule file counts, as written.
* ttpscope: ``detect.rules.load_rules`` + ``analyze.coverage.coverage_report``: alerting rules only (level
  low or above, not deprecated/unsupported), tags resolved onto the knowledge base's ATT&CK release
  (revoked ids, v19 moves such as T1685 → T1562.001), sub-technique rules credited to their parent.
  Measured cold (empty parse cache) and warm (the cache the cold run wrote), each in a fresh process.

Same profiles (APT29, FIN7: direct + campaign techniques, embedded ATT&CK v15.1) for both. The table shows
coverage, the technique sets where the two disagree, and the time.

    python bench/coverage_bench.py [--rules ../shared/data/sigma/rules] [--groups APT29,FIN7]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OURS = r"""
import json, sys, time
t0 = time.perf_counter()
from ttpscope.kb import load_kb
from ttpscope.detect.rules import load_rules
from ttpscope.analyze.coverage import coverage_report
from ttpscope.analyze.profile import profile_from_groups
kb = load_kb("enterprise", "embedded")
rules = load_rules([sys.argv[1]], kb=kb)
out = {}
for g in sys.argv[2].split(","):
    rep = coverage_report(kb, rules, profile_from_groups(kb, [g]))
    out[g] = {"coverage": rep["coverage"], "detected": sorted(t["id"] for t in rep["techniques"] if t["detected"]),
              "profile": sorted(t["id"] for t in rep["techniques"])}
out["_seconds"] = time.perf_counter() - t0
print(json.dumps(out))
"""

PEER = r"""
import contextlib, io, json, sys, time
t0 = time.perf_counter()
from dettectinator.plugins.technique_import import TechniqueSigmaRules
with contextlib.redirect_stdout(io.StringIO()):
    use_cases = TechniqueSigmaRules({"folder": sys.argv[1]}).get_attack_techniques(["all"])
tagged = sorted({t for entries in use_cases.values() for e in entries for t in e["techniques"]})
print(json.dumps({"tagged": tagged, "rules": len(use_cases), "_seconds": time.perf_counter() - t0}))
"""


def child(code: str, args: list[str], home: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TTPSCOPE_HOME": home}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default=str((ROOT / ".." / "shared" / "data" / "sigma" / "rules").resolve()))
    ap.add_argument("--groups", default="APT29,FIN7")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "coverage_bench.json"))
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="ttpscope-covbench-")
    t = time.perf_counter()
    cold = child(OURS, [args.rules, args.groups], home)
    warm = child(OURS, [args.rules, args.groups], home)
    peer = child(PEER, [args.rules], home)
    print(f"rules: {args.rules}; total bench time {time.perf_counter() - t:.1f} s\n")
    tagged = set(peer["tagged"])
    rows = []
    for g in args.groups.split(","):
        prof = set(cold[g]["profile"])
        ours = set(cold[g]["detected"])
        theirs = prof & tagged
        rows.append({"group": g, "profile": len(prof), "ours_detected": len(ours),
                     "ours_coverage": round(len(ours) / len(prof), 4), "peer_detected": len(theirs),
                     "peer_coverage": round(len(theirs) / len(prof), 4),
                     "ours_only": sorted(ours - theirs), "peer_only": sorted(theirs - ours)})
    print(f"{'group':<8}{'profile':>8}{'ttpscope':>10}{'peer':>8}  ttpscope only / peer only")
    for r in rows:
        print(f"{r['group']:<8}{r['profile']:>8}{r['ours_coverage']:>10.1%}{r['peer_coverage']:>8.1%}  "
              f"{', '.join(r['ours_only']) or '-'} / {', '.join(r['peer_only']) or '-'}")
    timing = {"ttpscope_cold_s": round(cold["_seconds"], 2), "ttpscope_warm_s": round(warm["_seconds"], 2),
              "peer_s": round(peer["_seconds"], 2)}
    print(f"\n{'run':<28}{'seconds':>8}{'ratio to peer':>15}")
    for name, key in (("ttpscope (cold parse cache)", "ttpscope_cold_s"), ("ttpscope (warm)", "ttpscope_warm_s"),
                      ("Dettectinator Sigma import", "peer_s")):
        print(f"{name:<28}{timing[key]:>8}{timing[key] / timing['peer_s']:>15.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rules": args.rules, "rows": rows, "timing": timing}, indent=2))


if __name__ == "__main__":
    main()
