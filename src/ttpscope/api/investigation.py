"""The web side of ``ttpscope investigate``: stage uploaded evidence and run the investigation as a job."""

from __future__ import annotations

from ttpscope.api.deps import need


def check_available() -> None:
    """501 unless both the workspace and the investigate orchestration are installed."""
    need("workspace")
    need("investigate")


def start(app, evidence, name, kb):
    """Queue an investigation of ``evidence`` (list of uploads.Evidence); returns the Job."""
    from ttpscope.api.uploads import remove, stage

    investigate = need("investigate")
    folder, staged = stage(evidence)
    title = name or ", ".join(label for _, label in staged)[:120]

    def run(progress):
        progress(f"investigating {len(staged)} piece(s) of evidence", 0.05)
        case = investigate([p for p, _ in staged], name=title, domain=kb.domain)
        return {"case_id": case.id, "name": case.name}

    return app.state.jobs.submit("investigate", title, run, cleanup=lambda: remove(folder))
