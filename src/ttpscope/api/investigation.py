"""The web side of ``ttpscope investigate``: stage uploaded evidence and run the investigation as a job."""

from __future__ import annotations

from ttpscope.api.deps import workspace_of
from ttpscope.api.uploads import remove, stage
from ttpscope.errors import TtpscopeError
from ttpscope.investigate import investigate

# Where each stage of ttpscope.investigate sits on the progress bar: (start, span).
_STAGES = {"route": (0.0, 0.05), "logs": (0.05, 0.45), "reports": (0.5, 0.25), "save": (0.75, 0.05),
           "analyse": (0.8, 0.18), "export": (0.98, 0.02)}


def start(app, evidence, name, kb):
    """Queue an investigation of ``evidence`` (list of uploads.Upload); returns the Job.

    The case is saved in the server's workspace; no output files are written (the case page and the
    export endpoints render them on demand).
    """
    settings = app.state.settings
    ws = workspace_of(app)
    folder, staged = stage(evidence)
    title = (name or ", ".join(label for _, label in staged))[:120]

    def run(progress):
        def on_progress(stage_name: str, done: int, total: int | None, detail: str) -> None:
            start_at, span = _STAGES.get(stage_name, (None, 0.0))
            fraction = None if start_at is None else start_at + span * (done / total if total else 0.0)
            progress(f"{stage_name}: {detail}" if detail else stage_name, fraction)

        try:
            result = investigate([p for p, _ in staged], name=title, domain=kb.domain, bundle=settings.bundle,
                                 rules=settings.rules, workspace=ws, formats=(), progress=on_progress)
        except TtpscopeError as exc:  # name the uploads as the user knows them, not the server's temp paths
            raise TtpscopeError(_as_labels(str(exc), folder, staged)) from exc
        return {"case_id": result.case.id, "name": result.case.name,
                "warnings": [_as_labels(w, folder, staged) for w in result.warnings],
                "sources": [{**s.to_dict(), "path": _as_labels(str(s.path), folder, staged)} for s in result.sources]}

    return app.state.jobs.submit("investigate", title, run, cleanup=lambda: remove(folder))


def _as_labels(text: str, folder, staged) -> str:
    """Replace the staged temp paths in a message by the uploads' own names."""
    for path, label in staged:
        text = text.replace(str(path), label).replace(path.name, label)
    return text.replace(str(folder), "(upload)")
