"""What a technique page adds to the knowledge base's own text: ATT&CK's Markdown rendered as safe HTML, the
server's Sigma rules for the technique with their hunting queries per SIEM (``ttpscope.detect.convert``, as
``ttpscope hunt`` does), and the Atomic Red Team tests that exercise it (``ttpscope.kb.atomics``)."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

from ttpscope.errors import TtpscopeError

# SIEMs a technique page shows queries for (targets of ttpscope.detect.convert), and how many rules it converts
HUNT_TARGETS = (("splunk", "Splunk SPL"), ("elasticsearch", "Elasticsearch Lucene"), ("esql", "ES|QL"),
                ("kusto", "Microsoft KQL"))
RULES_CONVERTED = 8

_CITATION = re.compile(r"\(Citation:[^)]*\)")
_CODE_TAG = re.compile(r"</?code>")
_ATTACK_LINK = re.compile(r"^https?://attack\.mitre\.org/(techniques|groups|software|campaigns|tactics)/"
                          r"([A-Z]+\d{4})(?:/(\d{3}))?/?$")

# html=False: any HTML inside a description is shown as text, never parsed (the page's CSP stays strict too);
# markdown-it refuses javascript:, vbscript: and data: link targets by itself
_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def _link_open(renderer, tokens, idx, options, env):
    token = tokens[idx]
    href = token.attrGet("href") or ""
    local = _ATTACK_LINK.match(href)
    if local:  # a link into ATT&CK opens this app's own page of that object
        kind, oid, sub = local.groups()
        token.attrSet("href", f"/{kind}/{oid}.{sub}" if sub else f"/{kind}/{oid}")
    else:
        token.attrSet("rel", "noreferrer")
    return renderer.renderToken(tokens, idx, options, env)


_md.add_render_rule("link_open", _link_open)


def markdown_html(text: str | None) -> Markup:
    """ATT&CK description Markdown as HTML: citations dropped, ``<code>`` spans kept as code, links into ATT&CK
    pointed at this app; everything else escaped."""
    if not text:
        return Markup("")
    text = _CITATION.sub("", text)
    text = _CODE_TAG.sub("`", text)
    return Markup(_md.render(text))


def technique_rules(request, technique_id: str) -> dict[str, Any]:
    """The server's Sigma rules covering a technique (own tag or a sub-technique's, as coverage counts them),
    the first ``RULES_CONVERTED`` (by level) converted for every SIEM of ``HUNT_TARGETS``.

    ``{"available": bool, "reason": str, "rules": [{id, title, level, status, file, queries: {target: [..]},
    errors: {target: why}}], "total": int}``; ``available`` is False when the server has no rule set.
    """
    from fastapi import HTTPException

    from ttpscope.analyze.coverage import LEVELS, rules_by_technique, technique_coverage
    from ttpscope.api.deps import server_rules
    from ttpscope.detect.convert import convert_rules

    kb = request.app.state.kb
    try:
        rules = server_rules(request)
    except HTTPException as exc:
        return {"available": False, "reason": str(exc.detail), "rules": [], "total": 0}
    state = request.app.state
    index = getattr(state, "rules_index", None)
    if index is None:
        index = state.rules_index = rules_by_technique(rules, kb)[0]
    cache: dict = state.__dict__.setdefault("_hunt_cache", {})  # per technique: conversions are slow
    if technique_id in cache:
        return cache[technique_id]
    rank = {lv: i for i, lv in enumerate(LEVELS)}
    covering = sorted(technique_coverage(kb, technique_id, index).rules,
                      key=lambda r: (rank.get(str(r.level).lower(), 9), str(r.title)))
    rows = [{"id": str(r.id), "title": str(r.title or ""), "level": r.level or "", "status": r.status or "",
             "file": PurePath(r.path).name if r.path else "", "queries": {}, "errors": {}} for r in covering]
    for target, _label in HUNT_TARGETS:
        try:
            converted = convert_rules(covering[:RULES_CONVERTED], target)
        except TtpscopeError as exc:  # a backend missing from this install: say so once per SIEM
            for row in rows[:RULES_CONVERTED]:
                row["errors"][target] = str(exc)
            continue
        for row, result in zip(rows, converted.results):
            if result.error:
                row["errors"][target] = result.error
            else:
                row["queries"][target] = result.queries
    answer = {"available": True, "reason": "", "rules": rows, "total": len(rows)}
    while len(cache) >= 256:
        cache.pop(next(iter(cache)))
    cache[technique_id] = answer
    return answer


def technique_atomics(request, technique_id: str) -> dict[str, Any]:
    """Atomic Red Team tests filed under the technique, from the index the server was given (``--atomics``).

    ``{"available": bool, "reason": str, "tests": [AtomicTest.to_dict() + description]}``.
    """
    from ttpscope.kb.atomics import load_atomics

    source = request.app.state.settings.atomics
    if not source:
        return {"available": False, "tests": [],
                "reason": "this server was started without Atomic Red Team indexes (ttpscope serve --atomics DIR)"}
    index = getattr(request.app.state, "atomics", None)
    if index is None:
        try:
            index = request.app.state.atomics = load_atomics([source])
        except TtpscopeError as exc:
            from ttpscope.api.jobs import redact_paths

            return {"available": False, "tests": [], "reason": redact_paths(str(exc))}
    tests = [{**t.to_dict(), "description": t.description} for t in index.tests_for(technique_id)]
    return {"available": True, "reason": "", "tests": tests}
