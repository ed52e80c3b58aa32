"""REST endpoints and pages over the knowledge base, in process (the live-server tests are elsewhere)."""

from __future__ import annotations

import re

import orjson
import pytest
from fastapi.testclient import TestClient

from ttpscope.api import Settings, create_app
from ttpscope.export.layers import make_layer, validate_layer
from ttpscope.kb import views

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def client(kb):
    return TestClient(create_app(Settings(token=TOKEN, bundle="embedded")))


def marked_cells(html: str) -> set[str]:
    return set(re.findall(r'class="(?:cell|sub) marked[^"]*" data-id="(T[\d.]+)"', html))


def test_technique_endpoint_answers_like_the_cli_view(client, kb):
    got = client.get("/api/techniques/T1003.001")
    assert got.status_code == 200
    assert got.json() == orjson.loads(orjson.dumps(views.technique_view(kb, "T1003.001"), default=str))
    assert got.json()["attack_version"] == "15.1" and got.json()["domain"] == "enterprise"


def test_technique_by_revoked_id_names_the_replacement(client, kb):
    old, (new, _) = next((o, r) for o, r in sorted(kb.revoked.items()) if r[0] and o.startswith("T"))
    body = client.get(f"/api/techniques/{old}").json()
    assert body["id"] == new and body["requested"] == old and body["note"]


def test_unknown_objects_are_404_with_a_reason(client):
    for url in ("/api/techniques/T9999", "/api/groups/no-such-actor", "/api/software/nope", "/api/campaigns/C9999",
                "/api/tactics/nope"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert r.json()["detail"]


def test_group_by_misp_alias_and_lists(client, kb):
    assert client.get("/api/groups/Cozy Bear").json()["id"] == "G0016"
    listed = {g["id"] for g in client.get("/api/groups").json()["groups"]}
    assert listed == {g.id for g in kb.live_groups()}
    assert client.get("/api/software/S0002").json()["name"] == "Mimikatz"
    assert client.get("/api/campaigns/C0024").json()["id"] == "C0024"
    assert [t["shortname"] for t in client.get("/api/tactics").json()["tactics"]] == kb.tactic_order()


def test_search_ranks_and_validates(client):
    hits = client.get("/api/search", params={"q": "credential dumping", "kind": "technique"}).json()["results"]
    assert hits[0]["id"] == "T1003" and all(h["kind"] == "technique" for h in hits)
    assert client.get("/api/search", params={"q": "x", "limit": 0}).status_code == 422
    assert client.get("/api/search").status_code == 422


def test_matrix_places_every_live_technique_under_each_of_its_tactics(client, kb):
    m = client.get("/api/matrix").json()
    assert [c["shortname"] for c in m["tactics"]] == kb.tactic_order()
    placed = {(t["id"], c["shortname"]) for c in m["tactics"] for t in c["techniques"]}
    placed |= {(s["id"], c["shortname"]) for c in m["tactics"] for t in c["techniques"] for s in t["subtechniques"]}
    expected = {(t.id, tac) for t in kb.live_techniques() for tac in t.tactics}
    assert placed == expected


def test_matrix_coloured_by_group_marks_exactly_its_profile(client, kb):
    m = client.get("/api/matrix", params={"group": "APT29"}).json()
    assert set(m["marks"]) == kb.group_techniques("G0016")
    direct = kb.group_techniques("G0016", via={"direct"})
    assert all(m["marks"][t]["score"] == 1.0 for t in direct)
    assert m["coloured_by"]["id"] == "G0016"


def test_group_layer_is_a_valid_navigator_layer(client, kb):
    r = client.get("/api/groups/G0007/layer")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    layer = r.json()
    assert validate_layer(layer, kb) == []
    assert {c["techniqueID"] for c in layer["techniques"] if "score" in c} == kb.group_techniques("G0007")


def test_layer_read_round_trips_and_rejects_bad_cells(client, kb):
    layer = make_layer("t", kb, [{"id": "T1059.001", "score": 3}, {"id": "T1003", "score": 1}])
    r = client.post("/api/layers/read", files={"file": ("l.json", orjson.dumps(layer), "application/json")})
    assert r.status_code == 200
    marks = r.json()["marks"]
    assert {k.split("|")[0] for k in marks} == {"T1059.001", "T1003"}
    assert max(m["score"] for m in marks.values()) == 1.0
    layer["techniques"].append({"techniqueID": "X1", "score": 1})
    bad = client.post("/api/layers/read", files={"file": ("bad.json", orjson.dumps(layer), "application/json")})
    assert bad.status_code == 422 and "bad.json" in bad.json()["detail"] and "X1" in bad.json()["detail"]
    junk = client.post("/api/layers/read", files={"file": ("junk.json", b"{not json", "application/json")})
    assert junk.status_code == 422 and "not valid JSON" in junk.json()["detail"]


def test_home_page_is_the_matrix_and_colours_by_group(client, kb):
    plain = client.get("/")
    assert plain.status_code == 200
    for tactic in kb.tactic_list():
        assert tactic.name in plain.text
    assert marked_cells(plain.text) == set()
    coloured = client.get("/", params={"group": "G0016"})
    assert marked_cells(coloured.text) == kb.group_techniques("G0016")


def test_matrix_coloured_by_uploaded_layer_escapes_its_text(client, kb):
    layer = make_layer("<script>alert(1)</script>", kb,
                       [{"id": "T1566.001", "score": 1, "comment": "<img src=x onerror=alert(2)>"}])
    r = client.post("/", files={"layer": ("evil.json", orjson.dumps(layer), "application/json")})
    assert r.status_code == 200
    assert marked_cells(r.text) == {"T1566.001"}
    assert "<script>alert(1)" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "<img src=x" not in r.text
    bad = client.post("/", files={"layer": ("x.json", b"[]", "application/json")})
    assert bad.status_code == 422 and "not a Navigator layer" in bad.text


def test_kb_pages_render(client):
    for url, needle in (("/techniques/T1059.001", "PowerShell"), ("/groups/APT28", "G0007"),
                        ("/software/S0002", "Mimikatz"), ("/campaigns/C0024", "C0024"),
                        ("/tactics/credential-access", "Credential Access"), ("/groups", "APT29"),
                        ("/software", "Mimikatz"), ("/campaigns", "C0024"), ("/search?q=mimikatz", "S0002")):
        r = client.get(url)
        assert r.status_code == 200 and needle in r.text, url
    missing = client.get("/techniques/T9999")
    assert missing.status_code == 404 and "<html" in missing.text


def test_compare_groups_highlights_the_overlap(client, kb):
    r = client.get("/compare", params={"a": "group:APT29", "b": "group:APT28"})
    shared = kb.group_techniques("G0016") & kb.group_techniques("G0007")
    assert r.status_code == 200
    assert f'<strong id="shared-count">{len(shared)}</strong>' in r.text
    assert marked_cells(r.text) == kb.group_techniques("G0016") | kb.group_techniques("G0007")
    bad = client.get("/compare", params={"a": "planet:Mars", "b": "group:APT28"})
    assert bad.status_code == 422 and "kind:name" in bad.text


def test_compare_a_layer_with_a_group(client, kb):
    layer = make_layer("mine", kb, [{"id": t, "score": 1} for t in sorted(kb.group_techniques("G0016"))[:10]])
    r = client.post("/compare", data={"b": "group:G0016"},
                    files={"layer_a": ("mine.json", orjson.dumps(layer), "application/json")})
    assert r.status_code == 200 and '<strong id="shared-count">10</strong>' in r.text


def test_openapi_lists_the_endpoints(client):
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/techniques/{technique_id}", "/api/groups/{group}", "/api/software/{software}",
              "/api/campaigns/{campaign}", "/api/search", "/api/matrix", "/api/cases", "/api/cases/{case_id}"):
        assert p in paths, p
    assert "delete" in paths["/api/cases/{case_id}"] and "post" in paths["/api/cases"]


