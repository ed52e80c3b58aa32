"""Analyse a case, fresh or stored: gather what the report sections need (the Sigma rule set, the other
stored cases) and run them (:mod:`ttpscope.analyze.sections`). The CLI (``case show``, ``case export``,
``export``), the web app and :func:`ttpscope.investigate.investigate` all analyse through here.

No evidence file is re-read: a stored case is analysed from the workspace alone.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Iterable

from ttpscope.analyze.report import CaseAnalysis
from ttpscope.analyze.review import apply_reviews
from ttpscope.analyze.sections import analyse
from ttpscope.detect.rules import default_rules_dir, load_rules
from ttpscope.errors import TtpscopeError
from ttpscope.kb import KnowledgeBase, load_kb
from ttpscope.model import Case, Detection, ReportDocument
from ttpscope.store import Workspace

OTHER_CASES = 20  # stored cases compared in the overlap section


def coverage_rules(rules: str | Path | None) -> Path | None:
    """The rule set the coverage section measures: the one given, else the cached SigmaHQ release."""
    if rules:
        return Path(rules)
    try:
        path = default_rules_dir()
    except TtpscopeError:  # no SigmaHQ release cached
        return None
    return path if path is not None and Path(path).exists() else None


def other_cases(workspace: Workspace | None, case: Case, limit: int = OTHER_CASES) -> list[Case]:
    """Up to ``limit`` other stored cases that have observations, most recently updated first."""
    if workspace is None:
        return []
    out = []
    for row in workspace.list_cases():
        if row["id"] != case.id and row["observations"] and len(out) < limit:
            out.append(workspace.get_case(row["id"]))
    return out


def case_sightings(workspace: Workspace | None, case: Case) -> list[dict]:
    """The case's indicator sightings (feed indicators matched on its logs), with the indicators they matched."""
    if workspace is None:
        return []
    from ttpscope.feeds.sharing import case_sightings as sightings_of
    from ttpscope.store.feeds import FeedStore

    return sightings_of(case.id, FeedStore(workspace=workspace))


def analyse_case(case: Case, kb, *, detections: Iterable[Detection] = (), documents: Iterable[ReportDocument] = (),
                 rules: str | Path | None = None, workspace: Workspace | None = None,
                 only: Iterable[str] | None = None, on_section: Callable[[str], None] | None = None) -> CaseAnalysis:
    """Run every report section on a case.

    ``rules``: the Sigma rule file or folder the logs were checked with (the coverage section measures it;
    default: the cached SigmaHQ set); ``workspace``: for overlaps with the other stored cases; ``only``:
    section keys to run; ``on_section(key)`` is called before each section (progress).
    """
    rules_path = coverage_rules(rules)
    loader = (lambda: list(load_rules(rules_path, kb).rules)) if rules_path is not None else None
    result = analyse(case, kb, detections=detections, documents=documents, rules=loader,
                     rules_source=str(rules_path) if rules_path is not None else "",
                     other_cases=partial(other_cases, workspace, case), only=only, on_section=on_section)
    result.sightings = case_sightings(workspace, case)
    return result


def case_kb(case: Case, bundle: str | None = None) -> KnowledgeBase:
    """The knowledge base of the ATT&CK domain a stored case was investigated in."""
    return load_kb(case.meta.get("domain") or "enterprise", bundle)


def stored_rules(case: Case) -> Path | None:
    """The rule set a case was investigated with, if it is still there."""
    rules = case.meta.get("rules")
    return Path(rules) if rules and Path(rules).exists() else None


def analyse_stored_case(workspace: Workspace, case: str | Case, kb, *, rules: str | Path | None = None,
                        only: Iterable[str] | None = None, on_section: Callable[[str], None] | None = None,
                        reviewed_only: bool = False) -> CaseAnalysis:
    """Analyse a case of the workspace (by id, name, or the Case read from it) with its stored detections and
    documents. The coverage section measures ``rules``, else the rule set the case was investigated with
    (when it is still there), else the cached SigmaHQ set. The analysts' review decisions are applied first:
    rejected findings are left out, and with ``reviewed_only`` unreviewed ones too."""
    found = case if isinstance(case, Case) else workspace.get_case(case)
    reviewed, detections, documents = apply_reviews(
        found, workspace.get_reviews(found.id), workspace.get_detections(found.id),
        workspace.get_documents(found.id), reviewed_only=reviewed_only)
    return analyse_case(reviewed, kb, detections=detections, documents=documents,
                        rules=rules or stored_rules(found), workspace=workspace, only=only, on_section=on_section)
