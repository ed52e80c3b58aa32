"""Server-rendered pages (Jinja2, autoescaped): the matrix explorer, KB pages, cases, upload, compare.

Every page is drawn from the same library calls as its ``/api/`` endpoint, through the request helpers of
:mod:`ttpscope.api.deps`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ttpscope.analyze.coverage import coverage_report
from ttpscope.analyze.overlap import overlap
from ttpscope.analyze.profile import profile_for
from ttpscope.analyze.review import findings
from ttpscope.api import case_report
from ttpscope.api import matrix as mx
from ttpscope.api import technique_extras as extras
from ttpscope.api.deps import case_of, server_rules, workspace
from ttpscope.api.uploads import ALLOWED
from ttpscope.errors import InputError, NotFoundError, TtpscopeError
from ttpscope.kb import views

router = APIRouter(include_in_schema=False)
MAX_LAYER_BYTES = 5 * 1024 * 1024


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    kb = request.app.state.kb
    env = request.app.state.templates
    html = env.get_template(template).render(request=request, kb=kb, kb_label=kb.label, path=request.url.path,
                                             **context)
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, detail: str) -> Response:
    try:
        return render(request, "error.html", status=status, status_code=status, detail=detail)
    except Exception:  # never let the error page itself fail
        return HTMLResponse(f"<h1>{status}</h1>", status_code=status)


# ---------------------------------------------------------------------------- the matrix explorer
def _colouring(request: Request, group: str | None, case: str | None,
               coverage: str | None = None) -> tuple[dict, dict | None]:
    kb = request.app.state.kb
    if coverage:
        groups = None if coverage.strip().lower() == "all" else [coverage]
        return mx.coverage_marks(coverage_report(kb, server_rules(request), profile_for(kb, groups)))
    if group:
        return mx.group_marks(kb, group)
    if case:
        return mx.case_marks(kb, case_of(request, case))
    return {}, None


def _matrix_page(request: Request, marks: dict, coloured_by: dict | None, status: int = 200, error: str = ""):
    kb = request.app.state.kb
    groups = [(g.id, g.name) for g in sorted(kb.live_groups(), key=lambda g: g.name.casefold())]
    try:
        cases = [(c["id"], c["name"]) for c in workspace(request).list_cases()]
    except TtpscopeError:
        cases = []
    return render(request, "matrix.html", status=status, matrix=request.app.state.matrix, marks=marks,
                  coloured_by=coloured_by, marked=mx.marked_ids(marks), groups=groups, cases=cases, error=error)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, group: str | None = Query(None, max_length=200),
         case: str | None = Query(None, max_length=200), coverage: str | None = Query(None, max_length=200)):
    marks, coloured_by = _colouring(request, group, case, coverage)
    return _matrix_page(request, marks, coloured_by)


@router.post("/", response_class=HTMLResponse)
async def home_with_layer(request: Request, layer: UploadFile = File(...)):
    """Colour the matrix by an uploaded Navigator layer (read in memory, nothing stored)."""
    kb = request.app.state.kb
    raw = await layer.read(MAX_LAYER_BYTES + 1)
    name = (layer.filename or "layer.json")[:200]
    try:
        if len(raw) > MAX_LAYER_BYTES:
            raise InputError(name, None, "a layer over 5 MiB is not accepted")
        marks, coloured_by = mx.layer_marks(kb, mx.layer_from_bytes(raw, name, kb))
    except InputError as exc:
        return _matrix_page(request, {}, None, status=422, error=str(exc))
    return _matrix_page(request, marks, coloured_by)


# ---------------------------------------------------------------------------- knowledge base pages
@router.get("/techniques/{technique_id}", response_class=HTMLResponse)
def technique_page(request: Request, technique_id: str):
    kb = request.app.state.kb
    v = views.technique_view(kb, technique_id)
    tech = kb.techniques[v["id"]]
    raw_how = {m.id: text for m, text in kb.mitigations_of(tech.id)}
    raw_procs = [p.description for p in kb.procedures_for(technique_id=tech.id)]
    html = {"description": extras.markdown_html(tech.description), "detection": extras.markdown_html(tech.detection),
            "how": {mid: extras.markdown_html(text) for mid, text in raw_how.items()},
            "procedures": [extras.markdown_html(text) for text in raw_procs]}
    tactic_names = {t.shortname: t.name for t in kb.tactic_list()}
    return render(request, "technique.html", t=v, html=html, title=f"{v['id']} {v['name']}", tactic_names=tactic_names,
                  rules=extras.technique_rules(request, tech.id), atomics=extras.technique_atomics(request, tech.id),
                  targets=extras.HUNT_TARGETS)


@router.get("/groups", response_class=HTMLResponse)
def groups_page(request: Request):
    kb = request.app.state.kb
    rows = [{"id": g.id, "name": g.name, "extra": ", ".join(g.aliases[1:6]),
             "count": len(kb.group_techniques(g.id)), "direct": len(kb.group_techniques(g.id, via={"direct"}))}
            for g in kb.live_groups()]
    return render(request, "list.html", title="Groups", kind="groups", rows=rows, extra_label="aliases",
                  count_label="Techniques: direct / with campaigns and software")


# MISP galaxy context keys (as ttpscope.kb.aliases stores them) the way an analyst reads them
MISP_LABELS = {"country": "Country", "suspected_state_sponsor": "Suspected state sponsor",
               "suspected_victims": "Suspected victims", "target_categories": "Target categories",
               "incident_type": "Type of incident", "attribution_confidence": "Attribution confidence"}


def misp_context(context: dict) -> list[tuple[str, str]]:
    """(label, text) rows of a group's MISP context: readable labels, lists joined (at most 12 items shown),
    the attribution confidence as a percentage (MISP stores 0–100)."""
    rows = []
    for key, value in (context or {}).items():
        label = MISP_LABELS.get(key) or key.replace("_", " ").replace("-", " ").capitalize()
        if isinstance(value, (list, tuple)):
            shown = [str(x) for x in value[:12]]
            text = ", ".join(shown) + (f" and {len(value) - 12} more" if len(value) > 12 else "")
        elif key == "attribution_confidence" and str(value).isdigit():
            text = f"{value}%"
        else:
            text = str(value)
        rows.append((label, text))
    return rows


def provenance_counts(techniques: list[dict]) -> dict[str, int]:
    """How a group's techniques split by where ATT&CK says it got them: used directly; else through one of its
    campaigns; else only through its software. The three add up to the total."""
    counts = {"direct": 0, "campaign": 0, "software": 0}
    for t in techniques:
        kinds = {v.split(":")[0] for v in t["via"]}
        counts["direct" if "direct" in kinds else "campaign" if "campaign" in kinds else "software"] += 1
    return {**counts, "total": len(techniques)}


@router.get("/groups/{group}", response_class=HTMLResponse)
def group_page(request: Request, group: str):
    kb = request.app.state.kb
    v = views.group_view(kb, group)
    marks, coloured_by = mx.group_marks(kb, v["id"])
    return render(request, "group.html", g=v, title=f"{v['id']} {v['name']}", matrix=request.app.state.matrix,
                  marks=marks, marked=mx.marked_ids(marks), coloured_by=coloured_by,
                  counts=provenance_counts(v["techniques"]), context=misp_context(v.get("context") or {}),
                  description=extras.markdown_html(kb.groups[v["id"]].description))


@router.get("/software", response_class=HTMLResponse)
def software_list_page(request: Request):
    kb = request.app.state.kb
    rows = [{"id": s.id, "name": s.name, "extra": s.type, "count": len(kb.software_techniques(s.id))}
            for s in sorted(kb.software.values(), key=lambda s: s.name.casefold()) if not s.deprecated]
    return render(request, "list.html", title="Software", kind="software", rows=rows, extra_label="type")


@router.get("/software/{software}", response_class=HTMLResponse)
def software_page(request: Request, software: str):
    kb = request.app.state.kb
    v = views.software_view(kb, software)
    return render(request, "entity.html", e=v, kind="software", title=f"{v['id']} {v['name']}",
                  description=extras.markdown_html(kb.software[v["id"]].description))


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(request: Request):
    kb = request.app.state.kb
    rows = [{"id": c.id, "name": c.name, "extra": f"{c.first_seen or '?'} → {c.last_seen or '?'}",
             "count": len(kb.campaign_techniques(c.id))}
            for c in sorted(kb.campaigns.values(), key=lambda c: c.id) if not c.deprecated]
    return render(request, "list.html", title="Campaigns", kind="campaigns", rows=rows, extra_label="active")


@router.get("/campaigns/{campaign}", response_class=HTMLResponse)
def campaign_page(request: Request, campaign: str):
    kb = request.app.state.kb
    v = views.campaign_view(kb, campaign)
    return render(request, "entity.html", e=v, kind="campaign", title=f"{v['id']} {v['name']}",
                  description=extras.markdown_html(kb.campaigns[v["id"]].description))


@router.get("/tactics/{tactic}", response_class=HTMLResponse)
def tactic_page(request: Request, tactic: str):
    v = views.tactic_view(request.app.state.kb, tactic)
    return render(request, "tactic.html", t=v, title=f"{v['id']} {v['name']}")


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, q: str = Query("", max_length=500)):
    kb = request.app.state.kb
    hits = kb.search(q, limit=50) if q.strip() else []
    return render(request, "search.html", q=q, hits=hits, title=f"Search: {q}" if q else "Search")


@router.get("/api/docs", response_class=HTMLResponse)
def api_docs(request: Request):
    """The REST API, listed from the OpenAPI schema itself (no CDN-hosted Swagger UI)."""
    schema = request.app.openapi()
    ops = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            params = [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                       "description": p.get("description") or ""} for p in op.get("parameters", [])]
            body = op.get("requestBody", {}).get("content", {})
            ops.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                        "description": op.get("description", ""), "params": params, "tag": (op.get("tags") or [""])[0],
                        "body": ", ".join(body), "token": method in ("post", "delete") and path.startswith("/api/cases")})
    return render(request, "api_docs.html", title="REST API", ops=ops, info=schema["info"])


# ---------------------------------------------------------------------------- compare
_KINDS = ("group", "campaign", "software", "case")


def _side(request: Request, ref: str) -> dict:
    """A compare side from ``kind:ref`` (``group:APT29``, ``campaign:C0024``, ``software:S0002``, ``case:ID``);
    a bare ref is tried as a group."""
    kb = request.app.state.kb
    kind, _, value = ref.partition(":") if ":" in ref else ("group", "", ref)
    kind, value = kind.strip().lower(), value.strip()
    if kind not in _KINDS or not value:
        raise InputError("compare", ref, f"write the side as kind:name with kind one of {', '.join(_KINDS)}")
    if kind == "group":
        g = kb.group(value)
        return {"label": f"{g.id} {g.name}", "href": f"/groups/{g.id}", "ids": kb.group_techniques(g.id)}
    if kind == "campaign":
        c = kb.campaign(value)
        return {"label": f"{c.id} {c.name}", "href": f"/campaigns/{c.id}", "ids": kb.campaign_techniques(c.id)}
    if kind == "software":
        s = kb.software_item(value)
        return {"label": f"{s.id} {s.name}", "href": f"/software/{s.id}", "ids": kb.software_techniques(s.id)}
    case = case_of(request, value)
    return {"label": f"case {case.name}", "href": f"/cases/{case.id}",
            "ids": {kb.resolve_technique(t).id or t for t in case.technique_ids()}}


def _layer_side(request: Request, raw: bytes, name: str) -> dict:
    kb = request.app.state.kb
    if len(raw) > MAX_LAYER_BYTES:
        raise InputError(name, None, "a layer over 5 MiB is not accepted")
    marks, meta = mx.layer_marks(kb, mx.layer_from_bytes(raw, name, kb))
    return {"label": f"layer {meta['name']}", "href": None, "ids": mx.marked_ids(marks)}


SIDE_KEYS = "abcdef"  # up to six sides at once; a and b are the two-way compare's own


def _two_way(kb, a: dict, b: dict) -> tuple[dict, dict]:
    result = mx.compare_sets(a["ids"], b["ids"])
    union = len(result["shared"]) + len(result["only_a"]) + len(result["only_b"])
    result["jaccard"] = round(len(result["shared"]) / union, 3) if union else 0.0
    if a["ids"] and b["ids"]:  # rarity-weighted similarity from ttpscope.analyze
        pair = overlap([{"name": "A", "techniques": sorted(a["ids"])},
                        {"name": "B", "techniques": sorted(b["ids"])}], kb).pairs[0]
        result["similarity"] = pair["similarity"]
    colours = {"shared": "#b07cd8", "only_a": "#6fa8dc", "only_b": "#f6b26b"}
    labels = {"shared": "in both", "only_a": f"only in {a['label']}", "only_b": f"only in {b['label']}"}
    marks = {tid: {"score": 1.0, "color": colours[key], "comment": labels[key]}
             for key in colours for tid in result[key]}
    result["legend"] = [(labels[k], colours[k]) for k in colours]
    result["mode"] = "two"
    return result, marks


def _n_way(kb, sides: list[dict]) -> tuple[dict, dict]:
    """Three or more sides: per technique, which sides have it; the matrix coloured by how many (the overlap
    of all of them darkest); rarity-weighted similarity of every pair (``ttpscope.analyze.overlap``)."""
    n = len(sides)
    holders: dict[str, list[int]] = {}
    for i, side in enumerate(sides):
        for tid in side["ids"]:
            holders.setdefault(tid, []).append(i)
    rows = sorted(({"id": tid, "name": kb.name_of(tid), "in": set(idx), "count": len(idx)}
                   for tid, idx in holders.items()), key=lambda r: (-r["count"], r["id"]))
    marks = {r["id"]: {"score": round(r["count"] / n, 4), "color": mx.gradient(r["count"] / n),
                       "comment": f"in {r['count']} of {n}: " + ", ".join(sides[i]["label"] for i in sorted(r["in"]))}
             for r in rows}
    named = [{"name": f"{SIDE_KEYS[i].upper()}: {s['label']}", "techniques": sorted(s["ids"])}
             for i, s in enumerate(sides) if s["ids"]]
    pairs = overlap(named, kb).pairs if len(named) >= 2 else []
    result = {"mode": "n", "rows": rows, "n": n,
              "in_all": [r["id"] for r in rows if r["count"] == n],
              "in_several": [r for r in rows if 1 < r["count"] < n],
              "by_count": {k: sum(1 for r in rows if r["count"] == k) for k in range(n, 0, -1)},
              "only": [[r["id"] for r in rows if r["in"] == {i}] for i in range(n)],
              "pairs": [{"a": p["a"], "b": p["b"], "similarity": p["similarity"], "shared": p["shared_count"]}
                        for p in pairs],
              "legend": [(f"in all {n}" if k == n else f"in {k} of {n}", mx.gradient(k / n))
                         for k in range(n, 0, -1)]}
    return result, marks


def _compare_page(request: Request, sides: list[dict], refs: dict[str, str], error: str = "", status: int = 200):
    kb = request.app.state.kb
    result, marks = None, {}
    if len(sides) == 2:
        result, marks = _two_way(kb, *sides)
    elif len(sides) > 2:
        result, marks = _n_way(kb, sides)
    a, b = (sides + [None, None])[:2]
    return render(request, "compare.html", status=status, a=a, b=b, sides=sides, refs=refs,
                  a_ref=refs.get("a", ""), b_ref=refs.get("b", ""), result=result, keys=SIDE_KEYS,
                  matrix=request.app.state.matrix, marks=marks, marked=mx.marked_ids(marks),
                  coloured_by=None, error=error, title="Compare", name_of=kb.name_of)


def _ref_sides(request: Request, refs: dict[str, str]) -> list[dict]:
    return [_side(request, refs[k]) for k in SIDE_KEYS if refs.get(k)]


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, a: str = Query("", max_length=200), b: str = Query("", max_length=200),
                 c: str = Query("", max_length=200), d: str = Query("", max_length=200),
                 e: str = Query("", max_length=200), f: str = Query("", max_length=200)):
    """Two to six sides: ``?a=group:APT29&b=group:APT28`` (side by side), ``&c=…`` up to ``&f=…`` (N-way)."""
    refs = {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f}
    try:
        sides = _ref_sides(request, refs)
    except (InputError, NotFoundError) as exc:
        return _compare_page(request, [], refs, error=str(exc), status=422)
    return _compare_page(request, sides, refs)


@router.post("/compare", response_class=HTMLResponse)
async def compare_layers(request: Request, a: str = Form(""), b: str = Form(""), c: str = Form(""),
                         d: str = Form(""), e: str = Form(""), f: str = Form(""),
                         layer_a: UploadFile | None = File(None), layer_b: UploadFile | None = File(None),
                         layer_c: UploadFile | None = File(None), layer_d: UploadFile | None = File(None),
                         layer_e: UploadFile | None = File(None), layer_f: UploadFile | None = File(None)):
    """Compare with uploaded Navigator layers on any side (read in memory, nothing stored). Sides A and B
    are required; C to F are used when given."""
    refs = {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f}
    uploads = {"a": layer_a, "b": layer_b, "c": layer_c, "d": layer_d, "e": layer_e, "f": layer_f}
    try:
        sides = []
        for key in SIDE_KEYS:
            upload, ref = uploads[key], refs[key]
            raw = await upload.read(MAX_LAYER_BYTES + 1) if upload is not None and upload.filename else b""
            if raw:
                sides.append(_layer_side(request, raw, upload.filename[:200]))
            elif ref:
                sides.append(_side(request, ref))
            elif key in "ab":
                raise InputError("compare", None, "each side needs a layer file or a kind:name reference")
    except (InputError, NotFoundError) as exc:
        return _compare_page(request, [], refs, error=str(exc), status=422)
    return _compare_page(request, sides, refs)


# ---------------------------------------------------------------------------- cases, upload, jobs
@router.get("/cases", response_class=HTMLResponse)
def cases_page(request: Request):
    return render(request, "cases.html", title="Cases", rows=workspace(request).list_cases(),
                  jobs=[j.to_dict() for j in request.app.state.jobs.list()[:10]])


@router.get("/upload", response_class=HTMLResponse)
def upload_page(request: Request):
    s = request.app.state.settings
    return render(request, "upload.html", title="Investigate", accept=",".join(sorted(ALLOWED)), max_mib=s.max_upload_bytes // (1024 * 1024),
                  max_files=s.max_files)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str):
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no job '{job_id}' (the server keeps its last 200 jobs)")
    return render(request, "job.html", title=f"Investigating {job.title}", job=job.to_dict())


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: str):
    kb = request.app.state.kb
    case = case_of(request, case_id)
    marks, coloured_by = mx.case_marks(kb, case)
    report = case_report.build(request, kb, case)
    ws = workspace(request)
    review = findings(case, ws.get_documents(case.id), ws.get_reviews(case.id),
                      names={t: kb.techniques[t].name for t in case.technique_ids() if t in kb.techniques})
    return render(request, "case.html", title=f"Case {case.name}", case=case, r=report,
                  matrix=request.app.state.matrix, marks=marks, marked=mx.marked_ids(marks),
                  coloured_by=coloured_by, name_of=kb.name_of, review=review)


# singular spellings of the page routes (/technique/T1003.001, as people type it): a permanent redirect.
# One route per spelling, not a catch-all, so that routers added later keep their own two-segment paths.
_PLURAL = {"technique": "techniques", "group": "groups", "campaign": "campaigns", "tactic": "tactics",
           "case": "cases", "job": "jobs"}


def _alias(plural: str):
    def redirect(ref: str):
        return RedirectResponse(f"/{plural}/{quote(ref, safe='')}", status_code=308)
    return redirect


for _singular, _plural in _PLURAL.items():
    router.add_api_route(f"/{_singular}/{{ref}}", _alias(_plural), methods=["GET"], response_class=HTMLResponse,
                         name=f"{_singular}_alias")
