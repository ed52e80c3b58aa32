"""Benchmark: the whole main job, ``ttpscope investigate``, end to end, as a user runs it; and the detection
part of the same inputs through the real Zircolite.

Inputs:
  example   README command 1: ``examples/evidence`` with ``examples/rules`` (logs of five sources + a report)
  evtx      ``../shared/data/evtx`` (281 EVTX files of EVTX-to-MITRE-Attack), SigmaHQ Windows rules
  lsass1    ``../shared/data/otrf-cross-environment/compound/LSASS_campaign_01`` (two zip archives: the host's
            JSON lines, ~100 MB, and its Zeek logs), SigmaHQ Windows rules
  lsass     all seven LSASS campaigns together (~700 MB of JSON), SigmaHQ Windows rules
  many      generated: one zip of JSON lines where every event is a ``net view`` on a host of its own
            (``--many`` events, default 20,000: ~40k observations, two techniques each), ``examples/rules``;
            what peak RSS does with the number of detections (no Zircolite row)

ttpscope: ``python -m ttpscope investigate INPUT --rules RULES --replace --name bench-INPUT --json`` in a
process of its own (one worker per CPU for the detection, its default): wall seconds, CPU seconds of its
whole process tree (workers included), peak RSS of its largest process (``wait4``), and the per-stage times
it reports (route + KB; rules loaded and compiled; scan = ingest and Sigma evaluation, which stream
together; detections assembled; reports; save to the workspace; analyses; outputs). The compiled-rule cache
is warmed once beforehand, as Zircolite's rule conversion is done once.

Zircolite: ``bench/detect_bench.py``'s runner (its own venv, its own conversion of the SigmaHQ Windows rules,
cached) on the same event logs: the EVTX folder; the example's and the campaigns' JSON lines (the archives'
members unpacked once into the bench cache, as Zircolite reads plain files). Zircolite always runs the SigmaHQ
Windows set, so for ``example`` its row is not the same rule set as ttpscope's (the README's 13 rules).

    PYTHONPATH=src python bench/investigate_bench.py                       # example, evtx, lsass1
    PYTHONPATH=src python bench/investigate_bench.py --inputs lsass --no-peer
JSON: ``bench/results/investigate_bench.json`` (each input keeps its last result).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detect_bench as db  # noqa: E402  (Zircolite's runner, its venv and rule conversion; the timing launcher)

ROOT = db.ROOT
DATA = db.DATA
EXAMPLES = ROOT / "examples"
CAMPAIGNS = sorted((DATA / "otrf-cross-environment" / "compound").glob("LSASS_campaign_0*"))
RESULTS = ROOT / "bench" / "results" / "investigate_bench.json"
STAGES = ("route", "detect_load_rules", "detect_compile", "detect_scan", "detect_results", "reports", "save",
          "analyse", "export")


def evidence(name: str) -> tuple[list[Path], Path]:
    """(evidence paths, rules) of an input."""
    if name == "example":
        return [EXAMPLES / "evidence"], EXAMPLES / "rules"
    if name == "evtx":
        return [DATA / "evtx"], db.RULES
    if name == "lsass1":
        return CAMPAIGNS[:1], db.RULES
    if name == "lsass":
        return CAMPAIGNS, db.RULES
    if name.startswith("many"):
        return [many_detections(int(name[4:] or 20_000))], EXAMPLES / "rules"
    raise SystemExit(f"unknown input {name!r}")


def run_investigate(name: str, out: Path) -> dict:
    paths, rules = evidence(name)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "ttpscope", "investigate", *map(str, paths), "--rules", str(rules), "--replace",
           "--name", f"bench-{name}", "--out", str(out), "--json"]
    r = db.timed(cmd, env=env)
    if r["rc"] != 0:
        raise SystemExit(f"investigate on {name} failed ({r['rc']}):\n{r['stderr'][-3000:]}")
    res = json.loads(r["stdout"])
    events = sum(s.get("read") or 0 for s in res["sources"] if s["kind"] == "log")
    return {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "peak_rss_mb": r["peak_rss_mb"], "events": events,
            "observations": (res.get("summary") or {}).get("observations"),
            "detections": (res.get("summary") or {}).get("detections"),
            "timings": res.get("timings", {}), "files": len(res["sources"])}


def many_detections(n: int) -> Path:
    """A zip of ``n`` Sysmon process-creation events, each a ``net view`` on a host of its own, a minute
    apart: every event is a detection and its own observation (per rule technique)."""
    path = db.CACHE / f"many-detections-{n}.zip"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        minute = i % (60 * 24 * 28)
        when = f"2024-09-{1 + minute // 1440:02d}T{minute // 60 % 24:02d}:{minute % 60:02d}:00.000Z"
        lines.append(json.dumps({
            "Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "Computer": f"WS-{i:06d}.corp.local",
            "TimeCreated": when, "Image": "C:\\Windows\\System32\\net.exe", "CommandLine": f"net view \\\\FS{i % 97:02d}",
            "User": f"CORP\\user{i % 1000:04d}", "ProcessId": str(1000 + i % 60000),
            "ParentImage": "C:\\Windows\\System32\\cmd.exe"}))
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("sysmon.jsonl", "\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def unpacked_json(paths: list[Path], label: str) -> Path:
    """The JSON-lines members of the archives under ``paths``, unpacked once into the bench cache."""
    folder = db.CACHE / f"unpacked-{label}"
    if (folder / ".done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        for archive in sorted(path.rglob("*.zip")):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if info.filename.endswith(".json") and not info.is_dir():
                        target = folder / f"{archive.parent.name}-{Path(info.filename).name}"
                        with zf.open(info) as src, open(target, "wb") as dst:
                            while block := src.read(1 << 20):
                                dst.write(block)
    (folder / ".done").write_text("")
    return folder


def run_peer(name: str, events: int) -> dict:
    """Zircolite's detection on the same event logs (its own conversion of the SigmaHQ Windows rules)."""
    if name == "evtx":
        files = sorted(db.EVTX.rglob("*.evtx"))
        return db.run_zircolite("evtx", files, events)
    if name == "example":
        folder = EXAMPLES / "evidence"
        return db.run_zircolite(name, [folder], events, target=[str(folder)], extra=["-j", "-f", "jsonl"])
    folder = unpacked_json(evidence(name)[0], name)
    return db.run_zircolite(name, [folder], events, target=[str(folder)], extra=["-j", "-f", "json"])


