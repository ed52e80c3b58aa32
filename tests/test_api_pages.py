"""Server-rendered pages against a real app: singular route aliases, the favicon, group pages that split their
technique counts by provenance and label MISP context, N-way compare, the matrix's score legend."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from ttpscope.api import Settings, create_app
from ttpscope.api.matrix import gradient, ink

TOKEN = "pages-token-0123456789abcdef"
CELL = re.compile(r'<li class="(?:cell|sub) marked[^"]*" data-id="(T[\d.]+)"\s*style="background:(#[0-9a-f]{6})"')


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    ws = tmp_path_factory.mktemp("pages") / "ws.duckdb"
    return TestClient(create_app(Settings(token=TOKEN, bundle="embedded", workspace=str(ws))))


@pytest.mark.parametrize("singular, plural", [("/technique/T1003.001", "/techniques/T1003.001"),
                                              ("/group/APT29", "/groups/APT29"),
                                              ("/campaign/C0024", "/campaigns/C0024"),
                                              ("/tactic/TA0006", "/tactics/TA0006")])
def test_singular_routes_redirect_to_the_page(client, singular, plural):
    r = client.get(singular, follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == plural
    assert client.get(singular).status_code == 200
    assert client.get("/software/S0002").status_code == 200  # one spelling for both
    assert client.get("/technique/T9999").status_code == 404


def test_favicon_is_served_and_linked(client):
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml") and b"<svg" in r.content
    assert client.get("/static/favicon.svg").status_code == 200
    assert '<link rel="icon" href="/static/favicon.svg"' in client.get("/").text


def test_group_page_splits_counts_by_provenance_and_labels_misp_context(client, kb):
    page = client.get("/groups/APT28").text
    vias: dict[str, set[str]] = {}
    for e in kb.group_profile("G0007"):
        vias.setdefault(e.technique_id, set()).add(e.via)
    direct = sum(1 for v in vias.values() if "direct" in v)
    campaign = sum(1 for v in vias.values() if "direct" not in v and "campaign" in v)
    software = len(vias) - direct - campaign
    assert direct and software and direct + campaign + software == len(vias)
    counts = re.search(r'id="technique-counts"><strong>(\d+)</strong> used directly, <strong>(\d+)</strong> only '
                       r'through its campaigns, <strong>(\d+)</strong> only through its software', page)
    assert counts and tuple(map(int, counts.groups())) == (direct, campaign, software)
    context = page[page.index('id="misp-context"'):page.index("</dl>", page.index('id="misp-context"'))]
    assert "<dt>Suspected state sponsor</dt>" in context and "<dt>Attribution confidence</dt><dd>50%</dd>" in context
    assert "_" not in re.sub(r"<dd>.*?</dd>", "", context)  # no raw MISP keys


def test_compare_three_groups_highlights_what_all_share(client, kb):
    sets = [kb.group_techniques(g) for g in ("G0016", "G0007", "G0096")]
    r = client.get("/compare", params={"a": "group:APT29", "b": "group:APT28", "c": "group:APT41"})
    assert r.status_code == 200
    in_all = sets[0] & sets[1] & sets[2]
    assert f'<strong id="shared-count">{len(in_all)}</strong> techniques in all 3' in r.text
    listed = set(re.findall(r'<li><a href="/techniques/(T[\d.]+)">', r.text[r.text.index('id="in-all"'):
                                                                            r.text.index("</ul>", r.text.index('id="in-all"'))]))
    assert listed == in_all
    drawn = dict(CELL.findall(r.text))
    assert set(drawn) == sets[0] | sets[1] | sets[2]
    for tid, colour in drawn.items():  # colour = how many of the three have it; the overlap darkest
        assert colour == gradient(sum(tid in s for s in sets) / 3), tid
    several = sum(1 for t in sets[0] | sets[1] | sets[2] if sum(t in s for s in sets) >= 2)
    table = r.text[r.text.index('id="overlap-table"'):r.text.index("</table>", r.text.index('id="overlap-table"'))]
    assert table.count('<tr class="in-all">') == len(in_all) and table.count("<tr") - 1 == several
    assert r.text.count("↔") == 3  # every pair's similarity
    four = client.get("/compare", params={"a": "group:APT29", "b": "group:APT28", "c": "group:APT41",
                                          "d": "software:S0002"})
    assert four.status_code == 200 and "techniques in all 4" in four.text
    two = client.get("/compare", params={"a": "group:APT29", "b": "group:APT28"})  # the two-way URL unchanged
    assert f'<strong id="shared-count">{len(sets[0] & sets[1])}</strong> techniques in both' in two.text


def test_score_gradient_tells_strengths_apart_and_keeps_text_readable():
    colours = [gradient(s / 10) for s in range(11)]
    assert len(set(colours)) == 11 and gradient(-1) == colours[0] and gradient(2) == colours[-1]
    assert ink(gradient(1.0)) == "#ffffff" and ink(gradient(0.1)) != "#ffffff"


def test_compare_three_uploaded_layers(client, kb):
    import orjson

    from ttpscope.export.layers import make_layer

    ids = sorted(kb.group_techniques("G0016"))
    layers = {key: make_layer(f"layer {key}", kb, [{"id": t, "score": 1} for t in part])
              for key, part in (("a", ids[:30]), ("b", ids[10:40]), ("c", ids[20:50]))}
    files = {f"layer_{k}": (f"{k}.json", orjson.dumps(v), "application/json") for k, v in layers.items()}
    r = client.post("/compare", files=files)
    assert r.status_code == 200
    assert '<strong id="shared-count">10</strong> techniques in all 3' in r.text  # ids[20:30]
    bad = client.post("/compare", data={"c": "group:APT41"}, files={"layer_a": files["layer_a"]})
    assert bad.status_code == 422 and "each side needs" in bad.text
