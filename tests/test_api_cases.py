"""Cases, analyses and exports over a real DuckDB workspace: the API and the case page agree with the library."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from fastapi.testclient import TestClient

from ttpscope.api import Settings, create_app
from ttpscope.export.layers import validate_layer
from ttpscope.model import Case, Observation
from ttpscope.store import Workspace

TOKEN = "cases-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# An intrusion from phishing to exfiltration on two hosts; one piece of evidence is hostile HTML.
STEPS = ["T1566.001", "T1204.002", "T1059.001", "T1547.001", "T1003.001", "T1021.002", "T1560.001", "T1567.002"]
HOSTILE = "<script>alert('case')</script><img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, kb):
    path = tmp_path_factory.mktemp("ws") / "workspace.duckdb"
    ws = Workspace(path)
    t0 = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
    obs = [Observation(t, "manual", f"analyst-note-{i}", evidence={"sentence": f"{HOSTILE} step {t}"},
                       time=t0 + timedelta(minutes=37 * i), host=("ws-07", "dc-01")[i % 2], confidence=0.6 + i / 20)
           for i, t in enumerate(STEPS)]
    case = ws.save_case(Case("intrusion <b>42</b>", obs))
    other = ws.save_case(Case("other", [Observation("T1059.001", "manual", "x")]))
    client = TestClient(create_app(Settings(token=TOKEN, bundle="embedded", workspace=str(path))))
    return client, ws, case, other


def test_list_and_get_cases(setup):
    client, ws, case, other = setup
    listed = client.get("/api/cases").json()["cases"]
    assert {c["id"] for c in listed} == {case.id, other.id}
    got = client.get(f"/api/cases/{case.id}").json()
    assert [o["technique_id"] for o in got["observations"]] == STEPS
    assert client.get("/api/cases/other").json()["id"] == other.id  # by name too
    missing = client.get("/api/cases/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_analyses_answer_like_the_library(setup, kb):
    from ttpscope.analyze.attribution import attribute
    from ttpscope.analyze.lifecycle import lifecycle

    client, ws, case, _ = setup
    by_ids = client.get("/api/attribution", params={"techniques": ",".join(STEPS), "top": 5}).json()
    expected = orjson.loads(orjson.dumps(attribute(STEPS, kb, top=5).to_dict(), default=str))
    assert [g["group_id"] for g in by_ids["groups"]] == [g["group_id"] for g in expected["groups"]]
    assert by_ids["groups"][0]["explained"] and "hunting_leads" in by_ids["groups"][0]
    by_case = client.get("/api/lifecycle", params={"case": case.id}).json()
    assert by_case["reading"] == lifecycle(ws.get_case(case.id), kb).reading
    assert [t["shortname"] for t in by_case["tactics"]][-1] == "exfiltration"
    ant = client.get("/api/anticipation", params={"techniques": "T1566.001 T1059.001", "top": 5}).json()
    assert len(ant["predictions"]) == 5
    assert not {p["technique_id"] for p in ant["predictions"]} & {"T1566.001", "T1059.001"}
    ov = client.get("/api/overlap", params=[("item", f"case:{case.id}"), ("item", "G0016"), ("item", "C0024")]).json()
    assert len(ov["pairs"]) == 3


def test_analysis_input_errors_are_4xx(setup):
    client, *_ = setup
    both = client.get("/api/attribution", params={"techniques": "T1059", "case": "x"})
    assert both.status_code == 422 and "exactly one" in both.json()["detail"]
    bad = client.get("/api/attribution", params={"techniques": "T1059,Tfoo"})
    assert bad.status_code == 422 and "Tfoo" in bad.json()["detail"]
    assert client.get("/api/lifecycle", params={"case": "no-such-case"}).status_code == 404
    assert client.get("/api/overlap", params={"item": "G0016"}).status_code == 422


def test_exports_validate(setup, kb):
    import stix2

    client, _, case, _ = setup
    layer = client.get(f"/api/cases/{case.id}/layer")
    assert layer.status_code == 200 and "attachment" in layer.headers["content-disposition"]
    assert validate_layer(layer.json(), kb) == []
    assert {c["techniqueID"] for c in layer.json()["techniques"] if "score" in c} == set(STEPS)
    bundle = stix2.parse(client.get(f"/api/cases/{case.id}/stix").text, allow_custom=True)
    patterns = {ref["external_id"] for o in bundle.objects if o.type == "attack-pattern"
                for ref in o.external_references if ref.source_name == "mitre-attack"}
    assert set(STEPS) <= patterns
    report = client.get(f"/api/cases/{case.id}/report")
    assert report.status_code == 200 and "sandbox" in report.headers["content-security-policy"]
    assert HOSTILE not in report.text and "&lt;script&gt;alert(&#39;case&#39;)" in report.text
    assert client.get(f"/api/cases/{case.id}/export/pdf").status_code == 422


def test_case_page_shows_every_section_and_escapes_evidence(setup, kb):
    client, _, case, _ = setup
    html = client.get(f"/cases/{case.id}").text
    assert HOSTILE not in html and "&lt;script&gt;alert(&#39;case&#39;)&lt;/script&gt;" in html
    assert "<b>42</b>" not in html and "intrusion &lt;b&gt;42&lt;/b&gt;" in html
    for section in ("summary", "timeline", "heatmap", "attribution", "predictions", "gaps", "iocs", "evidence"):
        assert f'<section id="{section}">' in html
    assert html.count("<circle") >= len(STEPS)  # timeline figure: one dot per timed step (+ legend)
    heat = set(re.findall(r'class="(?:cell|sub) marked[^"]*" data-id="(T[\d.]+)"', html))
    assert heat == set(STEPS)
    assert 'id="attribution-table"' in html and 'id="predictions-table"' in html
    # sections without their input say so instead of pretending
    assert "no report was read" in html


def test_compare_a_case_with_a_group(setup, kb):
    client, _, case, _ = setup
    r = client.get("/compare", params={"a": f"case:{case.id}", "b": "group:APT28"})
    shared = set(STEPS) & kb.group_techniques("G0007")
    assert f'<strong id="shared-count">{len(shared)}</strong>' in r.text


def test_delete_needs_the_token_then_removes(setup):
    client, ws, _, other = setup
    assert client.delete(f"/api/cases/{other.id}").status_code == 401
    assert ws.has_case(other.id)
    gone = client.delete(f"/api/cases/{other.id}", headers=AUTH)
    assert gone.status_code == 200 and gone.json()["deleted"] == other.id
    assert not ws.has_case(other.id)
    assert client.delete(f"/api/cases/{other.id}", headers=AUTH).status_code == 404


def test_jobs_run_in_the_background_and_report_failures(setup):
    client, *_ = setup
    app = client.app

    def slow(progress):
        for i in range(3):
            progress(f"step {i}", i / 3)
            time.sleep(0.05)
        return {"case_id": "x"}

    def broken(progress):
        from ttpscope.errors import InputError

        raise InputError("upload.txt", None, "nothing usable")

    ok, bad = app.state.jobs.submit("t", "slow", slow), app.state.jobs.submit("t", "broken", broken)
    assert client.get(f"/api/jobs/{ok.id}").status_code == 200
    for _ in range(100):
        states = [client.get(f"/api/jobs/{j.id}").json() for j in (ok, bad)]
        if all(s["state"] in ("done", "failed") for s in states):
            break
        time.sleep(0.05)
    assert states[0]["state"] == "done" and states[0]["result"] == {"case_id": "x"} and states[0]["fraction"] == 1.0
    assert states[1]["state"] == "failed" and states[1]["error"] == "upload.txt: nothing usable"
    assert client.get("/api/jobs/unknown").status_code == 404


def test_coverage_uses_the_server_rules_and_colours_the_matrix(kb, tmp_path, monkeypatch):
    from pathlib import Path

    from ttpscope.analyze.coverage import coverage_report
    from ttpscope.analyze.profile import profile_from_groups
    from ttpscope.detect.rules import load_rules

    rules = Path(__file__).resolve().parents[1] / "examples" / "rules"
    client = TestClient(create_app(Settings(token=TOKEN, bundle="embedded", rules=str(rules),
                                            workspace=str(tmp_path / "ws.duckdb"))))
    got = client.get("/api/coverage", params={"group": "APT29"}).json()
    expected = coverage_report(kb, load_rules(str(rules), kb=kb).rules, profile_from_groups(kb, ["APT29"]))
    assert got["coverage"] == expected["coverage"] and got["counts"] == expected["counts"]
    assert [g["id"] for g in got["gaps"]] == [g["id"] for g in expected["gaps"]]
    page = client.get("/", params={"coverage": "APT29"}).text
    detected = {t["id"] for t in expected["techniques"] if t["detected"]}
    assert detected and all(f'data-id="{t}"' in page for t in detected)
    assert "detected" in page
    monkeypatch.setenv("TTPSCOPE_HOME", str(tmp_path / "empty-home"))  # no cached SigmaHQ release here
    no_rules = TestClient(create_app(Settings(token=TOKEN, bundle="embedded",
                                              workspace=str(tmp_path / "ws2.duckdb"))))
    r = no_rules.get("/api/coverage")
    assert r.status_code == 409 and "--rules" in r.json()["detail"]


def wait_for_job(client, job_id: str, limit_s: float = 600) -> dict:
    """Poll a job until it ends (bounded, so a hung job fails the test instead of hanging it)."""
    deadline = time.monotonic() + limit_s
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


@pytest.mark.slow  # the first report investigated trains the text model (minutes on a fresh home)
def test_upload_starts_a_background_investigation_and_names_files_as_uploaded(setup):
    client, ws, *_ = setup
    r = client.post("/api/cases", headers=AUTH, data={"name": "upload test"},
                    files=[("file", ("../../etc/evil name.txt", b"The actor used PowerShell to download a payload.",
                                     "text/plain"))])
    assert r.status_code == 202
    job = wait_for_job(client, r.json()["job"]["id"])  # the first report also trains the text model
    assert job["state"] == "done", job
    assert "ttpscope-upload-" not in orjson.dumps(job).decode()  # no server temp path leaks to the user
    assert [s["path"] for s in job["result"]["sources"]] == ["evil name.txt"]
    case = ws.get_case(job["result"]["case_id"])
    assert case.name == "upload test" and "T1059.001" in case.technique_ids()


def test_upload_of_nothing_usable_fails_with_the_file_named(setup):
    client, *_ = setup
    r = client.post("/api/cases", headers=AUTH,
                    files={"file": ("broken.pdf", b"%PDF-1.4 not really a pdf", "application/pdf")})
    assert r.status_code == 202
    job = wait_for_job(client, r.json()["job"]["id"])
    assert job["state"] == "failed" and "broken.pdf" in job["error"] and "ttpscope-upload-" not in job["error"]


def test_case_page_shows_environments_and_entity_links(setup):
    from ttpscope.detect.results import observations_of
    from ttpscope.model import Detection

    client, ws, _, _ = setup
    t0 = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
    dets = [Detection(rule_id="win-logon", title="Logon", level="high", techniques=["T1078"], time=t0, host="WS-07",
                      user="CORP\\eve", src_ip="198.51.100.9", logsource="windows/security", source="ws.jsonl"),
            Detection(rule_id="aws-key", title="Key <b>made</b>", level="medium", techniques=["T1098.001"],
                      time=t0 + timedelta(minutes=5), user="eve", src_ip="198.51.100.9", account="111122223333",
                      logsource="aws/cloudtrail", source="trail.json")]
    case = ws.save_case(Case("cross-env", observations_of(dets)), dets)
    html = client.get(f"/cases/{case.id}").text
    assert '<section id="entities">' in html and 'id="environments-table"' in html
    assert "aws/cloudtrail" in html and "windows/security" in html
    assert "Linked across aws + windows" in html and "ip:198.51.100.9" in html
    assert "<b>made</b>" not in html


def test_case_page_warns_when_the_case_is_several_intrusions(setup):
    """issue 16: the intrusions section (one cluster, or several with the attribution of each) on the case page."""
    client, ws, case, _ = setup
    assert "intrusions-note" not in client.get(f"/cases/{case.id}").text  # one intrusion: no warning
    t0, t1 = datetime(2019, 5, 1, 9, tzinfo=timezone.utc), datetime(2024, 2, 1, 9, tzinfo=timezone.utc)
    steps = [Observation(t, "manual", f"n{i}", evidence={"note": t}, time=when + timedelta(minutes=i), host=host)
             for when, host, group in ((t0, "ws1.lab-a.lan", STEPS[:4]), (t1, "srv9.lab-b.lan", STEPS[4:]))
             for i, t in enumerate(group)]
    mixed = ws.save_case(Case("two labs", steps))
    html = client.get(f"/cases/{mixed.id}").text
    assert 'id="intrusions-note"' in html and "This looks like more than one intrusion" in html
    assert "C1 2019-05-01 to 2019-05-01" in html and "C2 2024-02-01 to 2024-02-01" in html
