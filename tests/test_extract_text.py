"""Sentence segmentation, explicit technique mentions, actor/software aliases, IOCs and CVEs."""

from __future__ import annotations

import pytest

from ttpscope.extract.entities import EntityMatcher
from ttpscope.extract.explicit import ExplicitMatcher, measure_phrases
from ttpscope.extract.features import refang, tokenize
from ttpscope.extract.iocs import find_iocs
from ttpscope.extract.sentences import MAX_SENTENCE, split_sentences
from ttpscope.kb import plain

REPORT = """Executive Summary
The actor sent spearphishing emails (e.g. fake invoices) to staff. Mr. Smith of ACME Inc. opened one.
The loader contacted hxxp://evil[.]com/gate.php and 198.51.100[.]7 on port 443. It then ran cmd.exe.

* Persistence via a scheduled task. It runs hourly.
* Credential dumping with Mimikatz
1. Initial access

| Indicator | Type |
|-----------|------|
| evil[.]com | domain |

```
schtasks /create /tn Update /tr C:\\Users\\Public\\u.exe /sc hourly
```
C:\\Users\\admin> whoami /all
net user backup P@ssw0rd /add
"""


def test_segmentation_structure_and_offsets():
    sents = split_sentences(REPORT)
    got = [(s.kind, s.text) for s in sents]
    for s in sents:
        assert REPORT[s.start:s.end] == s.text
    assert ("prose", "The actor sent spearphishing emails (e.g. fake invoices) to staff.") in got
    assert ("prose", "Mr. Smith of ACME Inc. opened one.") in got  # abbreviations do not split
    assert ("prose", "The loader contacted hxxp://evil[.]com/gate.php and 198.51.100[.]7 on port 443.") in got
    assert ("prose", "It then ran cmd.exe.") in got
    assert ("bullet", "Persistence via a scheduled task.") in got and ("bullet", "It runs hourly.") in got
    assert ("bullet", "Credential dumping with Mimikatz") in got
    assert ("table", "| evil[.]com | domain |") in got
    assert not any("---" in t for _, t in got)  # table rule dropped
    assert ("code", "schtasks /create /tn Update /tr C:\\Users\\Public\\u.exe /sc hourly") in got
    assert ("command", "C:\\Users\\admin> whoami /all") in got
    assert ("command", "net user backup P@ssw0rd /add") in got
    # the heading does not swallow the first sentence
    assert ("heading", "Executive Summary") in got  # a heading on its own line: context, not prose


def test_wrapped_lines_join_and_long_runs_are_cut():
    text = "The implant collects the host name\nand the user name, then sends them.\nNext it sleeps."
    got = [s.text for s in split_sentences(text)]
    assert got == ["The implant collects the host name\nand the user name, then sends them.", "Next it sleeps."]
    blob = "A" * 5000
    parts = split_sentences(f"Payload: {blob}")
    assert all(len(s.text) <= MAX_SENTENCE for s in parts)
    assert sum(len(s.text) for s in parts) >= 5000


def test_refang_and_tokens():
    assert refang("hxxps://bad[.]example[.]com and x[@]y(.)org") == "https://bad.example.com and x@y.org"
    toks = tokenize("It ran C:\\Windows\\System32\\rundll32.exe from hxxp://evil[.]com and encrypted files")
    assert "rundll32.exe" in toks and "rundll32" in toks and "zzurl" in toks and "encrypt" in toks


@pytest.fixture(scope="module")
def explicit(kb):
    return ExplicitMatcher.build(kb, [(plain(p.description), [p.technique_id]) for p in kb.procedures])


def test_explicit_ids_and_revoked_remap(explicit):
    found = explicit.find("Mapped to T1059.001 and the old id T1086; also T1003/001, not T9999 or AT1059.")
    ids = [(m.technique_id, m.surface, m.method) for m in found if m.method == "id"]
    assert ("T1059.001", "T1059.001", "id") in ids
    assert ("T1059.001", "T1086", "id") in ids  # revoked id remapped through kb.resolve_technique
    assert ("T1003.001", "T1003/001", "id") in ids
    assert not any(m.surface in ("T9999", "AT1059") for m in found)
    revoked = next(m for m in found if m.surface == "T1086")
    assert "revoked" in revoked.note and "T1059.001" in revoked.note


def test_explicit_names_and_synonyms(explicit):
    text = "They relied on DLL side-loading, then Kerberoasting, and a keylogger; services were listed."
    by_surface = {m.surface: m for m in explicit.find(text)}
    assert by_surface["DLL side-loading"].technique_id == "T1574.002"
    assert by_surface["Kerberoasting"].technique_id == "T1558.003"
    assert by_surface["keylogger"].technique_id == "T1056.001"
    assert "services" not in by_surface  # generic names are not claims
    for m in by_surface.values():
        assert 0 < m.confidence < 1


def test_phrase_precision_is_measured(kb):
    examples = [("we saw Kerberoasting here", ["T1558.003"])] * 4 + [("Kerberoasting was discussed", [])] * 4
    table = measure_phrases(kb, examples)
    assert table["kerberoasting"] == ("T1558.003", round(5 / 10, 3))
    low = measure_phrases(kb, [("Kerberoasting was discussed", [])] * 10)
    assert "kerberoasting" not in low  # below the minimum precision


