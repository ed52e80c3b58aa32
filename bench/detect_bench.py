"""Benchmark: ttpscope's DuckDB Sigma engine against the real Zircolite, same machine, same run.

Peer ``zircolite`` (default): Zircolite itself (``../shared/peers/zircolite``, copied to a writable folder,
run from its own virtual environment made from its ``requirements.txt``) with the SigmaHQ Windows rules
converted by Zircolite from the same YAML (``-r RULES -sr``, done once and cached). Both tools are timed
as a user runs them, whole process (``python zircolite.py -e ...`` and ``ttpscope detect ... --jsonl``;
wall time, CPU seconds of the process tree, peak RSS of its largest process, from ``wait4``); the
ttpscope compiled-rule cache is warmed once beforehand, as Zircolite's conversion is. Agreement is counted
on (rule id, file, EVTX record id). Inputs wired for Zircolite: ``evtx``, ``generated``.

Peer ``method`` (``--peers method``): the Zircolite method rebuilt inside this script: rules converted with pySigma's SQLite backend (Sysmon
and Windows-channel pipelines, as Zircolite's Sysmon rule set is built), events flattened to one wide
table in Python's in-memory SQLite (TEXT COLLATE NOCASE columns), then one query per rule.

Inputs (``../shared/data`` beside the repository):
  evtx       the labelled attack EVTX files of EVTX-to-MITRE-Attack
  otrf       the OTRF atomic Windows datasets (JSON lines inside zip / tar.gz archives)
  generated  >= 5M JSON-lines events generated from the OTRF events (seeded; written to a cache folder,
             never committed); the peer runs on its first ``--peer-max`` events (its events/s is what
             is compared: a 5M-event peer run takes hours)
  10m        the generated set read twice (10M events): ttpscope only, in one process, for its peak RSS

ttpscope runs as its CLI does: with one worker process per CPU when the input has several files (the
peer is single-threaded, as Zircolite is; events per CPU-second are printed for both, counting the
workers). Each (engine, input) runs in a child process so that peak RSS is its own (for ttpscope with
workers: its own plus workers × the largest worker's). Printed: a table with events/s,
wall time, peak RSS, rules compiled/failed, detections and ratios; the agreement of both engines on the
EVTX set, each difference classified; the share of labelled EVTX files per tactic where a rule tagged with
the file's technique (or its parent/sub-technique) fires. JSON: ``bench/results/detect_bench.json``.

    PYTHONPATH=src python bench/detect_bench.py                 # everything
    PYTHONPATH=src python bench/detect_bench.py --inputs evtx   # one input (the others keep their last results)
    PYTHONPATH=src python bench/detect_bench.py --inputs evtx --repeat 1 --peers zircolite,method
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
RULES = DATA / "sigma" / "rules" / "windows"
EVTX = DATA / "evtx" / "evtx-to-mitre-attack"
OTRF = DATA / "otrf-atomic-windows"
RESULTS = ROOT / "bench" / "results" / "detect_bench.json"
CACHE = Path(os.environ.get("TTPSCOPE_BENCH_CACHE", "/tmp/ttpscope-bench"))
SEED = 20240229
ZIRCOLITE = (ROOT / ".." / "shared" / "peers" / "zircolite").resolve()
ZIRCOLITE_VENV = Path(os.environ.get("ZIRCOLITE_VENV", "/tmp/zircolite-venv"))
ZIRCOLITE_COPY = Path(os.environ.get("ZIRCOLITE_COPY", "/tmp/zircolite"))
ZIRCOLITE_RULES = CACHE / "zircolite-rules-windows.json"
sys.path.insert(0, str(ROOT / "src"))  # this checkout's ttpscope, whatever is installed


def peak_rss_mb(workers: int = 0) -> float:
    """Peak RSS of this process, plus ``workers`` times the largest finished worker process (an upper
    bound of their sum: the workers run at the same time)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            + workers * resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def cpu_s() -> float:
    """CPU seconds of this process and its finished workers, all threads (DuckDB's too): steadier than
    wall time on a busy machine."""
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


# ---------------------------------------------------------------------------------------------- inputs
def otrf_archives() -> list[Path]:
    return sorted(p for p in OTRF.rglob("*") if p.suffix in (".zip", ".gz") and "_metadata" not in p.parts)


