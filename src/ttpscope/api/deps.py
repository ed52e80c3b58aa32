"""Small helpers shared by the routers: the loaded knowledge base, the workspace, optional parts."""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import HTTPException, Request

# Parts of ttpscope built on other branches. The server wires each as soon as it is importable and says
# plainly when it is not (pages show a notice; endpoints answer 501 with the reason).
PARTS: dict[str, tuple[str, str, str]] = {
    "workspace": ("ttpscope.store", "Workspace", "the case workspace (ttpscope.store)"),
    "investigate": ("ttpscope.investigate", "investigate", "the investigate orchestration (ttpscope.investigate)"),
    "analyse_case": ("ttpscope.investigate.analysis", "analyse_case", "case analysis (ttpscope.investigate)"),
    "exports": ("ttpscope.export.outputs", "render", "case exports (ttpscope.export.outputs)"),
    "lifecycle": ("ttpscope.analyze.lifecycle", "lifecycle", "lifecycle analysis (ttpscope.analyze.lifecycle)"),
    "attribution": ("ttpscope.analyze.attribution", "attribute", "attribution (ttpscope.analyze.attribution)"),
    "overlap": ("ttpscope.analyze.overlap", "overlap", "overlap analysis (ttpscope.analyze.overlap)"),
    "anticipation": ("ttpscope.analyze.anticipate", "anticipate", "anticipation (ttpscope.analyze.anticipate)"),
    "rules": ("ttpscope.detect.rules", "load_rules", "Sigma rule loading (ttpscope.detect.rules)"),
    "coverage": ("ttpscope.analyze.coverage", "coverage_report", "coverage and gaps (ttpscope.analyze.coverage)"),
}


def kb_of(request: Request):
    return request.app.state.kb


def part(name: str) -> Any | None:
    """The named optional part (a class or function) if its package has landed, else None."""
    module, attr, _ = PARTS[name]
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def need(name: str) -> Any:
    """The named part, or an HTTP 501 saying which part of ttpscope is not there yet."""
    found = part(name)
    if found is None:
        raise HTTPException(501, detail=f"not available in this build: {PARTS[name][2]} is not installed yet")
    return found


def missing(*names: str) -> list[str]:
    """Human descriptions of the named parts that are not present."""
    return [PARTS[n][2] for n in names if part(n) is None]
