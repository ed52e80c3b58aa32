"""Cases in the workspace, and starting an investigation from uploaded evidence (a background job)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from ttpscope.api.deps import kb_of, need
from ttpscope.api.security import public_meta, require_token
from ttpscope.errors import NotFoundError

router = APIRouter(prefix="/api", tags=["cases"])


def workspace_of(app):
    """The server's workspace (opened once), or 501 while ``ttpscope.store`` has not landed."""
    ws = getattr(app.state, "workspace", None)
    if ws is None:
        Workspace = need("workspace")
        ws = app.state.workspace = Workspace(app.state.settings.workspace)
    return ws


def workspace(request: Request):
    return workspace_of(request.app)


def case_summary(case) -> dict[str, Any]:
    return {"id": case.id, "name": case.name, "created": case.created, "updated": case.updated,
            "observations": len(case.observations), "techniques": len(case.technique_ids())}


def get_case(request: Request, case_id: str):
    case = workspace(request).get_case(case_id)
    public_meta(case.meta)  # no server path (rule folder, evidence) reaches a client
    return case


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
        raise NotFoundError(f"no job '{job_id}' (the server keeps its last 200 jobs)")
    return job.to_dict()


def attachment(body: bytes | str, media_type: str, filename: str) -> Response:
    return Response(body, media_type=media_type,
                    headers={"content-disposition": f'attachment; filename="{filename}"'})


def case_analysis(request: Request, case_id: str):
    """(Case, CaseAnalysis) of a stored case: every section ``ttpscope.investigate`` can compute, cached per
    case version (a re-investigation changes ``updated`` and so recomputes)."""
    analyse_case = need("analyse_case")
    ws = workspace(request)
    case = ws.get_case(case_id)
    cache: dict = request.app.state.analysis_cache
    key = (case.id, case.updated.isoformat())
    if key not in cache:
        analysis = analyse_case(case, request.app.state.kb, detections=ws.get_detections(case.id),
                                documents=ws.get_documents(case.id), rules=case.meta.get("rules"), workspace=ws)
        public_meta(case.meta)  # after the analysis used the real rule folder
        while len(cache) >= 16:
            cache.pop(next(iter(cache)))
        cache[key] = analysis
    return case, cache[key]


@router.get("/cases/{case_id}/analysis", summary="Every analysis section of a case (what the case page shows)")
def show_analysis(case_id: str, request: Request) -> Response:
    from ttpscope.api.app import ORJSONResponse

    return ORJSONResponse(case_analysis(request, case_id)[1].to_dict())


_EXPORTS = {"layer": ("application/json", "layer.json"), "stix": ("application/json", "bundle.json"),
            "json": ("application/json", "case.json"), "csv": ("text/csv", "observations.csv"),
            "markdown": ("text/markdown", "report.md")}
# The HTML report inlines Plotly; it is shown sandboxed (opaque origin, no network) rather than under the
# app's own strict script policy.
REPORT_CSP = ("sandbox allow-scripts allow-downloads; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
              "style-src 'unsafe-inline'; img-src data: blob:; font-src data:")


@router.get("/cases/{case_id}/export/{fmt}", summary="A case export: layer, stix, json, csv or markdown")
def export_case(case_id: str, fmt: str, request: Request) -> Response:
    from ttpscope.errors import InputError

    if fmt not in _EXPORTS:
        raise InputError("export", fmt, f"unknown format; one of {', '.join(sorted(_EXPORTS))}, or /report")
    render = need("exports")
    case, analysis = case_analysis(request, case_id)
    media, suffix = _EXPORTS[fmt]
    return attachment(render(fmt, analysis, request.app.state.kb), media, f"{_safe(case.name)}-{suffix}")


@router.get("/cases/{case_id}/layer", summary="Navigator layer 4.5 of a case")
def case_layer(case_id: str, request: Request) -> Response:
    return export_case(case_id, "layer", request)


@router.get("/cases/{case_id}/stix", summary="STIX 2.1 bundle of a case")
def case_stix(case_id: str, request: Request) -> Response:
    return export_case(case_id, "stix", request)


@router.get("/cases/{case_id}/report", summary="The self-contained HTML report of a case")
def case_report_html(case_id: str, request: Request, download: bool = False) -> Response:
    render = need("exports")
    case, analysis = case_analysis(request, case_id)
    body = render("html", analysis, request.app.state.kb)
    headers = {"content-security-policy": REPORT_CSP}
    if download:
        headers["content-disposition"] = f'attachment; filename="{_safe(case.name)}-report.html"'
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "case"