def iter_otrf_lines():
    """Raw JSON lines of every OTRF archive (macOS metadata members skipped, truncated archives tolerated)."""
    for path in otrf_archives():
        try:
            if path.suffix == ".zip":
                with zipfile.ZipFile(path) as zf:
                    for name in zf.namelist():
                        if name.endswith(".json") and "__MACOSX" not in name:
                            with zf.open(name) as fh:
                                yield from fh
            else:
                with tarfile.open(path, "r|gz") as tf:
                    for m in tf:
                        if m.isfile() and m.name.endswith(".json") and not os.path.basename(m.name).startswith("._"):
                            yield from tf.extractfile(m)
        except (tarfile.TarError, EOFError, OSError, zipfile.BadZipFile):
            continue


def generated_file(events: int) -> Path:
    """>= ``events`` JSON lines from the OTRF events: copies with their host, record number and time shifted
    (seeded), so the classes and the rule hits keep OTRF's mix. Written once, reused."""
    import orjson

    path = CACHE / f"generated-{events}-{SEED}.jsonl"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    base = []
    for raw in iter_otrf_lines():
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            base.append(obj)
    rng = random.Random(SEED)
    tmp = path.with_suffix(".partial")
    written = 0
    copy = 0
    with tmp.open("wb") as fh:
        while written < events:
            order = list(range(len(base)))
            rng.shuffle(order)
            for i in order:
                ev = dict(base[i])
                for key in ("Hostname", "host", "computer_name"):
                    if isinstance(ev.get(key), str):
                        ev[key] = f"{ev[key]}-{copy}"
                if "RecordNumber" in ev:
                    ev["RecordNumber"] = written
                fh.write(orjson.dumps(ev))
                fh.write(b"\n")
                written += 1
                if written >= events:
                    break
            copy += 1
    tmp.rename(path)
    return path


def inputs(name: str, peer_max: int, generated_events: int) -> tuple[list[Path], int | None]:
    if name == "evtx":
        return sorted(EVTX.rglob("*.evtx")), None
    if name == "otrf":
        return otrf_archives(), None
    if name == "generated":
        return [generated_file(generated_events)], peer_max
    if name == "10m":
        g = generated_file(generated_events)
        return [g, g], None
    raise SystemExit(f"unknown input {name}")


# ---------------------------------------------------------------------------------------------- ttpscope
def run_ttpscope(paths: list[Path], workers: int = 0) -> dict:
    from ttpscope.detect.rules import load_rules
    from ttpscope.detect.runner import compile_ruleset, detect
    from ttpscope.kb import load_kb

    kb = load_kb("enterprise", "embedded")
    t0 = time.perf_counter()
    rs = load_rules(RULES, kb=kb)
    compiled = compile_ruleset(rs)  # warm the compiled-rule cache, as Zircolite ships converted rule sets
    t1 = time.perf_counter()
    c1 = cpu_s()
    res = detect(paths, rs, kb=kb, compiled=compiled, workers=workers)  # 0: one process per CPU, as the CLI
    t2 = time.perf_counter()
    c2 = cpu_s()
    events = res.totals()["read"]
    hits = sorted({(d.rule_id, d.source, d.record) for d in res.detections})
    return {"engine": "ttpscope", "events": events, "rejected": res.totals()["rejected"],
            "prepare_s": t1 - t0, "run_s": t2 - t1, "events_per_s": events / (t2 - t1),
            "cpu_s": c2 - c1, "events_per_cpu_s": events / (c2 - c1), "rules": len(rs.rules), "compiled": sum(1 for c in compiled if not c.error),
            "failed": len(res.compile_errors) + len(res.engine_errors),
            "detections": len(res.detections), "hits": hits,
            "peak_rss_mb": peak_rss_mb(res.workers if res.workers > 1 else 0), "workers": res.workers,
            "timings": res.timings}


