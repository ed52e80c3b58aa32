"""Sigma → SIEM query conversion over every SigmaHQ Windows rule: success rate per target, and time against
plain pySigma.

Rules are parsed once with pySigma's own loader (``SigmaCollection.load_ruleset``). For each target,
ttpscope's ``convert_rules`` (per-rule isolation: a deep copy per rule, every failure kept with its reason)
runs beside the plain pySigma peer: a fresh parse of the same files and ``backend.convert_rule`` on each rule
with the same backend and pipeline, counting exceptions. Both must agree on which rules convert; the time
ratio shows what the isolation costs.

    python bench/convert_bench.py [--rules ../shared/data/sigma/rules/windows] [--targets splunk,...]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def parse(folder: Path):
    from sigma.collection import SigmaCollection

    files = sorted(folder.rglob("*.yml"))
    coll = SigmaCollection.load_ruleset([str(f) for f in files], collect_errors=True)
    rules = [r for r in coll.rules if type(r).__name__ == "SigmaRule"]
    return files, rules


def peer(folder: Path, target: str) -> tuple[int, int, float]:
    """Plain pySigma: parse again, convert each rule in place, count successes."""
    from ttpscope.detect.convert import make_backend

    _, rules = parse(folder)
    backend, _ = make_backend(target)
    t0 = time.perf_counter()
    ok = 0
    for rule in rules:
        try:
            if backend.convert_rule(rule):
                ok += 1
        except Exception:  # noqa: BLE001 - the peer counts failures, whatever their type
            pass
    return ok, len(rules), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default=str(ROOT / ".." / "shared" / "data" / "sigma" / "rules" / "windows"))
    ap.add_argument("--targets", default="splunk,elasticsearch,esql,kusto")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "convert_bench.json"))
    args = ap.parse_args()
    from ttpscope.detect.convert import convert_rules

    folder = Path(args.rules).resolve()
    files, rules = parse(folder)
    rows = []
    for target in args.targets.split(","):
        t0 = time.perf_counter()
        res = convert_rules(rules, target)
        ours_t = time.perf_counter() - t0
        peer_ok, peer_n, peer_t = peer(folder, target)
        reasons = collections.Counter(f.error.split(":")[0] for f in res.failures)
        rows.append({"target": target, "pipeline": res.pipeline, "rules": len(res.results),
                     "converted": len(res.queries), "rate": round(res.rate, 4),
                     "peer_converted": peer_ok, "peer_rate": round(peer_ok / peer_n, 4) if peer_n else 0,
                     "seconds": round(ours_t, 2), "peer_seconds": round(peer_t, 2),
                     "time_ratio": round(ours_t / peer_t, 2) if peer_t else None,
                     "failure_reasons": dict(reasons.most_common())})
    print(f"SigmaHQ rules: {folder} ({len(files)} files, {len(rules)} parsed)")
    print(f"{'target':<14}{'pipeline':<26}{'rules':>6}{'converted':>10}{'rate':>8}{'peer rate':>10}"
          f"{'ours s':>8}{'peer s':>8}{'ratio':>7}")
    for r in rows:
        print(f"{r['target']:<14}{r['pipeline']:<26}{r['rules']:>6}{r['converted']:>10}{r['rate']:>8.1%}"
              f"{r['peer_rate']:>10.1%}{r['seconds']:>8}{r['peer_seconds']:>8}{r['time_ratio']:>7}")
    for r in rows:
        if r["failure_reasons"]:
            print(f"  {r['target']} failures: " + ", ".join(f"{k} {v}" for k, v in r["failure_reasons"].items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rules_folder": str(folder), "files": len(files), "parsed": len(rules),
                               "results": rows}, indent=2))


if __name__ == "__main__":
    main()
