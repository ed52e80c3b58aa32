"""The case report as ONE self-contained HTML file: Plotly's JS inlined once, figures as JSON, no network.

Rendered with Jinja2 autoescaping on: every piece of evidence (command lines, report sentences, file
names) is attacker-controlled and shows as text. Figure data travels as JSON inside a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` escaped, so no value can close it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from jinja2 import ChainableUndefined, Environment, PackageLoader
from markupsafe import Markup

from ttpscope import __version__
from ttpscope.analyze.report import ERROR, CaseAnalysis
from ttpscope.export import figures

RULES_SHOWN = 25
SENTENCES_SHOWN = 25


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(loader=PackageLoader("ttpscope.export", "templates"), autoescape=True,
                       undefined=ChainableUndefined, trim_blocks=True, lstrip_blocks=True)


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.min.js from the installed plotly package: the report needs no network to draw its charts."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def script_json(data: Any) -> Markup:
    """JSON safe to place inside a <script> element."""
    text = orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return Markup(text)


def build_figures(analysis: CaseAnalysis, kb) -> dict[str, dict[str, Any]]:
    """The report's charts, by name: matrix (always, when any technique), timeline, attribution, overlap."""
    out: dict[str, dict[str, Any]] = {}
    if analysis.evidence:
        out["matrix"] = figures.matrix_heatmap(analysis.evidence, kb)
    lc = analysis.sections.get("lifecycle")
    if lc is not None and lc.ok and lc.data.timeline:
        names = {t.shortname: t.name for t in kb.tactic_list()}
        out["timeline"] = figures.timeline(lc.data.timeline, kb.tactic_order(), names)
    at = analysis.sections.get("attribution")
    if at is not None and at.ok and at.data.groups:
        out["attribution"] = figures.ranking_bars(at.data.groups, title="attribution score")
    ov = analysis.sections.get("overlap")
    if ov is not None and ov.ok:
        matrix = ov.data.matrix
        if matrix and len(matrix.get("labels") or []) > 1:
            out["overlap"] = figures.similarity_matrix(matrix["labels"], matrix["values"])
        elif ov.data.items:
            out["overlap"] = figures.ranking_bars(ov.data.items, value="similarity", title="similarity",
                                                  color_by=None)
    return out


def stage_phrase(analysis: CaseAnalysis) -> str:
    """"furthest stage reached: Lateral Movement (Impact on weak evidence only: ...)" - the furthest stage
    goes by decisive evidence only (``ttpscope.analyze.evidence.is_decisive``); "" without a lifecycle."""
    lc = analysis.sections.get("lifecycle")
    if lc is None or not lc.ok:
        return ""
    weak = lc.data.furthest_weak
    if lc.data.furthest:
        text = f"furthest stage reached: {lc.data.furthest['name']}"
        return text + (f" ({weak['name']} reached on weak evidence only: {weak['why']})" if weak else "")
    if weak:
        return f"no stage reached on decisive evidence ({weak['why']})"
    return ""


def intrusions_of(analysis: CaseAnalysis):
    """The intrusions section's data when the case looks like several intrusions, else None."""
    sec = analysis.sections.get("intrusions")
    return sec.data if sec is not None and sec.ok and sec.data.separate else None


def cluster_when(row: dict[str, Any]) -> str:
    """"2021-04-21 to 2021-05-03" (one day: "2021-03-26")."""
    first, last = row["first"][:10], row["last"][:10]
    return first if first == last else f"{first} to {last}"


def cluster_hosts(row: dict[str, Any], limit: int = 3) -> str:
    hosts = [h.split(".", 1)[0] for h in row["hosts"][:limit]]
    more = row["host_count"] - len(hosts)
    return ", ".join(hosts) + (f" +{more}" if more > 0 else "") if hosts else "no host"


def cluster_attribution(row: dict[str, Any], short: bool = False) -> str:
    """One cluster's attribution in a few words (``short``: fewer)."""
    att = row.get("attribution")
    if not att:
        return "not attributed" if short else "not attributed (a smaller cluster)"
    group = att.get("group")
    if group is None:
        return "no known group" if short else "no known group uses these techniques"
    if att.get("insufficient"):
        return (f"leads only: {group['name']}" if short
                else f"insufficient evidence (closest: {group['name']}, a lead only)")
    return (f"{group['name']} {att['confidence']:.2f}" if short
            else f"{group['name']} ({group['id']}), confidence {att['confidence']:.2f}")


