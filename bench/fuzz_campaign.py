"""Fuzz campaign over the ingest: real seed files (EVTX, JSON lines, JSON, CSV, Parquet, zip / tar.gz / gz
archives) from ``../shared/data``, mutated (bit flips, byte runs, truncation, chunk damage, spliced lines,
deep nesting, encodings, quote and delimiter damage), each read by :class:`ttpscope.ingest.EventReader`
with the sniffer deciding the format. Per input it checks: no exception escapes, no reader's internal-error
net fired, read = accepted + rejected for every source (and every rejection has a reason), the rows out
equal the records accepted, and the run finishes within a time limit (else: a hang). Reports crashes,
hangs, peak RSS, executions per second; fixed seed, so a run is reproducible.

    python bench/fuzz_campaign.py --executions 1000000 --seed 15 --out bench/results/fuzz_campaign.json
    python bench/fuzz_campaign.py --seconds 180          # a bounded run
    python bench/fuzz_campaign.py --workers 8 ...        # one campaign per process, seeds 15000..15007

The mutators (:func:`mutate`) and seeds (:func:`seed_corpus`) are also used by the property-based tests
(``tests/test_ingest_fuzz.py``).
"""

from __future__ import annotations

import argparse
import faulthandler
import gzip
import io
import os
import random
import resource
import signal
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()

EVTX_SEEDS = (
    "evtx/evtx-to-mitre-attack/TA0008-Lateral Movement/T1550-Use Alternate Authentication Material/"
    "ID4624-Mimikatz Pass the hash.evtx",
    "evtx/evtx-to-mitre-attack/TA0008-Lateral Movement/T1021.006-Windows Remote Management/"
    "ID4656-WS Management listener enumeration.evtx",
)
ZIP_SEEDS = ("otrf-atomic-windows/defense_evasion/host/cmd_netsh_fw_mod_open_ports.zip",
             "otrf-cross-environment/atomic/aws/discovery/aws_s3_honeybucketlogs.zip")
TAR_SEEDS = ("otrf-atomic-windows/persistence/host/covenant_persistwmi.tar.gz",)
CSV_SEEDS = ("atomic-red-team/Indexes-CSV/iaas-index.csv",)
# Seeds are cut to this size (whole lines): an execution's cost grows with its bytes, while the code paths a
# mutant reaches (every reader, container, fault kind) do not; 32 KiB still holds dozens of records per seed
# and a whole EVTX chunk. (256 KiB seeds ran ~60 inputs/s per process; 32 KiB ones several times that.)
MAX_SEED_BYTES = 32 * 1024


