"""Indicators from a feed matched on real OTRF events (Zeek and Sysmon), in DuckDB."""

from __future__ import annotations

import collections
import json
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from feeds_data import NOW, indicator
from ttpscope.ingest.base import HOST, REC, SRC, TIME
from ttpscope.detect.indicators import match_files, match_indicators
from ttpscope.feeds import FeedStore, add_feed, sync_feed
from ttpscope.ingest import BASE_COLUMNS, read_table


def _string_cols(table: pa.Table) -> list[str]:
    return [f.name for f in table.schema if f.name not in BASE_COLUMNS and pa.types.is_string(f.type)]


def _events_with(table: pa.Table, pred) -> int:
    """Reference count: rows where some string column satisfies pred(lower-cased column) (pyarrow masks)."""
    mask = None
    for c in _string_cols(table):
        m = pc.fill_null(pred(pc.utf8_lower(table.column(c))), False)
        mask = m if mask is None else pc.or_(mask, m)
    return int(pc.sum(mask).as_py() or 0) if mask is not None else 0


@pytest.fixture(scope="module")
def zeek(shared_data, tmp_path_factory):
    # the APT29 day-1 Zeek log is JSON lines under a .log name; a link gives the ingest its format
    link = tmp_path_factory.mktemp("zeek") / "combined_zeek.jsonl"
    link.symlink_to(shared_data / "otrf-cross-environment/compound/apt29/day1/zeek/combined_zeek.log")
    table, _ = read_table([link])
    return link, table


@pytest.fixture(scope="module")
def sysmon(shared_data):
    path = shared_data / "otrf-cross-environment/compound/LSASS_campaign_01/metasploit_logonpasswords_lsass_memory_dump.zip"
    table, _ = read_table([path])
    return path, table


