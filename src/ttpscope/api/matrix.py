"""The ATT&CK matrix as the web app draws it, and the marks that colour it.

A *mark* says how strongly a technique is highlighted: ``{"score": 0..1, "color": "#rrggbb", "comment": str}``.
Marks are keyed by technique id, or by ``"<technique id>|<tactic shortname>"`` when a source (a Navigator
layer) pins a technique to one tactic. Every colouring (group profile, case, coverage, uploaded layer) is
turned into marks here, so the matrix page, the compare page and ``GET /api/matrix`` agree.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping


from ttpscope.analyze.evidence import comment_of, technique_evidence

Marks = dict[str, dict[str, Any]]
# The score gradient: pale yellow → orange → dark red (ColorBrewer YlOrRd), so strengths 0.5 and 0.9 read as
# different colours, not two pinks; text on the darker half is drawn white (``ink``).
STOPS = ((0.0, (255, 237, 160)), (0.5, (253, 141, 60)), (1.0, (189, 0, 38)))
# How much a group's technique counts, by where ATT&CK says the group got it.
VIA_SCORE = {"direct": 1.0, "campaign": 0.7, "software": 0.45}


def gradient(score: float) -> str:
    """Hex colour for a score in [0, 1] on the score gradient (never white: marked means visible)."""
    s = min(max(float(score), 0.0), 1.0)
    for (a, lo), (b, hi) in zip(STOPS, STOPS[1:]):
        if s <= b:
            f = (s - a) / (b - a)
            return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(lo, hi))
    return "#" + "".join(f"{c:02x}" for c in STOPS[-1][1])


def ink(colour: str) -> str:
    """Text colour readable on a ``#rrggbb`` background (WCAG relative luminance)."""
    try:
        rgb = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    except (TypeError, ValueError, IndexError):
        return "#1d232a"
    lum = sum(w * (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
              for w, c in zip((0.2126, 0.7152, 0.0722), rgb))
    return "#ffffff" if lum < 0.3 else "#1d232a"


def score_legend(label: str, low: str = "weak", high: str = "strong") -> dict:
    """The legend of the score gradient: five swatches from 0.2 to 1.0, the ends named."""
    steps = [(f"{s:.1f}", gradient(s)) for s in (0.2, 0.4, 0.6, 0.8, 1.0)]
    return {"label": label, "low": low, "high": high, "steps": steps}


def matrix_view(kb) -> dict[str, Any]:
    """Tactics in matrix order, each with its techniques (by name, like Navigator) and their sub-techniques."""
    columns = []
    for tactic in kb.tactic_list():
        parents = [t for t in kb.techniques_of_tactic(tactic.id, subtechniques=False)]
        parents.sort(key=lambda t: (t.name.casefold(), t.id))
        columns.append({
            "id": tactic.id, "shortname": tactic.shortname, "name": tactic.name,
            "techniques": [{"id": t.id, "name": t.name,
                            "subtechniques": [{"id": s.id, "name": s.name} for s in kb.subtechniques(t.id)
                                              if not s.deprecated and tactic.shortname in s.tactics]}
                           for t in parents],
        })
    return {"tactics": columns, **kb.provenance()}


def mark_for(marks: Mapping[str, dict], technique_id: str, tactic: str) -> dict | None:
    return marks.get(f"{technique_id}|{tactic}") or marks.get(technique_id)


def technique_set_marks(kb, scores: Mapping[str, float], comments: Mapping[str, str] | None = None) -> Marks:
    """Marks from raw scores per technique id, scaled so the strongest is 1 (unknown ids are dropped)."""
    known = {tid: float(s) for tid, s in scores.items() if tid in kb.techniques}
    top = max(known.values(), default=0.0) or 1.0
    return {tid: {"score": round(s / top, 4), "color": gradient(s / top),
                  "comment": (comments or {}).get(tid, "")} for tid, s in sorted(known.items())}


def group_marks(kb, group_query: str) -> tuple[Marks, dict]:
    """Marks of a group's profile: direct use strongest, then via its campaigns, then via its software."""
    group = kb.group(group_query)
    vias: dict[str, list[str]] = defaultdict(list)
    for entry in kb.group_profile(group.id):
        vias[entry.technique_id].append(entry.via if entry.via == "direct" else f"{entry.via} {entry.via_id}")
    scores = {tid: max(VIA_SCORE[v.split()[0]] for v in vs) for tid, vs in vias.items()}
    comments = {tid: "used " + ", ".join(("directly" if v == "direct" else "via " + v) for v in vs[:4])
                + (" …" if len(vs) > 4 else "") for tid, vs in vias.items()}
    marks = {tid: {"score": s, "color": gradient(s), "comment": comments[tid]} for tid, s in sorted(scores.items())}
    return marks, {"kind": "group", "id": group.id, "name": group.name,
                   "legend": [("directly", gradient(VIA_SCORE["direct"])),
                              ("via a campaign", gradient(VIA_SCORE["campaign"])),
                              ("via its software", gradient(VIA_SCORE["software"]))]}


def case_marks(kb, case) -> tuple[Marks, dict]:
    """Marks of a case: each technique's evidence strength (``ttpscope.analyze.evidence``), the very score the
    case's Navigator layer and reports give it; techniques the knowledge base does not know are left out."""
    marks = {ev.id: {"score": round(ev.strength, 4), "color": gradient(ev.strength), "comment": comment_of(ev)}
             for ev in sorted(technique_evidence(case, kb), key=lambda e: e.id) if ev.known}
    return marks, {"kind": "case", "id": case.id, "name": case.name,
                   "scale": score_legend("Evidence strength (observations weighted by confidence, 0–1)")}


DETECTED, GAP = (255, 255, 255), (120, 190, 120)


def coverage_marks(report: dict) -> tuple[Marks, dict]:
    """Marks of a coverage report: detected techniques green by detection score, gaps pale red."""
    marks: Marks = {}
    for row in report["techniques"]:
        if row.get("detected"):
            s = 0.25 + 0.75 * float(row.get("score") or 0)
            colour = "#" + "".join(f"{round(lo + (hi - lo) * s):02x}" for lo, hi in zip(DETECTED, GAP))
            marks[row["id"]] = {"score": round(float(row.get("score") or 0), 4), "color": colour,
                                "comment": f"detected by {row['rules']} rule(s), score {row.get('score')}"}
        else:
            marks[row["id"]] = {"score": 0.0, "color": "#f4cccc", "comment": "gap: no alerting rule"}
    profile = report.get("profile") or {}
    name = profile.get("name") if isinstance(profile, dict) else None
    from ttpscope.api.formats import pct

    return marks, {"kind": "coverage", "id": None,
                   "name": f"{report['counts']['rules']} rules, {pct(report['coverage'])} of "
                           f"{name or 'all techniques'} detected",
                   "legend": [("detected (darker = stronger rules)", "#78be78"), ("gap", "#f4cccc")]}


def layer_from_bytes(raw: bytes, source: str, kb) -> dict:
    """Parse and validate an uploaded Navigator layer held in memory (never written to disk)."""
    from ttpscope.export.layers import load_layer

    return load_layer(raw, source, kb)


def layer_marks(kb, layer: dict) -> tuple[Marks, dict]:
    """Marks of a validated Navigator layer: its own colours where given, else its scores on the gradient."""
    cells = [c for c in layer["techniques"] if c.get("enabled", True) is not False]
    scored = [float(c["score"]) for c in cells if isinstance(c.get("score"), (int, float))]
    lo, hi = (min(scored), max(scored)) if scored else (0.0, 1.0)
    marks: Marks = {}
    for cell in cells:
        has_score = isinstance(cell.get("score"), (int, float))
        if not (has_score or cell.get("color") or cell.get("comment")):
            continue  # parents listed only to show sub-techniques expanded
        norm = (float(cell["score"]) - lo) / (hi - lo) if has_score and hi > lo else 1.0
        key = f"{cell['techniqueID']}|{cell['tactic']}" if cell.get("tactic") else cell["techniqueID"]
        marks[key] = {"score": round(norm, 4), "color": cell.get("color") or gradient(norm),
                      "comment": str(cell.get("comment") or "")[:500]}
    meta = {"kind": "layer", "id": None, "name": str(layer.get("name") or "uploaded layer")[:200]}
    if scored:
        meta["scale"] = score_legend(f"Layer score, {lo:g} (low) to {hi:g} (high)", f"{lo:g}", f"{hi:g}")
    return marks, meta


def marked_ids(marks: Mapping[str, dict]) -> set[str]:
    return {key.split("|")[0] for key in marks}


def compare_sets(a: Iterable[str], b: Iterable[str]) -> dict[str, Any]:
    """Shared and distinguishing technique ids of two sides (sorted), for the compare page."""
    sa, sb = set(a), set(b)
    return {"shared": sorted(sa & sb), "only_a": sorted(sa - sb), "only_b": sorted(sb - sa)}
