"""Flat exports of a case: case.json (everything), observations.csv, and the Markdown report."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import orjson

from ttpscope.analyze.evidence import observation_text
from ttpscope.analyze.report import CaseAnalysis, SectionData
from ttpscope.export.html import cluster_attribution, cluster_when, findings, headline

CSV_COLUMNS = ["id", "technique_id", "technique", "tactics", "source_kind", "source_ref", "time", "host", "user",
               "document", "confidence", "count", "first_seen", "last_seen", "evidence", "evidence_json"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def case_json(analysis: CaseAnalysis) -> bytes:
    """Everything machine-readable: case, knowledge base, sections, detections, observations."""
    return orjson.dumps(analysis.to_dict(), default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)


def _iso(dt) -> str:
    return dt.isoformat().replace("+00:00", "Z") if dt else ""


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (evidence is attacker-controlled)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def observations_csv(analysis: CaseAnalysis, kb) -> str:
    """One row per observation; text cells that start like a spreadsheet formula get a leading quote."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for obs in analysis.case.observations:
        tech = kb.techniques.get(obs.technique_id)
        writer.writerow([
            obs.id, obs.technique_id, _cell(tech.name if tech else ""), ";".join(obs.tactic_ids), obs.source_kind,
            _cell(obs.source_ref), obs.time.isoformat().replace("+00:00", "Z") if obs.time else "",
            _cell(obs.host), _cell(obs.user), _cell(obs.document), f"{obs.confidence:.3f}", obs.count,
            _iso(obs.first_seen), _iso(obs.last_seen), _cell(observation_text(obs, 1000)),
            _cell(orjson.dumps(obs.evidence, default=str, option=orjson.OPT_NON_STR_KEYS).decode()),
        ])
    return buf.getvalue()


# what CommonMark would read as markup: a "<" opening a tag, comment or autolink, an entity reference
_MD_TAG = re.compile(r"<(?=[A-Za-z/!?])")
_MD_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
_MD_BACKSLASH = re.compile(r"\\(?=[!-/:-@\[-`{-~])")  # before ASCII punctuation, where it would escape


def md(text: Any, limit: int | None = None) -> str:
    """Text safe in a Markdown table cell, in plain characters: one line, pipes and backticks escaped, and a
    backslash before the only "<" and "&" a renderer would take as raw HTML or an entity (``\\<script>``,
    ``\\&amp;``), so the file reads as written and a renderer shows the text, never runs it."""
    s = " ".join(("" if text is None else str(text)).split())
    if limit and len(s) > limit:
        s = s[: limit - 1] + "…"
    s = _MD_BACKSLASH.sub(r"\\\\", s)  # a backslash the text has before punctuation stays a backslash
    s = s.replace("|", "\\|").replace("`", "\\`")
    return _MD_ENTITY.sub(r"\\&", _MD_TAG.sub(r"\\<", s))


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md(c, 300) for c in row) + " |" for row in rows]
    return lines + [""]


