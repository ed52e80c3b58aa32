"""The workspace on a real DuckDB file: round trips, names, detections/documents, locks, interrupted writes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ttpscope.errors import InputError, NotFoundError, TtpscopeError
from ttpscope.model import Case, Detection, Observation, ReportDocument, parse_time
from ttpscope.store import Workspace

ROOT = Path(__file__).resolve().parents[1]


def _case(name: str = "intrusion", n: int = 3) -> Case:
    obs = [
        Observation("T1059.001", "sigma", "rule-ps", {"CommandLine": "powershell -enc SQBFAFgA", "nested": {"a": [1, 2]}},
                    ["execution"], time="2024-03-05T08:12:01.123456Z", host="WS01", user="CORP\\alice",
                    confidence=0.9),
        Observation("T1003.001", "text", "report.md#120-188", {"sentence": "Mimikatz dumped LSASS <b>memory</b>."},
                    [], document="report.md", confidence=0.55),
        Observation("T1021.002", "manual", "analyst", {"note": "SMB to DC01 — ünïcode"}, ["lateral-movement"],
                    time="2024-03-05T09:00:00+02:00", host="DC01"),
    ][:n]
    return Case(name=name, observations=obs, meta={"evidence": ["a.jsonl"], "n": 1})


def _same(a: Case, b: Case) -> bool:
    """Equal cases: times compared as instants (the workspace keeps them in UTC)."""
    def norm(case):
        data = case.to_dict()
        for obs in data["observations"]:
            obs["time"] = parse_time(obs["time"])
        return data
    return norm(a) == norm(b)


def test_round_trip_by_id_and_name(tmp_path):
    ws = Workspace(tmp_path / "ws.duckdb")
    case = _case()
    ws.save_case(case)
    for ref in (case.id, case.name, case.name.upper()):
        back = ws.get_case(ref)
        assert _same(back, case)
    # a new Workspace object on the same file (as a later process would) sees the same data
    again = Workspace(tmp_path / "ws.duckdb").get_case(case.id)
    assert [o.id for o in again.observations] == [o.id for o in case.observations]
    assert again.observations[2].time.isoformat() == "2024-03-05T07:00:00+00:00"  # zones normalised to UTC


def test_default_path_is_under_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TTPSCOPE_HOME", str(tmp_path / "home"))
    ws = Workspace()
    assert ws.path == tmp_path / "home" / "workspace.duckdb"
    ws.save_case(_case())
    assert ws.path.is_file()


def test_list_update_and_delete(tmp_path):
    ws = Workspace(tmp_path / "ws.duckdb")
    first, second = _case("first"), _case("second", n=2)
    ws.save_case(first)
    time.sleep(0.01)
    ws.save_case(second, detections=[Detection("r1", "t", techniques=["T1059.001"], record=7)])
    listing = ws.list_cases()
    assert [c["name"] for c in listing] == ["second", "first"]
    assert listing[0]["observations"] == 2 and listing[0]["detections"] == 1 and listing[0]["techniques"] == 2
    # saving again replaces the observations, it does not append to them
    first.observations = first.observations[:1]
    ws.save_case(first)
    assert len(ws.get_case("first").observations) == 1
    assert ws.delete_case("second") == {"id": second.id, "name": "second"}
    with pytest.raises(NotFoundError, match="second"):
        ws.get_case("second")
    with pytest.raises(NotFoundError):
        ws.delete_case("second")
    assert [c["name"] for c in ws.list_cases()] == ["first"]


def test_names_are_unique(tmp_path):
    ws = Workspace(tmp_path / "ws.duckdb")
    ws.save_case(_case("dup"))
    with pytest.raises(InputError, match="already exists"):
        ws.save_case(_case("dup"))
    assert len(ws.list_cases()) == 1


def test_detections_and_documents(tmp_path):
    ws = Workspace(tmp_path / "ws.duckdb")
    case = _case()
    det = Detection("r-1", "Encoded PowerShell", "high", ["T1059.001"], ["execution"], "2024-03-05T08:12:01Z",
                    "WS01", source="a.evtx", record=42,
                    event={"EventID": 1, "CommandLine": "powershell -enc x'; DROP TABLE cases; --"})
    doc = ReportDocument("report.md", sha256="ab" * 32, kind="md", text="The actor <script>x</script>",
                         iocs=[{"type": "ipv4", "value": "203.0.113.7"}])
    ws.save_case(case, detections=[det, replace(det)], documents=[doc])
    dets = ws.get_detections(case.name)
    assert len(dets) == 1  # the same rule on the same event is one detection
    assert dets[0].event["CommandLine"].endswith("DROP TABLE cases; --")
    # adding more keeps the earlier ones; the same document again updates it in place
    det2 = replace(det, record=43)
    ws.save_case(case, detections=[det, det2], documents=[replace(doc, text="updated")])
    assert [d.record for d in ws.get_detections(case.id)] == [42, 43]
    docs = ws.get_documents(case.id)
    assert len(docs) == 1 and docs[0].text == "updated"
    ws.save_case(case, detections=[det2], documents=[], replace=True)
    assert [d.record for d in ws.get_detections(case.id)] == [43]
    assert ws.get_documents(case.id) == []


def test_add_to_case_creates_then_appends(tmp_path):
    ws = Workspace(tmp_path / "ws.duckdb")
    obs = _case().observations
    created = ws.add_to_case("hunt-7", obs[:1], meta={"by": "detect"})
    ws.add_to_case("hunt-7", obs[1:])
    back = ws.get_case("hunt-7")
    assert back.id == created.id
    assert [o.technique_id for o in back.observations] == ["T1059.001", "T1003.001", "T1021.002"]
    assert back.meta == {"by": "detect"}


def test_not_a_workspace_file(tmp_path):
    bad = tmp_path / "ws.duckdb"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputError, match="ws.duckdb"):
        Workspace(bad)


def _child(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_busy_workspace_gives_a_clear_error(tmp_path):
    path = tmp_path / "ws.duckdb"
    Workspace(path).save_case(_case())
    holder = _child("""
        import sys, time, duckdb
        con = duckdb.connect(sys.argv[1])
        print("holding", flush=True)
        time.sleep(30)
    """, str(path))
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(TtpscopeError, match="held by another process"):
            Workspace(path, lock_wait=0.5).get_case("intrusion")
    finally:
        holder.kill()
        holder.wait()
    assert Workspace(path).get_case("intrusion").name == "intrusion"


WRITER = """
    import sys
    from ttpscope.model import Case, Detection, Observation
    from ttpscope.store import Workspace
    path, case_id, base = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ws = Workspace(path)
    obs = [Observation("T1059.001", "sigma", f"r{i}", {"gen": 0, "pad": "x" * 300}, ["execution"], host=f"h{i % 7}")
           for i in range(base)]
    gen = 0
    while True:  # rewrite the case until killed; the loop is nearly all save_case, so a kill lands mid-write
        gen += 1
        obs.append(Observation("T1059.001", "sigma", f"r{base + gen}", {}, ["execution"]))
        for o in obs:
            o.evidence["gen"] = gen
        print(f"saving {gen}", flush=True)
        ws.save_case(Case(name="victim", id=case_id, observations=obs, meta={"gen": gen}),
                     detections=[Detection("r", record=gen)])
        print(f"saved {gen}", flush=True)
