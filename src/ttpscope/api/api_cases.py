"""Cases in the workspace, and starting an investigation from uploaded evidence (a background job)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ttpscope.api import investigation
from ttpscope.analyze.review import add_manual, decide, findings
from ttpscope.api.deps import case_of, kb_of, stored_analysis, workspace
from ttpscope.api.responses import ORJSONResponse, safe_name
from ttpscope.api.security import require_token
from ttpscope.api.uploads import read_uploads
from ttpscope.errors import InputError, NotFoundError
from ttpscope.export.outputs import EXPORTS
from ttpscope.investigate.analysis import analyse_stored_case
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
                      mode: Literal["new", "add", "replace"] = Form(default="new", description="When the case "
                                                                    "name exists: refuse (new), add the new files "
                                                                    "(add) or replace it (replace)."),
                      kb=Depends(kb_of)) -> dict:
    """Answers 202 at once with a job; poll ``GET /api/jobs/{id}`` until ``state`` is done (its ``result``
    holds the ``case_id``) or failed (``error`` says why)."""
    s = request.app.state.settings
    evidence = await read_uploads(file, text, s.max_files, s.max_upload_bytes, s.max_text_chars)
    job = investigation.start(request.app, evidence, name, kb, mode)
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
def export_case(case_id: str, fmt: str, request: Request, download: bool = True,
                reviewed_only: bool = False) -> Response:
    """The case rendered by one exporter of ``ttpscope.export.outputs.EXPORTS``; ``download=false`` shows it
    inline (the HTML report, sandboxed); ``reviewed_only=1`` keeps only the confirmed findings."""
    exporter = EXPORTS.get(fmt)
    if exporter is None:
        raise InputError("export", fmt, f"unknown format; one of {', '.join(EXPORTS)}")
    if reviewed_only:  # not cached: the shared cache holds the case as the page shows it
        case = case_of(request, case_id)
        analysis = analyse_stored_case(workspace(request), workspace(request).get_case(case.id),
                                       request.app.state.kb, reviewed_only=True)
    else:
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


class ReviewRequest(BaseModel):
    """A review decision, or an analyst's own observation (``action="add"``)."""

    action: Literal["confirm", "reject", "reset", "add"]
    ids: list[str] = Field(default_factory=list, max_length=1000,
                           description="Observation ids (or 6+ character prefixes), technique ids, ioc:<type>:<value>.")
    technique: list[str] | str | None = Field(default=None, description="Whole techniques (for add: the one seen).")
    ioc: list[str] = Field(default_factory=list, max_length=1000, description="IOCs by value.")
    by: str | None = Field(default=None, max_length=200, description="Who decides (required but for reset).")
    note: str = Field(default="", max_length=2000)
    confidence: int | None = Field(default=None, ge=0, le=100, description="For confirm: how sure, 0-100.")
    evidence: str | None = Field(default=None, max_length=10000, description="For add: what shows it.")
    host: str | None = Field(default=None, max_length=300, description="For add: where it was seen.")


_STATES = {"confirm": "confirmed", "reject": "rejected", "reset": "unreviewed"}


@router.get("/cases/{case_id}/review", summary="A case's findings (techniques, observations, IOCs) with their review state")
def show_review(request: Request, case: Case = Depends(case_of), ws: Workspace = Depends(workspace)) -> Response:
    kb = request.app.state.kb
    names = {t: kb.techniques[t].name for t in case.technique_ids() if t in kb.techniques}
    return ORJSONResponse({"case": {"id": case.id, "name": case.name},
                           **findings(case, ws.get_documents(case.id), ws.get_reviews(case.id), names=names)})


@router.post("/cases/{case_id}/review", dependencies=[Depends(require_token)],
             summary="Confirm, reject or reset findings, or add an observation (needs the token)")
def post_review(body: ReviewRequest, request: Request, case: Case = Depends(case_of),
                ws: Workspace = Depends(workspace)) -> Response:
    techniques = [body.technique] if isinstance(body.technique, str) else list(body.technique or [])
    if body.action == "add":
        if len(techniques) != 1:
            raise InputError("review", None, "add takes exactly one technique")
        obs = add_manual(ws, case.id, techniques[0], body.evidence or "", kb=request.app.state.kb,
                         host=body.host, by=body.by, note=body.note)
        return ORJSONResponse({"case": case.id, "observation": obs.to_dict()}, status_code=201)
    if body.action != "reset" and not (body.by or "").strip():
        raise InputError("review", None, "a decision needs who makes it (by)")
    made = decide(ws, case.id, _STATES[body.action], ids=body.ids, techniques=techniques, iocs=body.ioc,
                  by=body.by, note=body.note, confidence=body.confidence)
    return ORJSONResponse({"case": case.id, "reviews": [r.to_dict() for r in made]})
