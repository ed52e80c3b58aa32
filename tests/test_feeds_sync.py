"""Feed sync against real servers on loopback: medallion (TAXII 2.1), a static HTTP server (MISP feed, bundle)."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from feeds_data import NOW, generated_objects, indicator, misp_event, ts, write_misp_feed
from kb_servers import StaticServer, TaxiiServer, free_port
from ttpscope.feeds import FeedStore, add_feed, sync_all, sync_feed
from ttpscope.model import parse_time


@pytest.fixture()
def store(tmp_path):
    return FeedStore(tmp_path / "ws.duckdb")


@pytest.fixture()
def taxii(tmp_path, monkeypatch):
    (tmp_path / "taxii").mkdir()
    server = TaxiiServer(tmp_path / "taxii")
    monkeypatch.setenv("TEST_TAXII_USER", server.USER)
    monkeypatch.setenv("TEST_TAXII_PASS", server.PASSWORD)
    yield server
    server.close()


def _taxii_feed(store, server, name="t", url=None):
    return add_feed(name, "taxii", url or server.collection_url, store, user_env="TEST_TAXII_USER",
                    password_env="TEST_TAXII_PASS")


def test_taxii_sync_is_incremental_pages_with_next_and_honours_revocation(store, taxii):
    first = generated_objects(120, seed=1)
    taxii.add_objects(first)
    _taxii_feed(store, taxii)
    r1 = sync_feed("t", store, page_size=25)
    assert not r1.failed, r1.rejections
    assert (r1.fetched, r1.new, r1.updated, r1.unchanged, r1.rejected) == (120, 120, 0, 0, 0)
    assert r1.pages >= 5  # 120 objects at 25 a page: medallion's `next` was followed (it checks the filters)
    cursor = store.get_feed("t")["cursor"]["added_after"]
    assert parse_time(cursor) is not None

    # extend the collection: 30 new objects and a revoked new version of one indicator
    target = next(o for o in first if o["type"] == "indicator")
    revoked = dict(target, modified=ts(NOW), revoked=True)
    more = generated_objects(30, seed=2)
    taxii.add_objects(more + [revoked])
    r2 = sync_feed("t", store, page_size=25)
    assert (r2.fetched, r2.new, r2.updated, r2.unchanged, r2.rejected) == (31, 30, 1, 0, 0)
    assert r2.revoked == 1
    states = {i["id"]: i["state"] for i in store.indicators("t")}
    assert states[target["id"]] == "revoked"
    assert sum(1 for s in states.values() if s == "current") == sum(
        1 for o in first + more if o["type"] == "indicator") - 1
    assert [v["revoked"] for v in store.object_versions("t", target["id"])] == [False, True]

    r3 = sync_feed("t", store, page_size=25)
    assert (r3.fetched, r3.new, r3.updated) == (0, 0, 0) and not r3.failed
    assert store.get_feed("t")["objects"] == 151


class InclusiveProxy:
    """A TAXII front that makes `added_after` inclusive (1 ms earlier), as some servers do; optionally it also
    drops `next` while still saying `more` (servers that page by date only)."""

    def __init__(self, upstream: str, drop_next: bool = False):
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests += 1
                parts = urlsplit(self.path)
                query = parse_qsl(parts.query)
                fixed = []
                for k, v in query:
                    if k == "added_after":
                        v = ts(parse_time(v) - timedelta(milliseconds=1))
                    fixed.append((k, v))
                url = upstream + parts.path + ("?" + urlencode(fixed) if fixed else "")
                resp = requests.get(url, headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                body = resp.content
                if drop_next and resp.ok and b'"objects"' in body:
                    doc = json.loads(body)
                    doc.pop("next", None)
                    body = json.dumps(doc).encode()
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_inclusive_added_after_edge_does_not_loop(store, taxii):
    taxii.add_objects(generated_objects(40, seed=3))
    base = f"http://127.0.0.1:{taxii.port}"
    proxy = InclusiveProxy(base)
    try:
        _taxii_feed(store, taxii, url=taxii.collection_url.replace(base, proxy.url))
        r1 = sync_feed("t", store, page_size=15)
        assert (r1.fetched, r1.new) == (40, 40)
        # the boundary object comes back (inclusive edge): stored once, reported unchanged, and the sync ends
        r2 = sync_feed("t", store, page_size=15)
        assert r2.new == 0 and r2.updated == 0 and r2.unchanged == r2.fetched >= 1
        assert store.get_feed("t")["objects"] == 40
    finally:
        proxy.close()


def test_a_server_without_next_that_does_not_advance_is_stopped(store, taxii):
    # every object added in one request shares one date added: paging by date cannot advance past them
    taxii.add_objects(generated_objects(30, seed=4))
    base = f"http://127.0.0.1:{taxii.port}"
    proxy = InclusiveProxy(base, drop_next=True)
    try:
        _taxii_feed(store, taxii, url=taxii.collection_url.replace(base, proxy.url))
        t0 = time.monotonic()
        report = sync_feed("t", store, page_size=10)
        assert time.monotonic() - t0 < 60
        assert proxy.requests < 20  # a handful of requests, not an endless loop
        assert report.fetched >= 10 and report.new >= 10
        assert not report.failed
        assert any("stopped paging" in n for n in report.notes) or report.fetched == 30
    finally:
        proxy.close()


def test_bad_feeds_are_reported_and_never_stop_the_rest(store, taxii, tmp_path, monkeypatch):
    taxii.add_objects(generated_objects(10, seed=5))
    monkeypatch.setenv("WRONG_PASS", "not-the-password")
    add_feed("wrong-creds", "taxii", taxii.collection_url, store, user_env="TEST_TAXII_USER", password_env="WRONG_PASS")
    add_feed("unreachable", "taxii", f"http://127.0.0.1:{free_port()}/api1/collections/x/", store)
    good_id = f"indicator--{'1' * 8}-1111-4111-8111-{'1' * 12}"
    bundle = {"type": "bundle", "id": "bundle--0b0e6a8a-6a46-4c5f-9a43-6d8f2c7b9e10", "objects": [
        indicator("192.0.2.7", oid=good_id),
        {"type": "indicator", "id": "indicator--not-a-uuid", "created": ts(NOW), "modified": ts(NOW)},
        indicator("198.51.100.1", oid="indicator--22222222-2222-4222-8222-222222222222", pattern="[ipv4-addr:value = "),
        indicator("x", oid="indicator--33333333-3333-4333-8333-333333333333",
                  pattern="[process:pid = 4] WITHIN 10 SECONDS"),
        {"type": "malware", "id": "malware--44444444-4444-4444-8444-444444444444", "name": "no dates"},
    ]}
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    add_feed("bundle", "bundle", str(tmp_path / "b.json"), store)
    _taxii_feed(store, taxii, name="good")
    reports = {r.feed: r for r in sync_all(store)}
    assert reports["wrong-creds"].failed and "credentials" in reports["wrong-creds"].rejections[0].reason
    assert reports["unreachable"].failed and "unreachable" in reports["unreachable"].rejections[0].reason
    assert (reports["good"].new, reports["good"].failed) == (10, False)
    b = reports["bundle"]
    assert (b.fetched, b.new, b.rejected, b.unsupported) == (5, 2, 3, 1)
    reasons = {r.object_id: r.reason for r in b.rejections}
    assert "not <type>--<UUID>" in reasons["indicator--not-a-uuid"]
    assert "malformed pattern" in reasons["indicator--22222222-2222-4222-8222-222222222222"]
    assert "missing 'created'" in reasons["malware--44444444-4444-4444-8444-444444444444"]
    assert "qualifiers" in b.unsupported_patterns[0].reason
    states = {i["id"]: i["state"] for i in store.indicators("bundle")}
    assert states == {good_id: "current", "indicator--33333333-3333-4333-8333-333333333333": "unsupported"}
    again = sync_feed("bundle", store)
    assert (again.fetched, again.new) == (0, 0) and "unchanged" in again.notes[0]


def test_misp_feed_over_http(store, tmp_path):
    old = int((NOW - timedelta(days=400)).timestamp())
    recent = int((NOW - timedelta(days=1)).timestamp())
    ev1 = misp_event("phishing wave", [
        {"type": "ip-dst", "value": "203.0.113.9"},
        {"type": "domain", "value": "evil.example.com", "to_ids": False},
        {"type": "sha256", "value": "a" * 64, "category": "Payload delivery"},
        {"type": "comment", "value": "not an indicator"},
        {"type": "ip-src", "value": "198.51.100.23", "first_seen": ts(NOW - timedelta(days=300)),
         "last_seen": ts(NOW - timedelta(days=200))},  # an address last seen long ago: expired
        {"type": "md5"},  # missing value
    ], stamp=recent)
    ev2 = misp_event("old campaign", [{"type": "url", "value": "http://old.example.org/x"}], stamp=old)
    broken = {"Event": {"uuid": "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "Attribute": []}}  # no info, timestamp
    write_misp_feed(tmp_path / "misp", [ev1, ev2, broken])
    with StaticServer(tmp_path / "misp") as http:
        add_feed("misp", "misp", http.url, store)
        r1 = sync_feed("misp", store)
        assert not r1.failed
        # 2 reports + 5 indicators; the broken event and the attribute without value are rejected
        assert (r1.fetched, r1.new, r1.rejected, r1.skipped) == (7, 7, 2, 1)
        reasons = {r.object_id: r.reason for r in r1.rejections}
        assert "missing info, timestamp" in reasons["5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"]
        assert any("missing value" in r for r in reasons.values())
        by_name = {i["name"]: i for i in store.indicators("misp")}
        assert by_name["ip-dst: 203.0.113.9"]["state"] == "current"
        assert by_name["ip-dst: 203.0.113.9"]["lifetime_source"].startswith("default:ip")
        assert by_name["domain: evil.example.com"]["state"] == "not-for-detection"
        assert by_name["ip-src: 198.51.100.23"]["state"] == "expired"
        assert by_name["sha256: " + "a" * 64]["valid_until"] is None  # hashes do not expire by default
        assert by_name["url: http://old.example.org/x"]["state"] == "expired"

        http.requests.clear()
        r2 = sync_feed("misp", store)
        assert (r2.fetched, r2.new) == (0, 0)
        assert http.requests == ["/manifest.json"]

        # the publisher updates one event: only that one is fetched again
        ev2["Event"]["timestamp"] = str(recent + 60)
        ev2["Event"]["Attribute"][0]["timestamp"] = str(recent + 60)
        write_misp_feed(tmp_path / "misp", [ev1, ev2, broken])
        http.requests.clear()
        r3 = sync_feed("misp", store)
        assert sorted(http.requests) == sorted(["/manifest.json", f"/{ev2['Event']['uuid']}.json"])
        assert (r3.fetched, r3.updated, r3.new) == (2, 2, 0)


def test_a_truncated_bundle_keeps_the_objects_before_the_cut(store, tmp_path):
    import uuid as _uuid

    objs = generated_objects(2500, seed=7)
    text = json.dumps({"type": "bundle", "id": f"bundle--{_uuid.uuid4()}", "objects": objs})
    cut = text.index(objs[2100]["id"])  # inside the 2101st object
    (tmp_path / "cut.json").write_text(text[:cut])
    add_feed("cut", "bundle", str(tmp_path / "cut.json"), store)
    r = sync_feed("cut", store, page_size=1000)
    assert r.new == r.fetched and 2000 <= r.fetched <= 2100  # the pages before the cut, and that page's start
    assert any("not JSON after" in x.reason for x in r.rejections), r.rejections
    assert store.get_feed("cut")["objects"] == r.fetched
    (tmp_path / "list.json").write_text(json.dumps(objs[:10]))  # a bare list of objects reads as well
    add_feed("list", "bundle", str(tmp_path / "list.json"), store)
    assert sync_feed("list", store).new == 10
