"""`ttpscope feeds ...` end to end on a MISP feed folder and a JSON-lines event file."""

from __future__ import annotations

import json
from datetime import timedelta

import orjson
from typer.testing import CliRunner

from feeds_data import NOW, misp_event, ts, write_misp_feed
from ttpscope.cli.main import app


def _json(result):
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def test_feeds_cli_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("TTPSCOPE_HOME", str(tmp_path / "home"))
    recent = int((NOW - timedelta(hours=2)).timestamp())
    write_misp_feed(tmp_path / "misp", [misp_event("c2", [
        {"type": "ip-dst", "value": "203.0.113.77"},
        {"type": "domain", "value": "c2.example.org"},
        {"type": "ip-dst", "value": "203.0.113.78", "last_seen": ts(NOW - timedelta(days=90))},
    ], stamp=recent)])
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        {"@timestamp": "2026-11-30T10:00:00Z", "Computer": "WS1", "DestinationIp": "203.0.113.77"},
        {"@timestamp": "2026-11-30T10:05:00Z", "Computer": "WS1", "QueryName": "C2.example.org"},
        {"@timestamp": "2026-11-30T10:06:00Z", "Computer": "WS2", "DestinationIp": "203.0.113.78"},
        {"@timestamp": "2026-11-30T10:07:00Z", "Computer": "WS2", "DestinationIp": "198.51.100.1"},
    ]) + "\n")
    run = CliRunner().invoke
    assert run(app, ["feeds", "add", "osint", str(tmp_path / "misp")]).exit_code == 0
    listed = _json(run(app, ["feeds", "list", "--json"]))
    assert [(f["name"], f["kind"]) for f in listed["feeds"]] == [("osint", "misp")]

    reports = _json(run(app, ["feeds", "sync", "--json"]))["reports"]
    assert (reports[0]["fetched"], reports[0]["new"], reports[0]["rejected"]) == (4, 4, 0)
    again = run(app, ["feeds", "sync", "--every", "1s", "--runs", "2"])
    assert again.exit_code == 0 and again.output.count("osint: fetched 0, new 0") == 2

    shown = _json(run(app, ["feeds", "show", "osint", "--json"]))
    assert shown["object_types"] == {"indicator": 3, "report": 1}
    assert shown["indicators"] == {"current": 2, "expired": 1}
    expired = _json(run(app, ["feeds", "indicators", "--state", "expired", "--json"]))["indicators"]
    assert [i["pattern"] for i in expired] == ["[ipv4-addr:value = '203.0.113.78']"]
    text = run(app, ["feeds", "indicators"])
    assert "current indicators (2)" in text.output and "expired indicators (1)" in text.output

    matched = _json(run(app, ["feeds", "match", str(events), "--case", "op-c2", "--json"]))
    assert matched["ingest"]["accepted"] == 4
    got = sorted((s["value"], s["host"], s["count"]) for s in matched["sightings"])
    assert got == [("203.0.113.77", "WS1", 1), ("c2.example.org", "WS1", 1)]  # the expired one gives none

    bad = run(app, ["feeds", "add", "osint", str(tmp_path / "misp")])
    assert bad.exit_code != 0 and "already exists" in str(bad.exception)  # main() prints it as one line, exit 2
    removed = run(app, ["feeds", "remove", "osint", "--yes"])
    assert removed.exit_code == 0 and "4 objects" in removed.output
    assert _json(run(app, ["feeds", "list", "--json"]))["feeds"] == []
