"""Sigma correlation rules (event_count, value_count, temporal, temporal_ordered) and activity chains,
on timed events."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from ttpscope.detect.correlate import cluster_activity, parse_gap
from ttpscope.detect.runner import detect

T0 = datetime(2024, 3, 1, 10, 0, 0, tzinfo=timezone.utc)


def ev(seconds: float, **fields) -> dict:
    return {"@timestamp": (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z"), **fields}


BASE = """\
title: Failed logon
id: 10000000-0000-0000-0000-000000000001
name: failed_logon
level: low
tags: [attack.credential-access, attack.t1110]
logsource: {product: testing}
detection:
    sel: {EventID: 4625}
    condition: sel
---
title: Successful logon
id: 10000000-0000-0000-0000-000000000002
name: good_logon
level: low
logsource: {product: testing}
detection:
    sel: {EventID: 4624}
    condition: sel
---
title: Service installed
id: 10000000-0000-0000-0000-000000000003
name: service_install
level: medium
tags: [attack.persistence, attack.t1543.003]
logsource: {product: testing}
detection:
    sel: {EventID: 7045}
    condition: sel
"""

CORRELATIONS = """\
title: Brute force
id: 20000000-0000-0000-0000-000000000001
level: high
tags: [attack.t1110.001]
correlation:
    type: event_count
    rules: [failed_logon]
    group-by: [Computer]
    timespan: 1m
    condition: {gte: 5}
---
title: Password spray
id: 20000000-0000-0000-0000-000000000002
level: high
correlation:
    type: value_count
    rules: [failed_logon]
    group-by: [Computer]
    timespan: 5m
    condition: {gte: 3, field: TargetUserName}
---
title: Brute force then success
id: 20000000-0000-0000-0000-000000000003
level: critical
correlation:
    type: temporal_ordered
    rules: [failed_logon, good_logon]
    group-by: [Computer]
    timespan: 10m
---
title: Logon and service install, any order
id: 20000000-0000-0000-0000-000000000004
level: high
correlation:
    type: temporal
    rules: [service_install, good_logon]
    group-by: [Host]
    timespan: 2m
    aliases:
        Host:
            service_install: Computer
            good_logon: WorkstationName
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    d = tmp_path_factory.mktemp("corr")
    (d / "base.yml").write_text(BASE, encoding="utf-8")
    (d / "corr.yml").write_text(CORRELATIONS, encoding="utf-8")
    events = []
    # DC1: 6 failures for one user within 30 s (brute force), then a success at +5 min
    events += [ev(i * 5, EventID=4625, Computer="DC1", TargetUserName="admin") for i in range(6)]
    events += [ev(300, EventID=4624, Computer="DC1", WorkstationName="DC1", TargetUserName="admin")]
    # WS2: 3 failures for 3 users over 4 minutes (spray; too slow for brute force), no success
    events += [ev(1000 + i * 120, EventID=4625, Computer="WS2", TargetUserName=u) for i, u in enumerate("abc")]
    # WS3: a success before the failures (the ordered correlation must not fire), service install 60 s later
    events += [ev(2000, EventID=4624, Computer="WS3", WorkstationName="WS3"),
               ev(2010, EventID=4625, Computer="WS3", TargetUserName="x"),
               ev(2060, EventID=7045, Computer="WS3")]
    # WS4: service install, and a logon 10 minutes later: outside the 2-minute temporal window
    events += [ev(3000, EventID=7045, Computer="WS4"), ev(3600, EventID=4624, Computer="WS4", WorkstationName="WS4")]
    logs = d / "events.jsonl"
    logs.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    return detect(logs, d, cache=False, logsource="product=testing")  # a declared log source


def by_title(result, title):
    return [d for d in result.detections if d.title == title]


def test_event_count(result):
    (match,) = by_title(result, "Brute force")
    assert match.event["group"] == {"Computer": "DC1"} and match.event["measure"] == 5
    assert match.techniques == ["T1110.001"] and match.level == "high"
    assert len(match.event["events"]) == 5


def test_value_count(result):
    (match,) = by_title(result, "Password spray")
    assert match.event["group"] == {"Computer": "WS2"} and match.event["measure"] == 3


def test_temporal_ordered(result):
    matches = by_title(result, "Brute force then success")
    assert [m.event["group"]["Computer"] for m in matches] == ["DC1"]  # WS3 had the success first


def test_temporal_with_aliases(result):
    matches = by_title(result, "Logon and service install, any order")
    assert [m.event["group"]["Host"] for m in matches] == ["WS3"]  # WS4's pair is 10 minutes apart


def test_base_detections_kept_and_observations(result):
    assert len(by_title(result, "Failed logon")) == 10
    techniques = {o.technique_id for o in result.observations()}
    assert {"T1110", "T1110.001", "T1543.003"} <= techniques


def test_chains(result):
    dets = [d for d in result.detections if d.record is not None]
    chains = cluster_activity(dets, gap=parse_gap("10m"))
    by_host = {}
    for c in chains:
        by_host.setdefault(c.host, []).append(c)
    assert len(by_host["DC1"]) == 1 and len(by_host["DC1"][0].detections) == 7
    assert by_host["DC1"][0].tactics == ["credential-access"]
    ws3 = by_host["WS3"][0]
    assert [d.title for d in ws3.detections] == ["Successful logon", "Failed logon", "Service installed"]
    assert ws3.techniques == ["T1110", "T1543.003"]
    assert len(by_host["WS4"]) == 1
    assert len(cluster_activity(dets, gap=parse_gap("5m"))) > len(chains)  # WS4 splits at a 5-minute gap
    assert [c.start for c in chains] == sorted(c.start for c in chains)