def test_group_and_software_aliases(kb):
    em = EntityMatcher(kb)
    text = ("Fancy Bear, also tracked as Sofacy and STRONTIUM, used Mimikatz and Cobalt Strike. "
            "The operators met at noon and used net to map shares; Net was also seen.")
    found = {(kind, oid, surface) for kind, oid, _, _, surface in em.find(text)}
    assert ("group", "G0007", "Fancy Bear") in found  # MISP alias
    assert ("group", "G0007", "Sofacy") in found
    assert ("group", "G0007", "STRONTIUM") in found
    assert ("software", "S0002", "Mimikatz") in found
    assert ("software", "S0154", "Cobalt Strike") in found
    assert ("software", "S0039", "Net") in found  # exact case of a common-word name
    surfaces = {s for _, _, s in found}
    assert "at" not in surfaces and "net" not in surfaces  # ordinary words are not software
    assert kb.resolve_group("Fancy Bear").id == "G0007" and kb.resolve_software("mimikatz").id == "S0002"


def test_iocs_defanged_and_fanged():
    text = """Payload: hxxp://evil[.]com/a.exe and https://cdn.example.net/x.js from 203.0.113[.]9 and 198.51.100.4.
IPv6 2001:db8::1; mail to ops[@]evil[.]com; md5 d41d8cd98f00b204e9800998ecf8427e
sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709 sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
Dropped C:\\Users\\Public\\svc.exe and %APPDATA%\\Microsoft\\up.dll and /tmp/.x/run.sh; saved invoice.zip.
Run key HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater set.
Markdown code: `C:\\ProgramData\\k.ps1` under `HKLM\\SOFTWARE\\Policies\\X`.
Exploits CVE-2021-44228 and cve-2017-0199 (again CVE-2021-44228)."""
    iocs = find_iocs(text)
    assert "http://evil.com/a.exe" in iocs["url"] and "https://cdn.example.net/x.js" in iocs["url"]
    assert {"evil.com", "cdn.example.net"} <= set(iocs["domain"])
    assert "invoice.zip" not in iocs["domain"] and "run.sh" not in iocs["domain"]  # files, not domains
    assert iocs["ipv4"] == ["203.0.113.9", "198.51.100.4"]
    assert iocs["ipv6"] == ["2001:db8::1"]
    assert iocs["email"] == ["ops@evil.com"]
    assert iocs["md5"] == ["d41d8cd98f00b204e9800998ecf8427e"]
    assert iocs["sha1"] == ["da39a3ee5e6b4b0d3255bfef95601890afd80709"]
    assert len(iocs["sha256"]) == 1
    assert "C:\\Users\\Public\\svc.exe" in iocs["file_path"] and "/tmp/.x/run.sh" in iocs["file_path"]
    assert "%APPDATA%\\Microsoft\\up.dll" in iocs["file_path"]
    assert iocs["registry_key"] == ["HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater",
                                    "HKLM\\SOFTWARE\\Policies\\X"]  # backticks of Markdown code are not part of it
    assert "C:\\ProgramData\\k.ps1" in iocs["file_path"]
    from ttpscope.kb.vulns import extract_cves

    assert extract_cves(text) == ["CVE-2021-44228", "CVE-2017-0199"]


def test_no_iocs_in_plain_prose():
    assert find_iocs("The actor moved laterally. Then it waited for a week before acting again.") == {}


def test_labelled_formats(kb, tmp_path):
    import json

    from ttpscope.errors import InputError
    from ttpscope.extract.labelled import read_labelled

    text = "The loader runs PowerShell. It sleeps for an hour. Then it deletes itself."
    start = text.index("runs")
    mat = {"signal": text, "version": "2", "metadata": "{}",
           "asets": str([{"type": "SEGMENT", "annots": [[0, len(text), "x", "content", "gold"]]},
                         {"type": "PowerShell (T1086)", "annots": [[start, start + 15]]},
                         {"type": "File Deletion (T1070.004)", "annots": [[text.index("deletes"), len(text) - 1]]}])}
    (tmp_path / "r1.mjson").write_text(json.dumps(mat))
    ls = read_labelled(tmp_path / "r1.mjson", kb)
    assert [(s.text, s.labels) for s in ls.sentences] == [
        ("The loader runs PowerShell.", ["T1059.001"]),  # revoked T1086 remapped
        ("It sleeps for an hour.", []),
        ("Then it deletes itself.", ["T1070.004"])]
    single = [{"text": "It used cmd.exe.", "label": "T1059.003", "doc_title": "d"},
              {"text": "", "label": "T1059.003"}, {"text": "x", "label": "T0000"}, "junk"]
    (tmp_path / "single.json").write_text(json.dumps(single))
    ls = read_labelled(tmp_path / "single.json", kb)
    assert ls.read == 4 and ls.accepted == 1 and ls.rejected == 3
    assert any("[record 2]" in p and "T0000" in p for p in ls.problems)
    table = {"sentence": {"0": "a b c", "1": "It used WMI."}, "labels": {"0": [], "1": ["T1047"]},
             "doc_title": {"0": "D", "1": "D"}}
    (tmp_path / "table.json").write_text(json.dumps(table))
    assert [s.labels for s in read_labelled(tmp_path / "table.json", kb).sentences] == [[], ["T1047"]]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json.*not valid JSON"):
        read_labelled(tmp_path / "bad.json", kb)
