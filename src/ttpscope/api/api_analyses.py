"""Analyses of a case or of a list of technique ids: lifecycle, attribution, overlap, anticipation, coverage.

Each endpoint is a thin shell over its ``ttpscope.analyze`` function.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Query, Request

from ttpscope.analyze.anticipate import anticipate
from ttpscope.analyze.attribution import attribute
from ttpscope.analyze.coverage import coverage_report
from ttpscope.analyze.lifecycle import lifecycle as lifecycle_of
from ttpscope.analyze.overlap import overlap as overlap_of
from ttpscope.analyze.profile import profile_for
from ttpscope.api.deps import case_of, kb_of, server_rules
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
        found = case_of(request, case)
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
    found, ids = case_or_techniques(request, kb, case, techniques)
    return lifecycle_of(found if found is not None else ids, kb).to_dict()


@router.get("/attribution", summary="Known groups (and campaigns) ranked by how well they explain the techniques")
def attribution(request: Request, case: str | None = CaseQ, techniques: str | None = TechniquesQ,
                top: int = Query(10, ge=1, le=50), campaigns: bool = Query(True),
                kb=Depends(kb_of)) -> dict:
    """Each candidate carries its score, a calibrated confidence, the observed techniques it explains (with
    their weight) and those it is known for that were not observed (hunting leads)."""
    found, ids = case_or_techniques(request, kb, case, techniques)
    return attribute(found if found is not None else ids, kb, top=_limit(top), campaigns=campaigns).to_dict()


@router.get("/anticipation", summary="Techniques most likely to follow, with why and what to watch")
def anticipation(request: Request, case: str | None = CaseQ, techniques: str | None = TechniquesQ,
                 top: int = Query(10, ge=1, le=50), kb=Depends(kb_of)) -> dict:
    found, ids = case_or_techniques(request, kb, case, techniques)
    return anticipate(found if found is not None else ids, kb, top=_limit(top)).to_dict()


@router.get("/overlap", summary="Pairwise similarity of cases, groups and campaigns, with clustering")
def overlap(request: Request,
            item: list[str] = Query(..., min_length=2, max_length=20,
                                    description="Two or more of: case:<id>, a group or campaign id or name."),
            kb=Depends(kb_of)) -> dict:
    items = [case_of(request, ref[5:]) if ref.startswith("case:") else ref for ref in item]
    return overlap_of(items, kb).to_dict()


def coverage_of(request: Request, kb, groups: list[str] | None = None, case: str | None = None,
                platforms: list[str] | None = None) -> dict:
    """The coverage report of the server's rule set: against some groups, a stored case's techniques, or
    every live technique (the matrix page colours by it too)."""
    if groups and case:
        raise InputError("query", None, "give 'group' or 'case', not both")
    prof = profile_for(kb, groups=groups, case=case_of(request, case) if case else None)
    return coverage_report(kb, server_rules(request), prof, None, platforms)


@router.get("/coverage", summary="Detection coverage of the server's Sigma rules, with prioritised gaps")
def coverage(request: Request,
             group: list[str] | None = Query(None, max_length=20, description="Profile: these groups' techniques."),
             case: str | None = CaseQ,
             platform: list[str] | None = Query(None, max_length=10, description="Only techniques on these "
                                                "platforms (e.g. Windows)."),
             kb=Depends(kb_of)) -> dict:
    """Without ``group`` or ``case`` the profile is every live technique. Rules come from the server's
    configuration (``ttpscope serve --rules DIR``), never from the request."""
    return coverage_of(request, kb, group, case, platform)