def markdown_report(analysis: CaseAnalysis, kb) -> str:
    """The report as Markdown (no figures): the same sections as the HTML report."""
    case = analysis.case
    s = analysis.summary()
    out = [f"# Case report: {md(case.name)}", "",
           f"Case `{case.id}` · generated {analysis.generated:%Y-%m-%d %H:%M} UTC · {kb.label}", "",
           "## Summary", "", md(headline(analysis, kb)), ""]
    clusters = analysis.sections.get("intrusions")
    if clusters is not None and clusters.ok and clusters.data.separate:
        out += [f"> **{md(clusters.data.note)}** (see *{md(clusters.title)}* below)", ""]
    out += [f"- {md(f)}" for f in findings(analysis)] + [""]
    out += _table(["techniques", "tactics reached", "observations", "hosts", "detections", "reports"],
                  [[s["techniques"], f"{len(s['tactics'])}/{len(kb.tactics)}", s["observations"], len(s["hosts"]),
                    s["detections"], s["documents"]]])
    out += ["## Techniques (strongest evidence first)", ""]
    out += _table(["technique", "name", "tactics", "strength", "observations", "strongest evidence"],
                  [[e.id, e.name, ", ".join(e.tactics), e.score, e.observations,
                    e.quotes[0]["text"] if e.quotes else ""] for e in analysis.evidence])
    rules = analysis.rule_summary(25)
    out += ["## Top detections", ""]
    out += _table(["rule", "level", "hits", "hosts", "techniques", "example"],
                  [[r["title"], r["level"], r["count"], ", ".join(r["hosts"]), ", ".join(r["techniques"]),
                    r["example"]] for r in rules]) if rules else ["No detection.", ""]
    out += ["## Indicator sightings (feeds)", ""]
    out += _table(["indicator", "feed", "value", "host", "source", "first seen", "last seen", "events"],
                  [[x.get("name") or x["indicator_id"], x["feed"], x.get("value"), x.get("host"), x.get("source"),
                    x.get("first_seen"), x.get("last_seen"), x.get("count")] for x in analysis.sightings[:200]]
                  ) if analysis.sightings else ["No feed indicator matched the events of this case.", ""]
    sentences = analysis.report_sentences(25)
    out += ["## Report sentences", ""]
    out += _table(["technique", "sentence", "document", "confidence"],
                  [[r["technique_id"], r["sentence"], r["document"], f"{r['confidence']:.2f}"]
                   for r in sentences]) if sentences else ["No report sentence.", ""]
    for key, sec in analysis.sections.items():
        out += [f"## {sec.title}", ""]
        if not sec.ok:
            out += [f"*{sec.status}*: {md(sec.message)}", ""]
            continue
        out += _section_md(key, sec.data)
    if analysis.ingest:
        out += ["## Evidence sources", ""]
        out += _table(["source", "kind", "read", "accepted", "rejected", "notes"],
                      [[x.get("path"), x.get("kind"), x.get("read"), x.get("accepted"), x.get("rejected"),
                        x.get("note") or ""] for x in analysis.ingest])
    return "\n".join(out).rstrip() + "\n"


