"""Log-source recognition in ingest: the Windows families (event log records, Sentinel / Log Analytics
tables, Defender XDR), the contract's matching rule, renames, entity columns, and the internal-column
namespace no event field can take."""

from __future__ import annotations

import orjson
import pytest

from ttpscope.ingest.base import (BASE_COLUMNS, DST_IP, HOST, LOGSOURCE, REC, SRC, SRC_IP, TIME, USER, Batcher,
                                  EventReader, is_internal)
from ttpscope.ingest.flatten import flatten_json_event
from ttpscope.ingest.logsource import UNKNOWN, LogSource, parse_logsource, recognise


def _source(record: dict) -> LogSource:
    return recognise(flatten_json_event(record))[1]


def test_admits_needs_every_named_attribute():
    sysmon1 = LogSource("windows", "sysmon", "process_creation")
    assert sysmon1.admits({"product": "windows", "category": "process_creation"})
    assert sysmon1.admits({"product": "Windows", "service": "sysmon"})
    assert not sysmon1.admits({"product": "windows", "service": "security"})
    assert not sysmon1.admits({"product": "zeek", "category": "process_creation"})
    assert not sysmon1.admits({})  # a rule naming nothing runs nowhere
    assert not LogSource("aws", "cloudtrail").admits({"product": "aws", "service": "cloudtrail",
                                                      "category": "x"})  # unknown here: no
    assert not UNKNOWN.admits({"product": "windows"}) and not UNKNOWN.known


def test_parse_declared_logsource():
    assert parse_logsource("product=Zeek, service=conn") == LogSource("zeek", "conn")
    assert parse_logsource("category=proxy") == LogSource(category="proxy")
    for bad in ("", "product", "vendor=x", "product="):
        with pytest.raises(ValueError):
            parse_logsource(bad)


@pytest.mark.parametrize("record, expected", [
    ({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1}, ("windows", "sysmon", "process_creation")),
    ({"Channel": "Security", "EventID": 4688}, ("windows", "security", "process_creation")),
    ({"Channel": "Security", "EventID": 4624}, ("windows", "security", None)),
    ({"Channel": "Microsoft-Windows-PowerShell/Operational", "EventID": 4104},
     ("windows", "powershell", "ps_script")),
    ({"Channel": "Windows PowerShell", "EventID": 800}, ("windows", "powershell-classic", "ps_classic_script")),
    ({"Channel": "Some-Vendor/Operational", "EventID": 7}, ("windows", None, None)),
    # winlogbeat
    ({"winlog": {"channel": "System", "event_id": 7045, "provider_name": "Service Control Manager"}},
     ("windows", "system", None)),
    # Sentinel SecurityEvent without its Channel column, and Log Analytics' Event table
    ({"Type": "SecurityEvent", "EventID": 4688, "Computer": "WS1", "NewProcessName": "C:\\x.exe"},
     ("windows", "security", "process_creation")),
    ({"Type": "Event", "EventLog": "Microsoft-Windows-Sysmon/Operational", "EventID": 3, "Source": "Sysmon"},
     ("windows", "sysmon", "network_connection")),
    # Defender XDR advanced hunting: named by the streaming API's category, or told by the columns
    ({"category": "AdvancedHunting-DeviceNetworkEvents", "properties": {"DeviceName": "ws1", "RemoteIP": "1.2.3.4"}},
     ("windows", None, "network_connection")),
    ({"Timestamp": "2024-01-01T00:00:00Z", "DeviceName": "ws1", "ActionType": "ProcessCreated",
      "FolderPath": "C:\\w\\whoami.exe", "ProcessCommandLine": "whoami", "InitiatingProcessFileName": "cmd.exe",
      "ProcessId": 4}, ("windows", None, "process_creation")),
    ({"Timestamp": "2024-01-01T00:00:00Z", "DeviceName": "ws1", "ActionType": "PowerShellCommand",
      "AdditionalFields": "{}"}, ("windows", None, None)),
    # Sysmon for Linux is no Windows log (the Linux family claims it); a record nobody knows
    ({"Channel": "Linux-Sysmon/Operational", "EventID": 1}, ("linux", None, "process_creation")),
    ({"foo": "bar", "message": "hello"}, None),
])
def test_windows_families_recognise_by_content(record, expected):
    source = _source(record)
    if expected is None:
        assert source == UNKNOWN
    else:
        assert (source.product, source.service, source.category) == expected


