"""Cases in the workspace, and starting an investigation from uploaded evidence (a background job)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from ttpscope.api.deps import kb_of, need
from ttpscope.api.security import require_token
from ttpscope.errors import NotFoundError

router = APIRouter(prefix="/api", tags=["cases"])


def workspace(request: Request):
    """The server's workspace (opened once), or 501 while ``ttpscope.store`` has not landed."""
    ws = getattr(request.app.state, "workspace", None)
    if ws is None:
        Workspace = need("workspace")
        ws = request.app.state.workspace = Workspace(request.app.state.settings.workspace)
    return ws


def case_summary(case) -> dict[str, Any]:
    return {"id": case.id, "name": case.name, "created": case.created, "updated": case.updated,
            "observations": len(case.observations), "techniques": len(case.technique_ids())}


def get_case(request: Request, case_id: str):
    return workspace(request).get_case(case_id)


@router.get("/cases", summary="Cases in the workspace, newest first")
def list_cases(request: Request) -> dict:
    cases = workspace(request).list_cases()
    return {"cases": [c if isinstance(c, dict) else case_summary(c) for c in cases]}


@router.get("/cases/{case_id}", summary="A case with all its observations")
def show_case(case_id: str, request: Request) -> dict:
    return get_case(request, case_id).to_dict()


@router.delete("/cases/{case_id}", summary="Delete a case (needs the token)", dependencies=[Depends(require_token)])
def delete_case(case_id: str, request: Request) -> dict:
    ws = workspace(request)
    case = ws.get_case(case_id)
    ws.delete_case(case.id)
    return {"deleted": case.id, "name": case.name}


@router.post("/cases", status_code=202, dependencies=[Depends(require_token)],
             summary="Start an investigation from uploaded evidence and/or pasted report text (needs the token)")
async def create_case(request: Request,
                      file: list[UploadFile] = File(default=[], description="Evidence files: EVTX, JSON lines, "
                                                    "CSV, Parquet logs; txt/md/html/pdf reports."),
                      text: str | None = Form(default=None, description="Pasted report text."),
                      name: str | None = Form(default=None, max_length=200, description="Case name."),
                      kb=Depends(kb_of)) -> dict:
    """Answers 202 at once with a job; poll ``GET /api/jobs/{id}`` until ``state`` is done (its ``result``
    holds the ``case_id``) or failed (``error`` says why)."""
    from ttpscope.api import investigation
    from ttpscope.api.uploads import read_uploads

    s = request.app.state.settings
    evidence = await read_uploads(file, text, s.max_files, s.max_upload_bytes, s.max_text_chars)
    investigation.check_available()
    job = investigation.start(request.app, evidence, name, kb)
    return {"job": job.to_dict(), "poll": f"/api/jobs/{job.id}"}


@router.get("/jobs", summary="Background jobs (investigations) of this server run")
def list_jobs(request: Request) -> dict:
    return {"jobs": [j.to_dict() for j in request.app.state.jobs.list()]}


@router.get("/jobs/{job_id}", summary="One background job: state, stage, progress, result or error")
def show_job(job_id: str, request: Request) -> dict:
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no job '{job_id}' (jobs are kept in memory until the server restarts)")
    return job.to_dict()


def attachment(body: bytes | str, media_type: str, filename: str) -> Response:
    return Response(body, media_type=media_type,
                    headers={"content-disposition": f'attachment; filename="{filename}"'})
