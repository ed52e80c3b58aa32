"""Review before sharing through the web API and the case page (issue 16): GET/POST /api/cases/{id}/review,
the token on writes, 4xx on bad ids, ``?reviewed_only=1`` exports and the STIX bundle's review marks, on the
example evidence investigated into a real DuckDB workspace."""

from __future__ import annotations

import copy
import time
import re
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from stix2validator import ValidationOptions, validate_instance

from ttpscope.api import Settings, create_app
from ttpscope.investigate import investigate
from ttpscope.store import Workspace

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TOKEN = "review-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = tmp_path_factory.mktemp("review-ws") / "workspace.duckdb"
    result = investigate([EXAMPLES / "evidence"], rules=EXAMPLES / "rules", name="web review",
                         workspace=Workspace(path), formats=[])
    client = TestClient(create_app(Settings(token=TOKEN, bundle="embedded", workspace=str(path),
                                            rules=str(EXAMPLES / "rules"))))
    return client, result.case.id


def uses(bundle: dict) -> dict[str, dict]:
    ids = {o["id"]: r["external_id"] for o in bundle["objects"] if o["type"] == "attack-pattern"
           for r in o["external_references"] if r["source_name"] == "mitre-attack"}
    return {ids[o["target_ref"]]: o for o in bundle["objects"] if o["type"] == "relationship"
            and o["relationship_type"] == "uses" and o["target_ref"] in ids and o["source_ref"].startswith("campaign--")}


def test_review_through_the_api(setup):
    client, cid = setup
    listed = client.get(f"/api/cases/{cid}/review")
    assert listed.status_code == 200
    found = listed.json()
    assert {"T1490", "T1003.001", "T1059.001"} <= {t["technique_id"] for t in found["techniques"]}
    ips = [i for i in found["iocs"] if i["type"] in ("ipv4", "ip", "ipv4-addr")]
    assert len(ips) >= 2
    rejected_ip, kept_ip = ips[0], ips[1]

    # writes need the token; bad ids and bad bodies are 4xx with a plain reason
    no_token = client.post(f"/api/cases/{cid}/review", json={"action": "reject", "ids": ["T1490"], "by": "eve"})
    assert no_token.status_code in (401, 403)
    bad_id = client.post(f"/api/cases/{cid}/review", headers=AUTH,
                         json={"action": "reject", "ids": ["T1490", "deadbeefcafe"], "by": "alice"})
    assert bad_id.status_code == 422 and "deadbeefcafe" in bad_id.json()["detail"]
    assert "Traceback" not in bad_id.text and "/work" not in bad_id.text
    assert client.post(f"/api/cases/{cid}/review", headers=AUTH,
                       json={"action": "reject", "ids": ["T1490"]}).status_code == 422  # who decides?
    assert client.post(f"/api/cases/{cid}/review", headers=AUTH,
                       json={"action": "maybe", "ids": ["T1490"], "by": "a"}).status_code == 422
    assert client.post("/api/cases/nope/review", headers=AUTH,
                       json={"action": "reject", "ids": ["T1490"], "by": "a"}).status_code == 404
    assert client.get(f"/api/cases/{cid}/review").json()["techniques"] == found["techniques"]  # nothing written

    for body in ({"action": "reject", "ids": [rejected_ip["target"]], "by": "alice", "note": "sinkhole"},
                 {"action": "reject", "technique": "T1490", "by": "alice", "note": "backup job"},
                 {"action": "confirm", "ids": ["T1003.001"], "by": "bob", "confidence": 75},
                 {"action": "confirm", "ioc": [kept_ip["value"]], "by": "bob"}):
        done = client.post(f"/api/cases/{cid}/review", headers=AUTH, json=body)
        assert done.status_code == 200, done.text
    added = client.post(f"/api/cases/{cid}/review", headers=AUTH,
                        json={"action": "add", "technique": "T1105", "evidence": "certutil download seen in EDR",
                              "host": "WS-FIN-07", "by": "carol"})
    assert added.status_code == 201, added.text
    assert added.json()["observation"]["source_kind"] == "manual"
    assert client.post(f"/api/cases/{cid}/review", headers=AUTH,
                       json={"action": "add", "technique": "T9999", "evidence": "x", "by": "c"}).status_code == 422

    after = client.get(f"/api/cases/{cid}/review").json()
    states = {t["technique_id"]: t for t in after["techniques"]}
    assert states["T1490"]["state"] == "rejected" and states["T1003.001"]["state"] == "confirmed"
    assert states["T1105"]["states"]["confirmed"] == 1
    assert {i["target"]: i["state"] for i in after["iocs"]}[rejected_ip["target"]] == "rejected"

    full = client.get(f"/api/cases/{cid}/export/stix")
    assert full.status_code == 200
    bundle = full.json()
    assert validate_instance(copy.deepcopy(bundle), ValidationOptions(version="2.1")).is_valid
    rels = uses(bundle)
    assert "T1490" not in rels and rels["T1003.001"]["confidence"] == 75
    assert rels["T1059.001"]["labels"] == ["ttpscope-review:unreviewed"]
    patterns = {o["pattern"]: o for o in bundle["objects"] if o["type"] == "indicator"}
    assert not [p for p in patterns if rejected_ip["value"] in p]
    assert patterns[f"[ipv4-addr:value = '{kept_ip['value']}']"]["labels"] == ["ttpscope-review:confirmed"]

    only = client.get(f"/api/cases/{cid}/export/stix", params={"reviewed_only": 1})
    assert only.status_code == 200
    confirmed = only.json()
    assert validate_instance(copy.deepcopy(confirmed), ValidationOptions(version="2.1")).is_valid
    assert set(uses(confirmed)) == {"T1003.001", "T1105"}
    assert [o["name"] for o in confirmed["objects"] if o["type"] == "indicator"] == [kept_ip["value"]]
    case_json = orjson.loads(client.get(f"/api/cases/{cid}/export/json", params={"reviewed_only": 1}).content)
    assert {o["technique_id"] for o in case_json["observations"]} == {"T1003.001", "T1105"}
    # the case page's analysis leaves the rejected technique out too
    analysis = client.get(f"/api/cases/{cid}/analysis").json()
    assert "T1490" not in {t["id"] for t in analysis["techniques"]}