def headline(analysis: CaseAnalysis, kb) -> str:
    """One plain sentence or three for a manager."""
    s = analysis.summary()
    if not analysis.evidence:
        return "No ATT&CK technique was found in the evidence given."
    parts = [f"{s['techniques']} ATT&CK techniques across {len(s['tactics'])} of {len(kb.tactics)} tactics"]
    if s["hosts"]:
        parts.append(f"on {len(s['hosts'])} host{'s' if len(s['hosts']) != 1 else ''}")
    if s["first_seen"]:
        when = lambda iso: iso.replace("T", " ")[:16]  # noqa: E731 - to the minute reads better
        parts.append(f"between {when(s['first_seen'])} and {when(s['last_seen'])} UTC")
    text = " ".join(parts)
    stage = stage_phrase(analysis)
    if stage:
        text += "; " + stage
    text += "."
    several = intrusions_of(analysis)
    if several is not None:
        return text + " " + several.note + " Largest: " + "; ".join(
            f"{r['id']} ({cluster_when(r)}, {cluster_hosts(r)}): {cluster_attribution(r)}"
            for r in several.clusters[:3]) + "."
    at = analysis.sections.get("attribution")
    if at is not None and at.ok and at.data.verdict:
        verdict = at.data.verdict.rstrip(".")
        text += " Attribution: " + verdict + "."
    return text


WEAK_LISTED = 3  # techniques on weak evidence only named in the key findings


def findings(analysis: CaseAnalysis) -> list[str]:
    """Key findings, one line each, from whichever sections have an answer. Techniques on weak evidence only
    (informational rules, a lone weak report claim) never lead them; they are named apart."""
    out = []
    decisive = [e for e in analysis.evidence if e.decisive]
    strongest = ", ".join(f"{e.id} {e.name} ({e.score})" for e in decisive[:3])
    if strongest:
        out.append(f"Strongest evidence: {strongest}.")
    weak = [e for e in analysis.evidence if not e.decisive]
    if weak:
        listed = "; ".join(f"{e.id} {e.name} ({e.weak})" for e in weak[:WEAK_LISTED])
        more = f"; +{len(weak) - WEAK_LISTED} more" if len(weak) > WEAK_LISTED else ""
        out.append(f"On weak evidence only, so deciding no stage or finding: {listed}{more}.")
    sec = analysis.sections
    if "lifecycle" in sec and sec["lifecycle"].ok and sec["lifecycle"].data.intent:
        out.append(f"Lifecycle: {sec['lifecycle'].data.intent}")
    several = intrusions_of(analysis)
    if several is not None:
        out.append(several.note + " Per cluster: " + "; ".join(
            f"{r['id']} ({cluster_when(r)}, {cluster_hosts(r)}): {cluster_attribution(r)}"
            for r in several.clusters[:5]) + (f"; +{several.count - 5} more clusters"
                                              if several.count > 5 else "") + ".")
    elif "attribution" in sec and sec["attribution"].ok:
        groups = sec["attribution"].data.groups
        if groups and not sec["attribution"].data.insufficient:
            g = groups[0]
            conf = f", confidence {g['confidence']:.2f}" if g.get("confidence") is not None else ""
            out.append(f"Most similar known group: {g['name']} ({g['id']}{conf}); "
                       "its known techniques not observed here are hunting leads.")
        elif groups:
            out.append("Attribution: insufficient evidence to name a group; the closest ("
                       + ", ".join(g["name"] for g in groups[:3]) + ") are leads only.")
    if "anticipation" in sec and sec["anticipation"].ok:
        preds = sec["anticipation"].data.predictions
        if preds:
            out.append("Watch next for: " + ", ".join(f"{p['id']} {p['name']}" for p in preds[:3]) + ".")
    if "coverage" in sec and sec["coverage"].ok:
        cv = sec["coverage"].data
        if cv.coverage is not None:
            out.append(f"The rule set detects {100 * cv.coverage:.0f}% of the top groups' techniques; "
                       f"{len(cv.gaps)} gaps listed.")
    if "indicators" in sec and sec["indicators"].ok:
        ind = sec["indicators"].data
        out.append(f"{len(ind.iocs)} IOCs and {len(ind.cves)} CVEs found in the reports "
                   "(listed apart from the TTPs).")
    missing = [s.title for s in sec.values() if s.status == ERROR]
    if missing:
        out.append("Not available in this report: " + "; ".join(missing) + " (see each section).")
    return out


def render_html(analysis: CaseAnalysis, kb) -> str:
    """The whole report page."""
    figs = build_figures(analysis, kb)
    rules = analysis.rule_summary()
    sentences = analysis.report_sentences(SENTENCES_SHOWN)
    summary = analysis.summary()
    has_logs = any(s.get("kind") == "log" for s in analysis.ingest)
    return _env().get_template("report.html.j2").render(
        version=__version__, case=analysis.case, generated=analysis.generated.strftime("%Y-%m-%d %H:%M UTC"),
        kb_label=kb.label, provenance=analysis.provenance, summary=summary, tactic_count=len(kb.tactics),
        headline=headline(analysis, kb), findings=findings(analysis), evidence=analysis.evidence,
        sections=analysis.sections, rules=rules[:RULES_SHOWN], rules_more=max(0, len(rules) - RULES_SHOWN),
        sentences=sentences, sightings=analysis.sightings, sources=analysis.ingest, figures=figs, figures_json=script_json(figs),
        plotly_js=Markup(plotly_js()), cluster_attribution=cluster_attribution,
        no_detections_reason=("No Sigma rule fired on the event logs." if has_logs
                              else "No event log was analysed in this case."),
        no_sentences_reason=("No report sentence was mapped to a technique." if analysis.documents
                             else "No threat report was read in this case."),
    )
