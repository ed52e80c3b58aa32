"""Entity co-occurrence (ttpscope.ingest.links): hand-built Windows, Zeek and CloudTrail logs read through the
real ingest; pairs aggregated per log source and hour, bounded, selected nearest the case's entities first."""

from __future__ import annotations

import orjson

from ttpscope.ingest import EventReader
from ttpscope.ingest.links import EntityLinks, combine, entity_key

ZEEK_HEAD = ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
             "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n"
             "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\n")


def _logs(tmp_path):
    win = [
        {"Channel": "Security", "EventID": 4624, "Computer": "WS01.corp.local", "TargetUserName": "alice",
         "IpAddress": "10.0.0.9", "TimeCreated": "2024-03-05T08:00:00Z"},
        {"Channel": "Security", "EventID": 4624, "Computer": "ws01", "TargetUserName": "CORP\\alice",
         "IpAddress": "10.0.0.9", "TimeCreated": "2024-03-05T08:20:00Z"},
        {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 3, "Computer": "WS01.corp.local",
         "SourceIp": "10.0.0.9", "DestinationIp": "203.0.113.7", "UtcTime": "2024-03-05 08:05:00.000",
         "Image": "C:\\x\\beacon.exe"},
        {"Channel": "Security", "EventID": 4625, "Computer": "WS01", "IpAddress": "::1",  # loopback: no entity
         "TimeCreated": "2024-03-05T08:06:00Z"},
    ]
    (tmp_path / "ws01.jsonl").write_text("\n".join(orjson.dumps(e).decode() for e in win) + "\n")
    rows = [("1709625900.0", "C1", "10.0.0.9", "50000", "203.0.113.7", "443", "tcp"),  # 08:05
            ("1709626200.0", "C2", "10.0.0.9", "50001", "203.0.113.7", "443", "tcp"),  # 08:10
            ("1709629800.0", "C3", "10.0.0.9", "50002", "203.0.113.7", "443", "tcp"),  # 09:10: next hour
            ("1709625900.0", "C4", "192.0.2.1", "1", "192.0.2.2", "53", "udp"),  # nobody the case knows
            ("1709625900.0", "C5", "10.0.0.9", "5353", "224.0.0.251", "5353", "udp")]  # multicast: no entity
    (tmp_path / "conn.log").write_text(ZEEK_HEAD + "".join("\t".join(r) + "\n" for r in rows) + "#close\tx\n")
    trail = {"Records": [{"eventVersion": "1.08", "eventTime": "2024-03-05T08:30:00Z", "eventSource": "s3.amazonaws.com",
                          "eventName": "GetObject", "awsRegion": "eu-west-1", "sourceIPAddress": "203.0.113.7",
                          "userIdentity": {"type": "IAMUser", "userName": "mallory", "accountId": "111122223333",
                                           "arn": "arn:aws:iam::111122223333:user/mallory"},
                          "recipientAccountId": "111122223333"}]}
    (tmp_path / "trail.json").write_bytes(orjson.dumps(trail))


def _collect(tmp_path, **kwargs) -> EntityLinks:
    links = EntityLinks(**kwargs)
    reader = EventReader([tmp_path])
    for _ in links.tap(reader.batches()):
        pass
    assert reader.totals()["rejected"] == 0
    return links


def _pairs(links: EntityLinks) -> dict:
    out: dict = {}
    for (ls, a, b, rel, _hour), (n, _first, _last) in links.pairs.items():
        out[(ls, a, b, rel)] = out.get((ls, a, b, rel), 0) + n
    return out


