"""Cases in the workspace, and starting an investigation from uploaded evidence (a background job)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from ttpscope.api import investigation
from ttpscope.api.deps import case_of, kb_of, stored_analysis, workspace
from ttpscope.api.responses import ORJSONResponse, safe_name
from ttpscope.api.security import require_token
from ttpscope.api.uploads import read_uploads
from ttpscope.errors import InputError, NotFoundError
from ttpscope.export.outputs import EXPORTS
from ttpscope.model import Case
from ttpscope.store import Workspace

router = APIRouter(prefix="/api", tags=["cases"])


@router.get("/cases", summary="Cases in the workspace, newest first")
def list_cases(ws: Workspace = Depends(workspace)) -> dict:
    return {"cases": ws.list_cases()}


@router.get("/cases/{case_id}", summary="A case with all its observations")
def show_case(case: Case = Depends(case_of)) -> dict:
    return case.to_dict()


@router.delete("/cases/{case_id}", summary="Delete a case (needs the token)", dependencies=[Depends(require_token)])
def delete_case(case: Case = Depends(case_of), ws: Workspace = Depends(workspace)) -> dict:
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
    s = request.app.state.settings
    evidence = await read_uploads(file, text, s.max_files, s.max_upload_bytes, s.max_text_chars)
    job = investigation.start(request.app, evidence, name, kb)
    return {"job": job.to_dict(), "poll": f"/api/jobs/{job.id}"}


@router.get("/jobs", summary="Background jobs (investigations) of this server run")
def list_jobs(request: Request) -> dict:
    return {"jobs": [j.to_dict() for j in request.app.state.jobs.list()]}


@router.get("/jobs/{job_id}", summary="One background job: state, stage, progress, result or error")
def show_job(job_id: str, request: Request) -> dict:
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no job '{job_id}' (the server keeps its last 200 jobs)")
    return job.to_dict()


@router.get("/cases/{case_id}/analysis", summary="Every analysis section of a case (what the case page shows)")
def show_analysis(case_id: str, request: Request) -> Response:
    return ORJSONResponse(stored_analysis(request, case_id)[1].to_dict())


# The HTML report inlines Plotly; it is shown sandboxed (opaque origin, no network) rather than under the
# app's own strict script policy.
REPORT_CSP = ("sandbox allow-scripts allow-downloads; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
              "style-src 'unsafe-inline'; img-src data: blob:; font-src data:")


@router.get("/cases/{case_id}/export/{fmt}",
            summary="A case export: " + ", ".join(EXPORTS) + " (the export registry's formats)")
def export_case(case_id: str, fmt: str, request: Request, download: bool = True) -> Response:
    """The case rendered by one exporter of ``ttpscope.export.outputs.EXPORTS``; ``download=false`` shows it
    inline (the HTML report, sandboxed)."""
    exporter = EXPORTS.get(fmt)
    if exporter is None:
        raise InputError("export", fmt, f"unknown format; one of {', '.join(EXPORTS)}")
    case, analysis = stored_analysis(request, case_id)
    headers = {"content-security-policy": REPORT_CSP} if fmt == "html" else {}
    if download:
        headers["content-disposition"] = f'attachment; filename="{safe_name(case.name)}-{exporter.file_name}"'
    return Response(exporter.render(analysis, request.app.state.kb), media_type=exporter.media_type,
                    headers=headers)


@router.get("/cases/{case_id}/layer", summary="Navigator layer 4.5 of a case (alias of export/layer)")
def case_layer(case_id: str, request: Request) -> Response:
    return export_case(case_id, "layer", request)


@router.get("/cases/{case_id}/stix", summary="STIX 2.1 bundle of a case (alias of export/stix)")
def case_stix(case_id: str, request: Request) -> Response:
    return export_case(case_id, "stix", request)


@router.get("/cases/{case_id}/report", summary="The self-contained HTML report of a case (alias of export/html)")
def case_report_html(case_id: str, request: Request, download: bool = False) -> Response:
    return export_case(case_id, "html", request, download=download)
