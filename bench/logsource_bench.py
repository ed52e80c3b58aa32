"""Benchmark: log sources — the full SigmaHQ rule set per source family, ttpscope against the real Zircolite;
and the table of the OTRF cross-environment datasets.

``--families`` (default): per source family — Windows EVTX (EVTX-to-MITRE-ATT&CK folder), Windows JSON
(OTRF LSASS_campaign_01 host log, JSON lines), Linux auditd (the two OTRF auditd atomics, repeated with
their serials renumbered), CloudTrail (OTRF EC2-proxy → S3 exfiltration, JSON lines, repeated) and Zeek
(OTRF APT29 days 1 and 2, Zeek JSON, repeated) — both tools run as a user runs them, whole process, with
every rule of ``../shared/data/sigma/rules`` (3,141 rules; Zircolite converts the same YAML itself, once,
cached): wall seconds, CPU seconds of the process tree, peak RSS, detections, and the detections from rules
of a *foreign product* (a rule naming a product other than the family's: a Zeek rule firing on Windows
events). Zircolite's runner, its venv, its copy and its timing come from ``bench/detect_bench.py``
(imported, not duplicated). Zircolite reads EVTX, JSON lines (``-j``) and auditd (``-AU``); Zeek TSV it
cannot read, so the Zeek family is the Zeek JSON of APT29 for both tools.

``--datasets``: every OTRF cross-environment dataset through ``detect`` with the full rule set: events
read/rejected, events per recognised log source, events not analysed, detections by the product of their
rule, and the dataset's ``_metadata`` ATT&CK techniques found and missed (exact id; and at technique
level, a sub-technique counting for its parent).

    PYTHONPATH=src python bench/logsource_bench.py --families evtx,json,auditd,cloudtrail,zeek
    PYTHONPATH=src python bench/logsource_bench.py --datasets

Results: ``bench/results/logsource_bench.json`` and ``bench/results/otrf_datasets.json``; a Markdown table
is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detect_bench as zb  # noqa: E402  (Zircolite's venv, copy, conversion and the timed() launcher)

ROOT = zb.ROOT
DATA = zb.DATA
FULL_RULES = DATA / "sigma" / "rules"
OTRF = DATA / "otrf-cross-environment"
RESULTS = ROOT / "bench" / "results"
ZIRCOLITE_FULL_RULES = zb.CACHE / "zircolite-rules-full.json"
TARGET_EVENTS = 20_000  # small inputs are repeated up to about this many events (else startup is all one sees)
FAMILY_PRODUCT = {"evtx": "windows", "json": "windows", "auditd": "linux", "cloudtrail": "aws", "zeek": "zeek"}


# ---------------------------------------------------------------------------------------------- inputs
def _members(zpath: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(zpath) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist() if not i.is_dir()]


def family_input(name: str, work: Path) -> tuple[list[Path], int, int, list[str]]:
    """(paths for ttpscope, events, repeats, Zircolite's input-format flags) of a family, written in ``work``."""
    if name == "evtx":
        return [zb.EVTX], 0, 1, []
    if name == "json":
        ((_, raw),) = [m for m in _members(OTRF / "compound/LSASS_campaign_01/metasploit_logonpasswords_lsass_memory_dump.zip")
                       if m[0].endswith(".json")]
        path = work / "lsass_campaign_01.jsonl"
        path.write_bytes(raw)
        return [path], raw.count(b"\n"), 1, ["-j"]
    if name == "auditd":
        lines = [line for z in sorted(OTRF.glob("atomic/linux/*/host/*.zip")) for _, raw in _members(z)
                 for line in raw.decode().splitlines() if line.strip()]
        events = len({re.search(r"audit\([\d.]+:(\d+)\)", ln).group(1) for ln in lines})
        repeats = max(1, -(-TARGET_EVENTS // events))
        path = work / "audit.log"
        with path.open("w") as fh:
            for r in range(repeats):  # serials renumbered: each copy is events of its own
                fh.writelines(re.sub(r"audit\(([\d.]+):(\d+)\)",
                                     lambda m, r=r: f"audit({m.group(1)}:{int(m.group(2)) + r * 1_000_000})", ln) + "\n"
                              for ln in lines)
        return [path], events * repeats, repeats, ["-AU"]
    if name == "cloudtrail":
        ((_, raw),) = _members(OTRF / "atomic/aws/collection/ec2_proxy_s3_exfiltration.zip")
        return _repeated(work / "cloudtrail.jsonl", raw)
    if name == "zeek":
        raw = b"".join((OTRF / f"compound/apt29/{day}/zeek/combined_zeek.log").read_bytes() for day in ("day1", "day2"))
        return _repeated(work / "zeek.jsonl", raw)
    raise SystemExit(f"unknown family {name}")


def _repeated(path: Path, raw: bytes) -> tuple[list[Path], int, int, list[str]]:
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    repeats = max(1, -(-TARGET_EVENTS // len(lines)))
    path.write_bytes(b"\n".join(lines * repeats) + b"\n")
    return [path], len(lines) * repeats, repeats, ["-j"]


# ---------------------------------------------------------------------------------------------- tools
def rule_products() -> dict[str, str | None]:
    out = {}
    for path in FULL_RULES.rglob("*.yml"):
        try:
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if isinstance(doc, dict) and doc.get("id"):
                    out[str(doc["id"])] = (doc.get("logsource") or {}).get("product")
        except yaml.YAMLError:
            continue
    return out


def zircolite_full_rules() -> Path:
    """Zircolite's own conversion of the full rule set (done once, cached), through detect_bench's setup."""
    zb.RULES, zb.ZIRCOLITE_RULES = FULL_RULES, ZIRCOLITE_FULL_RULES
    zb.zircolite_ready()
    zb.RULES = FULL_RULES
    return ZIRCOLITE_FULL_RULES


def run_ttpscope(name: str, paths: list[Path]) -> dict:
    """``ttpscope detect`` with the full rule set, whole process (detect_bench's runner)."""
    zb.RULES = FULL_RULES
    run = zb.run_ttpscope_cli(name, paths)
    run["rule_ids"] = [rid for rid, _src, _rec in run.pop("hits")]
    return run


def run_zircolite(paths: list[Path], flags: list[str], events: int, rules: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        r = zb.timed([str(zb.ZIRCOLITE_VENV / "bin" / "python"), "zircolite.py", "-e", *map(str, paths), *flags,
                      "-r", str(rules), "-o", str(out), "-l", f"{tmp}/z.log", "-q"], cwd=zb.ZIRCOLITE_COPY)
        if r["rc"] != 0:
            raise SystemExit(f"Zircolite failed ({r['rc']}):\n{r['stderr'][-3000:]}")
        found = json.loads(out.read_text()) if out.exists() and out.stat().st_size else []
    rule_ids = [str(rule.get("id")) for rule in found for _ in rule.get("matches", [])]
    return {"engine": "zircolite", "events": events, "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
            "peak_rss_mb": r["peak_rss_mb"], "rules": len(json.loads(rules.read_text())),
            "rule_ids": rule_ids, "detections": len(rule_ids)}


def families(names: list[str], with_zircolite: bool) -> list[dict]:
    products = rule_products()
    zrules = zircolite_full_rules() if with_zircolite else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="logsource-bench-") as tmp:
        for name in names:
            work = Path(tmp) / name
            work.mkdir()
            paths, events, repeats, flags = family_input(name, work)
            ours = run_ttpscope(name, paths)
            events = events or ours["events"]
            runs = [ours] + ([run_zircolite(paths, flags, ours["events"], zrules)] if zrules else [])
            for run in runs:
                by_product = Counter(products.get(rid) or "-" for rid in run.pop("rule_ids"))
                run.update(family=name, repeats=repeats, by_product=dict(by_product.most_common()),
                           foreign=sum(n for p, n in by_product.items() if p not in ("-", FAMILY_PRODUCT[name])),
                           events_per_s=run["events"] / run["wall_s"], events_per_cpu_s=run["events"] / run["cpu_s"])
                rows.append(run)
                print(f"{name:10} {run['engine']:9} {run['events']:>8,} ev  {run['wall_s']:7.1f} s  "
                      f"{run['cpu_s']:7.1f} CPU-s  {run['events_per_s']:>8,.0f} ev/s  {run['peak_rss_mb']:6.0f} MB  "
                      f"{run['detections']:>7,} det  foreign {run['foreign']:,}", flush=True)
    return rows


def families_table(rows: list[dict]) -> str:
    lines = ["| family | tool | events | wall s | CPU s | events/s | events/CPU-s | peak RSS MB | detections | "
             "foreign-product hits | wall ratio | CPU ratio |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        peer = next((r for r in rows if r["family"] == row["family"] and r["engine"] == "zircolite"), None)
        ratio = cpu = ""
        if row["engine"] == "ttpscope" and peer:
            ratio = f"**{row['events_per_s'] / peer['events_per_s']:.1f}×**"
            cpu = f"{row['events_per_cpu_s'] / peer['events_per_cpu_s']:.1f}×"
        lines.append(f"| {row['family']}{' (×%d)' % row['repeats'] if row['repeats'] > 1 else ''} | {row['engine']} | "
                     f"{row['events']:,} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['events_per_s']:,.0f} | "
                     f"{row['events_per_cpu_s']:,.0f} | {row['peak_rss_mb']:.0f} | {row['detections']:,} | "
                     f"{row['foreign']:,} | {ratio} | {cpu} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- OTRF datasets
DATASETS = {  # dataset (its _metadata file) -> its folder or files
    **{f"LSASS_campaign_0{i}": [f"compound/LSASS_campaign_0{i}"] for i in range(1, 8)},
    "Log4Shell": ["compound/Log4Shell"],
    "APT29 Zeek (day 1 + 2)": ["compound/apt29/day1/zeek", "compound/apt29/day2/zeek"],
    "SDAWS-200914011940": ["atomic/aws/collection"],
    "SDAWS-2202181000": ["atomic/aws/discovery"],
    "SDLIN-201110074812": ["atomic/linux/discovery"],
    "SDLIN-201110081941": ["atomic/linux/defense_evasion"],
}


def metadata_techniques(name: str) -> list[str]:
    path = OTRF / "_metadata" / f"{name}.yaml"
    if not path.exists():
        return []
    meta = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = []
    for m in meta.get("attack_mappings") or []:
        tid = str(m.get("technique") or "").strip()
        sub = str(m.get("sub-technique") or "").strip()
        if tid:
            out.append(f"{tid}.{sub}" if sub else tid)
    return list(dict.fromkeys(out))


def datasets() -> list[dict]:
    from ttpscope.detect.rules import load_rules
    from ttpscope.detect.runner import compile_ruleset, detect
    from ttpscope.kb import load_kb

    kb = load_kb("enterprise", "embedded")
    rs = load_rules(FULL_RULES, kb=kb)
    compiled = compile_ruleset(rs)
    products = {r.id: r.logsource.get("product") for r in rs.rules}
    rows = []
    for name, parts in DATASETS.items():
        paths = [OTRF / p for p in parts]
        if name.startswith("APT29"):  # the zips hold the same records as combined_zeek.log: read those once
            paths = [p / "combined_zeek.log" for p in paths]
        t0, c0 = time.perf_counter(), zb.cpu_s()
        res = detect(paths, rs, kb=kb, compiled=compiled)
        wall, cpu = time.perf_counter() - t0, zb.cpu_s() - c0
        found = {t for d in res.detections for t in d.techniques}
        wanted = metadata_techniques(name if not name.startswith("APT29") else "")
        parents = {t.split(".")[0] for t in found}
        row = {"dataset": name, "paths": parts, **res.totals(), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
               "rules": len(rs.rules), "workers": res.workers, "scan_s": round(res.timings["scan"], 2),
               "scan_events_per_s": round(res.timings["events_per_s"]),
               "by_logsource": dict(sorted(res.by_logsource.items(), key=lambda kv: -kv[1])),
               "not_analysed": sum(res.not_analysed.values()), "detections": len(res.detections),
               "by_product": dict(Counter(products.get(d.rule_id) or "-" for d in res.detections).most_common()),
               "metadata_techniques": wanted, "found": [t for t in wanted if t in found],
               "found_at_technique_level": [t for t in wanted if t.split(".")[0] in parents],
               "missed": [t for t in wanted if t.split(".")[0] not in parents]}
        rows.append(row)
        print(f"{name}: {row['read']:,} events, {len(row['by_logsource'])} log sources, {row['detections']:,} "
              f"detections {row['by_product']}, found {len(row['found'])}/{len(wanted)} "
              f"({len(row['found_at_technique_level'])} at technique level), {wall:.0f} s", flush=True)
    return rows


def datasets_table(rows: list[dict]) -> str:
    lines = ["| dataset | events (rejected) | log sources recognised (events) | not analysed | detections by product | "
             "metadata techniques found | missed |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        sources = ", ".join(f"{k} {v:,}" for k, v in list(r["by_logsource"].items())[:6])
        if len(r["by_logsource"]) > 6:
            sources += f", … ({len(r['by_logsource'])} in all)"
        products = ", ".join(f"{k} {v:,}" for k, v in r["by_product"].items()) or "—"
        wanted = r["metadata_techniques"]
        found = (f"{len(r['found'])}/{len(wanted)} exact, {len(r['found_at_technique_level'])}/{len(wanted)} at "
                 f"technique level: {', '.join(r['found_at_technique_level']) or '—'}") if wanted else "(no metadata)"
        lines.append(f"| {r['dataset']} | {r['read']:,} ({r['rejected']:,}) | {sources} | {r['not_analysed']:,} | "
                     f"{products} | {found} | {', '.join(r['missed']) or '—'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="evtx,json,auditd,cloudtrail,zeek")
    ap.add_argument("--no-zircolite", action="store_true", help="ttpscope alone")
    ap.add_argument("--datasets", action="store_true", help="the OTRF dataset table instead of the families")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
            "load_average": os.getloadavg()}
    if args.datasets:
        rows = datasets()
        (RESULTS / "otrf_datasets.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
        print(datasets_table(rows))
        return
    rows = families([f.strip() for f in args.families.split(",") if f.strip()], not args.no_zircolite)
    out = RESULTS / "logsource_bench.json"
    old = json.loads(out.read_text()).get("rows", []) if out.exists() else []
    keep = [r for r in old if r["family"] not in {row["family"] for row in rows}]
    (out).write_text(json.dumps({**meta, "rows": keep + rows}, indent=1))
    print(families_table(keep + rows))


if __name__ == "__main__":
    main()
