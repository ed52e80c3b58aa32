"""REST API under bounded loopback load: ttpscope serve vs a minimal mitreattack-python-backed peer server.

Both servers run in their own process (one Uvicorn worker each) on 127.0.0.1 and answer the same questions:

* technique: ``GET /api/techniques/{id}``: the technique with its tactics, platforms, sub-techniques, the
  groups and software using it and its mitigations. The peer looks these up with mitreattack-python's
  ``MitreAttackData`` on the same Enterprise bundle; ttpscope answers with its full view (plus procedures,
  detection components, provenance). ttpscope is measured twice: as served (it keeps serialised answers of
  the immutable KB, ``--cache-size``) and with that cache off, so the view computation itself is timed too.
* attribution: ``GET /api/attribution?techniques=...``: groups ranked for a set of techniques. The peer
  ranks by plain overlap (observed techniques a group uses, via mitreattack-python's group profiles);
  ttpscope runs ``ttpscope.analyze.attribution`` (when that part is installed).

Load: an httpx asyncio client with --concurrency requests in flight, --requests per endpoint (bounded; a
phase also stops after --max-seconds), after a warm-up. Reports requests/s, p50/p95/p99 latency, errors,
and the ttpscope / peer ratios measured in this same run. Writes bench/results/api_bench.json.

Responsiveness: the technique load is also run while investigations of ``examples/evidence`` run back to back
in the server's background worker (uploaded through ``POST /api/cases``), beside the same load on the idle
server.

    python bench/api_bench.py [--requests 1500] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"
sys.path.insert(0, str(ROOT / "src"))

# ---------------------------------------------------------------------------- the peer server
PEER = r'''
import sys
from fastapi import FastAPI, HTTPException, Query
from mitreattack.stix20 import MitreAttackData
import uvicorn

bundle, port = sys.argv[1], int(sys.argv[2])
m = MitreAttackData(bundle)

def ext(obj):
    return next(r["external_id"] for r in obj["external_references"] if r.get("source_name") == "mitre-attack")

by_group = {}
for stix_id, used in m.get_all_techniques_used_by_all_groups().items():
    group = m.get_object_by_stix_id(stix_id)
    by_group[ext(group)] = (group["name"], {ext(u["object"]) for u in used})
app = FastAPI()

@app.get("/api/kb")
def kb():
    return {"ok": True}

@app.get("/api/techniques/{tid}")
def technique(tid: str):
    t = m.get_object_by_attack_id(tid, "attack-pattern")
    if t is None:
        raise HTTPException(404, "no such technique")
    sid = t["id"]
    return {"id": tid, "name": t["name"], "description": t.get("description", ""),
            "tactics": [p["phase_name"] for p in t.get("kill_chain_phases", [])],
            "platforms": t.get("x_mitre_platforms", []),
            "subtechniques": sorted(ext(s["object"]) for s in m.get_subtechniques_of_technique(sid)),
            "groups": sorted(ext(g["object"]) for g in m.get_groups_using_technique(sid)),
            "software": sorted(ext(s["object"]) for s in m.get_software_using_technique(sid)),
            "mitigations": sorted(ext(x["object"]) for x in m.get_mitigations_mitigating_technique(sid))}

@app.get("/api/attribution")
def attribution(techniques: str = Query(...), limit: int = 10):
    observed = {t for t in techniques.replace(",", " ").split() if t}
    ranked = sorted(((len(observed & used) / len(observed), gid, name, sorted(observed & used))
                     for gid, (name, used) in by_group.items()), key=lambda r: (-r[0], r[1]))
    return {"candidates": [{"group_id": g, "name": n, "score": round(s, 4), "explained": e}
                           for s, g, n, e in ranked[:limit]]}

uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
'''


def start_peer(bundle: str, port: int, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PEER, bundle, str(port)], stdout=log, stderr=log)


# ---------------------------------------------------------------------------- the load
async def load(base: str, paths: list[str], n: int, concurrency: int, max_seconds: float) -> dict:
    """Send ``n`` GETs (cycling over ``paths``) with ``concurrency`` in flight; latency per request."""
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    counter = iter(range(n))
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        async def worker() -> None:
            nonlocal errors
            for i in counter:
                if time.monotonic() > deadline:
                    return
                t0 = time.perf_counter()
                try:
                    r = await client.get(paths[i % len(paths)])
                    await r.aread()
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return {"requests": len(latencies), "wall_s": round(wall, 3), "rps": round(len(latencies) / wall, 1),
            "p50_ms": round(q[49] * 1000, 2), "p95_ms": round(q[94] * 1000, 2), "p99_ms": round(q[98] * 1000, 2),
            "statuses": statuses, "errors": errors}


async def busy_load(base: str, token: str, evidence: list[Path], paths: list[str], n: int, concurrency: int,
                    max_seconds: float) -> dict:
    """The technique load while investigations of ``evidence`` run back to back in the server's background
    worker: does the server stay responsive? Reports the load figures plus the investigations it ran."""
    import httpx

    done = {"started": 0, "done": 0, "failed": 0, "errors": []}
    stop_flag = asyncio.Event()

    async def investigations() -> None:
        files = [("file", (p.name, p.read_bytes())) for p in evidence]
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            while not stop_flag.is_set():
                r = await client.post("/api/cases", files=files, data={"name": "bench investigation"},
                                      headers={"Authorization": f"Bearer {token}"})
                if r.status_code != 202:
                    done["errors"].append(f"{r.status_code} {r.text[:200]}")
                    return
                done["started"] += 1
                job = r.json()["job"]["id"]
                while not stop_flag.is_set():
                    state = (await client.get(f"/api/jobs/{job}")).json()
                    if state["state"] in ("done", "failed"):
                        done[state["state"]] += 1
                        if state["state"] == "failed":
                            done["errors"].append(state["error"][:200])
                        break
                    await asyncio.sleep(0.25)

    background = asyncio.create_task(investigations())
    await asyncio.sleep(1.0)  # let the first investigation get going
    result = await load(base, paths, n, concurrency, max_seconds)
    stop_flag.set()
    await background
    return {**result, "investigations": {k: v for k, v in done.items() if k != "errors"},
            "investigation_errors": done["errors"][:3]}


def technique_paths(kb, k: int = 60, seed: int = 7) -> list[str]:
    """A fixed sample of live techniques and sub-techniques that ATT&CK links to at least one group."""
    ids = sorted(t.id for t in kb.live_techniques() if kb.groups_using(t.id, via={"direct"}))
    return [f"/api/techniques/{t}" for t in random.Random(seed).sample(ids, min(k, len(ids)))]


def attribution_paths(kb, k: int = 40, seed: int = 11) -> list[str]:
    """Technique sets of ATT&CK campaigns (5-12 techniques each): realistic attribution queries."""
    sets = []
    for c in sorted(kb.campaigns.values(), key=lambda c: c.id):
        ids = sorted(kb.campaign_techniques(c.id))
        if len(ids) >= 5:
            sets.append(random.Random(seed + len(sets)).sample(ids, min(12, len(ids))))
    return ["/api/attribution?techniques=" + ",".join(s) for s in sets[:k]]


def same_answers(ours: str, peer: str, kb, paths: list[str]) -> dict:
    """Do both servers name the same groups (direct + campaign) and sub-techniques for the techniques?"""
    import httpx

    agree = {"groups": 0, "subtechniques": 0, "checked": 0}
    for path in paths[:15]:
        a, b = httpx.get(ours + path, timeout=120).json(), httpx.get(peer + path, timeout=120).json()
        groups = sorted({g["id"] for g in a["groups"]} | set(kb.groups_using(a["id"], via={"campaign"})))
        agree["groups"] += groups == b["groups"]
        agree["subtechniques"] += sorted(s["id"] for s in a["subtechniques"]) == b["subtechniques"]
        agree["checked"] += 1
    return agree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500, help="requests per endpoint and server")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=60, help="cap on each measured phase")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "api_bench.json"))
    args = parser.parse_args()

    from ttpscope.api.launch import free_port, served, stop, wait_until_up
    from ttpscope.kb import load_kb
    from ttpscope.kb.sources import embedded_path

    kb = load_kb("enterprise", "embedded")
    bundle = str(embedded_path("enterprise"))
    home = Path(tempfile.mkdtemp(prefix="api-bench-"))
    endpoints = {"technique": technique_paths(kb), "attribution": attribution_paths(kb)}
    results: dict[str, dict] = {}
    peer_port = free_port()
    with open(home / "peer.log", "ab") as peer_log:
        peer = start_peer(bundle, peer_port, peer_log)
        peer_url = f"http://127.0.0.1:{peer_port}"
        try:
            rules = ("--rules", str(ROOT / "examples" / "rules"))
            with served(home, TOKEN, ("--bundle", "embedded"), log=home / "serve.log") as ours, \
                    served(home / "nocache", TOKEN, ("--bundle", "embedded", "--cache-size", "0", *rules),
                           log=home / "serve-nocache.log") as ours_nocache:
                wait_until_up(peer, peer_url, timeout=180)
                import httpx

                available = {name: httpx.get(ours + paths[0], timeout=120).status_code == 200 for name, paths in endpoints.items()}
                agreement = same_answers(ours, peer_url, kb, endpoints["technique"])
                evidence = sorted((ROOT / "examples" / "evidence").glob("*.*"))
                if evidence:
                    asyncio.run(load(ours_nocache, endpoints["technique"], args.warmup, args.concurrency,
                                     args.max_seconds))
                    results["responsiveness"] = {
                        "idle": asyncio.run(load(ours_nocache, endpoints["technique"], args.requests // 2,
                                                 args.concurrency, args.max_seconds)),
                        "investigating": asyncio.run(busy_load(ours_nocache, TOKEN, evidence, endpoints["technique"],
                                                               args.requests // 2, args.concurrency,
                                                               args.max_seconds))}
                for name, paths in endpoints.items():
                    for who, base in (("ttpscope", ours), ("ttpscope-nocache", ours_nocache), ("peer", peer_url)):
                        if who.startswith("ttpscope") and not available[name]:
                            results.setdefault(name, {})[who] = {"available": False}
                            continue
                        asyncio.run(load(base, paths, args.warmup, args.concurrency, args.max_seconds))
                        results.setdefault(name, {})[who] = asyncio.run(
                            load(base, paths, args.requests, args.concurrency, args.max_seconds))
        finally:
            stop(peer)

    print(f"loopback, {args.concurrency} in flight, {args.requests} requests per row (after {args.warmup} warm-up); "
          f"peer = minimal FastAPI server over mitreattack-python, same bundle")
    print(f"{'endpoint':<12}{'server':<18}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, rows in results.items():
        if name == "responsiveness":
            continue
        for who, r in rows.items():
            if not r.get("available", True):
                print(f"{name:<12}{who:<18}  not available: ttpscope.analyze.attribution not installed")
                continue
            bad = r["errors"] + sum(n for s, n in r["statuses"].items() if s >= 400)
            print(f"{name:<12}{who:<18}{r['rps']:>9.1f}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['p99_ms']:>9.1f}{bad:>8}")
        for who in ("ttpscope", "ttpscope-nocache"):
            if rows.get(who, {}).get("rps") and rows.get("peer", {}).get("rps"):
                t, p = rows[who], rows["peer"]
                ratio = rows[f"ratio {who} / peer"] = {"rps": round(t["rps"] / p["rps"], 2),
                                                       "p95": round(t["p95_ms"] / p["p95_ms"], 2)}
                print(f"{name:<12}{'ratio ' + who.split('-')[-1] if '-' in who else 'ratio':<18}{ratio['rps']:>8.2f}x"
                      f"{'':>9}{ratio['p95']:>8.2f}x")
    print("ratio = ttpscope / peer: req/s higher is better, p95 lower is better; 'nocache' = --cache-size 0")
    if "responsiveness" in results:
        idle, busy = results["responsiveness"]["idle"], results["responsiveness"]["investigating"]
        inv = busy["investigations"]
        print(f"responsiveness (technique, cache off): idle {idle['rps']:.1f} req/s p95 {idle['p95_ms']:.1f} ms; "
              f"while investigating {busy['rps']:.1f} req/s p95 {busy['p95_ms']:.1f} ms "
              f"(p95 x{busy['p95_ms'] / idle['p95_ms']:.2f}); investigations started {inv['started']}, "
              f"done {inv['done']}, failed {inv['failed']}")
        for err in busy["investigation_errors"]:
            print(f"  investigation problem: {err}")
    print(f"same answers on {agreement['checked']} techniques: groups {agreement['groups']}, "
          f"sub-techniques {agreement['subtechniques']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"requests": args.requests, "concurrency": args.concurrency,
                                          "cpus": os.cpu_count(), "results": results, "agreement": agreement},
                                         indent=2))


if __name__ == "__main__":
    main()