"""


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.4, 0.7])
def test_killed_mid_write_leaves_a_consistent_workspace(tmp_path, delay):
    path = tmp_path / "ws.duckdb"
    ws = Workspace(path)
    before = Case(name="victim", observations=_case().observations, meta={"gen": 0})
    ws.save_case(before)
    other = ws.save_case(_case("bystander", n=2))
    base = 15000
    child = _child(WRITER, str(path), before.id, str(base))
    try:
        first = child.stdout.readline().strip()
        assert first == "saving 1", child.stderr.read()
        time.sleep(delay)
        assert child.poll() is None, child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    saved = max([int(n) for n in re.findall(r"saved (\d+)", child.stdout.read())] or [0])
    after = Workspace(path)
    case = after.get_case("victim")
    gen = case.meta["gen"]
    # the last save reported done, or the one in flight if its commit landed before the kill; never a mix
    assert gen in (saved, saved + 1)
    if gen == 0:
        assert _same(case, before)
    else:
        assert len(case.observations) == base + gen
        assert {o.evidence["gen"] for o in case.observations} == {gen}
        assert {d.record for d in after.get_detections("victim")} == set(range(1, gen + 1))
    assert _same(after.get_case("bystander"), other)
    assert sorted(c["name"] for c in after.list_cases()) == ["bystander", "victim"]
    # and the workspace still takes writes
    after.save_case(_case("later"))
    assert after.has_case("later")


def _hits(n: int, minutes: float = 10) -> list[Detection]:
    from datetime import timedelta

    t0 = parse_time("2024-03-05T08:00:00Z")
    return [Detection(rule_id="r-logon", title="Logon", level="high", techniques=["T1078", "T1021"],
                      tactics=["lateral-movement"], time=t0 + timedelta(minutes=minutes * i), host="WS01",
                      source="ws01.jsonl", record=i, event={"EventID": 4624, "IpAddress": "=cmd|x"},
                      matched={"EventID": 4624}, logsource="windows/security", src_ip="203.0.113.7")
            for i in range(n)]


def test_observations_aggregate_hits_and_round_trip(tmp_path):
    from ttpscope.detect.results import SAMPLES, observations_of

    dets = _hits(10)  # 08:00 .. 09:30 every 10 minutes: two one-hour runs per technique
    obs = observations_of(dets)
    assert len(obs) == 4 and {o.technique_id for o in obs} == {"T1078", "T1021"}
    first = [o for o in obs if o.technique_id == "T1078"]
    assert [(o.count, o.first_seen.isoformat(), o.last_seen.isoformat()) for o in first] == [
        (7, "2024-03-05T08:00:00+00:00", "2024-03-05T09:00:00+00:00"),
        (3, "2024-03-05T09:10:00+00:00", "2024-03-05T09:30:00+00:00")]
    assert len(first[0].evidence["samples"]) == SAMPLES - 1 and first[0].evidence["record"] == 0
    assert first[0].evidence["entity"] == {"kind": "host", "value": "WS01"}
    ws = Workspace(tmp_path / "ws.duckdb")
    case = Case(name="agg", observations=obs)
    ws.save_case(case, dets)
    back = ws.get_case("agg")
    assert [(o.count, o.first_seen, o.last_seen) for o in back.observations] == [
        (o.count, o.first_seen, o.last_seen) for o in obs]
    assert len(ws.get_detections("agg")) == 10  # every raw hit stays
    old = Observation.from_dict({"technique_id": "T1078", "source_kind": "sigma", "source_ref": "r",
                                 "time": "2024-03-05T08:00:00Z"})  # saved before aggregation
    assert old.count == 1 and old.first_seen == old.last_seen == old.time
    with pytest.raises(ValueError, match="count"):
        Observation("T1078", "sigma", "r", count=0)
    with pytest.raises(ValueError, match="before first_seen"):
        Observation("T1078", "sigma", "r", first_seen="2024-03-05T09:00:00Z", last_seen="2024-03-05T08:00:00Z")


def test_hits_timeline_every_hit_in_time_order(tmp_path):
    import io

    import orjson
    import pyarrow.parquet as pq

    from ttpscope.store.hits import HIT_COLUMNS, hits_table, render_hits

    ws = Workspace(tmp_path / "ws.duckdb")
    dets = _hits(6)[::-1] + [Detection(rule_id="r-x", title="untimed", host="H2", source="h2.jsonl", record=1)]
    ws.save_case(Case(name="hits"), dets)
    table = hits_table(ws, "hits")
    assert table.num_rows == 7 and tuple(table.column_names) == HIT_COLUMNS
    rows = [orjson.loads(line) for line in render_hits(table, "jsonl").splitlines()]
    assert [r["record"] for r in rows] == ["0", "1", "2", "3", "4", "5", "1"]  # oldest first, untimed last
    assert rows[0]["time"] == "2024-03-05T08:00:00Z" and rows[0]["src_ip"] == "203.0.113.7"
    assert rows[0]["logsource"] == "windows/security" and rows[0]["techniques"] == "T1078;T1021"
    assert rows[0]["details"] == "EventID=4624" and rows[-1]["time"] is None
    csv_text = render_hits(table, "csv").decode()
    assert csv_text.splitlines()[0] == ",".join(HIT_COLUMNS) and len(csv_text.splitlines()) == 8
    assert pq.read_table(io.BytesIO(render_hits(table, "parquet"))).num_rows == 7
    with pytest.raises(InputError):
        render_hits(table, "xml")
