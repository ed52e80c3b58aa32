"""ATT&CK Navigator layers (format 4.5): every layer ttpscope writes, and reading and validating them.

Every layer builder lives here (case, coverage, profile, gaps, emulation plan) and goes through
:func:`make_layer`; every layer-consuming feature goes through :func:`read_layer`, so the format lives here
only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

import orjson

from ttpscope.analyze.evidence import TechniqueSummary, comment_of, technique_evidence
from ttpscope.errors import InputError
from ttpscope.kb import KnowledgeBase
from ttpscope.model import Case

LAYER_VERSION = "4.5"
NAVIGATOR_VERSION = "4.9.1"
_TECH = re.compile(r"^T\d{4}(\.\d{3})?$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$")
DOMAIN_NAMES = {"enterprise": "enterprise-attack", "mobile": "mobile-attack", "ics": "ics-attack"}


def make_layer(name: str, kb, entries: Iterable[dict[str, Any]], description: str = "",
               gradient: tuple[str, ...] = ("#ffffffff", "#ff6666ff"), min_value: float = 0,
               max_value: float | None = None, legend: Iterable[tuple[str, str]] = (),
               metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """A layer for ``kb``'s domain from entries ``{id, score?, comment?, color?, tactic?, metadata?}``.

    A technique with several tactics gets one cell per tactic unless ``tactic`` pins it. Parents of listed
    sub-techniques are marked to show their sub-techniques expanded.
    """
    techniques: list[dict[str, Any]] = []
    expand: set[str] = set()
    scores = []
    for entry in entries:
        tid = entry["id"]
        tech = kb.techniques.get(tid)
        tactics = [entry["tactic"]] if entry.get("tactic") else (tech.tactics if tech else [])
        for tactic in tactics or [None]:
            cell: dict[str, Any] = {"techniqueID": tid, "enabled": True, "showSubtechniques": False}
            if tactic:
                cell["tactic"] = tactic
            if entry.get("score") is not None:
                cell["score"] = round(float(entry["score"]), 4)
                scores.append(cell["score"])
            cell["color"] = entry.get("color", "")
            cell["comment"] = entry.get("comment", "")
            cell["metadata"] = [{"name": str(k), "value": str(v)} for k, v in (entry.get("metadata") or {}).items()]
            cell["links"] = []
            techniques.append(cell)
        if tech and tech.parent:
            expand.add(tech.parent)
    present = {(c["techniqueID"], c.get("tactic")) for c in techniques}
    for cell in techniques:
        if cell["techniqueID"] in expand:
            cell["showSubtechniques"] = True
    for parent in sorted(expand):
        ptech = kb.techniques.get(parent)
        for tactic in ptech.tactics if ptech else []:
            if (parent, tactic) not in present:
                techniques.append({"techniqueID": parent, "tactic": tactic, "enabled": True, "color": "",
                                   "comment": "", "metadata": [], "links": [], "showSubtechniques": True})
    major = kb.version.split(".")[0] if kb.version and kb.version[0].isdigit() else "15"
    return {
        "name": name,
        "versions": {"attack": major, "navigator": NAVIGATOR_VERSION, "layer": LAYER_VERSION},
        "domain": DOMAIN_NAMES[kb.domain],
        "description": description,
        "filters": {"platforms": sorted({p for t in kb.techniques.values() for p in t.platforms})},
        "sorting": 3,
        "layout": {"layout": "side", "aggregateFunction": "average", "showID": True, "showName": True,
                   "showAggregateScores": False, "countUnscored": False, "expandedSubtechniques": "annotated"},
        "hideDisabled": False,
        "techniques": techniques,
        "gradient": {"colors": list(gradient), "minValue": min_value,
                     "maxValue": max_value if max_value is not None else max(scores + [1])},
        "legendItems": [{"label": label, "color": color} for label, color in legend],
        "metadata": [{"name": str(k), "value": str(v)} for k, v in (metadata or {}).items()],
        "links": [],
        "showTacticRowBackground": False,
        "tacticRowBackground": "#dddddd",
        "selectTechniquesAcrossTactics": True,
        "selectSubtechniquesWithParent": False,
        "selectVisibleTechniques": False,
    }


def validate_layer(layer: Any, kb=None) -> list[str]:
    """Problems that would stop Navigator 4.5 from opening the layer (empty list = valid).

    With ``kb``, tactic shortnames are checked against the domain's tactics.
    """
    problems: list[str] = []
    if not isinstance(layer, dict):
        return ["a layer must be a JSON object"]
    for key, kind in (("name", str), ("domain", str), ("versions", dict), ("techniques", list)):
        if not isinstance(layer.get(key), kind):
            problems.append(f"'{key}' missing or not a {kind.__name__}")
    versions = layer.get("versions") or {}
    if isinstance(versions, dict) and versions.get("layer") != LAYER_VERSION:
        problems.append(f"versions.layer is {versions.get('layer')!r}, expected '{LAYER_VERSION}'")
    if layer.get("domain") not in DOMAIN_NAMES.values():
        problems.append(f"domain {layer.get('domain')!r} is not one of {sorted(DOMAIN_NAMES.values())}")
    tactics = {t.shortname for t in kb.tactics.values()} if kb is not None else None
    techniques = layer.get("techniques")
    for i, cell in enumerate(techniques if isinstance(techniques, list) else []):
        problems += cell_problems(i, cell, tactics)
    gradient = layer.get("gradient")
    if gradient is not None:
        colours = gradient.get("colors", []) if isinstance(gradient, dict) else None
        if not isinstance(colours, list) or not all(isinstance(c, str) and _COLOR.match(c) for c in colours):
            problems.append("gradient.colors must be hex colours")
    return problems


MAX_SCORE = 1e15  # beyond, score ranges overflow to infinity when they are normalised


def cell_problems(i: int, cell: Any, tactics: set[str] | None = None) -> list[str]:
    """What is wrong with ``techniques[i]`` of a layer: every field ttpscope reads, checked for its type."""
    if not isinstance(cell, dict):
        return [f"techniques[{i}] is not an object"]
    out = []
    tid = cell.get("techniqueID")
    if not isinstance(tid, str) or not _TECH.match(tid):
        out.append(f"techniques[{i}].techniqueID {_short(tid)} is not T1234 or T1234.567")
    if "tactic" in cell:
        tactic = cell["tactic"]
        if not isinstance(tactic, str):
            out.append(f"techniques[{i}].tactic is a {type(tactic).__name__}, not a tactic shortname")
        elif tactics is not None and tactic not in tactics:
            out.append(f"techniques[{i}].tactic {_short(tactic)} is not a tactic shortname of this domain")
    score = cell.get("score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            out.append(f"techniques[{i}].score is not a number")
        elif not -MAX_SCORE <= score <= MAX_SCORE:
            out.append(f"techniques[{i}].score {score:g} is outside ±{MAX_SCORE:g}")
    color = cell.get("color")
    if color and (not isinstance(color, str) or not _COLOR.match(color)):
        out.append(f"techniques[{i}].color {_short(color)} is not a hex colour")
    if "comment" in cell and cell["comment"] is not None and not isinstance(cell["comment"], str):
        out.append(f"techniques[{i}].comment is a {type(cell['comment']).__name__}, not text")
    if "enabled" in cell and not isinstance(cell["enabled"], bool):
        out.append(f"techniques[{i}].enabled is not true or false")
    metadata = cell.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, list):
            out.append(f"techniques[{i}].metadata is a {type(metadata).__name__}, not a list")
        elif not all(isinstance(m, dict) and ({"name", "value"} <= m.keys() or "divider" in m) for m in metadata):
            out.append(f"techniques[{i}].metadata entries need name and value")
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_layer(raw: bytes, source: str, kb=None) -> dict[str, Any]:
    """The one layer loader: bytes of a Navigator layer -> the layer, every technique cell checked.

    Raises :class:`InputError` with a one-line reason (the first three problems) for anything that is not
    valid JSON, not a layer, or has a cell whose fields have the wrong type. With ``kb``, tactic shortnames
    are checked against the domain. Other fields (versions, gradient) are Navigator's business.
    """
    try:
        layer = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(source, None, f"not valid JSON ({exc})") from exc
    if not isinstance(layer, dict) or not isinstance(layer.get("techniques"), list):
        raise InputError(source, None, "not a Navigator layer (no 'techniques' list)")
    tactics = {t.shortname for t in kb.tactics.values()} if kb is not None else None
    problems = [p for i, cell in enumerate(layer["techniques"]) for p in cell_problems(i, cell, tactics)]
    if problems:
        raise InputError(source, problems[0].split(".")[0].split(" ")[0],
                         "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""))
    return layer


def read_layer(path: str | Path) -> list[dict[str, Any]]:
    """Techniques of a Navigator layer file: [{id, score, tactic, comment}] of enabled cells."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(str(path), None, f"cannot read: {exc.strerror}") from exc
    layer = load_layer(raw, str(path))
    out = []
    for cell in layer["techniques"]:
        tid = cell["techniqueID"]
        if cell.get("enabled", True) is False:
            continue
        out.append({"id": tid, "score": cell.get("score"), "tactic": cell.get("tactic"),
                    "comment": cell.get("comment", "")})
    return out