def _section_md(key: str, section: SectionData) -> list[str]:
    data = section.to_dict()
    ids = lambda items: ", ".join(i["id"] if isinstance(i, dict) else str(i) for i in items or [])  # noqa: E731
    if key == "lifecycle":
        lines = [md(data.get("intent")), ""] if data.get("intent") else []
        if data.get("furthest"):
            lines += [f"Furthest stage reached on decisive evidence: **{md(data['furthest']['name'])}**.", ""]
        if data.get("furthest_weak"):
            weak = data["furthest_weak"]
            lines += [f"> {md(weak['name'])} is reached on weak evidence only: {md(weak['why'])}. Informational "
                      "rules and a lone weak report claim decide neither the stage nor the key findings.", ""]
        return lines + _table(["tactic", "reached", "techniques"],
                              [[st["name"], ("yes" if st.get("decisive", True) else "weak evidence only")
                                if st["reached"] else "", ids(st["techniques"])]
                               for st in data.get("stages") or []])
    if key == "intrusions":
        lines = [(f"> **{md(data['note'])}**" if data.get("separate") else md(data.get("note"))), "",
                 f"How: {md(data.get('method'))}." + (f" {data['untimed']} observation(s) without a time (report "
                                                      "sentences) belong to no cluster." if data.get("untimed") else ""),
                 ""]
        header = ["cluster", "when (UTC)", "hosts", "users, IPs", "obs.", "hits", "techniques", "furthest stage"]
        rows = [[c["id"], cluster_when(c), ", ".join(c["hosts"][:6]) + (f" +{c['host_count'] - 6}" if c["host_count"] > 6
                                                                        else ""),
                 ", ".join(c["users"][:4] + c["ips"][:3]), c["observations"], c["hits"], len(c["techniques"]),
                 c.get("furthest") or ""] + ([cluster_attribution(c)] if data.get("separate") else [])
                for c in (data.get("clusters") or [])[:40]]
        return lines + _table(header + (["attribution of this cluster"] if data.get("separate") else []), rows)
    if key == "attribution":
        caveat = [f"> Read with care: {md(data['caveat'])}.", ""] if data.get("caveat") else []
        campaigns = (["### Closest known campaigns", "",
                      "Similarity 0-1: cosine of the case's and the campaign's techniques, weighted by rarity.", ""]
                     + _table(["campaign", "similarity (0-1)", "attributed to", "shared techniques"],
                              [[f"{c['name']} ({c['id']})", f"{c.get('similarity') or 0:.2f}", ", ".join(c.get("groups") or []),
                                ids(c.get("explained"))] for c in data.get("campaigns") or []])
                     if data.get("campaigns") else [])
        return [md(data.get("verdict")), ""] + caveat + _table(
            ["#", "group", "score", "confidence", "explained", "not observed (hunting leads)"],
            [[i, f"{g['name']} ({g['id']})", f"{g['score']:.3f}",
              "" if g.get("confidence") is None else f"{g['confidence']:.2f}", ids(g.get("explained")),
              ids((g.get("missing") or [])[:15])] for i, g in enumerate(data.get("groups") or [], 1)]) + campaigns
    if key == "overlap":
        return _table(["kind", "name", "similarity", "shared"],
                      [[o["kind"], f"{o['name']} ({o['id']})", f"{o['similarity']:.2f}", ids(o.get("shared"))]
                       for o in data.get("items") or []])
    if key == "anticipation":
        return _table(["#", "technique", "score", "why", "watch"],
                      [[i, f"{p['id']} {p['name']}", f"{p['score']:.3f}", p.get("why", ""),
                        "; ".join((p.get("watch") or {}).get("data_components") or [])]
                       for i, p in enumerate(data.get("predictions") or [], 1)])
    if key == "coverage":
        head = []
        if data.get("coverage") is not None:
            head = [f"Coverage of the profile ({', '.join(g['name'] for g in data.get('profile') or [])}): "
                    f"{100 * data['coverage']:.0f}%", ""]
        return head + _table(["#", "gap", "tactics", "used by"],
                             [[i, f"{g['id']} {g['name']}", ", ".join(g.get("tactics") or []),
                               g["actors"] if isinstance(g.get("actors"), (int, str)) else ", ".join(g.get("actors") or [])]
                              for i, g in enumerate((data.get("gaps") or [])[:30], 1)])
    if key == "mitigations":
        return ["In greedy order of marginal gain: each row covers the most techniques the rows above leave "
                "uncovered (anticipated ones count half); *new* is that gain.", ""] + _table(
            ["#", "mitigation", "new techniques covered", "covered so far", "new", "all it covers"],
            [[i, f"{m['id']} {m['name']}", len(m.get("new") or []), f"{100 * (m.get('cumulative') or 0):.0f}%",
              ", ".join(m.get("new") or []), ", ".join(m.get("covers") or [])]
             for i, m in enumerate((data.get("mitigations") or [])[:25], 1)])
    if key == "indicators":
        lines = []
        if data.get("iocs"):
            lines += ["### IOCs", ""] + _table(["type", "value", "seen in"],
                                               [[i["type"], i["value"], ", ".join(i["documents"])] for i in data["iocs"]])
        if data.get("cves"):
            lines += ["### CVEs", ""] + _table(["CVE", "techniques", "seen in"],
                                               [[c["id"], ", ".join(c["techniques"]), ", ".join(c["documents"])]
                                                for c in data["cves"]])
        return lines
    if key == "entities":
        return _entities_md(data)
    return ["```json", orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode(), "```", ""]


def _entities_md(data: dict[str, Any]) -> list[str]:
    """Environments involved, cross-environment groups, entity links and the case timeline across sources."""
    lines = ["### Environments involved", ""] + _table(
        ["log source", "product", "detections", "entities"],
        [[e["logsource"], e["product"], e["detections"], e["entities"]] for e in data.get("environments") or []])
    if data.get("components"):
        lines += ["### Linked across environments", ""] + _table(
            ["products", "entities"], [[", ".join(c["products"]), ", ".join(c["entities"][:15])]
                                       for c in data["components"][:20]])
    lines += ["### Entity links", ""] + _table(
        ["entity", "relation", "entity", "detections", "log sources", "first / last (UTC)"],
        [[e["source"], e["relation"], e["target"], e["detections"], ", ".join(e["logsources"]),
          f"{(e['first'] or '')[:19]} / {(e['last'] or '')[:19]}"] for e in (data.get("edges") or [])[:40]])
    lines += ["### Case timeline across sources", ""] + _table(
        ["first (UTC)", "hits", "log source", "rule", "techniques", "entities"],
        [[(r["time"] or "")[:19], r["count"], r["logsource"], r["rule"], ", ".join(r["techniques"]),
          ", ".join(r["entities"][:4])] for r in (data.get("timeline") or [])[:60]])
    return lines