def _first_member(path: Path, limit: int = MAX_SEED_BYTES) -> bytes:
    """The first bytes (whole lines) of the first member of a real archive."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            info = max(zf.infolist(), key=lambda i: i.file_size)
            with zf.open(info) as fh:
                data = fh.read(limit)
    else:
        with tarfile.open(path) as tf:
            member = next(m for m in tf if m.isfile() and not m.name.split("/")[-1].startswith("._"))
            data = tf.extractfile(member).read(limit)
    cut = data.rfind(b"\n")
    return data[: cut + 1] if cut > 0 else data


def _whole(data: bytes, limit: int) -> bytes:
    """The first whole lines of data within limit bytes."""
    if len(data) <= limit:
        return data
    return data[: data.rfind(b"\n", 0, limit) + 1]


def seed_corpus(shared: Path = SHARED) -> dict[str, bytes]:
    """name → bytes of real files: EVTX as published, JSON lines and CSV taken from published archives and
    tables, and containers built around them (zip, tar.gz, gz, a JSON array, Parquet of real records)."""
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    seeds: dict[str, bytes] = {}
    for i, rel in enumerate(EVTX_SEEDS):
        seeds[f"evtx{i}.evtx"] = (shared / rel).read_bytes()
    jsonl = _first_member(shared / ZIP_SEEDS[0])
    seeds["events.jsonl"] = jsonl
    seeds["s3.csv"] = _first_member(shared / ZIP_SEEDS[1], MAX_SEED_BYTES // 2)
    seeds["tar.jsonl"] = _first_member(shared / TAR_SEEDS[0], MAX_SEED_BYTES // 2)
    seeds["index.csv"] = _whole((shared / CSV_SEEDS[0]).read_bytes(), MAX_SEED_BYTES)
    records = [orjson.loads(ln) for ln in jsonl.splitlines()[:400] if ln.strip()]
    seeds["array.json"] = orjson.dumps(records[: max(8, len(records) // 2)], option=orjson.OPT_INDENT_2)
    flat = [{k: (v if isinstance(v, str) else orjson.dumps(v).decode()) for k, v in r.items()} for r in records]
    names = sorted({k for r in flat for k in r})[:40]
    table = pa.table({n: [r.get(n) for r in flat] for n in names})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=max(1, len(flat) // 5))
    seeds["events.parquet"] = buf.getvalue()
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/events.json", _whole(jsonl, MAX_SEED_BYTES // 2))
        zf.writestr("b/log.evtx", seeds["evtx0.evtx"])
        zf.writestr("c/rows.csv", _whole(seeds["s3.csv"], MAX_SEED_BYTES // 4))
    seeds["three.zip"] = zbuf.getvalue()
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:gz") as tf:
        for name, data in (("x/events.jsonl", _whole(jsonl, MAX_SEED_BYTES // 2)), ("x/sec.evtx", seeds["evtx1.evtx"])):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    seeds["mixed.tar.gz"] = tbuf.getvalue()
    seeds["events.jsonl.gz"] = gzip.compress(jsonl)
    return seeds


# ---------------------------------------------------------------------------------------------- mutators
def _flip(data: bytearray, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)


def _run(data: bytearray, rng: random.Random) -> None:
    i = rng.randrange(len(data))
    n = rng.choice((1, 4, 64, 512, 4096))
    data[i:i + n] = rng.choice((b"\x00", b"\xff", b"{", b'"', b"\n", b"[", b",")) * min(n, len(data) - i)


def _truncate(data: bytearray, rng: random.Random) -> None:
    del data[rng.randrange(len(data)):]


def _chunk(data: bytearray, rng: random.Random) -> None:
    """EVTX-sized damage: a 64 KiB chunk (or its 512-byte header, or its signature) zeroed or garbled."""
    if len(data) < 4096 + 512:
        return _run(data, rng)
    slots = max(1, (len(data) - 4096) // 65536)
    start = 4096 + rng.randrange(slots) * 65536
    size = rng.choice((8, 512, 65536, rng.randint(1, 2000)))
    fill = rng.choice((b"\x00", b"\xff", bytes([rng.randrange(256)])))
    end = min(len(data), start + size)
    data[start:end] = fill * (end - start)


def _lines(data: bytearray, rng: random.Random) -> None:
    """Lines duplicated, dropped, swapped or cut in half."""
    lines = bytes(data).split(b"\n")
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        op = rng.randrange(4)
        if op == 0:
            lines.insert(i, lines[i])
        elif op == 1 and len(lines) > 1:
            del lines[i]
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines[i] = lines[i][: len(lines[i]) // 2]
    data[:] = b"\n".join(lines)


def _nesting(data: bytearray, rng: random.Random) -> None:
    """A deeply nested object or list put in a line (or replacing the document)."""
    depth = rng.choice((200, 253, 255, 600, 990, 1030, 5000))
    kind = rng.randrange(3)
    if kind == 0:
        deep = b'{"a":' * depth + b"1" + b"}" * depth
    elif kind == 1:
        deep = b'{"x":' + b"[" * depth + b"]" * depth + b"}"
    else:
        deep = b'{"Event":{"System":[' + b"[" * min(depth, 300) + b"]" * min(depth, 300) + b'],"EventData":{}}}'
    lines = bytes(data).split(b"\n")
    lines.insert(rng.randrange(len(lines) + 1), deep)
    data[:] = b"\n".join(lines)


def _encoding(data: bytearray, rng: random.Random) -> None:
    """A byte-order mark, UTF-16, invalid UTF-8, a lone surrogate escape, NaN, a 2^64 integer, stray NULs."""
    op = rng.randrange(7)
    if op == 0:
        data[:0] = b"\xef\xbb\xbf"
    elif op == 1:
        data[:] = bytes(data).decode("utf-8", "replace").encode(rng.choice(("utf-16", "utf-16-le")))
    elif op == 2:
        i = rng.randrange(len(data))
        data[i:i] = rng.choice((b"\xc3", b"\xff\xfe", b"\xed\xa0\x80"))
    elif op == 3:
        data[:0] = rng.choice((b'{"a": "\\ud800"}\n', b'{"a": NaN}\n', b'{"a": 18446744073709551616}\n'))
    elif op == 4:
        for _ in range(rng.randint(1, 3)):
            data.insert(rng.randrange(len(data) + 1), 0)
    elif op == 5:
        data[:] = bytes(data).replace(b",", b";")
    else:
        i = rng.randrange(len(data))
        data.insert(i, ord('"'))


def _long_line(data: bytearray, rng: random.Random) -> None:
    """Newlines removed from a stretch (one very long line)."""
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.choice((1000, 100_000, 1 << 20)))
    data[i:j] = bytes(data[i:j]).replace(b"\n", b" ")


MUTATORS = (_flip, _run, _truncate, _chunk, _lines, _nesting, _encoding, _long_line)


def mutate(data: bytes, rng: random.Random, rounds: int | None = None) -> bytes:
    """One mutant of ``data``: 1–3 rounds of the mutators above (for a compressed seed, sometimes inside
    the compression: the decompressed bytes mutated and recompressed)."""
    out = bytearray(data)
    if data[:2] == b"\x1f\x8b" and rng.random() < 0.5:
        try:
            inner = mutate(gzip.decompress(data), rng, rounds)
            return gzip.compress(inner, compresslevel=1)
        except (OSError, EOFError):
            pass
    for _ in range(rounds or rng.randint(1, 3)):
        if not out:
            break
        rng.choice(MUTATORS)(out, rng)
    return bytes(out)


# ---------------------------------------------------------------------------------------------- one run
class Hang(Exception):
    pass


def read_all(path) -> dict:
    """Read one file (or a list of files, through one reader) with the ingest; the checks of one execution.
    Raises on a crash."""
    from ttpscope.ingest import EventReader
    from ttpscope.ingest.readers import INTERNAL_ERROR

    reader = EventReader(path if isinstance(path, list) else [path], batch_rows=4096, max_buffered=8192)
    rows = sum(b.num_rows for b in reader.batches())
    problems = []
    for s in reader.stats:
        if s.read != s.accepted + s.rejected:
            problems.append(f"{s.source}: read {s.read} != accepted {s.accepted} + rejected {s.rejected}")
        if sum(s.reasons.values()) != s.rejected:
            problems.append(f"{s.source}: {s.rejected} rejected but {sum(s.reasons.values())} with a reason")
        internal = [k for k in s.reasons if k.startswith(INTERNAL_ERROR)]
        if internal:
            problems.append(f"{s.source}: {internal[0]}: {s.samples[-1][1] if s.samples else ''}")
    accepted = sum(s.accepted for s in reader.stats)
    if rows != accepted:
        problems.append(f"{rows} rows out, {accepted} accepted")
    return {"read": sum(s.read for s in reader.stats), "accepted": accepted,
            "rejected": sum(s.rejected for s in reader.stats), "problems": problems}


def _alarm(_signum, _frame):
    raise Hang()


def _guarded(paths, hang_seconds: float) -> tuple[str | None, dict]:
    """read_all under a watchdog (SIGALRM in this process): (None | "hangs" | "crashes" |
    "conservation_failures", result)."""
    signal.setitimer(signal.ITIMER_REAL, hang_seconds)
    # native code holding the GIL never lets SIGALRM's handler run (evtx 0.14 looped so, seed 17): a C thread
    # then prints where the worker is stuck, so such a hang shows in the log instead of a silent stall
    faulthandler.dump_traceback_later(hang_seconds * 2, exit=False)
    try:
        result = read_all(paths)
    except Hang:
        return "hangs", {"problems": ["hang"]}
    except Exception as exc:  # noqa: BLE001 — a crash is what the campaign looks for
        return "crashes", {"problems": [f"{type(exc).__name__}: {exc}"]}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
    return ("conservation_failures" if result["problems"] else None), result


def campaign(executions: int, seconds: float, seed: int, hang_seconds: float, log, batch: int = 32,
             seeds: dict[str, bytes] | None = None) -> dict:
    """``batch`` mutants are read by one reader (one Arrow table per event class instead of one per input:
    the per-table cost dominated an execution); every source is still checked on its own, and a batch
    that crashes, hangs (the watchdog allows ``hang_seconds`` for the whole batch, so no single input can
    take longer unnoticed) or fails a check is read again input by input, each under its own watchdog —
    those verdicts are the ones counted. ``seeds``: the seed corpus (default :func:`seed_corpus`)."""
    rng = random.Random(seed)
    seeds = seeds if seeds is not None else seed_corpus()
    names = sorted(seeds)
    stats = {"executions": 0, "crashes": 0, "hangs": 0, "conservation_failures": 0, "read": 0,
             "accepted": 0, "rejected": 0, "by_seed": {n: 0 for n in names}, "examples": [], "batch": batch,
             "batches_rerun": 0}
    signal.signal(signal.SIGALRM, _alarm)
    t0 = time.perf_counter()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    next_log = 500
    with tempfile.TemporaryDirectory(prefix="ttpscope-fuzz-", dir=shm) as tmp:
        crash_dir = Path(tmp)
        while stats["executions"] < executions and time.perf_counter() - t0 < seconds:
            inputs = []
            for i in range(min(batch, executions - stats["executions"])):
                name = rng.choice(names)
                data = mutate(seeds[name], rng)
                path = crash_dir / f"{i:04d}-{name}"  # the name keeps the seed's ending; the format is sniffed
                path.write_bytes(data)
                inputs.append((name, data, path))
            stats["executions"] += len(inputs)
            for name, _, _ in inputs:
                stats["by_seed"][name] += 1
            outcome, result = _guarded([p for _, _, p in inputs], hang_seconds)
            if outcome is None:
                for k in ("read", "accepted", "rejected"):
                    stats[k] += result[k]
            else:
                stats["batches_rerun"] += 1
                for n_in, (name, data, path) in enumerate(inputs):
                    outcome, result = _guarded(path, hang_seconds)
                    if outcome is None:
                        for k in ("read", "accepted", "rejected"):
                            stats[k] += result[k]
                        continue
                    stats[outcome] += 1
                    if len(stats["examples"]) < 20:
                        keep = Path(os.environ.get("FUZZ_KEEP", str(ROOT / "bench" / "results" / "fuzz-findings")))
                        keep.mkdir(parents=True, exist_ok=True)
                        kept = keep / f"{seed}-{stats['executions'] - len(inputs) + n_in}-{name}"
                        kept.write_bytes(data)
                        stats["examples"].append({"kind": outcome, "seed": name, "input": str(kept),
                                                  "problem": result["problems"][:1]})
            for _, _, path in inputs:
                path.unlink()
            if stats["executions"] >= next_log:
                next_log += 5000 if stats["executions"] >= 10_000 else 500
                log(f"{stats['executions']:,} executions, {stats['crashes']} crashes, {stats['hangs']} hangs, "
                    f"{stats['conservation_failures']} conservation failures, "
                    f"{stats['executions'] / (time.perf_counter() - t0):,.0f}/s, peak RSS {_rss_mb():,.0f} MB")
    elapsed = time.perf_counter() - t0
    stats.update(seed=seed, seconds=round(elapsed, 1), rate_per_s=round(stats["executions"] / elapsed, 1),
                 peak_rss_mb=round(_rss_mb(), 1), seeds={n: len(seeds[n]) for n in names})
    return stats


def _worker(args) -> dict:
    executions, seconds, seed, hang_seconds, batch = args
    return campaign(executions, seconds, seed, hang_seconds,
                    lambda m: print(f"[seed {seed}] {m}", file=sys.stderr, flush=True), batch)


def parallel(executions: int, seconds: float, seed: int, hang_seconds: float, workers: int,
             batch: int = 32) -> dict:
    """``workers`` processes, each its own campaign with seed ``seed * 1000 + i``; figures summed (peak RSS:
    the largest of one process)."""
    import multiprocessing

    share = [executions // workers + (1 if i < executions % workers else 0) for i in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_worker, [(n, seconds, seed * 1000 + i, hang_seconds, batch)
                                      for i, n in enumerate(share)])
    out = {k: sum(p[k] for p in parts) for k in ("executions", "crashes", "hangs", "conservation_failures",
                                                  "read", "accepted", "rejected", "batches_rerun")}
    out["batch"] = batch
    out["by_seed"] = {n: sum(p["by_seed"][n] for p in parts) for n in parts[0]["by_seed"]}
    out["examples"] = [e for p in parts for e in p["examples"]][:20]
    out.update(seed=seed, workers=workers, seconds=max(p["seconds"] for p in parts),
               peak_rss_mb=max(p["peak_rss_mb"] for p in parts), seeds=parts[0]["seeds"])
    out["rate_per_s"] = round(out["executions"] / out["seconds"], 1)
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--executions", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=float("inf"), help="stop after this long")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--hang-seconds", type=float, default=20.0, help="an execution longer than this is a hang")
    ap.add_argument("--workers", type=int, default=1, help="processes, each with its own seed")
    ap.add_argument("--batch", type=int, default=32, help="mutants read by one reader (a failing batch is "
                    "read again input by input)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.workers > 1:
        result = parallel(args.executions, args.seconds, args.seed, args.hang_seconds, args.workers, args.batch)
    else:
        result = campaign(args.executions, args.seconds, args.seed, args.hang_seconds,
                          lambda m: print(m, file=sys.stderr, flush=True), args.batch)
    import orjson

    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
