"""Feeds through `ttpscope serve` (a real server on loopback): the cases as a TAXII 2.1 collection pulled with
taxii2-client and by a second ttpscope, the feed endpoints and page, syncs on a schedule; and sightings in
every output of an investigation (report.md, report.html, the case page, the STIX bundle, the run summary)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import httpx
import orjson
import pytest
import requests
from typer.testing import CliRunner

from feeds_data import NOW, indicator, ts
from ttpscope.api.launch import served
from ttpscope.feeds import FeedStore, add_feed, sync_feed
from ttpscope.model import Case, Observation
from ttpscope.store import Workspace

TOKEN = "feeds-serve-token-0123456789"
RULE = """\
title: Whoami run
id: 30000000-0000-0000-0000-0000000000f1
level: medium
tags: [attack.discovery, attack.t1033]
logsource: {category: process_creation, product: windows}
detection:
    sel:
        Image|endswith: '\\\\whoami.exe'
    condition: sel
"""


def _bundle(path, objs):
    path.write_text(json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objs}))


def _workspace_with_cases(tmp_path):
    """Two stored cases; the first with an indicator sighting from a feed."""
    ws_path = tmp_path / "ws.duckdb"
    ws = Workspace(ws_path)
    first = ws.save_case(Case("op-alpha", [Observation("T1059.001", "manual", "note-1"),
                                           Observation("T1003.001", "manual", "note-2")]))
    ws.save_case(Case("op-beta", [Observation("T1566.001", "manual", "note-3")]))
    ind = indicator("203.0.113.9", oid="indicator--0a1b2c3d-0000-4000-8000-00000000a001")
    _bundle(tmp_path / "iocs.json", [ind])
    store = FeedStore(ws_path)
    add_feed("iocs", "bundle", str(tmp_path / "iocs.json"), store)
    assert sync_feed("iocs", store).new == 1
    store.save_sightings([{"feed": "iocs", "indicator_id": ind["id"], "source": "net.jsonl", "host": "WS-9",
                           "value": "203.0.113.9", "first_seen": NOW - timedelta(hours=3),
                           "last_seen": NOW - timedelta(hours=1), "count": 4}], first.id)
    return ws_path, first, ind


def _expected_objects(ws_path):
    """What the collection must hold: every case's STIX export, computed here with the library."""
    from ttpscope.export.stix import case_bundle
    from ttpscope.investigate.analysis import analyse_stored_case
    from ttpscope.kb import load_kb

    kb = load_kb("enterprise", "embedded")
    ws = Workspace(ws_path)
    out = {}
    for row in ws.list_cases():
        for obj in case_bundle(analyse_stored_case(ws, row["id"], kb), kb)["objects"]:
            out.setdefault((obj["id"], obj.get("modified") or obj.get("created") or ""), obj)
    return out