def test_case_page_has_keyboard_usable_review_forms(setup):
    client, cid = setup
    page = client.get(f"/cases/{cid}")
    assert page.status_code == 200
    html = page.text
    assert 'id="review"' in html and 'data-review="/api/cases/' in html
    forms = re.findall(r'<form class="review"[^>]*data-target="([^"]+)"', html)
    assert "T1003.001" in forms and any(t.startswith("ioc:") for t in forms)
    # native controls with labels, a submit button per form; no inline script under the strict CSP
    assert re.search(r"<label>Decision <select name=\"action\">", html) and "<button type=\"submit\">Save" in html
    assert 'id="review-add"' in html and 'name="evidence"' in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) and " onclick=" not in html
    assert "script-src 'self'" in page.headers.get("content-security-policy", "") or \
        "unsafe-inline" not in page.headers.get("content-security-policy", "").split("script-src")[-1].split(";")[0]
    js = client.get("/static/app.js").text
    assert "form[data-review]" in js and "Bearer" in js


def wait_for_job(client, job_id: str, limit_s: float = 600) -> dict:
    deadline = time.monotonic() + limit_s
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def test_uploads_into_an_existing_case_need_a_mode(setup):
    client, _ = setup
    dc01 = (EXAMPLES / "evidence" / "dc01.jsonl").read_bytes()
    fs01 = (EXAMPLES / "evidence" / "fs01.jsonl").read_bytes()

    def upload(mode: str | None, *files: tuple[str, bytes]) -> dict:
        data = {"name": "grown upload", **({"mode": mode} if mode else {})}
        r = client.post("/api/cases", headers=AUTH, data=data,
                        files=[("file", (n, body, "application/json")) for n, body in files])
        assert r.status_code == 202, r.text
        return wait_for_job(client, r.json()["job"]["id"])

    first = upload(None, ("dc01.jsonl", dc01))
    assert first["state"] == "done", first
    refused = upload(None, ("dc01.jsonl", dc01))
    assert refused["state"] == "failed" and "already exists" in refused["error"]
    grown = upload("add", ("dc01-copy.jsonl", dc01), ("fs01.jsonl", fs01))
    assert grown["state"] == "done", grown
    assert grown["result"]["case_id"] == first["result"]["case_id"]
    notes = {s["path"]: s["note"] for s in grown["result"]["sources"]}
    assert notes["dc01-copy.jsonl"].startswith("skipped: already in the case") and not notes["fs01.jsonl"]
    history = client.get(f"/api/cases/{first['result']['case_id']}").json()["meta"]["history"]
    assert [h["action"] for h in history] == ["created", "added"]
