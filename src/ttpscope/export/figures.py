"""Plotly figures of a case, as plain JSON-ready dicts ({data, layout}) for the HTML report.

Text that comes from evidence (attacker-controlled) is HTML-escaped here: Plotly renders a subset of HTML
in labels and hover text, and escaped entities display as the literal characters.
"""

from __future__ import annotations

import html
import textwrap
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Iterable

from ttpscope.analyze.evidence import TechniqueSummary

HEAT_COLORS = [[0.0, "#fff5e6"], [0.5, "#fdae61"], [1.0, "#d7191c"]]
# one colour per tactic position in matrix order (Enterprise: reconnaissance ... impact), chosen so that
# neighbouring stages never share a hue family
TACTIC_COLORS = ["#7f7f7f", "#bab0ac", "#e15759", "#f28e2b", "#edc948", "#b07aa1", "#76b7b2", "#ff9da7",
                 "#59a14f", "#4e79a7", "#9c755f", "#17becf", "#1f3b99", "#222222", "#bcbd22"]
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}


def esc(text: Any, limit: int | None = None) -> str:
    """Escape for Plotly's HTML-like text rendering (and shorten)."""
    s = "" if text is None else str(text)
    if limit and len(s) > limit:
        s = s[: limit - 1] + "…"
    return html.escape(s, quote=True)


def _wrap(text: str, width: int) -> str:
    return "<br>".join(esc(line) for line in textwrap.wrap(text, width=width, break_long_words=True)[:3])


def matrix_heatmap(evidence: Iterable[TechniqueSummary], kb) -> dict[str, Any]:
    """The ATT&CK matrix of the case: one column per tactic (all of the domain's, so the stages never
    reached show as empty columns), the observed techniques stacked strongest first, coloured by strength."""
    tactics = kb.tactic_list()
    columns: dict[str, list[TechniqueSummary]] = defaultdict(list)
    for ev in evidence:
        for t in ev.tactics:
            columns[t].append(ev)
    for cells in columns.values():
        cells.sort(key=lambda e: (-e.strength, e.id))
    rows = max([len(c) for c in columns.values()] + [1])
    z, text, hover = [], [], []
    for r in range(rows):
        zr, tr, hr = [], [], []
        for tactic in tactics:
            cells = columns.get(tactic.shortname, [])
            if r < len(cells):
                ev = cells[r]
                zr.append(ev.score)
                tr.append(f"<b>{esc(ev.id)}</b><br>{_wrap(ev.name, 14)}")
                quote = esc(ev.quotes[0]["text"], 160) if ev.quotes else ""
                hr.append(f"<b>{esc(ev.id)} {esc(ev.name)}</b><br>tactic: {esc(tactic.name)}<br>"
                          f"strength {ev.score}/100 · {ev.observations} observation(s), {ev.sources} source(s)"
                          f"<br>{quote}")
            else:
                zr.append(None)
                tr.append("")
                hr.append(f"{esc(tactic.name)}: nothing observed" if r == 0 and not cells else "")
        z.append(zr)
        text.append(tr)
        hover.append(hr)
    x = [_wrap(t.name, 12) for t in tactics]
    return {
        "data": [{
            "type": "heatmap", "z": z, "x": x, "y": list(range(rows)), "text": text, "hovertext": hover,
            "texttemplate": "%{text}", "hovertemplate": "%{hovertext}<extra></extra>", "colorscale": HEAT_COLORS,
            "zmin": 0, "zmax": 100, "xgap": 3, "ygap": 3, "textfont": {"size": 10},
            "colorbar": {"title": {"text": "evidence<br>strength"}, "thickness": 12},
        }],
        "layout": {
            "font": FONT, "height": 120 + 56 * rows, "margin": {"l": 10, "r": 10, "t": 70, "b": 10},
            "xaxis": {"side": "top", "tickangle": 0, "showgrid": False, "fixedrange": True},
            "yaxis": {"autorange": "reversed", "showticklabels": False, "showgrid": False, "zeroline": False,
                      "fixedrange": True},
            "plot_bgcolor": "#f3f4f6",
        },
    }