def warm_rule_cache() -> None:
    """Compile the SigmaHQ Windows rules once into the compiled-rule cache (as Zircolite's conversion)."""
    from ttpscope.detect.rules import load_rules
    from ttpscope.detect.runner import compile_ruleset
    from ttpscope.kb import load_kb

    compile_ruleset(load_rules(db.RULES, kb=load_kb("enterprise", "embedded")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", default="example,evtx,lsass1",
                    help="comma list of example, evtx, lsass1, lsass, many[N] (e.g. many20000)")
    ap.add_argument("--no-peer", action="store_true", help="skip Zircolite")
    args = ap.parse_args()
    names = [n for n in args.inputs.split(",") if n]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    warm_rule_cache()
    load = os.getloadavg()
    for name in names:
        with tempfile.TemporaryDirectory(prefix="ttpscope-inv-bench-") as tmp:
            ours = run_investigate(name, Path(tmp) / "out")
        peer = None
        if not args.no_peer and not name.startswith("many"):
            p = run_peer(name, ours["events"])
            peer = {k: p[k] for k in ("wall_s", "cpu_s", "peak_rss_mb", "detections", "rules")}
        results[name] = {"ttpscope": ours, "zircolite": peer, "cpus": os.cpu_count(),
                         "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()]}
        report(name, results[name])
        load = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True))


def report(name: str, r: dict) -> None:
    ours, peer, t = r["ttpscope"], r["zircolite"], r["ttpscope"]["timings"]
    stages = ", ".join(f"{k.removeprefix('detect_')} {t[k]:.2f}" for k in STAGES if k in t)
    print(f"\n{name}: {ours['events']:,} events in {ours['files']} file(s); load avg {r['load_before'][0]:.1f} "
          f"before, {r['load_after'][0]:.1f} after, {r['cpus']} CPUs")
    print(f"  investigate  wall {ours['wall_s']:7.2f} s  CPU {ours['cpu_s']:7.2f} s  (CPU/wall {ours['cpu_s'] / ours['wall_s']:.2f})"
          f"  peak RSS {ours['peak_rss_mb']:7.0f} MB  workers {t.get('detect_workers', '-')}")
    print(f"    stages (s): {stages}")
    detection = t.get("detect_total")
    if peer:
        print(f"  zircolite    wall {peer['wall_s']:7.2f} s  CPU {peer['cpu_s']:7.2f} s  peak RSS {peer['peak_rss_mb']:7.0f} MB"
              f"  detections {peer['detections']:,} ({peer['rules']} rules)")
        if detection:
            print(f"  Zircolite's whole run / ttpscope's detection stage: {peer['wall_s'] / detection:.1f}x; "
                  f"/ ttpscope's whole investigation: {peer['wall_s'] / ours['wall_s']:.1f}x wall, "
                  f"{peer['cpu_s'] / ours['cpu_s']:.1f}x CPU-s")


if __name__ == "__main__":
    main()
