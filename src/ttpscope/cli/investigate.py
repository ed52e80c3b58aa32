"""`ttpscope investigate EVIDENCE...`: the main job, with a progress bar per stage (plain log lines when stderr is
not a terminal) and a compact run summary; the per-file table on request (``--files``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ttpscope.cli.output import BundleOpt, DomainOpt, JsonOpt, console, err_console, note, print_json, table
from ttpscope.cli.summary import (PlainProgress, RunSummary, min_level_option, print_judgement, print_summary,
                                  shorten)

app = typer.Typer()

STAGES = {"route": "Sorting evidence", "logs": "Event logs (Sigma)", "reports": "Reports (extraction)",
          "indicators": "Feed indicators", "save": "Saving to workspace", "analyse": "Analysing", "export": "Writing outputs"}


@app.command("investigate")
def investigate_cmd(
    evidence: list[Path] = typer.Argument(..., help="Evidence files and folders: event logs (EVTX, JSON lines, "
                                          "Parquet, CSV) and threat reports (txt, md, html, pdf), sorted by content."),
    rules: Optional[Path] = typer.Option(None, "--rules", "-r", help="Sigma rule file or folder for the event logs "
                                         "(default: the SigmaHQ set cached by 'ttpscope rules update')."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Case name (default: from the evidence). A "
                                       "name the workspace has already is refused: use --case or --replace."),
    add_to: Optional[str] = typer.Option(None, "--case", "-c", help="Add the evidence to this case (created if "
                                         "it does not exist); files it holds already (same SHA-256) are skipped."),
    replace: bool = typer.Option(False, "--replace", help="Replace the case of that name (its id, analyst-added "
                                 "observations and review decisions are kept)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default ./ttpscope-out/<case>)."),
    no_save: bool = typer.Option(False, "--no-save", help="Do not store the case in the workspace."),
    domain: str = DomainOpt,
    bundle: Optional[str] = BundleOpt,
    json_out: bool = JsonOpt,
    files: bool = typer.Option(False, "--files", help="Also list every evidence file with its counts."),
    min_level: str = typer.Option("low", "--min-level", callback=min_level_option, help="Lowest rule level "
                                  "in the summary's lists: informational, low, medium, high or critical (the "
                                  "case and the outputs keep every detection)."),
    noisy: float = typer.Option(10.0, "--noisy", min=0.0, max=100.0, help="A rule firing on more than this "
                                "percentage of one file's events is named as noisy and left out of the top lists."),
    feeds: bool = typer.Option(True, "--feeds/--no-feeds", help="Use the workspace's feeds: their group profiles "
                               "in attribution, overlap and anticipation, and their current indicators matched on "
                               "the event logs (sightings)."),
    force_report: Optional[list[Path]] = typer.Option(None, "--report", help="Read this file as a threat report "
                                                      "even if it looks like documentation (README, LICENSE); "
                                                      "repeatable."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes sharing the event log files in the "
                                "Sigma detection; 0: one per CPU (the same case as one process)."),
) -> None:
    """Investigate evidence into one case: detections and report TTPs together, saved in the workspace, with
    report.html, layer.json, bundle.json (STIX 2.1), case.json, observations.csv and report.md."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ttpscope.errors import InputError
    from ttpscope.investigate import ADD, NEW, REPLACE, investigate

    if add_to is not None and replace:
        raise InputError("investigate", None, "--case adds to a case and --replace replaces it: give one of them")
    if add_to is not None and name is not None and name != add_to:
        raise InputError("investigate", None, f"--name {name!r} and --case {add_to!r} name different cases")
    mode = ADD if add_to is not None else REPLACE if replace else NEW
    live = err_console.is_terminal and not json_out
    plain = PlainProgress(STAGES) if not (live or json_out) else None
    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description:<24}"), BarColumn(bar_width=30),
                        MofNCompleteColumn(), TextColumn("{task.fields[detail]}", style="dim"), TimeElapsedColumn(),
                        console=err_console, transient=False, disable=not live)
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int | None, detail: str) -> None:
        if plain is not None:
            plain.update(stage, done, total, shorten(detail, 60))
            return
        if stage not in tasks:
            tasks[stage] = progress.add_task(STAGES.get(stage, stage), total=total, detail="")
        progress.update(tasks[stage], completed=done, total=total, detail=shorten(detail, 32))

    with progress:
        try:
            result = investigate(list(evidence) + list(force_report or []), rules=rules, name=add_to or name,
                                 out=out, domain=domain, bundle=bundle, save=not no_save, progress=report,
                                 force_reports=force_report or (), mode=mode, workers=workers, feeds=feeds)
        finally:
            if plain is not None:
                plain.close()
        for task in tasks.values():  # stages whose total was unknown end as complete
            t = progress.tasks[task]
            progress.update(task, total=t.total or max(1, t.completed), completed=t.total or max(1, t.completed))
    if json_out:
        print_json(result.to_dict())
        return
    root, names = _short_paths([s.path for s in result.sources])
    if files:
        rows = []
        for s, shown in zip(result.sources, names):
            rows.append([shown, s.format or s.kind, _n(s.read), _n(s.accepted), _n(s.rejected), s.observations,
                         s.note + ("; " + "; ".join(s.reasons[:2]) if s.reasons else "")])
        table("Evidence", ["source", "as", "read", "accepted", "rejected", "obs.", "notes"], rows,
              caption=f"files under {root}" if root else None)
    print_summary(_run_summary(result, names, root, min_level, noisy / 100), console)
    print_judgement(result.analysis, console)
    for w in result.warnings:
        note(w)
    summary = result.analysis.summary()
    console.print(f"[bold]Case[/bold] '{result.case.name}' ({result.case.id}): {summary['techniques']} techniques, "
                  f"{summary['observations']} observations, {summary['detections']} detections, "
                  f"{summary['documents']} reports · {result.analysis.provenance['domain']} ATT&CK "
                  f"v{result.analysis.provenance['attack_version']}")
    done = [key for key, sec in result.analysis.sections.items() if sec.status == "ok"]
    if done:  # the sections that worked on one line (report.html has them); each other one says why
        console.print(f"  [green]{'ok':<11}[/green] " + ", ".join(done))
    for sec in result.analysis.sections.values():
        if sec.status == "ok":
            continue
        style = {"empty": "dim", "skipped": "dim", "unavailable": "yellow", "error": "red"}.get(sec.status, "red")
        console.print(f"  [{style}]{sec.status:<11}[/{style}] {sec.title}" + (f" — {sec.message}" if sec.message
                                                                                else ""))
    if result.workspace:
        console.print(f"Saved in the workspace {result.workspace}")
    console.print(f"Outputs in [bold]{result.out_dir}[/bold]: " + ", ".join(p.name for p in result.outputs.values()))