def test_cases_are_a_taxii_collection_pulled_by_taxii2_client_and_by_ttpscope(tmp_path, monkeypatch):
    from taxii2client.common import TokenAuth
    from taxii2client.v21 import Collection, Server, as_pages

    ws_path, first, ind = _workspace_with_cases(tmp_path)
    expected = _expected_objects(ws_path)
    assert any(o["type"] == "sighting" and o["sighting_of_ref"] == ind["id"] for o in expected.values())
    with served(tmp_path / "home", TOKEN, extra_args=("--bundle", "embedded", "--workspace", str(ws_path)),
                log=tmp_path / "server.log") as url:
        # no token, a wrong one: refused with a TAXII error, never a page
        bare = httpx.get(f"{url}/taxii2/", headers={"Accept": "application/taxii+json;version=2.1"})
        assert bare.status_code == 401 and bare.json()["http_status"] == "401"
        assert httpx.get(f"{url}/taxii2/", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}).status_code == 401
        with pytest.raises(requests.HTTPError, match="401"):
            Server(f"{url}/taxii2/", auth=TokenAuth("wrong-token-xxxxxxxx")).refresh()

        server = Server(f"{url}/taxii2/", auth=TokenAuth(TOKEN))
        assert server.title == "ttpscope" and len(server.api_roots) == 1
        root = server.api_roots[0]
        assert "application/taxii+json;version=2.1" in root.versions
        [coll] = root.collections
        assert coll.can_read and not coll.can_write

        # every object, in pages of 7 (next followed with the original filters), each once
        pulled = []
        pages = 0
        for envelope in as_pages(coll.get_objects, per_request=7, version="all"):
            pages += 1
            pulled += envelope.get("objects", [])
        assert pages >= len(expected) // 7
        keys = [(o["id"], o.get("modified") or o.get("created") or "") for o in pulled]
        assert len(keys) == len(set(keys))
        assert set(keys) == set(expected)  # every version (the producer identity has one per case)
        latest = [o for env in as_pages(coll.get_objects, per_request=50) for o in env.get("objects", [])]
        assert sorted(o["id"] for o in latest) == sorted({k[0] for k in keys})  # by default the last version
        sighting = next(o for o in pulled if o["type"] == "sighting" and o["sighting_of_ref"] == ind["id"])
        assert sighting["count"] == 4 and sighting["where_sighted_refs"]
        hosts = {o["id"]: o["name"] for o in pulled if o["type"] == "identity"}
        assert hosts[sighting["where_sighted_refs"][0]] == "WS-9"
        assert any(o["id"] == ind["id"] for o in pulled)  # the sighted indicator comes along

        # filters: type, id, and HTTP basic with the token as password (clients that only do basic)
        basic = Collection(coll.url, user="anyone", password=TOKEN)
        only = basic.get_objects(type="attack-pattern")["objects"]
        assert {o["type"] for o in only} == {"attack-pattern"}
        assert len(only) == sum(1 for o in expected.values() if o["type"] == "attack-pattern")
        assert [o["id"] for o in basic.get_objects(id=ind["id"])["objects"]] == [ind["id"]]
        manifest = [m for env in as_pages(coll.get_manifest, per_request=50) for m in env.get("objects", [])]
        assert {m["id"] for m in manifest} == {k[0] for k in expected}

        # added_after resumes strictly after the last date sent (dates are distinct, so nothing is skipped)
        h = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/taxii+json;version=2.1"}
        r1 = httpx.get(f"{coll.url}objects/", params={"limit": 5}, headers=h)
        last = r1.headers["X-TAXII-Date-Added-Last"]
        r2 = httpx.get(f"{coll.url}objects/", params={"added_after": last}, headers=h)
        got = [o["id"] for o in r1.json()["objects"]] + [o["id"] for o in r2.json()["objects"]]
        assert sorted(got) == sorted(o["id"] for o in latest) and r2.headers["X-TAXII-Date-Added-First"] > last
        assert httpx.get(f"{coll.url}objects/", params={"limit": "x"}, headers=h).status_code == 400
        assert httpx.get(f"{url}/taxii2/cases/collections/nope/objects/", headers=h).status_code == 404

        # a second ttpscope pulls the collection as a feed, incrementally
        monkeypatch.setenv("PEER_TOKEN", TOKEN)
        peer = FeedStore(tmp_path / "peer.duckdb")
        add_feed("peer", "taxii", coll.url, peer, token_env="PEER_TOKEN")
        r = sync_feed("peer", peer, page_size=9)
        assert not r.failed and r.rejected == 0, r.rejections
        assert r.fetched == r.new == len(latest)
        assert sync_feed("peer", peer, page_size=9).fetched == 0  # nothing new: the cursor holds
        assert [i["state"] for i in peer.indicators("peer")] == ["current"]

        # the web case page shows the sighting in its own section
        page = httpx.get(f"{url}/cases/{first.id}").text
        section = page.split('<section id="sightings">', 1)[1].split("</section>", 1)[0]
        assert "203.0.113.9" in section and "WS-9" in section and ">4<" in section


