"""Sharing back over TAXII 2.1: the workspace's cases as one read-only collection under ``/taxii2/``.

    from taxii2client.v21 import Server
    Server("http://127.0.0.1:8000/taxii2/", user="any", password=TOKEN)   # or auth=TokenAuth(TOKEN)

Every case contributes its STIX export (the bundle of ``ttpscope case export --format stix``: techniques,
detection sightings, report notes, indicators and the indicator sightings of its feeds). Each object's
``date_added`` is the time its case was last saved plus its position in the bundle in microseconds, so
dates are distinct and ``added_after`` can resume exactly where a client stopped. Pages follow a keyset
``next`` token (the last ``date_added`` and id sent), so a client that resends its filters with ``next``
sees every object once and can never loop.

Every TAXII endpoint needs the server token, as ``Authorization: Bearer <token>`` or ``Token <token>``
(taxii2-client's ``TokenAuth``) or HTTP basic with the token as password (clients that only do basic,
such as MISP and OpenCTI connectors). Errors are TAXII error messages, never a traceback or a path.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ttpscope.api.deps import stored_analysis, workspace
from ttpscope.export.stix import case_bundle
from ttpscope.model import parse_time

router = APIRouter(prefix="/taxii2", include_in_schema=False)

TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
COLLECTION_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "ttpscope:workspace-cases"))
MAX_PAGE = 1000  # objects a page holds at most, whatever the client asks


def _ts(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _taxii(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=TAXII, headers=headers)


def _error(status: int, title: str, description: str = "") -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="ttpscope TAXII", Bearer'} if status == 401 else None
    return _taxii({"title": title, "description": description, "http_status": str(status)}, status, headers)


def _authorised(request: Request) -> bool:
    """The server token as Bearer, Token (taxii2-client) or the password of HTTP basic."""
    expected = request.app.state.settings.token.encode()
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    value = value.strip()
    if scheme.lower() in ("bearer", "token") and value:
        return hmac.compare_digest(value.encode(), expected)
    if scheme.lower() == "basic" and value:
        try:
            _, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password.encode(), expected)
    return False


def _guard(request: Request) -> Response | None:
    if not _authorised(request):
        return _error(401, "token required", "send the server token: 'Authorization: Bearer <token>', "
                                             "'Token <token>' or HTTP basic with the token as password")
    accept = (request.headers.get("accept") or "").replace(" ", "").lower()
    if accept and not any(a in accept for a in ("application/taxii+json", "*/*", "application/*")):
        return _error(406, "not acceptable", f"this server answers {TAXII}")
    return None


def _collection_info() -> dict[str, Any]:
    return {"id": COLLECTION_ID, "title": "ttpscope cases",
            "description": "The STIX 2.1 export of every case in this workspace (read only).",
            "can_read": True, "can_write": False, "media_types": [STIX]}


def _case_objects(request: Request, case_id: str, updated: str) -> list[tuple[str, dict[str, Any]]]:
    """(date_added, object) of one case's export, cached per case version."""
    cache = getattr(request.app.state, "taxii_cache", None)
    if cache is None:
        cache = request.app.state.taxii_cache = {}
    key = (case_id, updated)
    if key not in cache:
        _, analysis = stored_analysis(request, case_id)
        bundle = case_bundle(analysis, request.app.state.kb)
        base = parse_time(updated) or datetime.now(timezone.utc)
        cache[key] = [(_ts(base + timedelta(microseconds=i)), obj) for i, obj in enumerate(bundle["objects"])]
        for old in [k for k in cache if k[0] == case_id and k != key]:
            del cache[old]
    return cache[key]


def _all_objects(request: Request) -> list[tuple[str, dict[str, Any]]]:
    """Every case's objects, ordered by (date_added, id); one entry per (id, modified)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for row in workspace(request).list_cases():
        for added, obj in _case_objects(request, row["id"], row["updated"]):
            version = (obj["id"], str(obj.get("modified") or obj.get("created") or ""))
            if version not in seen:
                seen.add(version)
                out.append((added, obj))
    out.sort(key=lambda pair: (pair[0], pair[1]["id"]))
    return out


def _version(obj: dict[str, Any]) -> str:
    return str(obj.get("modified") or obj.get("created") or "")


def _select(request: Request) -> tuple[list[tuple[str, dict[str, Any]]], int, str | None] | Response:
    """The objects the query's filters select, the page size and the keyset to start after."""
    q = request.query_params
    limit_raw = q.get("limit")
    try:
        limit = min(max(int(limit_raw), 1), MAX_PAGE) if limit_raw else MAX_PAGE
    except ValueError:
        return _error(400, "bad limit", "limit is a positive integer")
    after = q.get("added_after")
    if after is not None:
        parsed = parse_time(after)
        if parsed is None:
            return _error(400, "bad added_after", "added_after is a timestamp such as 2026-12-01T00:00:00.000Z")
        after = _ts(parsed)
    start = None
    if q.get("next"):
        try:
            start = base64.urlsafe_b64decode(q["next"].encode()).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return _error(400, "bad next", "next is a token this server gave")
    ids = {v for v in q.get("match[id]", "").split(",") if v}
    types = {v for v in q.get("match[type]", "").split(",") if v}
    specs = {v for v in q.get("match[spec_version]", "").split(",") if v}
    versions = {v for v in q.get("match[version]", "").split(",") if v} or {"last"}
    objs = _all_objects(request)
    if "all" not in versions:  # first / last / an exact modified, per id
        by_id: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for pair in objs:
            by_id.setdefault(pair[1]["id"], []).append(pair)
        keep = set()
        for oid, pairs in by_id.items():
            ordered = sorted(pairs, key=lambda p: _version(p[1]))
            if "last" in versions:
                keep.add(id(ordered[-1]))
            if "first" in versions:
                keep.add(id(ordered[0]))
            for p in ordered:
                if _version(p[1]) in versions:
                    keep.add(id(p))
        objs = [p for p in objs if id(p) in keep]
    out = [p for p in objs
           if (after is None or p[0] > after) and (not ids or p[1]["id"] in ids)
           and (not types or p[1]["type"] in types) and (not specs or p[1].get("spec_version", "2.0") in specs)]
    return out, limit, start