def _batches(records: list[dict], **kw) -> list:
    batcher = Batcher([], batch_rows=1000, **kw)
    out = []
    for i, r in enumerate(records, 1):
        out.extend(batcher.add(0, i, flatten_json_event(r)))
    out.extend(batcher.flush_all())
    return out


def test_batcher_applies_renames_fills_and_entities():
    records = [
        {"Type": "SecurityEvent", "EventID": 4624, "Computer": "DC1", "TimeGenerated": "2024-03-01T10:00:00Z",
         "TargetUserName": "alice", "IpAddress": "10.0.0.5"},
        {"Type": "Event", "EventLog": "System", "Source": "Service Control Manager", "EventID": 7045,
         "Computer": "WS2"},
        {"Timestamp": "2024-03-01T11:00:00Z", "DeviceName": "ws3", "ActionType": "ConnectionSuccess",
         "RemoteIP": "8.8.8.8", "RemotePort": 53, "LocalIP": "10.0.0.9", "InitiatingProcessAccountName": "bob"},
    ]
    batches = _batches(records)
    by_source = {b.logsource.label(): b for b in batches}
    assert set(by_source) == {"windows/security", "windows/system", "windows/network_connection"}
    sec = by_source["windows/security"].table.to_pylist()[0]
    assert sec["Channel"] == "Security"  # filled: the channel variants' conditions hold
    assert (sec[HOST], sec[USER], sec[SRC_IP], sec[LOGSOURCE]) == ("DC1", "alice", "10.0.0.5", "windows/security")
    assert sec[TIME].isoformat() == "2024-03-01T10:00:00+00:00"
    event = by_source["windows/system"]
    assert event.channel == "System" and event.provider == "Service Control Manager"  # EventLog/Source renamed
    xdr = by_source["windows/network_connection"].table.to_pylist()[0]
    # XDR columns get their Sigma names back (the inverse of pySigma's Microsoft XDR mapping)
    assert xdr["DestinationIp"] == "8.8.8.8" and xdr["DestinationPort"] == "53" and "RemoteIP" not in xdr
    assert (xdr[HOST], xdr[SRC_IP], xdr[DST_IP]) == ("ws3", "10.0.0.9", "8.8.8.8")


def test_declared_source_only_for_unrecognised_records():
    records = [{"message": "x"}, {"Channel": "Security", "EventID": 4688}]
    declared = LogSource("zeek", "conn")
    labels = sorted(b.logsource.label() for b in _batches(records, declared=declared))
    assert labels == ["windows/security/process_creation", "zeek/conn"]
    assert sorted(b.logsource.label() for b in _batches(records)) == ["unknown", "windows/security/process_creation"]


def test_internal_columns_cannot_be_taken_by_event_fields(tmp_path):
    """Splunk's `_time`, fields named `_src`, `_rec`, `__row`, even `::rec`: kept as event fields, never
    mistaken for ingest's own columns (issue 15 item 3)."""
    logs = tmp_path / "splunk.jsonl"
    logs.write_bytes(b"\n".join(orjson.dumps(
        {"_time": "2024-05-01T12:00:00Z", "_src": "x", "_rec": "7", "__row": "9", "::rec": "5", "_raw": f"line {i}"})
        for i in range(3)))
    reader = EventReader(logs)
    rows = [r for b in reader.batches() for r in b.table.to_pylist()]
    assert [r[REC] for r in rows] == [1, 2, 3] and {r[SRC] for r in rows} == {0}
    assert all(r["_rec"] == "7" and r["_src"] == "x" and r["__row"] == "9" and r["_::rec"] == "5" for r in rows)
    assert rows[0][TIME].isoformat() == "2024-05-01T12:00:00+00:00"  # Splunk's _time is the event time
    assert all(is_internal(c) for c in BASE_COLUMNS) and not any(is_internal(k) for k in ("_time", "_rec", "_::rec"))
