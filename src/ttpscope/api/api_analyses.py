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


def server_rules(request: Request) -> list:
    """The Sigma rules this server measures coverage with (``serve --rules``, else the cached SigmaHQ set),
    loaded once. 409 when there is none: the request cannot name a folder, the server must be given one."""
    from fastapi import HTTPException

    from ttpscope.errors import NotFoundError

    cached = getattr(request.app.state, "rules", None)
    if cached is None:
        try:
            from ttpscope.detect.rules import load_rules
        except ImportError:
            need("rules")
        try:
            ruleset = load_rules(request.app.state.settings.rules, kb=request.app.state.kb)
        except NotFoundError as exc:
            raise HTTPException(409, detail=f"coverage needs a Sigma rule set: {exc} (when starting the "
                                            "server: ttpscope serve --rules DIR)") from exc
        cached = request.app.state.rules = list(ruleset.rules)
    return cached


@router.get("/coverage", summary="Detection coverage of the server's Sigma rules, with prioritised gaps")
def coverage(request: Request,
             group: list[str] | None = Query(None, max_length=20, description="Profile: these groups' techniques."),
             case: str | None = CaseQ,
             platform: list[str] | None = Query(None, max_length=10, description="Only techniques on these "
                                                "platforms (e.g. Windows)."),
             kb=Depends(kb_of)) -> dict:
    """Without ``group`` or ``case`` the profile is every live technique. Rules come from the server's
    configuration (``ttpscope serve --rules DIR``), never from the request."""
    coverage_report = need("coverage")
    from ttpscope.analyze import profile as profiles

    if group and case:
        raise InputError("query", None, "give 'group' or 'case', not both")
    prof = None
    if group:
        prof = profiles.profile_from_groups(kb, group)
    elif case:
        from ttpscope.api.api_cases import get_case

        found = get_case(request, case)
        prof = profiles.profile_from_techniques(kb, found.technique_ids(), name=f"case {found.name}")
    return coverage_report(kb, server_rules(request), prof, None, platform)
