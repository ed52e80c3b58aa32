"""The web side of ``ttpscope investigate``: stage uploaded evidence and run the investigation as a job."""

from __future__ import annotations

import os
from pathlib import Path

from ttpscope.api.deps import workspace_of
from ttpscope.api.uploads import remove, stage
from ttpscope.errors import TtpscopeError
from ttpscope.investigate import investigate
from ttpscope.store import Workspace

# Where each stage of ttpscope.investigate sits on the progress bar: (start, span).
_STAGES = {"route": (0.0, 0.05), "logs": (0.05, 0.45), "reports": (0.5, 0.25), "save": (0.75, 0.05),
           "analyse": (0.8, 0.18), "export": (0.98, 0.02)}


def start(app, evidence, name, kb, mode: str = "new"):
    """Queue an investigation of ``evidence`` (list of uploads.Upload); returns the Job.

    The case is saved in the server's workspace; no output files are written (the case page and the
    export endpoints render them on demand). The job runs in a child process under the server's job budget,
    in the folder the uploads are staged in, so the case records the uploads' own names, never a server path.
    """
    settings = app.state.settings
    ws = workspace_of(app)
    folder, staged = stage(evidence)
    title = (name or ", ".join(label for _, label in staged))[:120]
    # the job runs in the staging folder: the server's own relative paths are made absolute first
    kwargs = {"files": [p.name for p, _ in staged], "labels": [label for _, label in staged], "name": title, "mode": mode,
              "domain": kb.domain, "bundle": _absolute(settings.bundle), "rules": _absolute(settings.rules),
              "workspace": str(Path(ws.path).resolve()), "workers": detection_workers(settings)}
    return app.state.jobs.submit_child("investigate", title, run_investigation, kwargs, cleanup=lambda: remove(folder),
                                       cwd=folder, folder=folder)


def detection_workers(settings) -> int:
    """Detection processes of one job: the CPUs shared between the jobs that may run at once (0: one per CPU).
    They are forked by the job's own process (a fresh interpreter, no server threads), die with it when the
    job is stopped over its time budget, and each is held to the job's memory budget."""
    jobs = max(1, int(getattr(settings, "investigation_workers", 1) or 1))
    return 0 if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs)


def run_investigation(progress, *, files, labels, name, domain, bundle, rules, workspace, mode="new",
                      workers: int = 0) -> dict:
    """The job itself (in the child process, in the staging folder): investigate the staged files."""
    staged = list(zip(files, labels))

    def on_progress(stage_name: str, done: int, total: int | None, detail: str) -> None:
        start_at, span = _STAGES.get(stage_name, (None, 0.0))
        fraction = None if start_at is None else start_at + span * (done / total if total else 0.0)
        progress(_as_labels(f"{stage_name}: {detail}" if detail else stage_name, staged), fraction)

    try:
        result = investigate(files, name=name, domain=domain, bundle=bundle, rules=rules, mode=mode,
                             workspace=Workspace(workspace), formats=(), progress=on_progress, workers=workers)
    except TtpscopeError as exc:  # name the uploads as the user knows them, not the server's file names
        raise TtpscopeError(_as_labels(str(exc), staged)) from exc
    return {"case_id": result.case.id, "name": result.case.name,
            "warnings": [_as_labels(w, staged) for w in result.warnings],
            "sources": [{**s.to_dict(), "path": _as_labels(str(s.path), staged)} for s in result.sources],
            "detect_workers": result.timings.get("detect_workers")}


def _absolute(value: str | None) -> str | None:
    """A local path made absolute; anything else (None, "embedded", a URL) as it is."""
    if value and "://" not in value and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def _as_labels(text: str, staged) -> str:
    """Replace the staged file names in a message by the uploads' own names."""
    for file, label in staged:
        text = text.replace(file, label)
    return text
