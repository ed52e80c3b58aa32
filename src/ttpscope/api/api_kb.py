"""Knowledge-base endpoints: the same JSON as ``ttpscope kb ... --json`` (both use ``ttpscope.kb.views``)."""

from __future__ import annotations

import threading
from typing import Literal

from fastapi import APIRouter, Depends, File, Path, Query, Request, UploadFile
from fastapi.responses import Response

from ttpscope.api.deps import kb_of
from ttpscope.api.matrix import group_marks, layer_from_bytes, layer_marks
from ttpscope.api.responses import ORJSONResponse
from ttpscope.export.layers import make_layer
from ttpscope.kb import views

router = APIRouter(prefix="/api", tags=["knowledge base"])


def cached_json(request: Request, key: tuple, build) -> Response:
    """JSON of a KB view, serialised once per server: the loaded KB never changes while the server runs.

    Bounded by ``Settings.view_cache_size`` (0 turns caching off); errors are never cached.
    """
    cache: dict = request.app.state.view_cache
    body = cache.get(key)
    if body is None:
        body = ORJSONResponse(build()).body
        limit = request.app.state.settings.view_cache_size
        if limit > 0:
            with _CACHE_LOCK:
                while len(cache) >= limit:
                    cache.pop(next(iter(cache)))  # oldest first: dicts keep insertion order
                cache[key] = body
    return Response(body, media_type="application/json")
Kind = Literal["technique", "group", "software", "campaign", "mitigation"]
MAX_LAYER_BYTES = 5 * 1024 * 1024
_CACHE_LOCK = threading.Lock()


@router.get("/kb", summary="Domain, ATT&CK version and object counts")
def kb_info(kb=Depends(kb_of)) -> dict:
    return kb.info()


@router.get("/tactics", summary="Tactics in matrix order")
def tactics(kb=Depends(kb_of)) -> dict:
    return {"tactics": [{"id": t.id, "shortname": t.shortname, "name": t.name, "order": t.order}
                        for t in kb.tactic_list()], **kb.provenance()}


@router.get("/tactics/{tactic}", summary="A tactic and its techniques")
def tactic(tactic: str = Path(..., examples=["TA0006", "credential-access"]), kb=Depends(kb_of)) -> dict:
    return views.tactic_view(kb, tactic)


@router.get("/techniques/{technique_id}", summary="A technique: everything ttpscope knows about it")
def technique(request: Request, technique_id: str = Path(..., examples=["T1003.001", "T1086"]),
              procedures: int | None = Query(None, ge=0, le=10_000, description="Cap on procedure examples."),
              kb=Depends(kb_of)) -> Response:
    """By id (``T1059.001``), old revoked id (answers with the replacement and a ``note``) or name."""
    return cached_json(request, ("technique", technique_id, procedures),
                       lambda: views.technique_view(kb, technique_id, procedures=procedures))


@router.get("/groups", summary="All live threat groups")
def groups(kb=Depends(kb_of)) -> dict:
    return {"groups": [{"id": g.id, "name": g.name, "aliases": g.aliases,
                        "techniques": len(kb.group_techniques(g.id))} for g in kb.live_groups()],
            **kb.provenance()}


@router.get("/groups/{group}", summary="A group by id, name or any ATT&CK / MISP alias")
def group(request: Request, group: str = Path(..., examples=["G0016", "Cozy Bear"]),
          kb=Depends(kb_of)) -> Response:
    return cached_json(request, ("group", group), lambda: views.group_view(kb, group))


@router.get("/groups/{group}/layer", summary="Navigator layer 4.5 of a group's profile")
def group_layer(group: str = Path(..., examples=["APT28"]), kb=Depends(kb_of)) -> Response:

    marks, meta = group_marks(kb, group)
    layer = make_layer(f"{meta['id']} {meta['name']}", kb,
                       [{"id": tid, "score": m["score"], "comment": m["comment"]} for tid, m in marks.items()],
                       description=f"Techniques of {meta['name']} in {kb.label}: 1 = used directly, "
                                   "0.7 = via a campaign, 0.45 = via its software.")
    return ORJSONResponse(layer, headers={"content-disposition": f'attachment; filename="{meta["id"]}-layer.json"'})


@router.get("/software", summary="All live malware and tools")
def software_list(kb=Depends(kb_of)) -> dict:
    return {"software": [{"id": s.id, "name": s.name, "type": s.type, "aliases": s.aliases}
                         for s in sorted(kb.software.values(), key=lambda s: s.id) if not s.deprecated],
            **kb.provenance()}


@router.get("/software/{software}", summary="A malware or tool by id, name or alias")
def software(software: str = Path(..., examples=["S0002", "mimikatz"]), kb=Depends(kb_of)) -> dict:
    return views.software_view(kb, software)


@router.get("/campaigns", summary="All live campaigns")
def campaigns(kb=Depends(kb_of)) -> dict:
    return {"campaigns": [{"id": c.id, "name": c.name, "first_seen": c.first_seen, "last_seen": c.last_seen,
                           "groups": c.groups}
                          for c in sorted(kb.campaigns.values(), key=lambda c: c.id) if not c.deprecated],
            **kb.provenance()}


@router.get("/campaigns/{campaign}", summary="A campaign by id or name")
def campaign(campaign: str = Path(..., examples=["C0024"]), kb=Depends(kb_of)) -> dict:
    return views.campaign_view(kb, campaign)


@router.get("/search", summary="Ranked free-text search")
def search(q: str = Query(..., min_length=1, max_length=500), kind: list[Kind] | None = Query(None),
           limit: int = Query(20, ge=1, le=200), kb=Depends(kb_of)) -> dict:
    return {"query": q, "results": kb.search(q, kinds=kind or None, limit=limit), **kb.provenance()}


@router.get("/matrix", summary="The matrix: tactics, techniques, sub-techniques; optionally coloured")
def matrix(request: Request,
           group: str | None = Query(None, max_length=200, description="Colour by this group's profile."),
           kb=Depends(kb_of)) -> dict:
    view = dict(request.app.state.matrix)
    if group:
        marks, meta = group_marks(kb, group)
        view["marks"], view["coloured_by"] = marks, {k: v for k, v in meta.items() if k != "legend"}
    return view


@router.post("/layers/read", summary="Validate a Navigator layer and return its marks (nothing is stored)")
async def read_layer(file: UploadFile = File(..., description="A Navigator layer JSON file."),
                     kb=Depends(kb_of)) -> dict:
    raw = await file.read(MAX_LAYER_BYTES + 1)
    name = (file.filename or "layer.json")[:200]
    if len(raw) > MAX_LAYER_BYTES:
        from ttpscope.errors import InputError

        raise InputError(name, None, f"a layer over {MAX_LAYER_BYTES // (1024 * 1024)} MiB is not accepted")
    marks, meta = layer_marks(kb, layer_from_bytes(raw, name, kb))
    return {"marks": marks, "coloured_by": meta, **kb.provenance()}
