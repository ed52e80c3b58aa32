"""`ttpscope detect LOGS...`: Sigma rules over event logs → detections, technique observations, a case."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ttpscope.cli.output import BundleOpt, DomainOpt, JsonOpt, console, err_console, load, note, print_json, table
from ttpscope.cli.summary import PlainProgress, RunSummary, min_level_option, print_summary, sources_of


app = typer.Typer()


@app.command("detect")
def detect_cmd(
    logs: list[str] = typer.Argument(..., help="EVTX, JSON lines, JSON, Parquet or CSV files, folders, or "
                                     "zip/tar/gz archives of them; with --engine spark also dataset URIs that "
                                     "Spark reads (Parquet, Hive-partitioned; JSON lines: *.jsonl or json:URI)."),
    rules: list[Path] = typer.Option(None, "--rules", "-r", help="Sigma rule file or folder (repeatable; "
                                     "default: the SigmaHQ release from 'ttpscope rules update')."),
    level: Optional[str] = typer.Option(None, "--level", help="Rule levels: 'medium+', 'high', 'low,high'."),
    technique: list[str] = typer.Option(None, "--technique", "-t", help="Only rules tagged with this technique "
                                        "(or a sub-technique of it); repeatable."),
    tactic: list[str] = typer.Option(None, "--tactic", help="Only rules of this tactic; repeatable."),
    status: Optional[str] = typer.Option(None, "--status", help="Only rules of these statuses (comma list)."),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (embedded), arrow (Arrow kernels only) or spark "
                               "(pyspark: local mode, or the cluster of --master)."),
    master: Optional[str] = typer.Option(None, "--master", help="Spark engine: local[N], a standalone cluster "
                                         "spark://HOST:PORT or a Spark Connect server sc://HOST:PORT."),
    spark_conf: list[str] = typer.Option(None, "--spark-conf", help="Spark engine: a setting KEY=VALUE "
                                         "(repeatable), e.g. spark.executor.memory=2g."),
    spark_work_dir: Optional[str] = typer.Option(None, "--spark-work-dir", help="Spark engine: stage the events "
                                                 "as Parquet here (a path or URI every executor reads); "
                                                 "default: local folder in local mode, else sent through the session."),
    workers: int = typer.Option(0, "--workers", min=0,
                                help="Processes sharing the input files (duckdb engine); 0: one per CPU."),
    logsource: Optional[str] = typer.Option(None, "--logsource", help="The Sigma log source of events ttpscope "
                                            "does not recognise, e.g. 'product=zeek,service=conn' (else they are "
                                            "not analysed)."),
    json: bool = JsonOpt,
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="Write the detections to FILE, one JSON object a "
                                         "line (for big runs)."),
    out_parquet: Optional[str] = typer.Option(None, "--out-parquet", help="Write the detections as a Parquet "
                                              "dataset in this folder (a path or URI: file://, hdfs://, s3://)."),
    case: Optional[str] = typer.Option(None, "--case", help="Add the observations and detections to this case "
                                       "of the workspace (created if new)."),
    chains: bool = typer.Option(False, "--chains", help="Show activity chains: detections per host close in "
                                "time, as ordered sequences of techniques and tactics."),
    gap: str = typer.Option("30m", "--gap", help="Largest pause inside one chain (90s, 30m, 2h)."),
    by_user: bool = typer.Option(False, "--by-user", help="Chains per host and user, not per host."),
    domain: str = DomainOpt,
    bundle: str = BundleOpt,
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    min_level: str = typer.Option("low", "--min-level", callback=min_level_option, help="Lowest rule level in "
                                  "the summary's lists (--json, --jsonl and --case keep every detection)."),
    noisy: float = typer.Option(10.0, "--noisy", min=0.0, max=100.0, help="A rule firing on more than this "
                                "percentage of one source's events is named as noisy and left out of the top lists."),
) -> None:
    """Run Sigma rules over event logs: detections by technique and level, ingest counts, rule failures."""
    import orjson
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ttpscope.detect.runner import detect

    options = _spark_options(engine, master, spark_conf, spark_work_dir)
    kb = load(domain, bundle)
    filters = {"level": level, "technique": technique or None, "tactic": tactic or None, "status": status}
    show = not (json or no_progress) and err_console.is_terminal
    plain = PlainProgress({"compile": "compiling rules", "events": "reading events"}) \
        if not (json or no_progress or show) else None
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), console=err_console, disable=not show, transient=True)
    tasks: dict[str, int] = {}

    def on_progress(stage: str, done: int, total: int) -> None:
        if plain is not None:
            plain.update(stage, done, total if stage == "compile" else None,
                         "" if stage == "compile" else f"events, {total} files done")
            return
        if stage == "compile":
            if "compile" not in tasks:
                tasks["compile"] = progress.add_task("compiling rules", total=total, info="")
            progress.update(tasks["compile"], completed=done, info=f"{done}/{total}")
        else:
            if "events" not in tasks:
                tasks["events"] = progress.add_task("reading events", total=None, info="")
            progress.update(tasks["events"], info=f"{done:,} events, {total} files done")

    with progress:
        try:
            result = detect(logs, rules or None, kb=kb, engine=engine, progress=on_progress, workers=workers,
                            logsource=logsource, engine_options=options, **filters)
        finally:
            if plain is not None:
                plain.close()
    if not result.totals()["sources"]:  # nothing to run the rules on is a usage error, as for investigate
        from ttpscope.errors import InputError

        raise InputError(", ".join(str(p) for p in logs[:3]) + (" ..." if len(logs) > 3 else ""), None,
                         "no events found: give EVTX, JSON lines, JSON, Parquet or CSV files, folders or archives "
                         "of them")

    if jsonl is not None:
        with jsonl.open("wb") as fh:
            for d in result.detections:
                fh.write(orjson.dumps(d.to_dict(), default=str, option=orjson.OPT_NON_STR_KEYS))
                fh.write(b"\n")
    if out_parquet is not None:
        from ttpscope.detect.results import write_parquet

        written = write_parquet(result.detections, out_parquet)
    if case:
        from ttpscope.store import Workspace

        Workspace().add_to_case(case, result.observations(), detections=result.detections,
                                meta={"detect": {"logs": [str(p) for p in logs], "engine": engine}})
    if json:
        print_json([d.to_dict() for d in result.detections])
        _notes(result, quiet=True)
        return
    _print_summary(result, min_level, noisy / 100)
    if chains:
        _print_chains(result, gap, by_user)
    if jsonl is not None:
        console.print(f"{len(result.detections):,} detections written to {jsonl}")
    if out_parquet is not None:
        console.print(f"{len(result.detections):,} detections written to {written}")
    if case:
        console.print(f"added {len(result.observations()):,} observations to case '{case}'")
    _notes(result, quiet=False)


def _spark_options(engine: str, master: str | None, conf: list[str] | None, work_dir: str | None) -> dict:
    """The Spark engine's options from the command line (an error if given to another engine)."""
    from ttpscope.errors import InputError

    if engine != "spark":
        given = [n for n, v in (("--master", master), ("--spark-conf", conf), ("--spark-work-dir", work_dir)) if v]
        if given:
            raise InputError(given[0], None, "is an option of the Spark engine: add --engine spark")
        return {}
    settings = {}
    for item in conf or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError("--spark-conf", item, "expected KEY=VALUE")
        settings[key.strip()] = value.strip()
    options: dict = {"conf": settings} if settings else {}
    if master:
        options["master"] = master
    if work_dir:
        options["work_dir"] = work_dir
    return options


