"""Ingest: EVTX (real files, corrupt and truncated ones), JSON lines flat and nested, JSON documents, Parquet,
CSV, archives; read/accepted/rejected counts; narrow per-class batches."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ttpscope.ingest import EventReader, read_table
from ttpscope.ingest.base import HOST, REC, TIME
from ttpscope.ingest.flatten import flatten_json_event

FIREWALL = "evtx/evtx-to-mitre-attack/TA0005-Defense Evasion/T1562.004-Impair Defenses-Disable or Modify System Firewall/" \
           "ID4688-5447-4950-Firewall disabled (command).evtx"


def rows(paths, **kw):
    table, reader = read_table(paths, **kw)
    return table.to_pylist(), reader


def test_evtx_fields_time_host_and_counts(shared_data):
    path = shared_data / FIREWALL
    recs, reader = rows(path)
    (stats,) = reader.stats
    assert stats.read == stats.accepted == len(recs) == 998 and stats.rejected == 0
    r4688 = [r for r in recs if r["EventID"] == "4688"]
    assert r4688, "the file holds process creations"
    ev = r4688[0]
    assert ev["Channel"] == "Security" and ev["Provider_Name"] == "Microsoft-Windows-Security-Auditing"
    assert ev["NewProcessName"] and ev["CommandLine"] is not None
    assert ev[HOST] == ev["Computer"] and ev[TIME] is not None
    assert ev[REC] == int(ev["EventRecordID"])


def test_evtx_batches_are_narrow_per_class(shared_data):
    reader = EventReader(shared_data / FIREWALL)
    batches = list(reader.batches())
    keys = [b.key for b in batches]
    assert len(keys) == len(set(keys)) > 1  # one batch per (Channel, provider, EventID) for a small file
    for b in batches:
        assert set(b.table.column("EventID").to_pylist()) == {b.event_id}
        for name in b.fields():  # no column that is null on every row of its class
            assert b.table.column(name).null_count < b.num_rows


def test_evtx_corrupt_chunk_is_counted_not_fatal(shared_data, tmp_path):
    data = bytearray((shared_data / FIREWALL).read_bytes())
    start = 4096 + 65536 + 1000  # inside the records of the second chunk
    data[start:start + 400] = b"\xff" * 400
    bad = tmp_path / "corrupt.evtx"
    bad.write_bytes(bytes(data))
    recs, reader = rows(bad)
    (stats,) = reader.stats
    assert stats.rejected > 0 and stats.accepted == len(recs) > 900
    assert stats.read == stats.accepted + stats.rejected == 998  # the lost records are counted, by number
    assert "corrupt EVTX chunk" in stats.samples[0][1]


def test_evtx_truncated_and_garbage(shared_data, tmp_path):
    data = (shared_data / FIREWALL).read_bytes()
    cut = tmp_path / "cut.evtx"
    cut.write_bytes(data[:4096 + 65536 * 2 + 30000])
    garbage = tmp_path / "garbage.evtx"
    garbage.write_bytes(b"this is not an event log" * 100)
    good = tmp_path / "good.jsonl"
    good.write_text('{"EventID": 1, "Channel": "x"}\n')
    recs, reader = rows([cut, garbage, good])
    by = {Path(s.source).name: s for s in reader.stats}
    assert by["cut.evtx"].accepted > 0 and by["cut.evtx"].rejected > 0
    assert "truncated EVTX" in by["cut.evtx"].samples[0][1]
    assert by["garbage.evtx"].accepted == 0 and by["garbage.evtx"].rejected == 1
    assert by["good.jsonl"].accepted == 1  # the good file beside the bad ones is read


def test_jsonl_bad_lines_counted_and_skipped(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"EventID": 1, "Image": "a.exe"}\n'
                    '{"EventID": 1, "Image": "b.exe"\n'  # truncated object
                    '\n'
                    '[1, 2, 3]\n'  # valid JSON, not an object
                    'not json at all\n'
                    '{"EventID": 1, "Image": "c.exe", "Flag": true, "N": 3, "L": ["x", "y"], "Nothing": null}\n')
    recs, reader = rows(path)
    (stats,) = reader.stats
    assert (stats.read, stats.accepted, stats.rejected) == (5, 2, 3)
    assert [r for r, _ in stats.samples] == [2, 4, 5]
    assert stats.reasons["not valid JSON"] == 2 and stats.reasons["not a JSON object"] == 1
    assert [r["Image"] for r in recs] == ["a.exe", "c.exe"]
    assert [r[REC] for r in recs] == [1, 6]  # record = line number
    last = recs[1]
    assert (last["Flag"], last["N"], last["L"], last.get("Nothing")) == ("true", "3", "x\ny", None)


def test_winlogbeat_and_ecs_shapes_flatten_to_sigma_names():
    wlb7 = {"@timestamp": "2021-01-01T00:00:00.000Z", "host": {"name": "WS1"},
            "winlog": {"channel": "Microsoft-Windows-Sysmon/Operational", "event_id": 1,
                       "provider_name": "Microsoft-Windows-Sysmon", "computer_name": "ws1.corp", "record_id": 42,
                       "event_data": {"Image": "C:\\x.exe", "CommandLine": "x -y"}},
            "event": {"code": "1"}}
    flat = flatten_json_event(wlb7)
    assert flat["Image"] == "C:\\x.exe" and flat["CommandLine"] == "x -y"
    assert flat["Channel"] == "Microsoft-Windows-Sysmon/Operational" and flat["EventID"] == "1"
    assert flat["Provider_Name"] == "Microsoft-Windows-Sysmon" and flat["Computer"] == "ws1.corp"
    assert flat["EventRecordID"] == "42" and flat["host.name"] == "WS1"
    wlb6 = {"log_name": "Security", "event_id": 4688, "source_name": "Microsoft-Windows-Security-Auditing",
            "computer_name": "dc1", "event_data": {"NewProcessName": "C:\\y.exe"}, "user": {"name": "bob"}}
    flat = flatten_json_event(wlb6)
    assert (flat["Channel"], flat["EventID"], flat["NewProcessName"], flat["user.name"]) == \
        ("Security", "4688", "C:\\y.exe", "bob")
    nxlog = {"Channel": "Security", "EventID": 4624, "SourceName": "Microsoft-Windows-Security-Auditing",
             "Hostname": "dc1.corp", "ProcessId": "1", "processid": "2"}
    flat = flatten_json_event(nxlog)
    assert flat["Provider_Name"] == "Microsoft-Windows-Security-Auditing" and flat["Computer"] == "dc1.corp"
    assert flat["ProcessId"] == "1" and "processid" not in flat  # names are unique ignoring case


def test_evtx_json_shape_in_jsonl(shared_data, tmp_path):
    """The regression data's .json files are evtx_dump output: a pretty-printed JSON document."""
    case = next((shared_data / "sigma/regression_data/rules/windows/process_creation").rglob("*.json"))
    recs, reader = rows(case)
    assert reader.stats[0].accepted == 1 and recs[0]["Channel"] and recs[0]["EventID"]
    arr = tmp_path / "array.json"
    arr.write_text(orjson.dumps([{"a": 1}, {"a": 2}, 3]).decode())
    recs, reader = rows(arr)
    assert [r["a"] for r in recs] == ["1", "2"] and reader.stats[0].rejected == 1