def test_feed_endpoints_page_and_scheduled_syncs(tmp_path):
    ws_path = tmp_path / "ws.duckdb"
    feed_file = tmp_path / "secret-folder" / "intel.json"
    feed_file.parent.mkdir()
    first = [indicator(f"198.51.100.{i}") for i in range(1, 4)]
    _bundle(feed_file, first)
    store = FeedStore(ws_path)
    add_feed("intel", "bundle", str(feed_file), store)
    del store
    with served(tmp_path / "home", TOKEN, extra_args=("--bundle", "embedded", "--workspace", str(ws_path),
                                                      "--sync-feeds-every", "1s"),
                log=tmp_path / "server.log") as url:
        def wait_for(pred, what, timeout=60):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                body = httpx.get(f"{url}/api/feeds").json()
                if pred(body):
                    return body
                time.sleep(0.3)
            raise AssertionError(f"{what}: {body}")

        body = wait_for(lambda b: b["feeds"][0]["last_report"] is not None, "the scheduler never synced")
        feed = body["feeds"][0]
        assert (feed["last_report"]["fetched"], feed["last_report"]["new"]) == (3, 3)
        assert body["schedule"]["every_seconds"] == 1.0 and body["schedule"]["runs"] >= 1
        assert "secret-folder" not in json.dumps(body)  # no server path reaches a client
        # the feed grows: a later scheduled run brings the new objects without anyone asking
        _bundle(feed_file, first + [indicator("198.51.100.99"), indicator("bad.example", "domain-name:value",
                                                                          valid_until=NOW - timedelta(days=1))])
        wait_for(lambda b: b["feeds"][0]["objects"] == 5, "the scheduler did not sync again")

        shown = httpx.get(f"{url}/api/feeds/intel").json()
        assert shown["indicators"] == {"current": 4, "expired": 1}
        assert httpx.get(f"{url}/api/feeds/nope").status_code == 404

        # a sync on demand needs the token
        assert httpx.post(f"{url}/api/feeds/intel/sync").status_code == 401
        r = httpx.post(f"{url}/api/feeds/intel/sync", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["report"]["fetched"] == 0 and "intel: fetched 0" in r.json()["line"]  # file unchanged

        page = httpx.get(f"{url}/feeds")
        assert page.status_code == 200 and 'id="feed-intel"' in page.text
        row = page.text.split('id="feed-intel"', 1)[1].split("</tr>", 1)[0]
        assert "current 4" in row and "expired 1" in row and "fetched" in row
        assert "secret-folder" not in page.text
        assert 'href="/feeds"' in httpx.get(f"{url}/cases").text  # the nav links the page


def _events(path):
    events = [{"@timestamp": "2026-11-30T10:00:0%dZ" % i, "Channel": "Microsoft-Windows-Sysmon/Operational",
               "EventID": 3 if dst else 1, "Computer": host, "Image": img, **({"DestinationIp": dst} if dst else {})}
              for i, (host, img, dst) in enumerate([("WS1", "C:\\Windows\\System32\\whoami.exe", None),
                                                    ("WS1", "C:\\x\\beacon.exe", "203.0.113.50"),
                                                    ("WS2", "C:\\x\\beacon.exe", "203.0.113.50"),
                                                    ("WS2", "C:\\x\\beacon.exe", "203.0.113.51")])]
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")


def test_investigation_sightings_in_every_output_and_no_feeds(tmp_path, monkeypatch):
    from stix2validator import ValidationOptions, validate_instance

    from ttpscope.cli.main import app

    monkeypatch.setenv("TTPSCOPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "whoami.yml").write_text(RULE)
    _events(tmp_path / "logs.jsonl")
    live = indicator("203.0.113.50", oid="indicator--0a1b2c3d-0000-4000-8000-00000000b001")
    expired = indicator("203.0.113.51", oid="indicator--0a1b2c3d-0000-4000-8000-00000000b002",
                        valid_from=NOW - timedelta(days=60), valid_until=NOW - timedelta(days=2))
    _bundle(tmp_path / "iocs.json", [live, expired])
    run = CliRunner().invoke
    assert run(app, ["feeds", "add", "iocs", str(tmp_path / "iocs.json"), "--kind", "bundle"]).exit_code == 0
    assert run(app, ["feeds", "sync"]).exit_code == 0

    out = tmp_path / "out"
    res = run(app, ["investigate", str(tmp_path / "logs.jsonl"), "--rules", str(tmp_path / "rules"),
                    "--name", "op-beacon", "--out", str(out)])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("Sightings"))
    assert "1 of 1 current feed indicators matched 2 event(s)" in line and "203.0.113.50 2" in line

    bundle = orjson.loads((out / "bundle.json").read_bytes())
    sightings = [o for o in bundle["objects"] if o["type"] == "sighting" and o["sighting_of_ref"] == live["id"]]
    assert sorted(s["count"] for s in sightings) == [1, 1]  # one per host
    names = {o["id"]: o["name"] for o in bundle["objects"] if o["type"] == "identity"}
    assert sorted(names[s["where_sighted_refs"][0]] for s in sightings) == ["WS1", "WS2"]
    assert all(s["first_seen"] <= s["last_seen"] for s in sightings)
    assert not any(o.get("sighting_of_ref") == expired["id"] for o in bundle["objects"])
    assert any(o["id"] == live["id"] for o in bundle["objects"])
    tech = [o for o in bundle["objects"] if o["type"] == "attack-pattern"]
    assert [t["external_references"][0]["external_id"] for t in tech] == ["T1033"]  # sightings are no TTPs
    check = validate_instance(bundle, ValidationOptions(version="2.1", strict=False))
    assert check.is_valid, [e.message for r in check.object_results for e in r.errors]

    md = (out / "report.md").read_text()
    section = md.split("## Indicator sightings (feeds)", 1)[1].split("\n## ", 1)[0]
    rows = [x for x in section.splitlines() if "| iocs |" in x]
    assert len(rows) == 2 and all("203.0.113.50" in x for x in rows) and "203.0.113.51" not in section
    html = (out / "report.html").read_text()
    part = html.split('<section id="sightings">', 1)[1].split("</section>", 1)[0]
    assert part.count("<tr>") == 3 and "203.0.113.50" in part and "WS2" in part and "203.0.113.51" not in part
    case = orjson.loads((out / "case.json").read_bytes())
    assert sum(s["count"] for s in case["indicator_sightings"]) == 2
    assert "T1033" in [t["id"] for t in case["techniques"]] and len(case["techniques"]) == 1

    # --no-feeds: the same evidence, no matching, no sighting
    res2 = run(app, ["investigate", str(tmp_path / "logs.jsonl"), "--rules", str(tmp_path / "rules"),
                     "--name", "op-plain", "--out", str(tmp_path / "out2"), "--no-feeds"])
    assert res2.exit_code == 0, res2.output
    assert not any(x.startswith("Sightings") for x in res2.output.splitlines())
    assert "No feed indicator matched" in (tmp_path / "out2" / "report.md").read_text()
    assert not [o for o in orjson.loads((tmp_path / "out2" / "bundle.json").read_bytes())["objects"]
                if o["type"] == "sighting" and o["sighting_of_ref"].startswith("indicator--")]