def test_pairs_from_windows_zeek_and_cloudtrail(tmp_path):
    _logs(tmp_path)
    links = _collect(tmp_path)
    pairs = _pairs(links)
    # two logons of alice from 10.0.0.9 on WS01 (two spellings of host and user), one event each pair
    assert pairs[("windows/security", "host:ws01", "ip:10.0.0.9", "host + src_ip")] == 2
    assert pairs[("windows/security", "host:ws01", "user:alice", "host + user")] == 2
    assert pairs[("windows/sysmon/network_connection", "ip:10.0.0.9", "ip:203.0.113.7", "connected to")] == 1
    assert pairs[("zeek/conn", "ip:10.0.0.9", "ip:203.0.113.7", "connected to")] == 3
    assert pairs[("zeek/conn", "ip:192.0.2.1", "ip:192.0.2.2", "connected to")] == 1
    trail = {k: v for k, v in pairs.items() if k[0].startswith("aws/")}
    assert {k[1:3] for k in trail} >= {("account:111122223333", "ip:203.0.113.7"), ("ip:203.0.113.7", "user:mallory")}
    # loopback and multicast addresses name no entity, so they pair with nothing
    assert not any("224.0.0.251" in k[1] + k[2] or "::1" in k[1] + k[2] for k in pairs)
    # the Zeek pair is counted per hour: two events in the 08:00 hour, one at 09:10
    zeek = sorted((hour.isoformat(), n, first.isoformat(), last.isoformat())
                  for (ls, a, b, _r, hour), (n, first, last) in links.pairs.items()
                  if ls == "zeek/conn" and b == "ip:203.0.113.7")
    assert zeek == [("2024-03-05T08:00:00+00:00", 2, "2024-03-05T08:05:00+00:00", "2024-03-05T08:10:00+00:00"),
                    ("2024-03-05T09:00:00+00:00", 1, "2024-03-05T09:10:00+00:00", "2024-03-05T09:10:00+00:00")]
    assert links.values["host:ws01"] in ("WS01.corp.local", "ws01", "WS01") and links.dropped == 0


def test_selection_is_bounded_and_nearest_first(tmp_path):
    _logs(tmp_path)
    links = _collect(tmp_path)
    everything = links.select({"host:ws01"}, limit=1000)
    assert everything["kept"] == len(links.pairs) and everything["left_out"] == 0
    assert [r["first"] for r in everything["rows"]] == sorted(r["first"] for r in everything["rows"])
    # with room for 3 rows, the pairs touching the host come first; the stranger's pair is left out
    few = links.select({"host:ws01"}, limit=3)
    assert few["kept"] == 3 and few["left_out"] == len(links.pairs) - 3
    assert all("host:ws01" in (r["source"], r["target"]) for r in few["rows"])
    some = links.select({"host:ws01"}, limit=len(links.pairs) - 1)
    assert not any(r["source"] == "ip:192.0.2.1" for r in some["rows"])
    assert set(some["values"]) == {r["source"] for r in some["rows"]} | {r["target"] for r in some["rows"]}
    assert orjson.loads(orjson.dumps(some)) == some  # case.json-ready


def test_bound_on_keys_counts_what_it_drops_and_merge_adds_up(tmp_path):
    _logs(tmp_path)
    full = _collect(tmp_path)
    small = _collect(tmp_path, max_keys=3)
    assert len(small.pairs) == 3 and small.dropped > 0
    twice = EntityLinks()
    twice.merge(full)
    twice.merge(full)
    assert {k: v[0] for k, v in twice.pairs.items()} == {k: 2 * v[0] for k, v in full.pairs.items()}
    assert twice.events == 2 * full.events


def test_combine_keeps_both_selections(tmp_path):
    _logs(tmp_path)
    links = _collect(tmp_path)
    a, b = links.select(limit=2), links.select({"ip:192.0.2.2"}, limit=1)
    both = combine(a, b)
    assert both["kept"] == 3 and b["rows"][0] in both["rows"]
    assert combine(a, a)["rows"] == a["rows"]  # the same rows are not counted twice


def test_user_spellings():
    assert entity_key("user", "stevie.marie/PANDALAB.COM")[0] == "user:stevie.marie"  # Zeek Kerberos client
    assert entity_key("user", "arn:aws:iam::1:user/path/bob")[0] == "user:bob"
    assert entity_key("ip", "ff02::fb") is None and entity_key("ip", "224.0.0.251") is None