def _print_summary(result, min_level: str = "low", noisy: float = 0.10) -> None:
    s = result.summary()
    ing = s["ingest"]
    rules = s["rules"]
    t = s["timings"]
    share = f" ({rules['compiled_share']:.1%})" if rules["compiled_share"] is not None else ""
    console.print(f"[bold]{ing['read']:,}[/bold] events read from {ing['sources']} sources: "
                  f"{ing['accepted']:,} accepted, {ing['rejected']:,} rejected · "
                  f"{rules['compiled']:,}/{rules['loaded']:,} rules compiled{share} · "
                  f"{s['detections']:,} detections · engine {s['engine']} · scan {t.get('scan', 0):.1f}s")
    vis = s["visibility"]["all"]
    console.print(f"log sources: {vis['with_data']:,} of {vis['rules']:,} rules had events of their log source, "
                  f"{vis['without_data']:,} had none")
    rejected = [x for x in result.ingest if x.rejected]
    if rejected:
        table("Rejected input", ["source", "read", "rejected", "why"],
              [(x.source, x.read, x.rejected, "; ".join(f"{k} ×{v}" for k, v in x.reasons.most_common(3)))
               for x in rejected[:5]],
              caption=f"and {len(rejected) - 5} more sources with rejected records" if len(rejected) > 5 else None)
    if not result.detections:
        return
    print_summary(RunSummary(detections=result.detections, events=sources_of(result.ingest), min_level=min_level,
                             noisy_share=noisy, head=False), console)


def _print_chains(result, gap: str, by_user: bool) -> None:
    from ttpscope.detect.correlate import cluster_activity, parse_gap

    found = cluster_activity([d for d in result.detections if d.record is not None], parse_gap(gap), by_user)
    rows = []
    for c in found[:30]:
        rows.append((c.host or "-", c.user or "-" if by_user else "", f"{c.start:%Y-%m-%d %H:%M:%S}",
                     f"{(c.end - c.start).total_seconds():.0f}s", len(c.detections),
                     " → ".join(c.tactics), ", ".join(c.techniques[:8]) + (" …" if len(c.techniques) > 8 else "")))
    table(f"Activity chains (gap {gap}): {len(found)}", ["host", "user", "start", "span", "detections", "tactics",
                                                        "techniques"], rows)


def _notes(result, quiet: bool) -> None:
    if result.not_analysed:
        total = sum(result.not_analysed.values())
        note(f"{total:,} event(s) of an unknown log source not analysed (declare it with --logsource "
             "product=…,service=…): " + ", ".join(f"{Path(src).name} ×{n:,}" for src, n in
                                                  sorted(result.not_analysed.items(), key=lambda kv: -kv[1])[:5]))
    if quiet:
        vis = result.visibility()["all"]
        note(f"{vis['with_data']:,} of {vis['rules']:,} rules had events of their log source, "
             f"{vis['without_data']:,} had none")
    failed = result.compile_errors + [(rid, None, msg) for rid, msg in result.engine_errors]
    if failed:
        note(f"{len(failed)} rule(s) failed to compile or run" + ("" if quiet else ":"))
        if not quiet:
            for rid, path, msg in failed[:20]:
                note(f"  {Path(path).name if path else rid}: {msg}")
    for text in result.notes:
        note(text)
    if result.rules.errors:
        note(f"{len(result.rules.errors)} rule file(s) could not be loaded ('ttpscope rules check' lists them)")
