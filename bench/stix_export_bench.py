"""Benchmark: the case's STIX 2.1 bundle export (``export.outputs`` ``stix`` format: ``case_bundle`` and the
file ``bundle.json``), on cases the real main job made.

Inputs (each investigated once into a workspace of the bench cache, without outputs, then reused):
  example   README command 1: ``examples/evidence`` with ``examples/rules`` (logs and a report)
  lsass1    ``../shared/data/otrf-cross-environment/compound/LSASS_campaign_01``, SigmaHQ Windows rules
  manyN     generated (``investigate_bench.many_detections``): N ``net view`` events, each on a host of its
            own, so each is a detection and two observations: the export's size grows with the detections

Each export runs in a fresh process: the stored case is analysed (``analyse_stored_case``), the process's peak
RSS is reset (``/proc/self/clear_refs``), then the bundle is written as ``investigate`` writes it
(``write_outputs(..., ["stix"])``) and timed: objects, seconds, ms per object, bundle MB, peak RSS during the
export (and the analysis' RSS before it).

``--save-reference`` keeps each input's bundle (parsed JSON) in the bench cache; ``--compare`` checks that the
bundle written now equals it as parsed JSON (objects by id), which is how the dict + orjson export was checked
against the stix2-object one it replaced.

    PYTHONPATH=src python bench/stix_export_bench.py --inputs example lsass1 many5000 many20000
    git archive OLD src | tar -x -C /tmp/old && python bench/stix_export_bench.py --src /tmp/old/src --save-reference
JSON: ``bench/results/stix_export_bench.json`` (each input keeps its last result).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detect_bench as db  # noqa: E402  (paths, bench cache)
import investigate_bench as ib  # noqa: E402  (inputs, the generated many-detections zip)

RESULTS = db.ROOT / "bench" / "results" / "stix_export_bench.json"


def _workspace(name: str) -> Path:
    return db.CACHE / f"stix-bench-{name}.duckdb"


def prepare(name: str) -> None:
    """Investigate an input once into its own workspace (no outputs), unless done already."""
    from ttpscope.investigate import investigate
    from ttpscope.store import Workspace

    path = _workspace(name)
    if path.exists():
        return
    paths, rules = ib.evidence(name)
    tmp = path.with_suffix(".tmp.duckdb")
    tmp.unlink(missing_ok=True)
    started = time.perf_counter()
    investigate(paths, rules=rules, name=f"stix-bench-{name}", workspace=Workspace(tmp), formats=(), feeds=False)
    os.replace(tmp, path)
    print(f"prepared {name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(name: str, out_dir: Path) -> dict:
    """Analyse the stored case and time its STIX export, in this (fresh) process."""
    from ttpscope.export.outputs import write_outputs
    from ttpscope.investigate.analysis import analyse_stored_case
    from ttpscope.kb import load_kb
    from ttpscope.store import Workspace

    kb = load_kb("enterprise")
    ws = Workspace(_workspace(name))
    analysis = analyse_stored_case(ws, f"stix-bench-{name}", kb)
    before = _rss_mb("VmRSS")
    analysis_peak = _rss_mb("VmHWM")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak: what follows is the export's own
        reset = True
    except OSError:
        reset = False
    started = time.perf_counter()
    cpu = time.process_time()
    path = write_outputs(analysis, kb, out_dir, ["stix"])["stix"]
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    export_peak = _rss_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(path, "rb") as fh:
        objects = sum(1 for _ in json.load(fh)["objects"])
    return {"input": name, "observations": len(analysis.case.observations), "detections": len(analysis.detections),
            "objects": objects, "export_s": round(wall, 3), "export_cpu_s": round(cpu, 3),
            "ms_per_object": round(1000 * wall / max(objects, 1), 4),
            "bundle_mb": round(path.stat().st_size / 2**20, 2), "rss_before_export_mb": round(before, 1),
            "analysis_peak_rss_mb": round(analysis_peak, 1), "export_peak_rss_mb": round(export_peak, 1),
            "export_rss_growth_mb": round(export_peak - before, 1), "peak_reset": reset, "bundle": str(path)}


def _by_id(path: Path) -> dict:
    with open(path, "rb") as fh:
        bundle = json.load(fh)
    return {"type": bundle["type"], "id": bundle["id"], "order": [o["id"] for o in bundle["objects"]],
            "objects": {o["id"]: o for o in bundle["objects"]}}


def compare(new: Path, ref: Path) -> str:
    a, b = _by_id(new), _by_id(ref)
    if a == b:
        return "equal"
    if a["objects"].keys() != b["objects"].keys():
        return (f"ids differ: {len(a['objects'].keys() - b['objects'].keys())} new, "
                f"{len(b['objects'].keys() - a['objects'].keys())} missing")
    diff = [i for i in a["objects"] if a["objects"][i] != b["objects"][i]]
    if diff:
        first = diff[0]
        keys = sorted(k for k in a["objects"][first].keys() | b["objects"][first].keys()
                      if a["objects"][first].get(k) != b["objects"][first].get(k))
        return f"{len(diff)} object(s) differ, e.g. {first}: {keys}"
    return "same objects, different order or bundle id"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", nargs="+", default=["example", "lsass1", "many5000"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--save-reference", action="store_true", help="keep each bundle as the reference")
    ap.add_argument("--compare", action="store_true", help="compare each bundle with the saved reference")
    ap.add_argument("--label", default="", help="a label stored with the result (e.g. before / after)")
    ap.add_argument("--src", help="the ttpscope source tree to export with (default: this checkout's src), "
                                  "e.g. an unpacked earlier commit for a before/after run")
    args = ap.parse_args()
    if args.child:
        if os.environ.get("STIX_BENCH_SRC"):
            sys.path.insert(0, os.environ["STIX_BENCH_SRC"])
        print(json.dumps(child(args.child, db.CACHE / f"stix-bench-out-{args.child}")))
        return
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in args.inputs:
        prepare(name)
        env = dict(os.environ, STIX_BENCH_SRC=str(Path(args.src).resolve()) if args.src else "")
        r = subprocess.run([sys.executable, __file__, "--child", name], env=env, capture_output=True, text=True,
                           check=False)
        if r.returncode != 0:
            raise SystemExit(f"export of {name} failed:\n{r.stderr[-3000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        bundle = Path(res.pop("bundle"))
        ref = db.CACHE / f"stix-bench-reference-{name}.json"
        if args.save_reference:
            ref.write_bytes(bundle.read_bytes())
        if args.compare:
            res["same_as_reference"] = compare(bundle, ref) if ref.exists() else "no reference saved"
        res["label"] = args.label
        res["src"] = args.src or "this checkout"
        res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        res["load_avg"] = round(os.getloadavg()[0], 2)
        results[f"{name}:{args.label}" if args.label else name] = res
        print(json.dumps(res))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
