"""Figures for the pages as inline SVG drawn on the server: no chart library to ship, nothing to run in the
browser, and every label escaped (it may come from evidence)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22"]


def _time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None


def _tick_format(span_seconds: float, same_day: bool) -> str:
    """strftime pattern fine enough that the ticks of this span differ, and no finer."""
    if span_seconds < 120:
        return "%H:%M:%S" if same_day else "%m-%d %H:%M:%S"
    if span_seconds < 2 * 86400:
        return "%H:%M" if same_day else "%m-%d %H:%M"
    if span_seconds < 300 * 86400:
        return "%m-%d %H:%M" if span_seconds < 10 * 86400 else "%Y-%m-%d"
    return "%Y-%m-%d"


def axis_ticks(t0: datetime, t1: datetime, x0: float, x1: float, most: int = 5) -> list[tuple[float, str]]:
    """(x, label) of the time axis from ``t0`` to ``t1``: no two labels alike. One instant gets one label in
    the middle (date and time); a short window gets seconds; a long one dates only. The first label carries
    the date when the others show the time of day only."""
    span = (t1 - t0).total_seconds()
    if span <= 0:
        return [((x0 + x1) / 2, t0.strftime("%Y-%m-%d %H:%M:%S"))]
    fmt = _tick_format(span, t0.date() == t1.date())
    ticks: list[tuple[float, str]] = []
    for i in range(most):
        frac = i / (most - 1)
        label = (t0 + (t1 - t0) * frac).strftime(fmt)
        if ticks and label == ticks[-1][1]:
            continue  # this span at this precision has fewer distinct instants than ticks
        ticks.append((x0 + (x1 - x0) * frac, label))
    if fmt.startswith("%H") and ticks:
        ticks[0] = (ticks[0][0], t0.strftime("%Y-%m-%d ") + ticks[0][1])
    return ticks


def timeline_svg(steps: list[dict[str, Any]], tactic_order: list[str], tactic_names: dict[str, str],
                 width: int = 1000) -> Markup | None:
    """Timed lifecycle steps as dots: time across, tactic (matrix order) down, one colour per host."""
    points = [(t, s) for s in steps if (t := _time(s.get("time") or "")) is not None]
    if not points:
        return None
    rows = [t for t in tactic_order if any(s.get("tactic") == t for _, s in points)]
    hosts = sorted({s.get("host") or "(no host)" for _, s in points})
    colour = {h: PALETTE[i % len(PALETTE)] for i, h in enumerate(hosts)}
    left, top, row_h, right = 190, 26, 26, 20
    height = top + row_h * len(rows) + 50
    t0, t1 = min(t for t, _ in points), max(t for t, _ in points)
    span = (t1 - t0).total_seconds()
    if span > 0:
        x = lambda t: left + (width - left - right) * ((t - t0).total_seconds() / span)  # noqa: E731
    else:  # every timed step at one instant: one column in the middle, one label under it
        x = lambda t: left + (width - left - right) / 2  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
           f'aria-labelledby="tl-title"><title id="tl-title">Timeline of {len(points)} timed observations over '
           f'{len(rows)} tactics on {len(hosts)} host(s)</title>']
    for i, tactic in enumerate(rows):
        y = top + row_h * i + row_h / 2
        out.append(f'<line x1="{left}" y1="{y}" x2="{width - right}" y2="{y}" stroke="#e3e6ea"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" font-size="12">'
                   f'{escape(tactic_names.get(tactic, tactic))}</text>')
    axis_y = top + row_h * len(rows) + 6
    ticks = axis_ticks(t0, t1, left, width - right)
    for i, (xx, label) in enumerate(ticks):  # the ends align inwards: the last label stays inside the figure
        anchor = "middle" if len(ticks) == 1 or 0 < i < len(ticks) - 1 else "start" if i == 0 else "end"
        out.append(f'<text x="{xx:.1f}" y="{axis_y + 14}" text-anchor="{anchor}" font-size="11" fill="#555" '
                   f'class="tick">{escape(label)}</text>')
    for t, s in points:
        if s.get("tactic") not in rows:
            continue
        y = top + row_h * rows.index(s["tactic"]) + row_h / 2
        host = s.get("host") or "(no host)"
        label = f"{s.get('time')} {host}: {s.get('technique_id')} {s.get('technique') or ''}"
        out.append(f'<circle cx="{x(t):.1f}" cy="{y}" r="5" fill="{colour[host]}" fill-opacity="0.75">'
                   f'<title>{escape(label)}</title></circle>')
    lx = left
    for h in hosts:
        out.append(f'<circle cx="{lx}" cy="{height - 10}" r="5" fill="{colour[h]}"/>'
                   f'<text x="{lx + 9}" y="{height - 6}" font-size="12">{escape(h)}</text>')
        lx += 20 + 8 * len(h)
    out.append("</svg>")
    return Markup("".join(out))
