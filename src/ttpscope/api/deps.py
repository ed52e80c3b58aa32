"""The one home of per-request helpers: FastAPI dependencies for the knowledge base, the workspace, a stored
case and its analysis. Routers take these (``Depends(...)`` or a plain call) and never import each other."""

from __future__ import annotations

from fastapi import HTTPException, Request

from ttpscope.api.security import public_meta
from ttpscope.detect.rules import RuleInfo, load_rules
from ttpscope.errors import NotFoundError
from ttpscope.investigate.analysis import analyse_stored_case
from ttpscope.kb import KnowledgeBase
from ttpscope.model import Case
from ttpscope.analyze.report import CaseAnalysis
from ttpscope.store import Workspace

ANALYSES_KEPT = 16  # analyses of stored cases kept in memory, per server


def kb_of(request: Request) -> KnowledgeBase:
    """The knowledge base the server loaded at start."""
    return request.app.state.kb


def workspace_of(app) -> Workspace:
    """The server's workspace, opened once."""
    ws = getattr(app.state, "workspace", None)
    if ws is None:
        ws = app.state.workspace = Workspace(app.state.settings.workspace)
    return ws


def workspace(request: Request) -> Workspace:
    return workspace_of(request.app)


def case_of(request: Request, case_id: str) -> Case:
    """The stored case a path or query names (by id or name); 404 when there is none. Its meta as clients
    may see it (no server paths)."""
    case = workspace(request).get_case(case_id)
    public_meta(case.meta)
    return case


def stored_analysis(request: Request, case_id: str) -> tuple[Case, CaseAnalysis]:
    """(Case, CaseAnalysis) of a stored case, cached per case version (a re-investigation changes
    ``updated`` and so recomputes)."""
    ws = workspace(request)
    case = ws.get_case(case_id)
    cache: dict = request.app.state.analysis_cache
    key = (case.id, case.updated.isoformat())
    if key not in cache:
        analysis = analyse_stored_case(ws, case, request.app.state.kb)
        public_meta(case.meta)  # after the analysis used the real rule folder
        while len(cache) >= ANALYSES_KEPT:
            cache.pop(next(iter(cache)))
        cache[key] = analysis
    public_meta(case.meta)
    return case, cache[key]


def server_rules(request: Request) -> list[RuleInfo]:
    """The Sigma rules this server measures coverage with (``serve --rules``, else the cached SigmaHQ set),
    loaded once. 409 when there is none: the request cannot name a folder, the server must be given one."""
    cached = getattr(request.app.state, "rules", None)
    if cached is None:
        try:
            ruleset = load_rules(request.app.state.settings.rules, kb=request.app.state.kb)
        except NotFoundError as exc:
            raise HTTPException(409, detail=f"coverage needs a Sigma rule set: {exc} (when starting the "
                                            "server: ttpscope serve --rules DIR)") from exc
        cached = request.app.state.rules = list(ruleset.rules)
    return cached