def test_parquet_and_csv(tmp_path):
    table = pa.table({"EventID": [1, 1, 3], "Image": ["a.exe", "b.exe", None],
                      "winlog": [{"channel": "c1"}, {"channel": "c1"}, {"channel": "c2"}]})
    pq.write_table(table, tmp_path / "events.parquet")
    recs, reader = rows(tmp_path / "events.parquet")
    assert reader.stats[0].accepted == 3
    assert sorted((r["Channel"], r["EventID"], r.get("Image")) for r in recs) == \
        [("c1", "1", "a.exe"), ("c1", "1", "b.exe"), ("c2", "3", None)]
    csv = tmp_path / "events.csv"
    csv.write_text('EventID,Image,CommandLine\n1,a.exe,"x, with comma"\n1,b.exe\n1,c.exe,\n')
    recs, reader = rows(csv)
    (stats,) = reader.stats
    assert (stats.accepted, stats.rejected) == (2, 1) and stats.samples[0][0] == 3
    assert recs[0]["CommandLine"] == "x, with comma" and recs[1].get("CommandLine") is None


def test_archives(tmp_path):
    lines = b'{"EventID": 1, "Channel": "c"}\n{"EventID": 2, "Channel": "c"}\n'
    zpath = tmp_path / "events.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("data/events.json", lines)
        zf.writestr("__MACOSX/data/._events.json", b"\x00\x05\x16\x07 mac resource fork")
        zf.writestr("readme.txt", b"not events")
    gz = tmp_path / "events.jsonl.gz"
    gz.write_bytes(gzip.compress(lines))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("inner.json")
        info.size = len(lines * 500)
        tf.addfile(info, io.BytesIO(lines * 500))
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    recs, reader = rows([zpath, gz, truncated])
    by = {s.source: s for s in reader.stats}
    assert by[f"{zpath}!data/events.json"].accepted == 2
    assert not any("__MACOSX" in s for s in by)
    assert by[str(gz)].accepted == 2
    lost = [s for s in reader.stats if s.rejected]
    assert lost and all("cut.tar.gz" in s.source for s in lost)


def test_batches_stay_bounded(tmp_path):
    path = tmp_path / "many.jsonl"
    with path.open("wb") as fh:
        for i in range(5000):
            fh.write(orjson.dumps({"EventID": i % 7, "Channel": "c", "Field": str(i)}) + b"\n")
    reader = EventReader(path, batch_rows=300, max_buffered=1000)
    sizes = [b.num_rows for b in reader.batches()]
    assert sum(sizes) == 5000 and max(sizes) <= 1000


def test_missing_path_is_an_input_error(tmp_path):
    from ttpscope.errors import InputError

    with pytest.raises(InputError, match="no such file"):
        EventReader(tmp_path / "nope.evtx")


def test_jsonl_across_read_blocks(tmp_path, monkeypatch):
    """Lines are never lost at block boundaries, whether a block ends inside a line or exactly at one."""
    import ttpscope.ingest.readers as readers

    line = orjson.dumps({"EventID": 1, "Pad": "x" * 50}) + b"\n"
    path = tmp_path / "blocks.jsonl"
    path.write_bytes(line * 1000)
    for block in (len(line) * 10, len(line) * 10 + 7, 64):
        monkeypatch.setattr(readers, "JSON_BLOCK", block)
        recs, reader = rows(path)
        assert reader.stats[0].accepted == 1000 and [r[REC] for r in recs][-1] == 1000
