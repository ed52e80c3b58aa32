"""Analyses of a case or of a list of technique ids: lifecycle, attribution, overlap, anticipation, coverage.

Each endpoint is a thin shell over its ``ttpscope.analyze`` function; while that function has not landed the
endpoint answers 501 and says which part is missing.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Query, Request

from ttpscope.api.deps import kb_of, need
from ttpscope.errors import InputError

router = APIRouter(prefix="/api", tags=["analyses"])
_SPLIT = re.compile(r"[\s,;]+")
TechniquesQ = Query(None, max_length=5000, description="Technique ids, comma or space separated "
                                                        "(T1566.001,T1059.001).")
CaseQ = Query(None, max_length=200, description="A case id or name in the workspace.")


def technique_list(kb, techniques: str | None) -> list[str]:
    """Resolved technique ids from a comma/space separated list (revoked ids follow their replacement)."""
    out = []
    for i, token in enumerate(t for t in _SPLIT.split(techniques or "") if t):
        res = kb.resolve_technique(token)
        if res.id is None:
            raise InputError("techniques", i, res.note or f"{token!r} is not a technique of {kb.label}")
        out.append(res.id)
    return list(dict.fromkeys(out))


def case_or_techniques(request: Request, kb, case: str | None, techniques: str | None):
    """(Case or None, technique ids): exactly one of ``case`` / ``techniques`` must be given."""
    if bool(case) == bool(techniques):
        raise InputError("query", None, "give exactly one of 'case' (a case id) or 'techniques' (a list of ids)")
    if case:
        from ttpscope.api.api_cases import get_case

        found = get_case(request, case)
        return found, found.technique_ids()
    ids = technique_list(kb, techniques)
    if not ids:
        raise InputError("techniques", None, "no technique ids given")
    return None, ids


def _limit(top: int) -> int:
    return max(1, min(top, 50))


@router.get("/lifecycle", summary="Tactics reached in matrix order, timeline, furthest stage, plain reading")
def lifecycle(request: Request, case: str | None = CaseQ, techniques: str | None = TechniquesQ,
              kb=Depends(kb_of)) -> dict:
    fn = need("lifecycle")
    found, ids = case_or_techniques(request, kb, case, techniques)
    return fn(found if found is not None else ids, kb).to_dict()


@router.get("/attribution", summary="Known groups (and campaigns) ranked by how well they explain the techniques")
def attribution(request: Request, case: str | None = CaseQ, techniques: str | None = TechniquesQ,
                top: int = Query(10, ge=1, le=50), campaigns: bool = Query(True),
                kb=Depends(kb_of)) -> dict:
    """Each candidate carries its score, a calibrated confidence, the observed techniques it explains (with
    their weight) and those it is known for that were not observed (hunting leads)."""
    fn = need("attribution")
    found, ids = case_or_techniques(request, kb, case, techniques)
    return fn(found if found is not None else ids, kb, top=_limit(top), campaigns=campaigns).to_dict()


@router.get("/anticipation", summary="Techniques most likely to follow, with why and what to watch")
def anticipation(request: Request, case: str | None = CaseQ, techniques: str | None = TechniquesQ,
                 top: int = Query(10, ge=1, le=50), kb=Depends(kb_of)) -> dict:
    fn = need("anticipation")
    found, ids = case_or_techniques(request, kb, case, techniques)
    return fn(found if found is not None else ids, kb, top=_limit(top)).to_dict()


@router.get("/overlap", summary="Pairwise similarity of cases, groups and campaigns, with clustering")
def overlap(request: Request,
            item: list[str] = Query(..., min_length=2, max_length=20,
                                    description="Two or more of: case:<id>, a group or campaign id or name."),
            kb=Depends(kb_of)) -> dict:
    fn = need("overlap")
    items = []
    for ref in item:
        if ref.startswith("case:"):
            from ttpscope.api.api_cases import get_case

            items.append(get_case(request, ref[5:]))
        else:
            items.append(ref)
    return fn(items, kb).to_dict()