def _envelope(selected, item, always_objects: bool = False) -> Response:
    """One page of ``selected`` (objects, limit, keyset) as a TAXII envelope: ``more``, ``next`` when there is
    more, and ``objects`` (each row through ``item``) when the page holds any, or always if asked."""
    page, more, token, headers = _page(*selected)
    body: dict[str, Any] = {"more": more}
    if token:
        body["next"] = token
    if page or always_objects:
        body["objects"] = [item(p) for p in page]
    return _taxii(body, headers=headers)


def _page(selected: list[tuple[str, dict[str, Any]]], limit: int, start: str | None):
    if start is not None:
        selected = [p for p in selected if f"{p[0]}|{p[1]['id']}" > start]
    page = selected[:limit]
    more = len(selected) > limit
    token = base64.urlsafe_b64encode(f"{page[-1][0]}|{page[-1][1]['id']}".encode()).decode() if more else None
    headers = {"X-TAXII-Date-Added-First": page[0][0], "X-TAXII-Date-Added-Last": page[-1][0]} if page else {}
    return page, more, token, headers


@router.get("/")
def discovery(request: Request) -> Response:
    refused = _guard(request)
    if refused:
        return refused
    root = str(request.url_for("api_root"))
    return _taxii({"title": "ttpscope", "description": "ttpscope cases over TAXII 2.1 (read only)",
                   "default": root, "api_roots": [root]})


@router.get("/cases/", name="api_root")
def api_root(request: Request) -> Response:
    refused = _guard(request)
    if refused:
        return refused
    return _taxii({"title": "ttpscope cases", "versions": [TAXII], "max_content_length": 0,
                   "description": "Read only: the workspace's cases as STIX 2.1."})


@router.get("/cases/collections/")
def collections(request: Request) -> Response:
    refused = _guard(request)
    if refused:
        return refused
    return _taxii({"collections": [_collection_info()]})


def _collection_or_404(collection_id: str) -> Response | None:
    if collection_id != COLLECTION_ID:
        return _error(404, "no such collection", f"the collection of this server is {COLLECTION_ID}")
    return None


@router.get("/cases/collections/{collection_id}/")
def collection(request: Request, collection_id: str) -> Response:
    refused = _guard(request) or _collection_or_404(collection_id)
    if refused:
        return refused
    return _taxii(_collection_info())


@router.get("/cases/collections/{collection_id}/objects/")
def objects(request: Request, collection_id: str) -> Response:
    refused = _guard(request) or _collection_or_404(collection_id)
    if refused:
        return refused
    selected = _select(request)
    if isinstance(selected, Response):
        return selected
    return _envelope(selected, lambda p: p[1])


@router.get("/cases/collections/{collection_id}/objects/{object_id}/")
def one_object(request: Request, collection_id: str, object_id: str) -> Response:
    refused = _guard(request) or _collection_or_404(collection_id)
    if refused:
        return refused
    selected = _select(request)
    if isinstance(selected, Response):
        return selected
    found = [p for p in selected[0] if p[1]["id"] == object_id]
    if not found:
        return _error(404, "no such object", f"{object_id} is not in this collection")
    return _envelope((found, selected[1], selected[2]), lambda p: p[1], always_objects=True)


@router.get("/cases/collections/{collection_id}/manifest/")
def manifest(request: Request, collection_id: str) -> Response:
    refused = _guard(request) or _collection_or_404(collection_id)
    if refused:
        return refused
    selected = _select(request)
    if isinstance(selected, Response):
        return selected
    return _envelope(selected, lambda p: {"id": p[1]["id"], "date_added": p[0],
                                          "version": _version(p[1]) or p[0], "media_type": STIX})