SPAN_MIN = 3  # this many identical steps in a row on one host lane are drawn as one span with a count
# ... as long as no two of them are further apart than this (an observation spans up to an hour of one rule's
# hits, so a beacon seen all day comes as one observation every hour or so)
SPAN_GAP = timedelta(hours=6)


def _when(iso: str) -> datetime | None:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None


def collapse_repeats(points: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(single points, spans): runs of at least SPAN_MIN steps of one technique under one tactic on one host,
    none more than SPAN_GAP after the previous, become one span ``{host, technique_id, technique, tactic, start,
    end, count, evidence}`` (a beacon's hundred dots are one bar that says how many); the rest stay points."""
    lanes: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for p in points:
        lanes[(p.get("host"), p.get("technique_id"), p.get("tactic"))].append(p)
    singles, spans = [], []
    for (host, tid, tactic), pts in lanes.items():
        timed = sorted((p for p in pts if _when(p["time"]) is not None), key=lambda p: _when(p["time"]))
        singles += [p for p in pts if _when(p["time"]) is None]
        runs: list[list[dict[str, Any]]] = []
        for p in timed:
            if runs and _when(p["time"]) - _when(runs[-1][-1]["time"]) <= SPAN_GAP:
                runs[-1].append(p)
            else:
                runs.append([p])
        for run in runs:
            if len(run) < SPAN_MIN:
                singles += run
                continue
            spans.append({"host": host, "technique_id": tid, "technique": run[0].get("technique"), "tactic": tactic,
                          "start": run[0]["time"], "end": run[-1]["time"], "count": len(run),
                          "evidence": run[0].get("evidence")})
    singles.sort(key=lambda p: str(p["time"]))
    spans.sort(key=lambda s: str(s["start"]))
    return singles, spans


def timeline(points: list[dict[str, Any]], tactic_order: list[str], tactic_names: dict[str, str]) -> dict[str, Any]:
    """Observations in time: one row per host, one colour per tactic (legend in matrix order); repeated
    identical steps on a host are one span with a count (:func:`collapse_repeats`).

    ``points``: [{time (ISO), host, technique_id, technique, tactic (shortname), evidence}].
    """
    singles, spans = collapse_repeats(points)
    by_tactic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    spans_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in singles:
        by_tactic[p.get("tactic") or "unplaced"].append(p)
    for sp in spans:
        spans_of[sp.get("tactic") or "unplaced"].append(sp)
    present = set(by_tactic) | set(spans_of)
    order = [t for t in tactic_order if t in present] + sorted(present - set(tactic_order))
    hosts = sorted({p.get("host") or "(no host)" for p in points})
    traces, under = [], []  # spans are drawn beneath the single steps, which stay visible on top
    for t in order:
        idx = tactic_order.index(t) if t in tactic_order else len(tactic_order)
        colour = TACTIC_COLORS[idx % len(TACTIC_COLORS)]
        name = esc(tactic_names.get(t, t))
        pts = by_tactic.get(t, [])
        if pts:
            traces.append({
                "type": "scatter", "mode": "markers", "name": name, "legendgroup": t,
                "x": [p["time"] for p in pts], "y": [esc(p.get("host") or "(no host)") for p in pts],
                "marker": {"size": 11, "color": colour, "line": {"width": 1, "color": "#333"}},
                "hovertext": [f"<b>{esc(p.get('technique_id'))} {esc(p.get('technique'), 60)}</b><br>"
                              f"{name} · {esc(p.get('host'))}<br>{esc(p['time'])}<br>"
                              f"{esc(p.get('evidence'), 160)}" for p in pts],
                "hovertemplate": "%{hovertext}<extra></extra>",
            })
        runs = spans_of.get(t, [])
        if runs:
            x, y, text, hover = [], [], [], []
            for sp in runs:
                lane = esc(sp.get("host") or "(no host)")
                about = (f"<b>{esc(sp.get('technique_id'))} {esc(sp.get('technique'), 60)}</b> ×{sp['count']}<br>"
                         f"{name} · {esc(sp.get('host'))}<br>{esc(sp['start'])} → {esc(sp['end'])}<br>"
                         f"{esc(sp.get('evidence'), 160)}")
                x += [sp["start"], sp["end"], None]
                y += [lane, lane, None]
                text += ["", f"×{sp['count']}", ""]
                hover += [about, about, ""]
            under.append({
                "type": "scatter", "mode": "lines+markers+text", "name": name, "legendgroup": t, "opacity": 0.7,
                "showlegend": not pts, "x": x, "y": y, "text": text, "textposition": "middle right",
                "textfont": {"size": 11, "color": "#1f2933"}, "connectgaps": False,
                "line": {"width": 9, "color": colour}, "marker": {"size": 9, "color": colour,
                                                                  "line": {"width": 1, "color": "#333"}},
                "hovertext": hover, "hovertemplate": "%{hovertext}<extra></extra>", "meta": "span",
            })
    return {
        "data": under + traces,
        "layout": {
            "font": FONT, "height": 180 + 40 * len(hosts), "margin": {"l": 120, "r": 40, "t": 30, "b": 50},
            "xaxis": {"title": {"text": "time (UTC)"}, "type": "date"},
            "yaxis": {"title": {"text": ""}, "type": "category", "categoryorder": "array", "automargin": True,
                      "categoryarray": [esc(h) for h in hosts]},
            "legend": {"orientation": "h", "y": -0.25},
            "hovermode": "closest",
        },
    }


def ranking_bars(items: list[dict[str, Any]], value: str = "score", label: str = "name",
                 title: str = "score", color_by: str | None = "confidence", limit: int = 10) -> dict[str, Any]:
    """Horizontal bars, best at the top (attribution, overlap): ``items`` best first."""
    items = items[:limit]
    names = [esc(f"{i.get('id', '')} {i.get(label, '')}".strip(), 48) for i in items]
    values = [float(i.get(value) or 0) for i in items]
    colors = [float(i.get(color_by) or 0) for i in items] if color_by else None
    marker: dict[str, Any] = {"color": "#4e79a7"}
    if colors is not None:
        marker = {"color": colors, "colorscale": [[0.0, "#c6dbef"], [1.0, "#08306b"]], "cmin": 0, "cmax": 1,
                  "showscale": True,
                  "colorbar": {"title": {"text": esc(color_by)}, "thickness": 12},
                  "line": {"width": 1, "color": "#1f3b5a"}}
    hover = [f"<b>{n}</b><br>{esc(title)}: {v:.3f}" + (f"<br>{esc(color_by)}: {c:.2f}" if colors else "")
             for n, v, c in zip(names, values, colors or [0] * len(values))]
    return {
        "data": [{"type": "bar", "orientation": "h", "x": values, "y": names, "marker": marker,
                  "hovertext": hover, "hovertemplate": "%{hovertext}<extra></extra>",
                  "text": [f"{v:.2f}" for v in values], "textposition": "outside",
                  "textfont": {"color": "#1f2933"}, "cliponaxis": False}],
        "layout": {"font": FONT, "height": 110 + 34 * len(items), "margin": {"l": 20, "r": 40, "t": 20, "b": 40},
                   "xaxis": {"title": {"text": esc(title)}, "rangemode": "tozero"},
                   "yaxis": {"autorange": "reversed", "type": "category", "automargin": True}},
    }


def similarity_matrix(labels: list[str], matrix: list[list[float]]) -> dict[str, Any]:
    """A square similarity heatmap (overlap between cases, campaigns, groups)."""
    names = [esc(n, 32) for n in labels]
    return {
        "data": [{"type": "heatmap", "z": matrix, "x": names, "y": names, "colorscale": "Viridis", "zmin": 0,
                  "zmax": 1, "hovertemplate": "%{y} ~ %{x}: %{z:.2f}<extra></extra>"}],
        "layout": {"font": FONT, "height": 260 + 30 * len(labels), "margin": {"l": 20, "r": 20, "t": 20, "b": 20},
                   "xaxis": {"tickangle": -40, "automargin": True},
                   "yaxis": {"autorange": "reversed", "automargin": True}},
    }