def test_pages_load_nothing_from_other_sites(client):
    for url in ("/", "/api/docs", "/groups/APT29", "/techniques/T1059", "/compare", "/upload", "/cases"):
        html = client.get(url).text
        assets = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="([^"]+)"', html)
        assert assets and all(a.startswith("/") for a in assets), (url, assets)
    docs = client.get("/api/docs").text
    assert "GET /api/techniques/{technique_id}" in docs and "POST /api/cases" in docs


def test_compare_shows_the_overlap_analysis_similarity(client, kb):
    from ttpscope.analyze.overlap import overlap

    r = client.get("/compare", params={"a": "group:APT29", "b": "campaign:C0024"})
    a, b = sorted(kb.group_techniques("G0016")), sorted(kb.campaign_techniques("C0024"))
    expected = overlap([{"name": "A", "techniques": a}, {"name": "B", "techniques": b}], kb).pairs[0]["similarity"]
    assert f'<strong id="similarity">{expected}</strong>' in r.text


def test_an_ics_server_draws_the_ics_matrix(ics_kb):
    c = TestClient(create_app(Settings(token=TOKEN, domain="ics", bundle="embedded")))
    m = c.get("/api/matrix").json()
    assert m["domain"] == "ics" and [t["shortname"] for t in m["tactics"]] == ics_kb.tactic_order()
    gid = sorted(g.id for g in ics_kb.live_groups())[0]
    page = c.get("/", params={"group": gid}).text
    assert marked_cells(page) == ics_kb.group_techniques(gid)
    layer = c.get(f"/api/groups/{gid}/layer").json()
    assert layer["domain"] == "ics-attack" and validate_layer(layer, ics_kb) == []