# ---------------------------------------------------------------------------------------------- whole processes
# A small launcher between this process and the measured one: a child forked from this (big) process
# would keep its peak RSS across exec, so the measured command's own peak could not be told apart.
LAUNCH = ("import os, resource, subprocess, sys; p = subprocess.run(sys.argv[2:]); "
          "r = resource.getrusage(resource.RUSAGE_CHILDREN); "
          "open(sys.argv[1], 'w').write(f'{r.ru_utime + r.ru_stime} {r.ru_maxrss}'); sys.exit(p.returncode)")


def timed(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> dict:
    """Run a command to its end: wall seconds, CPU seconds (user + system of its whole process tree),
    peak RSS (MB, its largest process), exit code and output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".rusage") as usage:
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/env", "python3", "-c", LAUNCH, usage.name, *cmd], cwd=cwd, env=env,
                              stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        cpu, maxrss = (float(x) for x in (usage.read().split() or ["0", "0"]))
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": maxrss / 1024, "rc": proc.returncode,
                "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}


def zircolite_ready() -> None:
    """Zircolite's venv (from its requirements.txt), a writable copy of it, and its conversion of RULES."""
    if not (ZIRCOLITE / "zircolite.py").exists():
        raise SystemExit(f"Zircolite is not at {ZIRCOLITE} (see ../shared/peers/README.md)")
    py = ZIRCOLITE_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ZIRCOLITE_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(ZIRCOLITE / "requirements.txt")], check=True)
    if not (ZIRCOLITE_COPY / "zircolite.py").exists():
        shutil.copytree(ZIRCOLITE, ZIRCOLITE_COPY, dirs_exist_ok=True)
        for p in [ZIRCOLITE_COPY, *ZIRCOLITE_COPY.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    if ZIRCOLITE_RULES.exists():
        return
    # Zircolite converts the YAML itself (pySigma) and saves the ruleset beside it: run once on one file
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "logs"
        one.mkdir()
        shutil.copy(min(EVTX.rglob("*.evtx"), key=lambda p: p.stat().st_size), one)
        before = set(ZIRCOLITE_COPY.glob("ruleset-*.json"))
        r = timed([str(py), "zircolite.py", "-e", str(one), "-r", str(RULES), "-sr", "-q", "-o", f"{tmp}/out.json",
                   "-l", f"{tmp}/z.log"], cwd=ZIRCOLITE_COPY)
        made = sorted(set(ZIRCOLITE_COPY.glob("ruleset-*.json")) - before) or sorted(ZIRCOLITE_COPY.glob("ruleset-*.json"))
        if r["rc"] != 0 or not made:
            raise SystemExit(f"Zircolite could not convert {RULES}:\n{r['stderr'][-2000:]}")
        CACHE.mkdir(parents=True, exist_ok=True)
        shutil.move(str(made[-1]), ZIRCOLITE_RULES)


def run_zircolite(name: str, paths: list[Path], events: int, target: list[str] | None = None,
                  extra: list[str] | None = None) -> dict:
    """Zircolite on an input, as a user runs it (its default: parallel when it judges it useful).
    ``target``/``extra``: its ``-e`` paths and format options for an input not wired here (other benches)."""
    zircolite_ready()
    if target is not None:
        extra = list(extra or [])
    elif name == "evtx":
        target, extra = [str(EVTX)], []
    elif name == "generated":
        target, extra = [str(paths[0])], ["-j"]
    else:
        raise SystemExit(f"input {name} is not wired for Zircolite (evtx, generated)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        r = timed([str(ZIRCOLITE_VENV / "bin" / "python"), "zircolite.py", "-e", *target, *extra,
                   "-r", str(ZIRCOLITE_RULES), "-o", str(out), "-l", f"{tmp}/z.log", "-q"], cwd=ZIRCOLITE_COPY)
        if r["rc"] != 0:
            raise SystemExit(f"Zircolite on {name} failed ({r['rc']}):\n{r['stderr'][-3000:]}")
        found = json.loads(out.read_text()) if out.exists() else []
    by_name: dict[str, str] = {}
    for p in paths:
        by_name.setdefault(p.name, str(p))  # Zircolite names a file by its base name
    hits = sorted({(rule["id"], by_name.get(m.get("OriginalLogfile"), m.get("OriginalLogfile")),
                    int(m["EventRecordID"]) if str(m.get("EventRecordID", "")).isdigit() else m.get("row_id"))
                   for rule in found for m in rule.get("matches", [])})
    rules = json.loads(ZIRCOLITE_RULES.read_text())
    return {"engine": "zircolite", "events": events, "run_s": r["wall_s"], "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
            "events_per_s": events / r["wall_s"], "events_per_cpu_s": events / r["cpu_s"],
            "peak_rss_mb": r["peak_rss_mb"], "rules": len(rules), "compiled": len(rules), "failed": 0,
            "detections": len(hits), "hits": hits}