def technique_ids_from_file(path: str | Path) -> list[str]:
    """Technique ids from a Navigator layer (JSON) or a text file (ids separated by spaces, commas, lines).

    Only scored or commented cells of a layer count when the layer scores anything: a layer that expands
    parents to show sub-techniques lists those parents without a score.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(str(path), None, f"cannot read: {exc.strerror}") from exc
    if raw.lstrip().startswith(b"{"):
        cells = read_layer(path)
        scored = [c for c in cells if c["score"] is not None or c["comment"]]
        return list(dict.fromkeys(c["id"] for c in (scored or cells)))
    ids = []
    for lineno, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        for token in re.split(r"[\s,;]+", line.split("#", 1)[0].strip()):
            if not token:
                continue
            if not _TECH.match(token.upper()):
                raise InputError(str(path), f"line {lineno}", f"{token!r} is not a technique id")
            ids.append(token.upper())
    return list(dict.fromkeys(ids))


# ---------------------------------------------------------------------------- the layers ttpscope writes
CASE_GRADIENT = ("#fff5e6ff", "#fdae61ff", "#d7191cff")


def case_layer(case: Case, kb, evidence: list[TechniqueSummary] | None = None) -> dict[str, Any]:
    """A Navigator 4.5 layer of the case's techniques, each in the tactic(s) its evidence places it.

    Techniques the knowledge base does not know are left out (Navigator could not place them) and named in
    the layer description.
    """
    evidence = technique_evidence(case, kb) if evidence is None else evidence
    entries = []
    unknown = []
    for ev in evidence:
        if not ev.known:
            unknown.append(ev.id)
            continue
        meta = {"observations": ev.observations, "sources": ev.sources,
                "kinds": ", ".join(f"{k}={n}" for k, n in ev.kinds.items())}
        if ev.hosts:
            meta["hosts"] = ", ".join(ev.hosts[:10])
        if ev.first_seen:
            meta["first seen"] = ev.first_seen.isoformat()
        for tactic in ev.tactics or [None]:
            entries.append({"id": ev.id, "score": ev.score, "comment": comment_of(ev), "tactic": tactic,
                            "metadata": meta})
    description = (f"ttpscope case '{case.name}' ({case.id}): {len(evidence)} techniques from "
                   f"{len(case.observations)} observations; score = evidence strength 0-100.")
    if unknown:
        description += f" Not in {kb.label}, left out: {', '.join(unknown)}."
    return make_layer(f"ttpscope case: {case.name}", kb, entries, description=description, gradient=CASE_GRADIENT,
                      min_value=0, max_value=100,
                      legend=[("weak evidence", CASE_GRADIENT[0]), ("strong evidence", CASE_GRADIENT[2])],
                      metadata={"case": case.name, "case id": case.id, "knowledge base": kb.label})


def coverage_layers(report: dict, kb: KnowledgeBase) -> dict[str, dict]:
    """Navigator layers of a coverage report: ``coverage`` (score per technique), ``profile`` (weights),
    ``gaps`` (undetected profile techniques; visible-but-undetected in orange)."""
    title = report["profile"]["name"] if report["profile"] else "all techniques"
    cov = make_layer(f"Detection coverage: {title}", kb,
                     [{"id": t["id"], "score": t["score"],
                       "comment": f"{t['rules']} rules ({t['rules_usable']} usable)",
                       "metadata": {"rules": t["rules"], **t["rules_by_level"]}}
                      for t in report["techniques"] if t["rules"]],
                     description=f"coverage {report['coverage']:.0%} of {report['counts']['techniques']} techniques",
                     gradient=("#ffe6e6ff", "#ffff99ff", "#66cc66ff"), min_value=0, max_value=1,
                     metadata={"coverage": report["coverage"]})
    prof = make_layer(f"Threat profile: {title}", kb,
                      [{"id": t["id"], "score": t["weight"]} for t in report["techniques"]],
                      description="score = profile weight (actors using the technique, or its prevalence)",
                      gradient=("#ffffffff", "#ff6666ff"))
    gaps = make_layer(f"Detection gaps: {title}", kb,
                      [{"id": g["id"], "score": g["weight"],
                        "color": "#fdae61" if g["visible"] else "#e34a33",
                        "comment": ("visible but undetected; " if g["visible"] else "") +
                                   (f"actors: {', '.join(g['actors'])}" if g["actors"] else "")}
                       for g in report["gaps"]],
                      description="profile techniques no alerting rule detects",
                      legend=[("undetected", "#e34a33"), ("visible but undetected", "#fdae61")])
    return {"coverage": cov, "profile": prof, "gaps": gaps}




def plan_layer(plan: dict, kb: KnowledgeBase) -> dict:
    """The plan as a Navigator layer: score = number of Atomic tests, comment = the procedure."""
    entries = [{"id": s["technique"], "score": len(s["atomics"]), "comment": s["procedure"][:500],
                "color": "" if s["atomics"] else "#fdae61",
                "metadata": {"step tactic": s["tactic"], "atomic tests": len(s["atomics"])}}
               for s in plan["steps"]]
    g = plan["group"]
    return make_layer(f"Emulation plan: {g['name']}", kb, entries,
                      description=f"{g['id']} techniques; score = Atomic Red Team tests available",
                      gradient=("#ffffffff", "#66b1ffff"),
                      legend=[("no Atomic test", "#fdae61")],
                      metadata={"group": g["id"], "steps": plan["summary"]["steps"]})
