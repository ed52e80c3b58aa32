"""Document structure (typed blocks, context never claims), PDF layout repair, safe indicators, named
entities in context, documentation files, and shareable STIX bundles validated with stix2-validator."""

from __future__ import annotations

import copy
import json
import re

import fpdf
import pytest

from ttpscope.extract import document_from_text, extract_document
from ttpscope.extract.classifier import TechniqueClassifier, kb_training_set
from ttpscope.extract.documents import document_from_bytes, find_date, find_tlp, is_documentation
from ttpscope.extract.entities import EntityMatcher
from ttpscope.extract.iocs import find_iocs, screen_iocs
from ttpscope.extract.sentences import CONTEXT_KINDS, split_blocks, split_sentences

REPORT_MD = """# Operation Grey Finch

TLP:AMBER

## Table of contents

Executive summary ........ 2
Initial access ........ 3
Persistence ........ 5

## Persistence

The actor created a scheduled task named UpdateCheck with schtasks to run the loader every hour, and the
loader added a Run key under HKCU\\Software\\Microsoft\\Windows NT\\CurrentVersion\\Run for good measure.
Around 09:10 the operator ran reconnaissance commands on the host:
`net view` to find remote systems and `ipconfig /all` for the network configuration of the workstation.

A second lure exploited CVE-2017-11882 in the Office Equation Editor, but it was quarantined.

Figure 3: the scheduled task as seen in the Task Scheduler.

| IP/Domain name | Description |
|---|---|
| update-finch[.]com | command and control |

## Contact

For more information, contact intel@greyfinch-security.com or visit https://greyfinch-security.com/blog.

This report is provided "as is" without warranty of any kind. Copyright 2024 Grey Finch Security.
"""


def _kinds(text, hints=None):
    return [(s.kind, " ".join(s.text.split())) for s in split_sentences(text, hints=hints)]


def test_markdown_blocks_are_typed():
    got = _kinds(REPORT_MD)
    assert ("heading", "Operation Grey Finch") in got and ("heading", "Persistence") in got
    assert ("boilerplate", "TLP:AMBER") in got
    assert ("toc", "Executive summary ........ 2") in got and ("toc", "Persistence ........ 5") in got
    assert ("table_header", "| IP/Domain name | Description |") in got
    assert ("table", "| update-finch[.]com | command and control |") in got
    assert ("caption", "Figure 3: the scheduled task as seen in the Task Scheduler.") in got
    assert all(k == "boilerplate" for k, t in got if k != "heading" and ("contact" in t.lower() or "warranty" in t.lower()))
    # a hard-wrapped line starting with a code span stays in its sentence
    assert any(k == "prose" and t.startswith("Around 09:10") and "`net view` to find remote systems" in t
               for k, t in got)
    assert not any(t.startswith("`net view`") for _, t in got)
    blocks = {b.kind for b in split_blocks(REPORT_MD)}
    assert {"heading", "paragraph", "toc", "table_header", "table", "caption", "boilerplate"} <= blocks
    for s in split_sentences(REPORT_MD):
        assert REPORT_MD[s.start:s.end] == s.text


def test_plain_headings_and_title():
    text = "Version 2.0\n\nInitial Access\nThe actor sent spearphishing e-mails to the staff.\n\nCommand and Control\n\n" \
           "The implant beaconed over HTTPS every minute.\n"
    got = _kinds(text)
    assert ("heading", "Initial Access") in got and ("heading", "Command and Control") in got
    assert ("prose", "The actor sent spearphishing e-mails to the staff.") in got
    doc = document_from_text(REPORT_MD, "r.md", "md")
    assert doc.title == "Operation Grey Finch" and doc.tlp == "amber"
    assert document_from_text(text, "v.txt").title != "Version 2.0"


def test_date_and_tlp_are_read_not_guessed():
    assert find_date("Grey Finch\nPublished: 12 March 2024\n\nIn May 2023 the actor ...") == "2024-03-12"
    assert find_date("Report\nSeptember 3, 2023\n\nBody") == "2023-09-03"
    # a date inside the narrative is when the intrusion happened, not when the report came out
    assert find_date("Between 16 and 17 September 2024 an intruder gained access.") is None
    assert find_tlp("TLP: WHITE") == "clear" and find_tlp("TLP:AMBER+STRICT") == "amber+strict"


