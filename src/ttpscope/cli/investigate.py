"""`ttpscope investigate EVIDENCE...`: the main job, with a progress bar per stage and a per-source summary."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ttpscope.cli.output import BundleOpt, DomainOpt, JsonOpt, console, err_console, note, print_json, table

app = typer.Typer()

STAGES = {"route": "Sorting evidence", "logs": "Event logs (Sigma)", "reports": "Reports (extraction)",
          "save": "Saving to workspace", "analyse": "Analysing", "export": "Writing outputs"}


@app.command("investigate")
def investigate_cmd(
    evidence: list[Path] = typer.Argument(..., help="Evidence files and folders: event logs (EVTX, JSON lines, "
                                          "Parquet, CSV) and threat reports (txt, md, html, pdf), sorted by content."),
    rules: Optional[Path] = typer.Option(None, "--rules", "-r", help="Sigma rule file or folder for the event logs "
                                         "(default: the SigmaHQ set cached by 'ttpscope rules update')."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Case name (default: from the evidence). An "
                                       "existing case of that name is replaced."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default ./ttpscope-out/<case>)."),
    no_save: bool = typer.Option(False, "--no-save", help="Do not store the case in the workspace."),
    domain: str = DomainOpt,
    bundle: Optional[str] = BundleOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Investigate evidence into one case: detections and report TTPs together, saved in the workspace, with
    report.html, layer.json, bundle.json (STIX 2.1), case.json, observations.csv and report.md."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ttpscope.investigate import investigate

    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description:<24}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[detail]}", style="dim"), TimeElapsedColumn(),
                        console=err_console, transient=False, disable=json_out)
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int | None, detail: str) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(STAGES.get(stage, stage), total=total, detail="")
        progress.update(tasks[stage], completed=done, total=total, detail=detail[-60:])

    with progress:
        result = investigate(evidence, rules=rules, name=name, out=out, domain=domain, bundle=bundle,
                             save=not no_save, progress=report)
        for task in tasks.values():  # stages whose total was unknown end as complete
            t = progress.tasks[task]
            progress.update(task, total=t.total or max(1, t.completed), completed=t.total or max(1, t.completed))
    if json_out:
        print_json(result.to_dict())
        return
    rows = []
    root, names = _short_paths([s.path for s in result.sources])
    for s, shown in zip(result.sources, names):
        rows.append([shown, s.format or s.kind, _n(s.read), _n(s.accepted), _n(s.rejected), s.observations,
                     s.note + ("; " + "; ".join(s.reasons[:2]) if s.reasons else "")])
    table("Evidence", ["source", "as", "read", "accepted", "rejected", "obs.", "notes"], rows,
          caption=f"files under {root}" if root else None)
    for w in result.warnings:
        note(w)
    summary = result.analysis.summary()
    console.print(f"[bold]Case[/bold] '{result.case.name}' ({result.case.id}): {summary['techniques']} techniques, "
                  f"{summary['observations']} observations, {summary['detections']} detections, "
                  f"{summary['documents']} reports · {result.analysis.provenance['domain']} ATT&CK "
                  f"v{result.analysis.provenance['attack_version']}")
    for sec in result.analysis.sections.values():
        style = {"ok": "green", "empty": "dim", "skipped": "dim", "unavailable": "yellow", "error": "red"}[sec.status]
        console.print(f"  [{style}]{sec.status:<11}[/{style}] {sec.title}" + (f" — {sec.message}" if sec.message and
                                                                                sec.status != "ok" else ""))
    if result.workspace:
        console.print(f"Saved in the workspace {result.workspace}")
    console.print(f"Outputs in [bold]{result.out_dir}[/bold]: " + ", ".join(p.name for p in result.outputs.values()))


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