def run_ttpscope_cli(name: str, paths: list[Path]) -> dict:
    """``ttpscope detect`` as a user runs it: one process (with its workers), the rules from YAML (the
    compiled-rule cache warmed by a first run, as Zircolite's conversion is done once)."""
    target = [str(EVTX)] if name == "evtx" else [str(p) for p in paths]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "d.jsonl"
        cmd = [sys.executable, "-m", "ttpscope", "detect", *target, "--rules", str(RULES), "--jsonl", str(out),
               "--no-progress"]
        r = timed(cmd, env=env)
        if r["rc"] != 0:
            raise SystemExit(f"ttpscope on {name} failed ({r['rc']}):\n{r['stderr'][-3000:]}")
        hits = set()
        for line in out.read_bytes().splitlines():
            d = json.loads(line)
            hits.add((d["rule_id"], d["source"], d["record"]))
    m = re.search(r"([\d,]+)\s+events\s+read", r["stdout"])
    events = int(m.group(1).replace(",", "")) if m else 0
    m = re.search(r"([\d,]+)/([\d,]+)\s+rules\s+compiled", r["stdout"])
    compiled, rules = (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))) if m else (0, 0)
    return {"engine": "ttpscope", "events": events, "run_s": r["wall_s"], "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
            "events_per_s": events / r["wall_s"], "events_per_cpu_s": events / r["cpu_s"],
            "peak_rss_mb": r["peak_rss_mb"], "rules": rules, "compiled": compiled, "failed": rules - compiled,
            "detections": len(hits), "hits": sorted(hits, key=str)}


# ---------------------------------------------------------------------------------------------- the rebuilt method
def zircolite_flatten(obj, out: dict, prefix: str = "") -> None:
    """Zircolite-style flattening: leaves keep their own name; XML attributes become Parent_Attr."""
    for key, value in obj.items():
        if key == "#attributes" and isinstance(value, dict):
            for a, v in value.items():
                if a != "xmlns":
                    out[f"{prefix}_{a}" if prefix else a] = v
        elif key == "#text":
            out[prefix] = value
        elif isinstance(value, dict):
            zircolite_flatten(value, out, key)
        else:
            out[key.replace(" ", "")] = value


def peer_events(paths: list[Path], max_events: int | None):
    """(source, record, flat dict) from EVTX (evtx parser) and JSON lines (archives too), Zircolite-style."""
    import evtx
    import orjson

    count = 0
    for path in paths:
        if path.suffix == ".evtx":
            try:
                for r in evtx.PyEvtxParser(str(path), skip_errors=True).records_json():
                    flat: dict = {}
                    zircolite_flatten(orjson.loads(r["data"]), flat)
                    if "Name" in flat and "Provider_Name" not in flat:
                        flat["Provider_Name"] = flat.pop("Name")
                    yield str(path), int(flat.get("EventRecordID") or r["event_record_id"]), flat
                    count += 1
            except RuntimeError:
                continue
            continue
        for source, lineno, raw in _json_lines(path):
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(obj, dict):
                continue
            flat = {}
            zircolite_flatten(obj, flat)
            yield source, lineno, flat
            count += 1
            if max_events and count >= max_events:
                return


def _json_lines(path: Path):
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            for name in sorted(zf.namelist()):
                if name.endswith(".json") and "__MACOSX" not in name:
                    with zf.open(name) as fh:
                        for i, raw in enumerate(fh, 1):
                            yield f"{path}!{name}", i, raw
    elif path.name.endswith(".tar.gz"):
        try:
            with tarfile.open(path, "r|gz") as tf:
                for m in tf:
                    if m.isfile() and m.name.endswith(".json") and not os.path.basename(m.name).startswith("._"):
                        for i, raw in enumerate(tf.extractfile(m), 1):
                            yield f"{path}!{m.name}", i, raw
        except (tarfile.TarError, EOFError, OSError):
            return
    else:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            for i, raw in enumerate(fh, 1):
                yield str(path), i, raw


