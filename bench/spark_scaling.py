"""Benchmark: where Spark starts to pay off. DuckDB vs Spark local[1], local[2] and a standalone cluster.

The input is the OTRF atomic Windows set (``../shared/data/otrf-atomic-windows``, JSON lines in archives)
read ``k`` times for each scale ``k`` (``--scales 1,4,16``; ``--files N`` takes the first N archives, for a
short run), with the SigmaHQ Windows rules. Configurations, each in its own child process:

  duckdb         the default engine, one process (``workers=1``) and one per CPU (``workers=0``)
  spark-local1   Spark local[1]                (driver and one executor thread in one JVM)
  spark-local2   Spark local[2]
  spark-cluster  a standalone cluster on loopback (master + ``--cluster-workers`` workers of 1 core, 1 GB),
                 started from pyspark's distribution for the run and stopped after it

Printed per (scale, configuration): events, wall seconds, events/s, the driver's share (ingest and
staging in the Python driver: the scan stage's time less the Spark jobs' time is not separable here, so the
share printed is ``1 - spark_jobs / wall`` from Spark's own job timings when available), CPU seconds of
this process tree (the cluster's executors run in the worker JVMs: their CPU is not counted) and the
ratio to DuckDB. JSON: ``bench/results/spark_scaling.json``.

    PYTHONPATH=src python bench/spark_scaling.py                      # 1x, 4x, 16x (long)
    PYTHONPATH=src python bench/spark_scaling.py --scales 1 --files 4 # a few minutes
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

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
RULES = DATA / "sigma" / "rules" / "windows"
OTRF = DATA / "otrf-atomic-windows"
RESULTS = ROOT / "bench" / "results" / "spark_scaling.json"
CONFIGS = ("duckdb-1", "duckdb", "spark-local1", "spark-local2", "spark-cluster")
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # the loopback cluster launcher the tests use


def archives(limit: int | None) -> list[Path]:
    found = sorted(p for p in OTRF.rglob("*") if p.suffix in (".zip", ".gz") and "_metadata" not in p.parts)
    return found[:limit] if limit else found


def cpu_s() -> float:
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def run_one(config: str, scale: int, files: int | None, master: str | None) -> dict:
    from ttpscope.detect.rules import load_rules
    from ttpscope.detect.runner import compile_ruleset, detect
    from ttpscope.kb import load_kb

    kb = load_kb("enterprise", "embedded")
    rs = load_rules(RULES, kb=kb)
    compiled = compile_ruleset(rs)
    paths = archives(files) * scale
    options, engine, workers = {}, "duckdb", 1
    if config == "duckdb":
        workers = 0
    elif config.startswith("spark"):
        engine = "spark"
        options = {"master": master or {"spark-local1": "local[1]", "spark-local2": "local[2]"}[config],
                   "conf": {"spark.driver.host": "127.0.0.1", "spark.driver.memory": "2g"}}
    c0, t0 = cpu_s(), time.perf_counter()
    res = detect(paths, rs, kb=kb, compiled=compiled, engine=engine, engine_options=options, workers=workers)
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    events = res.totals()["read"]
    return {"config": config, "scale": scale, "events": events, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "events_per_s": round(events / wall), "scan_s": round(res.timings["scan"], 2),
            "detections": len(res.detections), "engine_errors": len(res.engine_errors),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "hits": sorted({(d.rule_id, d.source, d.record) for d in res.detections}, key=str)}


def child(config: str, scale: int, files: int | None, master: str | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", config, "--scales", str(scale)]
    if files:
        cmd += ["--files", str(files)]
    if master:
        cmd += ["--master", master]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{config} at {scale}x failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="1,4,16")
    ap.add_argument("--files", type=int, default=None, help="only the first N archives (a short run)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--cluster-workers", type=int, default=2)
    ap.add_argument("--master", help=argparse.SUPPRESS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    if args.worker:
        print(json.dumps(run_one(args.worker, scales[0], args.files, args.master), default=str))
        return
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    rows = []
    for scale in scales:
        base, base_hits = None, None
        for config in configs:
            load = round(os.getloadavg()[0], 2)  # the machine's load as the configuration starts
            if config == "spark-cluster":
                from spark_cluster import standalone_cluster

                with standalone_cluster(workers=args.cluster_workers, cores=1, memory="1g") as cluster:
                    r = child(config, scale, args.files, cluster.master)
            else:
                r = child(config, scale, args.files, None)
            hits = r.pop("hits")
            if config == "duckdb-1":
                base, base_hits = r, hits
            r["vs_duckdb_1"] = round(base["wall_s"] / r["wall_s"], 2) if base else None
            r["same_hits_as_duckdb"] = (hits == base_hits) if base else None
            r["load_avg_1m"] = load
            rows.append(r)
            save(rows, args.files)  # after every row: a long run cut short keeps what it measured
            print(f"{scale}x {config}: {r['events']:,} events, {r['wall_s']} s, {r['events_per_s']:,} ev/s, "
                  f"same hits as duckdb: {r['same_hits_as_duckdb']}", file=sys.stderr)
    header = ("scale", "config", "events", "wall s", "events/s", "CPU s (tree)", "scan s", "peak RSS MB",
              "detections", "vs duckdb-1", "same hits")
    table = [(f"{r['scale']}x", r["config"], f"{r['events']:,}", r["wall_s"], f"{r['events_per_s']:,}", r["cpu_s"],
              r["scan_s"], r["peak_rss_mb"], f"{r['detections']:,}", r["vs_duckdb_1"], r["same_hits_as_duckdb"])
             for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for t in table:
        print("  ".join(str(x).ljust(w) for x, w in zip(t, widths)))
    print(f"\nwritten {RESULTS}")


def save(rows: list[dict], files: int | None) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "cpus": os.cpu_count(), "files": files, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
