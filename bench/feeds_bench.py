"""Feed sync and IOC matching throughput.

1. Sync from a local medallion TAXII 2.1 server (memory backend) and from a local MISP feed folder, at the
   given sizes of generated objects in feed-like proportions (STIX: ~75% indicators, ~20% relationships,
   the rest reports, intrusion sets and malware; MISP: events of 50 attributes). Each sync runs in a fresh
   process (peak RSS is that process's): objects/s, wall time, peak RSS, then a second (no-op) sync's time.
   A local bundle file of the same objects measures the client side alone. medallion is the OASIS
   reference server, not a production one: its memory backend deep-copies and filters the whole
   collection, scanning the manifest per object (quadratic), on every request, so TAXII runs stay small:
   here 1k objects took 14 s, 3k took 169 s (no-op 261 s), and 10k did not finish a first sync in 12
   minutes, nearly all of it medallion's CPU (the client waits on it).
2. IOC matching: N current indicators (IPs, domains, hashes; a few present in the data) against the OTRF
   Windows JSON events: reading alone, matching alone on the read batches, and detection as investigate
   runs it (the SigmaHQ Windows rules, compiled once) without and with the indicators matched in the same
   pass: ``extra_share`` is the detection time the indicators add (goal < 0.25).

    python bench/feeds_bench.py [--taxii-sizes 1000,3000] [--sizes 10000,100000] [--kinds bundle,misp]
                                [--indicators 100000] [--rules DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback medallion helper the tests use

NOW = datetime.now(timezone.utc).replace(microsecond=0)
MEDIA = "application/stix+json;version=2.1"


def ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def stix_objects(n: int) -> list[dict]:
    created = ts(NOW - timedelta(days=3))
    groups = [f"intrusion-set--{uuid.UUID(int=i + 1)}" for i in range(max(n // 500, 1))]
    malware = [f"malware--{uuid.UUID(int=10**6 + i)}" for i in range(max(n // 500, 1))]
    out = [{"type": "intrusion-set", "spec_version": "2.1", "id": g, "created": created, "modified": created,
            "name": f"Group {i}"} for i, g in enumerate(groups)]
    out += [{"type": "malware", "spec_version": "2.1", "id": m, "created": created, "modified": created,
             "name": f"Malware {i}", "is_family": True} for i, m in enumerate(malware)]
    i = 0
    report_refs: list[str] = []
    while len(out) < n:
        i += 1
        iid = f"indicator--{uuid.UUID(int=10**8 + i)}"
        k = i % 4
        if k == 0:
            pattern = f"[domain-name:value = 'h{i}.example.net']"
        elif k == 1:
            pattern = f"[file:hashes.'SHA-256' = '{i:064x}']"
        else:
            pattern = f"[ipv4-addr:value = '10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}']"
        out.append({"type": "indicator", "spec_version": "2.1", "id": iid, "created": created, "modified": created,
                    "name": f"ioc {i}", "pattern": pattern, "pattern_type": "stix", "valid_from": created,
                    "indicator_types": ["malicious-activity"]})
        report_refs.append(iid)
        if i % 4 == 0:
            out.append({"type": "relationship", "spec_version": "2.1", "id": f"relationship--{uuid.UUID(int=2 * 10**8 + i)}",
                        "created": created, "modified": created, "relationship_type": "indicates", "source_ref": iid,
                        "target_ref": malware[i % len(malware)]})
        if len(report_refs) >= 60:
            out.append({"type": "report", "spec_version": "2.1", "id": f"report--{uuid.UUID(int=3 * 10**8 + i)}",
                        "created": created, "modified": created, "name": f"report {i}", "published": created,
                        "object_refs": report_refs})
            report_refs = []
    return out[:n]


def write_medallion(workdir: Path, objects: list[dict]) -> tuple[subprocess.Popen, str]:
    """medallion with the collection pre-filled (its add endpoint is quadratic, so the data file is written)."""
    from kb_servers import _wait_port, free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api_root = f"{base}/api1/"
    coll = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"
    start = NOW - timedelta(hours=1)
    manifest = [{"id": o["id"], "date_added": ts(start + timedelta(milliseconds=i)), "version": o["modified"],
                 "media_type": MEDIA} for i, o in enumerate(objects)]
    data = {"/discovery": {"title": "bench", "description": "", "contact": "", "default": api_root,
                           "api_roots": [api_root]},
            "api1": {"information": {"title": "api1", "description": "", "versions": ["application/taxii+json;version=2.1"],
                                     "max_content_length": 2_000_000_000},
                     "status": [],
                     "collections": [{"id": coll, "title": "bench", "description": "", "can_read": True,
                                      "can_write": False, "media_types": [MEDIA], "objects": objects,
                                      "manifest": manifest}]}}
    (workdir / "data.json").write_text(json.dumps(data))
    config = {"backend": {"module": "medallion.backends.memory_backend", "module_class": "MemoryBackend",
                          "filename": str(workdir / "data.json")},
              "users": {"bench": "bench-pass"}, "taxii": {"max_page_size": 1000}}
    (workdir / "config.json").write_text(json.dumps(config))
    exe = str(Path(sys.executable).parent / "medallion")
    proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port), str(workdir / "config.json")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_port(port, proc, timeout=300)
    return proc, f"{api_root}collections/{coll}/"


def write_misp(root: Path, n: int) -> None:
    """MISP feed folder with ~n objects: events of 50 attributes (each event gives 51 STIX objects)."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = {}
    stamp = int((NOW - timedelta(days=1)).timestamp())
    i = 0
    for e in range(max(n // 51, 1)):
        euuid = str(uuid.UUID(int=4 * 10**8 + e))
        attrs = []
        for _ in range(50):
            i += 1
            k = i % 4
            if k == 0:
                a = {"type": "domain", "value": f"m{i}.example.org"}
            elif k == 1:
                a = {"type": "sha256", "value": f"{i:064x}"}
            else:
                a = {"type": "ip-dst", "value": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"}
            a.update({"uuid": str(uuid.UUID(int=5 * 10**8 + i)), "category": "Network activity", "to_ids": i % 10 != 0,
                      "timestamp": str(stamp)})
            attrs.append(a)
        (root / f"{euuid}.json").write_text(json.dumps({"Event": {"uuid": euuid, "info": f"event {e}",
                                                                  "date": "2026-11-30", "timestamp": str(stamp),
                                                                  "Attribute": attrs}}))
        manifest[euuid] = {"info": f"event {e}", "timestamp": str(stamp)}
    (root / "manifest.json").write_text(json.dumps(manifest))


CHILD = r"""
import json, os, resource, sys, time
from ttpscope.feeds import FeedStore, add_feed, sync_feed
ws, name, kind, url = sys.argv[1:5]
store = FeedStore(ws)
if not any(f["name"] == name for f in store.list_feeds()):
    add_feed(name, kind, url, store, user_env="BENCH_USER", password_env="BENCH_PASS")
t = time.perf_counter()
r = sync_feed(name, store, page_size=1000)
wall = time.perf_counter() - t
# this process's own peak: ru_maxrss survives exec on Linux, so it would report the parent's if larger
hwm_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"wall": wall, "fetched": r.fetched, "new": r.new, "unchanged": r.unchanged, "rejected": r.rejected,
                  "failed": r.failed, "rss_mb": hwm_kb / 1024}))
"""


def child_sync(ws: Path, name: str, kind: str, url: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "BENCH_USER": "bench", "BENCH_PASS": "bench-pass"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(ws), name, kind, url], env=env, capture_output=True,
                         text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_sync(size: int, kinds: list[str], tmp: Path) -> list[dict]:
    rows = []
    if "taxii" in kinds:
        work = tmp / f"taxii-{size}"
        work.mkdir()
        t0 = time.perf_counter()
        proc, url = write_medallion(work, stix_objects(size))
        load = time.perf_counter() - t0
        try:
            first = child_sync(work / "ws.duckdb", "taxii", "taxii", url)
            again = child_sync(work / "ws.duckdb", "taxii", "taxii", url)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        rows.append({"kind": "taxii (medallion)", "size": size, "server_load_s": round(load, 1), **_row(first, again)})
    if "bundle" in kinds:
        work = tmp / f"bundle-{size}"
        work.mkdir()
        (work / "feed.json").write_text(json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                                                    "objects": stix_objects(size)}))
        first = child_sync(work / "ws.duckdb", "bundle", "bundle", str(work / "feed.json"))
        again = child_sync(work / "ws.duckdb", "bundle", "bundle", str(work / "feed.json"))
        rows.append({"kind": "bundle (file)", "size": size, **_row(first, again)})
    if "misp" in kinds:
        work = tmp / f"misp-{size}"
        write_misp(work / "feed", size)
        first = child_sync(work / "ws.duckdb", "misp", "misp", str(work / "feed"))
        again = child_sync(work / "ws.duckdb", "misp", "misp", str(work / "feed"))
        rows.append({"kind": "misp (folder)", "size": size, **_row(first, again)})
    return rows


def _row(first: dict, again: dict) -> dict:
    return {"fetched": first["fetched"], "new": first["new"], "rejected": first["rejected"], "failed": first["failed"],
            "wall_s": round(first["wall"], 2), "objects_per_s": round(first["fetched"] / max(first["wall"], 1e-9)),
            "peak_rss_mb": round(first["rss_mb"]), "noop_fetched": again["fetched"], "noop_s": round(again["wall"], 2),
            "noop_rss_mb": round(again["rss_mb"])}


def bench_matching(n_indicators: int, events_path: Path, rules_dir: Path | None = None) -> dict:
    import pyarrow as pa

    from ttpscope.detect.indicators import match_indicators
    from ttpscope.ingest import EventReader

    t = time.perf_counter()
    batches = list(EventReader([events_path]).batches())
    read_s = time.perf_counter() - t
    events = sum(b.num_rows for b in batches)
    # indicators: mostly absent values, plus a few present in the data (an address, a host name)
    feed, ids, kinds, values = [], [], [], []
    present = []
    for b in batches:
        for col, kind in (("DestinationIp", "ip"), ("QueryName", "domain")):
            if col in b.table.column_names:
                present += [(kind, v.lower()) for v in b.table.column(col).to_pylist()[:5] if v and v != "-"]
    present = sorted(set(present))[:20]
    for i in range(n_indicators):
        if i < len(present):
            kind, value = present[i]
        else:
            k = i % 3
            kind = ("ip", "domain", "hash")[k]
            value = (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", f"h{i}.example.net", f"{i:064x}")[k]
        feed.append("bench")
        ids.append(f"indicator--{uuid.UUID(int=i + 1)}")
        kinds.append(kind)
        values.append(value)
    n = len(ids)
    terms = pa.table({"feed": feed, "indicator_id": ids, "conj": pa.array([0] * n, pa.int32()),
                      "comp": pa.array([0] * n, pa.int32()), "conj_size": pa.array([1] * n, pa.int32()),
                      "kind": kinds, "op": ["eq"] * n, "value": values})
    t = time.perf_counter()
    res = match_indicators(batches, terms)
    match_s = time.perf_counter() - t
    out = {"events": events, "indicators": n, "read_s": round(read_s, 2), "read_events_per_s": round(events / read_s),
           "match_only_s": round(match_s, 2), "match_events_per_s": round(events / match_s),
           "sightings": len(res.sightings), "sighted_events": sum(s.count for s in res.sightings)}
    if rules_dir is None:
        return out
    # detection as investigate runs it: the Sigma rules over the events, without and with the indicators
    # matched in the same pass (rules compiled once beforehand, as a cached rule set is)
    from ttpscope.detect.rules import load_rules
    from ttpscope.detect.runner import compile_ruleset, detect
    from ttpscope.kb import load_kb

    kb = load_kb("enterprise")
    rs = load_rules(rules_dir, kb=kb)
    compiled = compile_ruleset(rs)
    t = time.perf_counter()
    plain = detect([events_path], rs, kb=kb, compiled=compiled)
    detect_s = time.perf_counter() - t
    t = time.perf_counter()
    both = detect([events_path], rs, kb=kb, compiled=compiled, indicators=terms)
    both_s = time.perf_counter() - t
    out.update({"rules": len(rs.rules), "detections": len(plain.detections), "detect_s": round(detect_s, 2),
                "detect_with_indicators_s": round(both_s, 2),
                "extra_share": round((both_s - detect_s) / detect_s, 3),
                "sightings_in_pass": len(both.sightings or []),
                "same_detections": len(both.detections) == len(plain.detections)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000")
    ap.add_argument("--kinds", default="bundle,misp", help="bundle and/or misp at --sizes")
    ap.add_argument("--taxii-sizes", default="1000,3000", help="medallion sizes (its memory backend is "
                    "quadratic in the collection size, so these stay small)")
    ap.add_argument("--indicators", type=int, default=100_000)
    ap.add_argument("--events", default=str(ROOT / ".." / "shared" / "data" / "otrf-cross-environment" / "compound" /
                                            "LSASS_campaign_01" / "metasploit_logonpasswords_lsass_memory_dump.zip"))
    ap.add_argument("--rules", default=str(ROOT / ".." / "shared" / "data" / "sigma" / "rules" / "windows"),
                    help="Sigma rules for the detection-time comparison ('' to skip it)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "feeds_bench.json"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    results = {"machine": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()}, "sync": [], "matching": None}
    with tempfile.TemporaryDirectory(prefix="feeds-bench-") as tmp:
        plan = [(int(s), ["taxii"]) for s in args.taxii_sizes.split(",") if s]
        plan += [(int(s), args.kinds.split(",")) for s in args.sizes.split(",") if s]
        for size, kinds in plan:
            for row in bench_sync(size, kinds, Path(tmp)):
                results["sync"].append(row)
                print(json.dumps(row))
    if args.indicators:
        results["matching"] = bench_matching(args.indicators, Path(args.events).resolve(),
                                             Path(args.rules).resolve() if args.rules else None)
        print(json.dumps(results["matching"]))
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