def _pick_values(zeek_table, sysmon_table):
    ips = collections.Counter(v for v in zeek_table.column("id.resp_h").to_pylist() if v and "." in v)
    ip = sorted(ips.items(), key=lambda kv: (-kv[1], kv[0]))[1][0]  # the second most contacted address
    queries = collections.Counter(v for v in zeek_table.column("query").to_pylist() if v and "." in v)
    domain = sorted(queries.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    hashes = [v for v in sysmon_table.column("Hashes").to_pylist() if v and "SHA256=" in v]
    sha256 = collections.Counter(h.split("SHA256=")[1].split(",")[0] for h in hashes).most_common(1)[0][0]
    return ip, domain, sha256


def test_feed_indicators_give_sightings_on_otrf_events(tmp_path, zeek, sysmon):
    zeek_path, zeek_table = zeek
    sysmon_path, sysmon_table = sysmon
    ip, domain, sha256 = _pick_values(zeek_table, sysmon_table)
    ids = {k: f"indicator--{n * 8}-{n * 4}-4{n * 3}-8{n * 3}-{n * 12}" for k, n in
           (("ip", "1"), ("domain", "2"), ("hash", "3"), ("expired", "4"), ("not-ids", "5"), ("cidr", "6"))}
    objs = [
        indicator(ip, oid=ids["ip"]),
        indicator(domain.upper(), "domain-name:value", oid=ids["domain"]),  # case does not matter
        indicator(sha256.lower(), "file:hashes.'SHA-256'", oid=ids["hash"]),
        indicator(ip, oid=ids["expired"], valid_from=NOW - timedelta(days=90), valid_until=NOW - timedelta(days=1)),
        indicator(ip, oid=ids["not-ids"], x_misp_to_ids=False),
        indicator(ip.rsplit(".", 1)[0] + ".0/24", oid=ids["cidr"]),
    ]
    (tmp_path / "iocs.json").write_text(json.dumps({"type": "bundle", "id": "bundle--6f3c8a52-8a3f-4d1e-9c8e-2b6a7d0e4f11",
                                                    "objects": objs}))
    store = FeedStore(tmp_path / "ws.duckdb")
    add_feed("iocs", "bundle", str(tmp_path / "iocs.json"), store)
    assert sync_feed("iocs", store).new == 6
    states = {i["id"]: i["state"] for i in store.indicators()}
    assert states[ids["expired"]] == "expired" and states[ids["not-ids"]] == "not-for-detection"

    res, totals = match_files([zeek_path, sysmon_path], store.current_terms())
    assert totals["rejected"] == 0 and res.events == totals["accepted"] == zeek_table.num_rows + sysmon_table.num_rows
    got = collections.defaultdict(int)
    for s in res.sightings:
        got[s.indicator_id] += s.count
        assert s.feed == "iocs" and s.source
        if "lsass" in s.source:  # Windows events carry time and host (the Zeek JSON's epoch `ts` is not read as time)
            assert s.host and s.first_seen is not None and s.last_seen >= s.first_seen
    # reference counts straight from the Arrow tables
    want_ip = _events_with(zeek_table, lambda col: pc.equal(col, ip)) + _events_with(sysmon_table, lambda col: pc.equal(col, ip))
    want_domain = _events_with(zeek_table, lambda col: pc.or_(pc.equal(col, domain.lower()),
                                                              pc.match_substring(col, f"://{domain.lower()}")))
    want_domain += _events_with(sysmon_table, lambda col: pc.or_(pc.equal(col, domain.lower()),
                                                                 pc.match_substring(col, f"://{domain.lower()}")))
    want_hash = _events_with(sysmon_table, lambda col: pc.match_substring(col, sha256.lower()))
    assert want_ip > 0 and want_domain > 0 and want_hash > 0
    assert got[ids["ip"]] == want_ip
    assert got[ids["domain"]] == want_domain
    assert got[ids["hash"]] == want_hash
    assert got[ids["cidr"]] >= want_ip  # the /24 holds the address and maybe its neighbours
    assert ids["expired"] not in got and ids["not-ids"] not in got
    hash_sources = {s.source for s in res.sightings if s.indicator_id == ids["hash"]}
    assert all("lsass_memory_dump" in src for src in hash_sources)

    # the same indicators matched inside the Sigma pass (one read of the events) give the same sightings
    from pathlib import Path

    from ttpscope.detect import detect

    rules = Path(__file__).resolve().parents[1] / "examples" / "rules"
    one_pass = detect([zeek_path, sysmon_path], rules, indicators=store.current_terms())
    assert one_pass.sightings is not None
    key = lambda s: (s.feed, s.indicator_id, s.source, s.host, s.count, s.first_seen, s.last_seen)  # noqa: E731
    assert sorted(map(key, one_pass.sightings)) == sorted(map(key, res.sightings))
    assert detect([zeek_path], rules).sightings is None  # without indicators nothing is matched

    store.save_sightings(res.sightings, case_id="op-otrf")
    saved = store.sightings("op-otrf")
    assert sum(s["count"] for s in saved if s["indicator_id"] == ids["ip"]) == want_ip
    store.save_sightings(res.sightings, case_id="op-otrf")  # re-running replaces, never doubles
    assert sum(s["count"] for s in store.sightings("op-otrf")) == sum(s.count for s in res.sightings)


def test_conjunctions_registry_prefix_and_file_names(tmp_path):
    # hand-made events: one table, strings only, as the ingest produces them
    table = pa.table({
        SRC: pa.array([0, 0, 0, 0], pa.int32()), REC: pa.array([1, 2, 3, 4], pa.int64()),
        TIME: pa.array([None] * 4, pa.timestamp("us", tz="UTC")), HOST: pa.array(["h1", "h1", "h2", "h2"]),
        "Image": pa.array(["C:\\Windows\\Temp\\Evil.exe", "C:\\Windows\\System32\\cmd.exe", None, "C:\\x\\evil.exe"]),
        "TargetObject": pa.array([None, "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\updater", None, None]),
        "Hashes": pa.array(["MD5=" + "B" * 32, None, None, "MD5=" + "C" * 32]),
        "url": pa.array([None, None, "https://user@Bad.Example.net:8443/p?q=1", None]),
    })
    objs = [
        indicator("x", oid="indicator--aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
                  pattern="[file:name = 'evil.exe' AND file:hashes.MD5 = '" + "b" * 32 + "']"),
        indicator("x", oid="indicator--bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
                  pattern="[windows-registry-key:key = 'HKEY_LOCAL_MACHINE\\\\Software\\\\Microsoft\\\\Windows"
                          "\\\\CurrentVersion\\\\Run']"),
        indicator("x", oid="indicator--cccccccc-cccc-4ccc-8ccc-cccccccccccc", pattern="[domain-name:value = 'bad.example.net']"),
        indicator("x", oid="indicator--dddddddd-dddd-4ddd-8ddd-dddddddddddd", pattern="[process:name = 'EVIL.EXE']"),
    ]
    (tmp_path / "b.json").write_text(json.dumps({"type": "bundle", "id": "bundle--6f3c8a52-8a3f-4d1e-9c8e-2b6a7d0e4f12",
                                                 "objects": objs}))
    store = FeedStore(tmp_path / "ws.duckdb")
    add_feed("hand", "bundle", str(tmp_path / "b.json"), store)
    sync_feed("hand", store)
    res = match_indicators([(table, ["events.json"])], store.current_terms())
    counts = collections.Counter()
    for s in res.sightings:
        counts[s.indicator_id[11:15]] += s.count
    assert {s.host for s in res.sightings if s.indicator_id.startswith("indicator--dddd")} == {"h1", "h2"}
    # AND: name and hash on the same event (event 4 has the name, not the hash)
    assert counts == {"aaaa": 1, "bbbb": 1, "cccc": 1, "dddd": 2}