def peer_rules():
    """SigmaHQ rules → SQLite queries with pySigma's sqlite backend and Zircolite's Sysmon pipelines."""
    from sigma.backends.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection
    from sigma.pipelines.sysmon import sysmon_pipeline
    from sigma.pipelines.windows import windows_logsource_pipeline

    queries, failed = [], []
    for path in sorted(RULES.rglob("*.yml")):
        try:
            coll = SigmaCollection.from_yaml(path.read_text(encoding="utf-8"))
            backend = sqliteBackend(processing_pipeline=sysmon_pipeline() + windows_logsource_pipeline())
            for rule in coll.rules:
                for q in backend.convert_rule(rule):
                    queries.append((str(rule.id), q))
        except Exception as exc:  # the peer's own failures are counted and listed
            failed.append((path.name, " ".join(str(exc).split())[:160]))
    return queries, failed


def run_peer(paths: list[Path], max_events: int | None) -> dict:
    import orjson

    t0 = time.perf_counter()
    queries, failed = peer_rules()
    t1 = time.perf_counter()
    c1 = cpu_s()
    con = sqlite3.connect(":memory:")
    con.create_function("regexp", 2, lambda p, v: v is not None and re.search(p, str(v)) is not None,
                        deterministic=True)
    # streamed like Zircolite: a column is added the first time a field is seen, rows go in by the 10,000
    con.execute("CREATE TABLE logs (row_id INTEGER PRIMARY KEY)")
    columns: dict[str, str] = {}  # lower name → name as created
    meta = []

    def value(v):
        return v if v is None or isinstance(v, str) else orjson.dumps(v).decode() if isinstance(v, (list, dict)) \
            else str(v).lower() if isinstance(v, bool) else str(v)

    batch: list[dict] = []

    def flush():
        by_cols: dict[tuple, list] = {}
        for row_id, flat in batch:
            names = tuple(columns[k.lower()] for k in flat)
            by_cols.setdefault(names, []).append([row_id, *map(value, flat.values())])
        for names, rows in by_cols.items():
            cols = ", ".join(['row_id', *(f'"{n}"' for n in names)])
            con.executemany(f"INSERT INTO logs ({cols}) VALUES ({', '.join('?' * (len(names) + 1))})", rows)
        batch.clear()

    for source, record, flat in peer_events(paths, max_events):
        dedup = {}
        for k, v in flat.items():
            low = k.lower()
            if low not in columns:
                columns[low] = k
                con.execute(f'ALTER TABLE logs ADD COLUMN "{k}" TEXT COLLATE NOCASE')
            dedup.setdefault(low, v)
        batch.append((len(meta), {columns[k]: v for k, v in dedup.items()}))
        meta.append((source, record))
        if len(batch) >= 10000:
            flush()
    flush()
    hits = set()
    query_errors = []
    for rid, q in queries:
        sql = q.replace("SELECT *", "SELECT row_id", 1) if q.startswith("SELECT *") else q
        try:
            for (row_id,) in con.execute(sql):
                source, record = meta[row_id]
                hits.add((rid, source, record))
        except sqlite3.Error as exc:  # a query naming a column no event has, etc.
            query_errors.append((rid, str(exc)[:120]))
    t2 = time.perf_counter()
    c2 = cpu_s()
    events = len(meta)
    return {"engine": "zircolite-method", "events": events, "prepare_s": t1 - t0, "run_s": t2 - t1,
            "events_per_s": events / (t2 - t1), "cpu_s": c2 - c1, "events_per_cpu_s": events / (c2 - c1),
            "rules": len(queries) + len(failed),
            "compiled": len(queries), "failed": len(failed), "failures": failed,
            "query_errors": len(query_errors), "detections": len(hits), "hits": sorted(hits),
            "peak_rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------------------------------------- analysis
_TECH = re.compile(r"^(T\d{4})(?:\.(\d{3}|x+))?", re.I)


def labelled_files() -> dict[str, tuple[str, str]]:
    """EVTX path → (tactic folder, technique id) from EVTX-to-MITRE-Attack's folder names."""
    out = {}
    for path in EVTX.rglob("*.evtx"):
        rel = path.relative_to(EVTX).parts
        if len(rel) >= 3 and rel[0].startswith("TA"):
            m = _TECH.match(rel[1])
            if m:
                tid = m.group(1).upper() + (f".{m.group(2)}" if m.group(2) and m.group(2).isdigit() else "")
                out[str(path)] = (rel[0], tid)
    return out


def tactic_share(hits, rule_techniques: dict[str, list[str]]) -> dict:
    labels = labelled_files()
    fired: dict[str, set[str]] = defaultdict(set)
    for rid, source, _ in hits:
        fired[source].update(rule_techniques.get(rid, []))
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path, (tactic, tid) in labels.items():
        parent = tid.split(".")[0]
        ok = any(t == tid or t.split(".")[0] == parent for t in fired.get(path, ()))
        per[tactic][0] += ok
        per[tactic][1] += 1
    total = [sum(v[0] for v in per.values()), sum(v[1] for v in per.values())]
    return {"per_tactic": {k: {"hit": v[0], "files": v[1], "share": round(v[0] / v[1], 3)} for k, v in sorted(per.items())},
            "all": {"hit": total[0], "files": total[1], "share": round(total[0] / total[1], 3) if total[1] else None}}


def agreement(ours: list, peer: list) -> dict:
    """Compare (rule, file, record) hits; classify each difference by re-reading the event and the rule."""
    from ttpscope.detect.compiler import compile_rule
    from ttpscope.detect.ir import fields_of
    from ttpscope.detect.rules import load_rules
    from ttpscope.ingest import read_table
    from ttpscope.ingest.base import REC, SRC

    a, b = {tuple(h) for h in ours}, {tuple(h) for h in peer}
    only_ours, only_peer = sorted(a - b), sorted(b - a)
    rs = load_rules(RULES)
    by_id = {r.id: r for r in rs.rules}
    files = sorted({s for _, s, _ in only_ours + only_peer})
    events = {}
    if files:
        table, reader = read_table(files)
        for row in table.to_pylist():
            events[(reader.sources[row[SRC]], row[REC])] = {k: v for k, v in row.items() if v is not None}
    reasons: dict[str, Counter] = {"only_ttpscope": Counter(), "only_peer": Counter()}
    examples: dict[str, list] = defaultdict(list)
    for side, diff in (("only_ttpscope", only_ours), ("only_peer", only_peer)):
        for rid, src, rec in diff:
            ev = events.get((src, rec), {})
            info = by_id.get(rid)
            reason = _classify(side, ev, info, compile_rule, fields_of)
            reasons[side][reason] += 1
            if len(examples[reason]) < 3:
                examples[reason].append({"rule": info.title if info else rid, "source": Path(src).name, "record": rec})
    return {"ttpscope": len(a), "peer": len(b), "both": len(a & b), "only_ttpscope": len(only_ours),
            "only_peer": len(only_peer),
            "jaccard": round(len(a & b) / len(a | b), 4) if a | b else 1.0,
            "reasons": {k: dict(v.most_common()) for k, v in reasons.items()}, "examples": dict(examples)}


def _classify(side, ev, info, compile_rule, fields_of) -> str:
    if info is None:
        return "rule not in the ttpscope rule set"
    channel, eid = ev.get("Channel"), ev.get("EventID")
    if side == "only_ttpscope":
        if channel == "Security" and eid in ("4688", "4657") and info.logsource.get("category"):
            return "process/registry rule on Security 4688/4657 (windows-audit mapping; peer maps Sysmon only)"
        cr = compile_rule(info)
        text = repr(cr.variants)
        missing = [f for v in cr.variants.values() for f in fields_of(v) if f and f not in ev]
        if "Not(" in text and missing:
            return "NOT over a field the event lacks (peer's SQL NULL makes the whole condition unknown)"
        if any(f is None for v in cr.variants.values() for f in fields_of(v)):
            return "keyword search (field-less values): peer's sqlite backend does not search all fields"
        return "other (see examples)"
    if side == "only_peer":
        label = ev.get("::logsource") or "unknown"  # the class's log source as ttpscope reads it
        wanted = [v for k in ("category", "service") if (v := info.logsource.get(k))]
        if any(w not in label.split("/") for w in wanted):
            if ev.get("Provider_Name") == "Microsoft-Windows-Eventlog" and eid == "104":
                # System-log event 104: UserData's Channel (the log cleared) replaces the event's own
                return "ttpscope misreads the log source: the cleared log's Channel replaces the System channel"
            return "rule of another log source (peer runs every rule on every event)"
        return "other (see examples)"
    return "?"


# ---------------------------------------------------------------------------------------------- driver
def worker(engine: str, name: str, peer_max: int, generated_events: int) -> None:
    paths, limit = inputs(name, peer_max, generated_events)
    if engine == "ttpscope":  # 10m shows that one process's memory stays bounded however many events
        result = run_ttpscope(paths, workers=1 if name == "10m" else 0)
    else:
        result = run_peer(paths, limit)
    result["input"] = name
    sys.stdout.write(json.dumps(result, default=str))


def child(engine: str, name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", engine, "--inputs", name, "--peer-max", str(args.peer_max),
           "--generated-events", str(args.generated_events)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{engine} on {name} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout)
    res["wall_s"] = time.perf_counter() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", default="evtx,otrf,generated,10m")
    ap.add_argument("--peer-max", type=int, default=200_000, help="events the peer reads of the generated set")
    ap.add_argument("--generated-events", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=5,
                    help="runs per engine on the EVTX set (10k events, a few seconds: the median is reported)")
    ap.add_argument("--peers", default="zircolite",
                    help="zircolite (the real one, whole process), method (rebuilt in this script), or both")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.inputs, args.peer_max, args.generated_events)
        return
    names = [n.strip() for n in args.inputs.split(",") if n.strip()]
    peers = {p.strip() for p in args.peers.split(",") if p.strip()}
    if any(n in ("generated", "10m") for n in names):
        generated_file(args.generated_events)  # generate before timing anything
    if "zircolite" in peers:
        from ttpscope.detect.rules import load_rules
        from ttpscope.detect.runner import compile_ruleset

        zircolite_ready()  # its conversion, once
        compile_ruleset(load_rules(RULES))  # ttpscope's compiled-rule cache, once
    runs = []
    for name in names:
        if "zircolite" in peers and name in ("evtx", "generated"):
            paths, _ = inputs(name, args.peer_max, args.generated_events)
            tries = {"ttpscope": [], "peer": []}
            for _ in range(args.repeat if name == "evtx" else 1):  # alternating pairs, so that drift hits both
                tries["ttpscope"].append(run_ttpscope_cli(name, paths))
                tries["peer"].append(run_zircolite(name, paths, tries["ttpscope"][-1]["events"]))
            ours, peer = (_median(tries[e]) for e in ("ttpscope", "peer"))
            runs.append((name, ours, peer))
            print(f"{name}: ttpscope {ours['events_per_s']:,.0f} ev/s, Zircolite {peer['events_per_s']:,.0f} ev/s",
                  file=sys.stderr)
        if "method" not in peers and name not in ("10m",) and "zircolite" in peers:
            continue
        tries = {"ttpscope": [], "peer": []}
        for _ in range(args.repeat if name == "evtx" else 1):  # alternating, so that drift hits both
            tries["ttpscope"].append(child("ttpscope", name, args))
            if name != "10m" and "method" in peers:
                tries["peer"].append(child("peer", name, args))
        ours, peer = (_median(tries[e]) for e in ("ttpscope", "peer"))
        label = name if (name == "10m" or "zircolite" not in peers) else f"{name} (method)"
        if peer:
            peer["engine"] = "zircolite method"
        runs.append((label, ours, peer))
        print(f"{label}: ttpscope {ours['events_per_s']:,.0f} ev/s"
              + (f", method {peer['events_per_s']:,.0f} ev/s" if peer else ""), file=sys.stderr)
    report(runs, args)