def _run_summary(result, names: list[str], root: str | None, min_level: str, noisy: float) -> RunSummary:
    """The run summary of an investigation: its files, events, rules and detections."""
    from collections import Counter

    sources = result.sources
    problems = []
    for s, shown in sorted(zip(sources, names), key=lambda x: len(x[1])):
        if s.note or s.rejected:
            why = s.note or f"{s.rejected:,} of {s.read:,} records rejected" + (f" ({s.reasons[0]})" if s.reasons
                                                                                else "")
            problems.append(f"{shown}: {why}")
    logs = [s for s in sources if s.kind == "log"]
    return RunSummary(
        detections=result.analysis.detections if result.analysis else [],
        events={s.path: s.accepted or 0 for s in sources}, files=len(sources), where=root, logs=len(logs),
        reports=sum(1 for s in sources if s.kind == "report"), read=sum(s.read or 0 for s in logs),
        accepted=sum(s.accepted or 0 for s in logs), rejected=sum(s.rejected or 0 for s in logs),
        formats=Counter(s.format or s.kind for s in sources), rules=str(result.rules) if result.rules else None,
        min_level=min_level, noisy_share=noisy, problems=problems, more_hint="--files lists every file",
        sightings=result.matching)


def _short_paths(paths: list[str]) -> tuple[str | None, list[str]]:
    """(the folder all the files share, their paths relative to it): the table is about the files."""
    import os

    resolved = [Path(p).resolve() for p in paths]
    try:
        root = os.path.commonpath([str(p.parent) for p in resolved]) if resolved else None
    except ValueError:  # different drives
        return None, paths
    return root, [os.path.relpath(p, root) for p in resolved]


def _n(value: int | None) -> str:
    return "—" if value is None else str(value)
