"""Case exports on a hand-built case: Navigator layer (4.5 rules), STIX 2.1 (stix2 parse), HTML structure and
escaping, CSV, Markdown, case.json, and the evidence-strength summary they share."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
from datetime import datetime, timedelta

import orjson
import pytest
import stix2
from helpers_investigate import XSS, sample_case, with_attribution
from lxml import html as lxml_html

from ttpscope.analyze.evidence import technique_evidence
from ttpscope.export.layers import case_layer, read_layer, validate_layer
from ttpscope.export.outputs import FILES, write_outputs
from ttpscope.export.stix import case_bundle, ioc_pattern
from ttpscope.investigate.analysis import analyse_case
from ttpscope.model import Case, Observation


@pytest.fixture(scope="module")
def analysis(kb):
    case, dets, docs = sample_case()
    return analyse_case(case, kb, detections=dets, documents=docs)


def test_evidence_strength_counts_sources_not_repeats(kb):
    one_rule = [Observation("T1059.001", "sigma", "r1", {}, [], confidence=0.5) for _ in range(50)]
    two_sources = [Observation("T1003.001", "sigma", "r1", {}, [], confidence=0.5),
                   Observation("T1003.001", "text", "doc#1-2", {"sentence": "x"}, [], confidence=0.5)]
    ev = {e.id: e for e in technique_evidence(Case("c", one_rule + two_sources), kb)}
    assert ev["T1059.001"].strength == pytest.approx(0.5)  # 50 hits of one rule are one source
    assert ev["T1003.001"].strength == pytest.approx(0.75)  # two independent sources corroborate
    assert ev["T1059.001"].observations == 50 and ev["T1059.001"].sources == 1
    order = [e.id for e in technique_evidence(Case("c", one_rule + two_sources), kb)]
    assert order == ["T1003.001", "T1059.001"]  # strongest first


def test_evidence_places_techniques_like_the_lifecycle(kb):
    from ttpscope.analyze.lifecycle import lifecycle

    # T1078 Valid Accounts has four tactics; a rule tagged persistence puts it there only
    obs = [Observation("T1078", "sigma", "r", {}, ["attack.persistence"])]
    assert technique_evidence(Case("c", obs), kb)[0].tactics == ["persistence"]
    # without a tactic in the evidence: the earliest of the technique's tactics, as the lifecycle does
    untagged = Case("c", [Observation("T1078", "sigma", "r", {}, [])])
    assert technique_evidence(untagged, kb)[0].tactics == ["initial-access"]
    assert [t["shortname"] for t in lifecycle(untagged, kb).tactics] == ["initial-access"]


def test_case_layer_is_valid_navigator_4_5(kb, analysis, tmp_path):
    layer = case_layer(analysis.case, kb, analysis.evidence)
    assert validate_layer(layer, kb) == []
    assert layer["versions"]["layer"] == "4.5" and layer["domain"] == "enterprise-attack"
    cells = {(c["techniqueID"], c.get("tactic")): c for c in layer["techniques"]}
    ps = cells[("T1059.001", "execution")]
    assert 0 <= ps["score"] <= 100 and ps["score"] == next(e.score for e in analysis.evidence if e.id == "T1059.001")
    assert "Encoded PowerShell" in ps["comment"] and "WS01" in ps["comment"]
    assert ("T1059", "execution") in cells and cells[("T1059", "execution")]["showSubtechniques"]
    assert all(re.match(r"^T\d{4}(\.\d{3})?$", c["techniqueID"]) for c in layer["techniques"])
    path = tmp_path / "layer.json"
    path.write_bytes(orjson.dumps(layer))
    assert {c["id"] for c in read_layer(path) if c["score"] is not None} == {e.id for e in analysis.evidence}


def test_case_layer_leaves_out_unknown_ids(kb):
    case = Case("c", [Observation("T1059.001", "manual", "a", {}, []), Observation("T9999", "manual", "a", {}, [])])
    layer = case_layer(case, kb)
    assert validate_layer(layer, kb) == []
    assert "T9999" not in {c["techniqueID"] for c in layer["techniques"]}
    assert "T9999" in layer["description"]


def _objects(bundle):
    return {o["id"]: o for o in bundle["objects"]}


def test_stix_bundle_parses_and_links(kb, analysis):
    bundle = case_bundle(analysis, kb)
    parsed = stix2.parse(json.dumps(bundle), allow_custom=False)
    assert parsed.type == "bundle"
    objs = _objects(bundle)
    by_type = {}
    for o in bundle["objects"]:
        by_type.setdefault(o["type"], []).append(o)
    report = by_type["report"][0]
    assert set(report["object_refs"]) == set(objs) - {report["id"], report["created_by_ref"]}
    patterns = {o["external_references"][0]["external_id"]: o for o in by_type["attack-pattern"]}
    assert set(patterns) == {e.id for e in analysis.evidence}
    assert patterns["T1059.001"]["id"] == kb.techniques["T1059.001"].stix_id  # ATT&CK's own object id
    for s in by_type["sighting"]:
        assert objs[s["sighting_of_ref"]]["type"] == "attack-pattern"
        assert all(objs[r]["type"] == "observed-data" for r in s.get("observed_data_refs", []))
        assert all(objs[r]["identity_class"] == "system" for r in s.get("where_sighted_refs", []))
    smb = [s for s in by_type["sighting"] if objs[s["sighting_of_ref"]]["name"] == "SMB/Windows Admin Shares"]
    assert len(smb) == 1 and smb[0]["count"] == 2
    od = [o for o in by_type["observed-data"] if o["number_observed"] == 2][0]
    assert any(objs[r]["type"] == "ipv4-addr" and objs[r]["value"] == "10.0.0.5" for r in od["object_refs"])
    procs = [o for o in bundle["objects"] if o["type"] == "process"]
    assert any("</script>" in p["command_line"] for p in procs)  # kept verbatim: STIX is data, not markup
    notes = by_type["note"]
    assert any(XSS in n["content"] for n in notes)


def test_stix_indicators_are_short_lived_and_vulns_apart(kb, analysis):
    bundle = case_bundle(analysis, kb)
    indicators = [o for o in bundle["objects"] if o["type"] == "indicator"]
    patterns = sorted(i["pattern"] for i in indicators)
    assert "[ipv4-addr:value = '203.0.113.7']" in patterns
    assert "[domain-name:value = 'evil-cdn.example']" in patterns
    assert "[url:value = 'https://evil-cdn.example/a\\'b.ps1']" in patterns  # quote escaped in the pattern
    assert any(p.startswith("[file:hashes.'SHA-256'") for p in patterns)
    assert len(indicators) == 4  # the bitcoin address has no STIX pattern here: left out and said so
    assert "left out" in next(o for o in bundle["objects"] if o["type"] == "report")["description"]
    for i in indicators:
        start, end = (datetime.fromisoformat(i[k].replace("Z", "+00:00")) for k in ("valid_from", "valid_until"))
        assert timedelta(days=1) <= end - start <= timedelta(days=90)
    vulns = [o for o in bundle["objects"] if o["type"] == "vulnerability"]
    assert [v["name"] for v in vulns] == ["CVE-2021-40444"]
    assert vulns[0]["external_references"][0] == {"source_name": "cve", "external_id": "CVE-2021-40444"}


def test_ioc_pattern_types():
    assert ioc_pattern("IPv4", "1.2.3.4") == ("[ipv4-addr:value = '1.2.3.4']", "network")
    assert ioc_pattern("md5", "9b2e4c6a8d0f1e3c5a7b9d1f3e5c7a9b")[1] == "hash"
    assert ioc_pattern("file_path", "C:\\Temp\\x.exe")[0] == "[file:name = 'x.exe']"
    assert ioc_pattern("registry_key", "HKCU\\Run")[0] == "[windows-registry-key:key = 'HKCU\\\\Run']"
    assert ioc_pattern("bitcoin", "1Boat") is None


def test_stix_attribution_only_when_sufficient(kb, analysis):
    sure = case_bundle(with_attribution(analysis, False), kb)
    stix2.parse(json.dumps(sure), allow_custom=False)
    rel = [o for o in sure["objects"] if o["type"] == "relationship" and o["relationship_type"] == "attributed-to"]
    assert len(rel) == 1 and rel[0]["confidence"] == 62
    iset = _objects(sure)[rel[0]["target_ref"]]
    assert iset["type"] == "intrusion-set" and iset["name"] == "APT29"
    assert iset["external_references"][0]["external_id"] == "G0016"
    assert _objects(sure)[rel[0]["source_ref"]]["type"] == "campaign"
    unsure = case_bundle(with_attribution(analysis, True), kb)
    assert not [o for o in unsure["objects"] if o["type"] == "intrusion-set"]


def test_stix_bundle_is_deterministic(kb, analysis):
    assert case_bundle(analysis, kb) == case_bundle(analysis, kb)


def test_html_is_one_escaped_self_contained_file(kb, analysis, tmp_path):
    written = write_outputs(analysis, kb, tmp_path, ["html"])
    raw = written["html"].read_text(encoding="utf-8")
    doc = lxml_html.fromstring(raw)
    for sec in ("summary", "matrix", "lifecycle", "evidence", "attribution", "overlap", "anticipation",
                "coverage", "mitigations", "indicators", "appendix"):
        assert doc.get_element_by_id(sec) is not None, sec
    # nothing is fetched: no external script, style sheet, image or frame
    for el in doc.iter("script", "link", "img", "iframe"):
        assert not el.get("src") and not el.get("href"), lxml_html.tostring(el)[:80]
    # evidence is attacker-controlled: it shows as text, never as markup
    assert XSS not in raw and "<script>alert(2)" not in raw
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in raw
    scripts = [s.text or "" for s in doc.iter("script")]
    data = [s for s in doc.iter("script") if s.get("id") == "figures-data"][0].text
    assert "</" not in data and "<script" not in data.lower()
    figures = json.loads(data)
    heat = figures["matrix"]["data"][0]
    assert heat["type"] == "heatmap"
    scores = sorted(v for row in heat["z"] for v in row if v is not None)
    assert scores == sorted(s for e in analysis.evidence for s in [e.score] * len(e.tactics))
    assert len(heat["x"]) == len(kb.tactics)  # every tactic is a column, reached or not
    assert any("Plotly" in s for s in scripts)  # the charting library is inlined
    # every section whose part is missing or failed says so in words
    for key, sec in analysis.sections.items():
        if sec.status != "ok":
            box = doc.get_element_by_id(key).find_class("status")
            assert box and sec.message[:40] in box[0].text_content()


def test_csv_and_markdown(kb, analysis, tmp_path):
    written = write_outputs(analysis, kb, tmp_path, ["csv", "markdown", "json"])
    rows = list(csv.DictReader(io.StringIO(written["csv"].read_text(encoding="utf-8"))))
    assert len(rows) == len(analysis.case.observations)
    assert {r["technique_id"] for r in rows} == set(analysis.case.technique_ids())
    formula_rows = [r for r in rows if "HYPERLINK" in r["evidence"]]
    assert formula_rows and all(r["evidence"].startswith("'=") for r in formula_rows)  # not run as a formula
    md = written["markdown"].read_text(encoding="utf-8")
    assert md.startswith("# Case report: sample-intrusion")
    assert "## Top detections" in md and "## Report sentences" in md and "## Attribution" in md
    # issue 16: plain characters (no "&lt;"), with a backslash only where a renderer would see markup
    assert XSS not in md and "&lt;" not in md and "\\<script>alert('xss')\\</script>" in md
    data = orjson.loads(written["json"].read_bytes())
    assert data["knowledge_base"]["attack_version"] == kb.version
    assert len(data["observations"]) == len(analysis.case.observations)
    back = Case.from_dict({**data["case"], "observations": data["observations"]})
    assert back.technique_ids() == analysis.case.technique_ids()
    assert set(data["sections"]) == set(analysis.sections)


def test_write_outputs_all_formats_and_bad_format(kb, analysis, tmp_path):
    written = write_outputs(analysis, kb, tmp_path / "out")
    assert {p.name for p in written.values()} == set(FILES.values())
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp file left
    mask = os.umask(0)
    os.umask(mask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~mask for p in written.values())  # not mkstemp's 0600
    from ttpscope.errors import TtpscopeError

    with pytest.raises(TtpscopeError, match="unknown export format"):
        write_outputs(analysis, kb, tmp_path / "out", ["pdf"])


# ---------------------------------------------------------------- issue 16: report.html and report.md fixes
def test_repeated_steps_on_a_lane_are_one_span_with_a_count(kb):
    from ttpscope.export.figures import collapse_repeats, timeline

    start = datetime(2024, 3, 5, 8, 0)
    beacon = [{"time": (start + timedelta(minutes=5 * i)).isoformat() + "Z", "host": "WS01", "technique_id": "T1071.001",
               "technique": "Web Protocols", "tactic": "command-and-control", "evidence": "beacon"} for i in range(120)]
    others = [{"time": (start + timedelta(minutes=m)).isoformat() + "Z", "host": h, "technique_id": t, "technique": t,
               "tactic": tac, "evidence": ""} for m, h, t, tac in [(1, "WS01", "T1059.001", "execution"),
                                                                   (90, "WS01", "T1003.001", "credential-access"),
                                                                   (95, "DC01", "T1021.002", "lateral-movement")]]
    # the same beacon a day later is a second span, not one bar across the quiet night
    later = [dict(p, time=(start + timedelta(days=1, minutes=5 * i)).isoformat() + "Z") for i, p in enumerate(beacon[:4])]
    singles, spans = collapse_repeats(beacon + others + later)
    assert [(s["host"], s["technique_id"], s["count"]) for s in spans] == [("WS01", "T1071.001", 120),
                                                                          ("WS01", "T1071.001", 4)]
    assert spans[0]["start"] == beacon[0]["time"] and spans[0]["end"] == beacon[-1]["time"]
    assert sorted(p["technique_id"] for p in singles) == ["T1003.001", "T1021.002", "T1059.001"]
    fig = timeline(beacon + others + later, kb.tactic_order(), {t.shortname: t.name for t in kb.tactic_list()})
    drawn = sum(1 for t in fig["data"] for x in t["x"] if x is not None)
    assert drawn == 3 + 2 * 2  # three steps and two spans' ends, where there were 127 dots
    assert "×120" in [x for t in fig["data"] for x in t.get("text", []) if isinstance(x, str)]
    # hourly observations of one beacon (each an hour of hits) are one span too
    hourly = [dict(beacon[0], time=(start + timedelta(minutes=70 * i)).isoformat() + "Z") for i in range(14)]
    assert [s["count"] for s in collapse_repeats(hourly)[1]] == [14]


def test_report_ids_dates_and_levels_never_wrap(kb, analysis, tmp_path):
    raw = write_outputs(analysis, kb, tmp_path, ["html"])["html"].read_text(encoding="utf-8")
    doc = lxml_html.fromstring(raw)
    css = " ".join(s.text or "" for s in doc.iter("style"))
    nowrap = re.search(r"\.nowrap, \.tid, \.when, \.pill, td\.num, th\.num \{ white-space:nowrap; \}", css)
    assert nowrap and "overflow-wrap:anywhere; }" not in css.split(".ev")[0]  # no cell breaks anywhere by default
    assert "word-break:break-all" not in css
    # every technique id, time and level in the report sits in one of those elements
    for el in doc.iter("td", "span", "div"):
        own = (el.text or "").strip()
        if re.fullmatch(r"T\d{4}(\.\d{3})?", own) or re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", own):
            assert {"tid", "when", "nowrap", "pill"} & set(el.get("class", "").split()), lxml_html.tostring(el)[:120]
        if own in ("critical", "high", "medium", "low", "informational") and el.tag == "span":
            assert "pill" in el.get("class", "")
    assert doc.find_class("tid") and doc.find_class("when") and doc.find_class("pill")


def test_report_similarity_on_0_1_and_mitigations_say_greedy(kb, analysis, tmp_path):
    raw = write_outputs(analysis, kb, tmp_path, ["html", "markdown"])
    doc = lxml_html.fromstring(raw["html"].read_text(encoding="utf-8"))
    at = analysis.sections["attribution"].data
    assert at.campaigns and all(0.0 <= c["similarity"] <= 1.0 for c in at.campaigns)
    table = doc.find_class("campaigns")[0]
    assert "Similarity (0–1)" in table.text_content() and "Score" not in table.text_content()
    shown = [float(tr.findall("td")[1].text_content()) for tr in table.iter("tr") if tr.findall("td")]
    assert shown and all(0.0 <= v <= 1.0 for v in shown)
    mit = doc.find_class("mitigations")[0]
    head = [th.text_content() for th in mit.iter("th")]
    assert "New techniques covered" in head and "greedy order of marginal gain" in \
        doc.get_element_by_id("mitigations").text_content()
    rows = analysis.sections["mitigations"].data.mitigations
    gains = [len(m["new"]) for m in rows if m["in_cover"]]
    assert gains and sum(gains) == len({t for m in rows for t in m["covers"]})  # the gains cover every technique once
    cells = [int(tr.findall("td")[2].text_content()) for tr in mit.iter("tr") if tr.findall("td")]
    assert cells[: len(gains)] == gains[:25]
    md = raw["markdown"].read_text(encoding="utf-8")
    assert "| # | mitigation | new techniques covered | covered so far | new | all it covers |" in md
    assert "similarity (0-1)" in md


def test_markdown_reads_as_written_and_renders_as_text(kb, analysis, tmp_path):
    from markdown_it import MarkdownIt

    from ttpscope.export.tables import md as md_cell

    md = write_outputs(analysis, kb, tmp_path, ["markdown"])["markdown"].read_text(encoding="utf-8")
    assert "&lt;" not in md and "&gt;" not in md and "&amp;" not in md
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    assert "<script>" not in rendered and "&lt;script&gt;alert(" in rendered  # shown as text, never run
    for text in ("a < b && c", "C:\\Windows\\System32\\cmd.exe /c dir", "<img src=x onerror=alert(1)>",
                 "\\<script>", "x &amp; y", "pipe | back`tick"):
        cell = MarkdownIt("commonmark").enable("table").render(f"| h |\n|---|\n| {md_cell(text)} |")
        body = cell.split("<td>")[1].split("</td>")[0]
        assert html.unescape(body) == text, (text, md_cell(text), body)
    assert md_cell("a < b && C:\\Windows") == "a < b && C:\\Windows"  # plain where nothing needs escaping