def _median(tries: list[dict]) -> dict | None:
    """The run with the median events/s, carrying every run's events/s."""
    if not tries:
        return None
    ordered = sorted(tries, key=lambda r: r["events_per_s"])
    med = dict(ordered[len(ordered) // 2])
    med["events_per_s_runs"] = [round(r["events_per_s"]) for r in tries]
    return med


def report(runs, args) -> None:
    from ttpscope.detect.rules import load_rules

    rows = []
    out = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
           "rules": str(RULES), "runs": []}
    for name, ours, peer in runs:
        ratio = ours["events_per_s"] / peer["events_per_s"] if peer else None
        cpu_ratio = ours["events_per_cpu_s"] / peer["events_per_cpu_s"] if peer else None
        for r in (ours, peer):
            if r is None:
                continue
            mine = r is ours
            rows.append((name, r["engine"], f"{r['events']:,}", f"{r['events_per_s']:,.0f}",
                         f"{r['events_per_cpu_s']:,.0f}", f"{r['run_s']:.1f}", f"{r['peak_rss_mb']:,.0f}",
                         f"{r['compiled']}/{r['rules']}", f"{r['detections']:,}",
                         f"{ratio:.1f}x" if (mine and ratio) else "", f"{cpu_ratio:.1f}x" if (mine and cpu_ratio) else ""))
        out["runs"].append({"input": name, "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                            "ttpscope": {k: v for k, v in ours.items() if k != "hits"},
                            "peer": {k: v for k, v in peer.items() if k != "hits"} if peer else None,
                            "speedup": round(ratio, 2) if ratio else None,
                            "speedup_cpu": round(cpu_ratio, 2) if cpu_ratio else None})
    header = ("input", "engine", "events", "events/s", "events/CPU-s", "run s", "peak RSS MB", "rules compiled",
              "detections", "speed-up", "speed-up (CPU)")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    evtx = next(((o, p) for n, o, p in runs if n == "evtx"), None)
    if evtx and evtx[1]:
        rs = load_rules(RULES)
        techniques = {r.id: r.techniques for r in rs.rules}
        agree = agreement(evtx[0]["hits"], evtx[1]["hits"])
        shares = {"ttpscope": tactic_share(evtx[0]["hits"], techniques),
                  "peer": tactic_share(evtx[1]["hits"], techniques)}
        out["agreement_evtx"] = agree
        out["tactic_share_evtx"] = shares
        print(f"\nAgreement on the EVTX set (rule, file, record): both {agree['both']:,}, only ttpscope "
              f"{agree['only_ttpscope']:,}, only peer {agree['only_peer']:,} (Jaccard {agree['jaccard']})")
        for side, reasons in agree["reasons"].items():
            for reason, n in reasons.items():
                print(f"  {side:14} {n:5}  {reason}")
        print("\nLabelled EVTX files where a rule tagged with the file's technique fires, per tactic:")
        for tactic in sorted(shares["ttpscope"]["per_tactic"]):
            o, p = shares["ttpscope"]["per_tactic"][tactic], shares["peer"]["per_tactic"][tactic]
            print(f"  {tactic:40} ttpscope {o['hit']:3}/{o['files']:<3} {o['share']:6.1%}   "
                  f"peer {p['hit']:3}/{p['files']:<3} {p['share']:6.1%}")
        o, p = shares["ttpscope"]["all"], shares["peer"]["all"]
        print(f"  {'all':40} ttpscope {o['hit']:3}/{o['files']:<3} {o['share']:6.1%}   "
              f"peer {p['hit']:3}/{p['files']:<3} {p['share']:6.1%}")
    # inputs not run this time keep their last results (each run says when it was measured)
    try:
        previous = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        previous = {}
    done = {r["input"] for r in out["runs"]}
    out["runs"] = [r for r in previous.get("runs", []) if r.get("input") not in done] + out["runs"]
    order = {n: i for i, n in enumerate(("evtx", "otrf", "generated", "10m"))}
    out["runs"].sort(key=lambda r: order.get(r["input"], 99))
    for key in ("agreement_evtx", "tactic_share_evtx"):
        if key not in out and key in previous:
            out[key] = previous[key]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=str))
    print(f"\nwritten {RESULTS}")


if __name__ == "__main__":
    main()
