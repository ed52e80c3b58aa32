"""Technique pages: ATT&CK's Markdown rendered as safe HTML, the server's own Sigma rules for the technique with
their hunting queries per SIEM, and the Atomic Red Team tests filed under it; all against a real app."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from markupsafe import escape

from ttpscope.api import Settings, create_app
from ttpscope.api.technique_extras import HUNT_TARGETS, markdown_html
from ttpscope.detect.convert import convert_rules
from ttpscope.detect.rules import load_rules
from ttpscope.kb.atomics import load_atomics

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "examples" / "rules"
TOKEN = "extras-token-0123456789abcdef"


@pytest.fixture(scope="module")
def atomics_dir(shared_data):
    return shared_data / "atomic-red-team" / "Indexes-CSV"


@pytest.fixture(scope="module")
def client(tmp_path_factory, atomics_dir):
    ws = tmp_path_factory.mktemp("extras") / "ws.duckdb"
    return TestClient(create_app(Settings(token=TOKEN, bundle="embedded", rules=str(RULES),
                                          atomics=str(atomics_dir), workspace=str(ws))))


def test_markdown_is_rendered_and_nothing_in_it_runs():
    out = str(markdown_html("Use [PowerShell](https://attack.mitre.org/techniques/T1059/001) and "
                            "[a site](https://example.org/x) with <code>net view</code>.(Citation: Some Report)\n\n"
                            "* one\n* two <script>alert(1)</script>\n\n[bad](javascript:alert(1)) **strong**"))
    assert '<a href="/techniques/T1059.001">PowerShell</a>' in out
    assert '<a href="https://example.org/x" rel="noreferrer">a site</a>' in out
    assert "<code>net view</code>" in out and "Citation" not in out
    assert "<ul>" in out and "<strong>strong</strong>" in out
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert 'href="javascript:' not in out


def test_technique_page_shows_rendered_description_not_markdown(client, kb):
    page = client.get("/techniques/T1003.001").text
    desc = page[page.index('id="description"'):page.index("</section>", page.index('id="description"'))]
    assert "](http" not in desc and "(Citation:" not in desc and "&lt;code&gt;" not in desc
    assert '<a href="/techniques/T1550">' in desc and "<code>procdump -ma lsass.exe lsass_dump</code>" in desc
    assert "<li>" in desc
    for url in ("/groups/G0016", "/software/S0002", "/campaigns/C0024"):
        text = client.get(url).text
        body = text[text.index('id="description"'):]
        assert '<a href="/' in body[:2000] and "](http" not in body[:4000], url


def _rules_for(technique: str) -> list[dict]:
    """The example rules tagged with the technique, read from their YAML (not through the app)."""
    tag = "attack." + technique.lower()
    out = []
    for f in sorted(RULES.glob("*.yml")):
        doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        if tag in [str(t).lower() for t in doc.get("tags") or ()]:
            out.append({"file": f.name, "title": doc["title"]})
    return out


def test_technique_page_lists_the_servers_rules_with_a_query_per_siem(client, kb):
    expected = _rules_for("T1003.001")
    assert expected, "the example rules cover LSASS memory"
    page = client.get("/techniques/T1003.001").text
    table = page[page.index('id="rules-table"'):page.index("</table>", page.index('id="rules-table"'))]
    for rule in expected:
        assert str(escape(rule["title"])) in table and rule["file"] in table
    assert str(RULES) not in page  # the server's folder is never shown
    loaded = {r.title: r for r in load_rules(str(RULES), kb=kb).rules}
    first = loaded[expected[0]["title"]]
    shown = {t: re.findall(r'<details class="query" data-target="' + t + r'">.*?</details>', table, re.S)
             for t, _ in HUNT_TARGETS}
    for target, _label in HUNT_TARGETS:
        assert len(shown[target]) >= len(expected), target
        (query, *_) = convert_rules([first], target).queries[0].queries
        assert str(escape(query)) in table, target
    gap = client.get("/techniques/T1595.001").text  # Active Scanning: no example rule
    assert "a detection gap" in gap


def test_technique_page_lists_its_atomic_red_team_tests(client, atomics_dir):
    tests = load_atomics([atomics_dir]).tests_for("T1003.001")
    assert len(tests) >= 3
    page = client.get("/techniques/T1003.001").text
    table = page[page.index('id="atomics-table"'):page.index("</table>", page.index('id="atomics-table"'))]
    assert table.count("<tr>") == len(tests) + 1  # header row + one per test
    for t in tests:
        assert t.guid in table and str(escape(t.name)) in table
    none = TestClient(create_app(Settings(token=TOKEN, bundle="embedded"))).get("/techniques/T1003.001").text
    assert "serve --atomics" in none and 'id="atomics-table"' not in none


def test_no_server_folder_in_answers_that_use_the_rules_and_atomics(client, atomics_dir):
    folders = [str(RULES), str(RULES.parent), str(atomics_dir)]
    for url in ("/techniques/T1003.001", "/techniques/T1059.001", "/api/coverage", "/?coverage=all", "/api/kb"):
        r = client.get(url)
        assert r.status_code == 200, url
        assert not [f for f in folders if f in r.text], url