def _pdf() -> bytes:
    pdf = fpdf.FPDF()
    pdf.set_auto_page_break(False)
    pages = [
        ["The attackers exploited CVE-2014-", "1761 in Microsoft Word and the implant connected to the server at update.eelu.",
         "biz for its commands. Persistence was achieved through a scheduled task and the exe-",
         "cution continued with the hash a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1",
         "e2f3a4b5c6d7e8f9a0b1 of the dropper written to C:\\Users\\Public\\", "svchost32.exe on every host."],
        ["The operator used PowerShell to download further tools.", "It then deleted the shadow copies."],
        ["The group exfiltrated data over the C2 channel."],
    ]
    for p, lines in enumerate(pages):
        pdf.add_page()
        pdf.set_font("Helvetica", size=9)
        pdf.set_xy(10, 8)
        pdf.cell(0, 6, "Example Corp Threat Intelligence | TLP:AMBER")
        pdf.set_xy(10, 20)
        if p == 0:
            pdf.set_font("Helvetica", size=10)
            pdf.cell(0, 8, "Version 2.0", new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", "B", size=22)
            pdf.cell(0, 12, "Operation Dusk Lantern", new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", size=11)
            pdf.cell(0, 6, "Published: 12 March 2024", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "B", size=15)
        pdf.cell(0, 9, ["Persistence", "Impact", "Exfiltration"][p], new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        for line in lines:
            pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
        pdf.set_xy(10, 280)
        pdf.set_font("Helvetica", size=8)
        pdf.cell(0, 6, f"(c) 2024 Example Corp - page {p + 1} of 3")
    return bytes(pdf.output())


def test_pdf_layout_is_repaired():
    doc = document_from_bytes(_pdf(), "dusk.pdf")
    assert doc.title == "Operation Dusk Lantern"  # the largest heading, not "Version 2.0"
    assert doc.date == "2024-03-12" and doc.tlp == "amber"
    assert "page 2 of 3" not in doc.text and "Threat Intelligence | TLP" not in doc.text  # running lines dropped
    assert len(doc.dropped) >= 2
    assert "CVE-2014-1761" in doc.text and "update.eelu.biz" in doc.text and "execution" in doc.text
    assert "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1" in doc.text
    assert "C:\\Users\\Public\\svchost32.exe" in doc.text
    got = _kinds(doc.text, doc.hints)
    assert ("heading", "Persistence") in got and ("heading", "Exfiltration") in got
    iocs = find_iocs(doc.text)
    assert "update.eelu.biz" in iocs["domain"] and "eelu.biz" not in iocs["domain"]
    assert iocs["sha256"] == ["a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1"]


def test_html_keeps_headings_and_table_headers():
    html = ("<html><head><title>t</title></head><body><article><h1>Grey Finch</h1><p>TLP:CLEAR</p><h2>Persistence</h2>"
            "<p>The actor created a scheduled task named UpdateCheck to run the loader every hour on each host it "
            "reached, and it added a Run key for the same file.</p><table><tr><th>IP/Domain name</th><th>Type</th></tr>"
            "<tr><td>update-finch[.]com</td><td>domain</td></tr></table></article></body></html>")
    doc = document_from_bytes(html.encode(), "g.html")
    got = _kinds(doc.text)
    assert ("heading", "Persistence") in got and ("boilerplate", "TLP:CLEAR") in got
    assert any(k == "table_header" and "IP/Domain name" in t for k, t in got)
    assert "update-finch[.]com" in doc.text  # defanged indicators survive the Markdown conversion


def test_tram_reports_have_no_context_claims(shared_data):
    """On TRAM's 151 real reports, lines that are only a tactic or technique name are typed as headings
    (context: the pipeline never classifies them)."""
    from ttpscope.kb import load_kb

    kb = load_kb("enterprise")
    names = {t.name.lower() for t in kb.techniques.values()} | {
        "initial access", "execution", "persistence", "privilege escalation", "defense evasion", "credential access",
        "discovery", "lateral movement", "collection", "command and control", "exfiltration", "impact"}
    files = sorted((shared_data / "tram" / "mjson_files").glob("*.mjson"))
    assert len(files) == 151
    standalone = typed = 0
    for f in files:
        text = json.loads(f.read_bytes())["signal"]
        lines = text.splitlines()
        for s in split_sentences(text):
            assert text[s.start:s.end] == s.text
            if s.text.strip().lower() in names and s.text.strip() in (ln.strip() for ln in lines):
                standalone += 1
                typed += s.kind in CONTEXT_KINDS
    assert standalone > 20 and typed == standalone


@pytest.fixture(scope="module")
def model(kb):
    fams = ["T1059", "T1053", "T1547", "T1016", "T1018", "T1203", "T1071"]
    return TechniqueClassifier.train(kb, kb_training_set(kb, techniques=fams))


def test_context_blocks_never_claim(kb, model):
    doc = document_from_text(REPORT_MD, "grey.md", "md")
    res = extract_document(doc, kb, classifier=model, min_confidence=0.01)
    kinds = {e.kind for t in res.techniques for e in t.evidence}
    assert kinds and not kinds & CONTEXT_KINDS
    assert all(o.evidence["kind"] not in CONTEXT_KINDS for o in res.observations)
    assert "T1053.005" in {t.id for t in res.techniques}
    # Equation Editor is a product, not the Equation group
    assert "G0020" not in {g["id"] for g in res.groups}
    # the publisher's own domain and address are not indicators; the defanged C2 domain is
    assert res.iocs.get("domain") == ["update-finch.com"]
    assert "greyfinch-security.com" in res.vendor_domains
    rejected = {(n["type"], n["value"]): n["reason"] for n in res.not_indicators}
    assert rejected[("email", "intel@greyfinch-security.com")] == "the publisher's own domain"
    assert res.to_dict()["document"]["tlp"] == "amber"


def test_warning_lists_screen_domains_ips_hashes_emails():
    kept, rejected = screen_iocs({
        "domain": ["github.com", "medium.com", "com.ar", "org.uk", "kaspersky.com", "evil-update.biz"],
        "ipv4": ["8.8.8.8", "10.1.2.3", "127.0.0.1", "45.77.12.9", "198.51.100.23"],
        "md5": ["d41d8cd98f00b204e9800998ecf8427e", "9b2e4c6a8d0f1e3c5a7b9d1f3e5c7a9b"],
        "sha256": ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
        "email": ["info@kaspersky.com", "operator@evil-update.biz"],
        "file_path": ["/usr/bin/perl", "C:\\Users\\x\\AppData\\Local\\Temp\\a.exe"],
    }, vendor_domains={"kaspersky.com"}, defanged={"medium.com"})
    assert kept["domain"] == ["medium.com", "evil-update.biz"]  # the author defanged medium.com: kept
    assert kept["ipv4"] == ["45.77.12.9", "198.51.100.23"]  # documentation ranges stand in for real ones
    assert kept["md5"] == ["9b2e4c6a8d0f1e3c5a7b9d1f3e5c7a9b"] and "sha256" not in kept
    assert kept["email"] == ["operator@evil-update.biz"]
    assert kept["file_path"] == ["C:\\Users\\x\\AppData\\Local\\Temp\\a.exe"]
    why = {r["value"]: r for r in rejected}
    assert why["github.com"]["list"] and why["8.8.8.8"]["list"] and why["10.1.2.3"]["list"]
    assert "empty" in why["d41d8cd98f00b204e9800998ecf8427e"]["list"].lower()
    assert why["com.ar"]["reason"] == why["org.uk"]["reason"] == "a public suffix, not a domain"
    assert why["info@kaspersky.com"]["reason"] == "the publisher's own domain"
    assert why["/usr/bin/perl"]["reason"] == "a standard system path"


def test_registry_key_is_not_cut_at_a_space():
    found = find_iocs(r"It set HKLM\Software\Microsoft\Windows NT\CurrentVersion\Winlogon\Shell to the implant.")
    assert found["registry_key"] == ["HKLM\\Software\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon\\Shell"]


def test_entities_in_context(kb):
    m = EntityMatcher(kb)

    def ids(text):
        return {(k, i) for k, i, *_ in m.find(text)}

    assert ids("The RTF exploited CVE-2017-11882 in the Office Equation Editor.") == set()
    assert ids("The Carbanak gang stole money from banks.") == {("group", "G0008")}
    assert ids("The Carbanak backdoor was installed on the host.") == {("software", "S0030")}
    assert ids("Carbanak was first seen in 2014.") == {("group", "G0008"), ("software", "S0030")}
    assert ("software", "S0046") in ids("APT29 deployed the CozyDuke malware.")


def test_documentation_files_are_told_apart():
    assert is_documentation("logs/README.md")
    assert is_documentation("LICENSE")
    assert is_documentation("MISSING-FROM-SNAPSHOT.txt")
    assert is_documentation("notes.txt", "To the extent possible under law, the author waived all rights. CC0 1.0")
    assert is_documentation("report-ashen-lantern.md", open_example()) is None
    assert is_documentation("security-report.pdf") is None


def open_example() -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parents[1] / "examples" / "evidence" / "report-ashen-lantern.md").read_text()


def _validate(bundle: dict) -> list[str]:
    from stix2validator import ValidationOptions, validate_instance

    res = validate_instance(copy.deepcopy(bundle), ValidationOptions(version="2.1"))
    return [str(e) for e in res.errors] if not res.is_valid else []


def test_stix_bundle_is_shareable_and_valid(kb):
    from helpers_investigate import sample_case

    from ttpscope.export.stix import TLP2_IDS, case_bundle
    from ttpscope.investigate.analysis import analyse_case

    case, dets, docs = sample_case()
    for d in docs:
        d.date, d.tlp, d.sha256 = "2024-03-12", "amber", "ab" * 32
        d.groups = [{"id": "G0016", "name": "APT29", "also_observed": ["T1059.001"]}]
        d.software = [{"id": "S0002", "name": "Mimikatz", "also_observed": ["T1003.001"]}]
    analysis = analyse_case(case, kb, detections=dets, documents=docs)
    bundle = case_bundle(analysis, kb)
    assert _validate(bundle) == []
    objs = {o["id"]: o for o in bundle["objects"]}
    report = next(o for o in bundle["objects"] if o["type"] == "report")
    assert report["published"].startswith("2024-03-12")
    assert any(r.get("hashes", {}).get("SHA-256") == "ab" * 32 for r in report["external_references"])
    assert report["object_marking_refs"] == [TLP2_IDS["amber"]] and TLP2_IDS["amber"] in objs
    isets = [o for o in bundle["objects"] if o["type"] == "intrusion-set"]
    assert any(o["external_references"][0]["external_id"] == "G0016" for o in isets)
    tools = [o for o in bundle["objects"] if o["type"] in ("tool", "malware")]
    assert any(o["external_references"][0]["external_id"] == "S0002" for o in tools)
    uses = [o for o in bundle["objects"] if o["type"] == "relationship" and o["relationship_type"] == "uses"
            and objs[o["source_ref"]]["type"] == "intrusion-set"]
    assert uses and all(objs[u["target_ref"]]["type"] == "attack-pattern" for u in uses)
    assert all(i.get("confidence") == 50 for i in bundle["objects"] if i["type"] == "indicator")
    # an explicit --tlp wins; a bundle without document data still validates
    assert case_bundle(analysis, kb, tlp="red")["objects"][1]["object_marking_refs"] == [TLP2_IDS["red"]]
    plain_case, pdets, pdocs = sample_case()
    assert _validate(case_bundle(analyse_case(plain_case, kb, detections=pdets, documents=pdocs), kb)) == []
    assert re.match(r"^\d{4}-", report["published"])


def test_investigate_skips_documentation_with_the_reason(tmp_path, kb):
    from ttpscope.investigate.route import collect
    from ttpscope.investigate.stages import extract_reports

    (tmp_path / "README.md").write_text("# Logs of case 7\n\nThis folder contains the Sysmon logs of two hosts.\n")
    (tmp_path / "LICENSE").write_text("CC0 1.0 Universal. To the extent possible under law, the authors waived all "
                                      "copyright and related rights to this work.\n")
    routed = [e for e in collect([tmp_path]) if e.kind == "report"]
    assert len(routed) == 2
    obs, docs, reports, _notes = extract_reports(routed, kb, lambda *a: None)
    assert obs == [] and docs == []
    for rep in reports.values():
        assert not rep.used and rep.note.startswith("skipped: documentation")


def test_named_campaigns_are_read_in_context(kb, model):
    m = EntityMatcher(kb)
    found = {(k, i) for k, i, *_ in m.find("Lazarus Group ran Operation Dream Job against engineers.")}
    assert ("campaign", "C0022") in found and ("group", "G0032") in found
    assert not [x for x in m.find("We analysed C0010 and operation dream job samples.") if x[0] == "campaign"]

    def campaigns(text):
        ex = extract_document(document_from_text(text, "c.txt", "txt"), kb, classifier=model, with_iocs=False)
        return {c["id"]: c for c in ex.campaigns}

    # a one-word campaign name needs "campaign" / "operation" next to it
    assert campaigns("Mary Shelley wrote Frankenstein in 1818, long before any computer existed.") == {}
    got = campaigns("The Frankenstein campaign used Word documents with macros to run PowerShell.")
    assert set(got) == {"C0001"} and got["C0001"]["count"] == 1
    dream = campaigns("Operation Interception lured aerospace staff with job offers on LinkedIn.")
    assert dream["C0022"]["groups"] == ["G0032"]  # ATT&CK's attribution travels with the mention


def test_stix_named_campaigns_and_published_source(kb):
    from helpers_investigate import sample_case

    from ttpscope.export.stix import case_bundle
    from ttpscope.investigate.analysis import analyse_case
    from ttpscope.model import Case, Observation, ReportDocument

    case, dets, docs = sample_case()
    for d in docs:
        d.campaigns = [{"id": "C0022", "name": "Operation Dream Job", "also_observed": ["T1566.001", "T1059.001"]}]
    bundle = case_bundle(analyse_case(case, kb, detections=dets, documents=docs), kb)
    assert _validate(bundle) == []
    objs = {o["id"]: o for o in bundle["objects"]}
    camp = next(o for o in bundle["objects"] if o["type"] == "campaign"
                and o.get("external_references", [{}])[0].get("external_id") == "C0022")
    assert camp["id"] == kb.campaigns["C0022"].stix_id and "Operation North Star" in camp["aliases"]
    rels = [o for o in bundle["objects"] if o["type"] == "relationship" and o["source_ref"] == camp["id"]]
    uses = {objs[r["target_ref"]]["external_references"][0]["external_id"] for r in rels
            if r["relationship_type"] == "uses"}
    assert uses == {"T1566.001", "T1059.001"}
    attributed = [objs[r["target_ref"]] for r in rels if r["relationship_type"] == "attributed-to"]
    assert [o["type"] for o in attributed] == ["intrusion-set"]
    assert attributed[0]["external_references"][0]["external_id"] == "G0032"
    # no document date: the earliest evidence time, said so, never the export time
    report = next(o for o in bundle["objects"] if o["type"] == "report")
    assert report["labels"] == ["ttpscope-published:earliest-evidence"] and "earliest" in report["description"]
    assert report["published"].startswith("2024-03-05T08:12:01")
    # nor any evidence time: the case's creation time
    from datetime import datetime, timezone

    made = datetime(2023, 7, 1, 12, 0, tzinfo=timezone.utc)
    bare = Case(name="text only", created=made, updated=made, observations=[
        Observation("T1059.001", "text", "r.md#0-20", {"sentence": "PowerShell ran.", "method": "name"}, [],
                    document="r.md", confidence=0.9)])
    b2 = case_bundle(analyse_case(bare, kb, detections=[], documents=[ReportDocument(name="r.md")]), kb)
    assert _validate(b2) == []
    r2 = next(o for o in b2["objects"] if o["type"] == "report")
    assert r2["labels"] == ["ttpscope-published:case-created"] and r2["published"].startswith("2023-07-01T12:00")
    # a stated date wins
    docs[0].date = "2024-04-02"
    r3 = next(o for o in case_bundle(analyse_case(case, kb, detections=dets, documents=docs), kb)["objects"]
              if o["type"] == "report")
    assert r3["labels"] == ["ttpscope-published:document"] and r3["published"].startswith("2024-04-02")
    import stix2

    assert stix2.parse(json.dumps(bundle), allow_custom=False).type == "bundle"  # no custom content
