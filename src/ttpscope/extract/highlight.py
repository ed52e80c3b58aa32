"""The report as one HTML page with every evidence sentence marked and labelled with its techniques."""

from __future__ import annotations

import html
from collections import defaultdict

from ttpscope.extract.pipeline import Extraction

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
pre.doc{white-space:pre-wrap;font-family:inherit;line-height:1.5}
mark{background:#fff3b0;border-bottom:2px solid #e0a800;padding:0 1px}
mark.hi{background:#ffd36b}
.tag{font-size:.7rem;background:#354f8e;color:#fff;border-radius:3px;padding:0 .3em;margin-left:.2em;
  vertical-align:super;white-space:nowrap}
table{border-collapse:collapse;font-size:.9rem}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}
.meta{color:#666;font-size:.85rem}
"""


def render_highlight(result: Extraction) -> str:
    """A standalone HTML page: summary table, then the document text with evidence marked."""
    doc = result.document
    by_span: dict[tuple[int, int], list[tuple[str, str, float, str]]] = defaultdict(list)
    for finding in result.techniques:
        for ev in finding.evidence:
            by_span[(ev.start, ev.end)].append((finding.id, finding.name, ev.confidence, ev.method))
    parts: list[str] = []
    pos = 0
    text = doc.text
    for (start, end), labels in sorted(by_span.items()):
        if start < pos:  # sentences never overlap; guard anyway
            continue
        parts.append(html.escape(text[pos:start]))
        labels.sort(key=lambda x: (-x[2], x[0]))
        title = "; ".join(f"{t} {n} ({c:.2f}, {m})" for t, n, c, m in labels)
        cls = "hi" if labels[0][2] >= 0.75 else ""
        tags = "".join(f'<span class="tag">{html.escape(t)}</span>' for t, _, _, _ in labels)
        parts.append(f'<mark class="{cls}" title="{html.escape(title)}">{html.escape(text[start:end])}</mark>{tags}')
        pos = end
    parts.append(html.escape(text[pos:]))
    rows = "".join(
        f"<tr><td><a href=\"https://attack.mitre.org/techniques/{f.id.replace('.', '/')}/\">{f.id}</a></td>"
        f"<td>{html.escape(f.name)}</td><td>{f.confidence:.2f}</td><td>{len(f.evidence)}</td></tr>"
        for f in result.techniques)
    actors = ", ".join(f"{html.escape(g['name'])} ({g['id']})" for g in result.groups) or "none"
    software = ", ".join(f"{html.escape(s['name'])} ({s['id']})" for s in result.software) or "none"
    title = html.escape(doc.title or doc.name)
    kb = result.kb
    return (
        f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} — ttpscope</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>{title}</h1><p class=\"meta\">{html.escape(doc.name)} · {kb.get('domain')} ATT&amp;CK "
        f"v{kb.get('attack_version')} · {len(result.techniques)} techniques at confidence ≥ "
        f"{result.min_confidence:.2f}</p>"
        f"<table><tr><th>technique</th><th>name</th><th>confidence</th><th>sentences</th></tr>{rows}</table>"
        f"<p><b>Groups:</b> {actors}<br><b>Software:</b> {software}</p>"
        f"<h2>Report text</h2><pre class=\"doc\">{''.join(parts)}</pre></body></html>"
    )
