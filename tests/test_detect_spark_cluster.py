"""The Spark engine on a real standalone cluster: a master and one worker (1 core, 1 GB) started on loopback
from pyspark's own distribution, detection on real EVTX files with SigmaHQ rules, the same (rule, source,
record) set as the DuckDB engine on the same events. Then the same through a Spark Connect server on that
cluster (``sc://``), and Spark's own inputs (Hive-partitioned Parquet, JSON lines by URI) with results
written back as Parquet."""

from __future__ import annotations

import shutil

import pytest

from ttpscope.detect.runner import detect
from ttpscope.errors import TtpscopeError

pytest.importorskip("pyspark", reason="the [spark] extra is not installed")
if shutil.which("java") is None:
    pytest.skip("the Spark engine needs a Java runtime (.ci/run installs one)", allow_module_level=True)

from spark_cluster import standalone_cluster  # noqa: E402

pytestmark = pytest.mark.slow

FILES = ["TA0008-Lateral Movement/T1550-Use Alternate Authentication Material/ID4624-Mimikatz Pass the hash.evtx",
         "TA0006-Credential Access/T1003-Credential dumping/ID1-LSASS dump with LSASSY (SYSMON).evtx",
         "TA0005-Defense Evasion/T1027-Obfuscated Files or Information/ID1-CrackMapExec payload execution.evtx"]
# two SigmaHQ folders keep the cluster's share of CI small; the whole windows set runs in bench/
RULES = ["builtin", "process_access"]


@pytest.fixture(scope="module")
def cluster():
    with standalone_cluster(workers=1, cores=1, memory="1g") as c:
        yield c


@pytest.fixture(scope="module")
def inputs(shared_data):
    files = [shared_data / "evtx" / "evtx-to-mitre-attack" / f for f in FILES]
    rules = [shared_data / "sigma" / "rules" / "windows" / r for r in RULES]
    for p in files + rules:
        if not p.exists():
            pytest.fail(f"missing shared data: {p}")
    duck = detect(files, rules, cache=False, workers=1)
    return files, rules, duck


def keys(result):
    return {(d.rule_id, d.source, d.record) for d in result.detections}


def test_standalone_cluster_matches_duckdb(cluster, inputs):
    files, rules, duck = inputs
    assert len(cluster.workers()) == 1 and cluster.workers()[0]["cores"] == 1
    sp = detect(files, rules, cache=False, compiled=duck.compiled, engine="spark",
                engine_options={"master": cluster.master,
                                "conf": {"spark.driver.host": "127.0.0.1", "spark.executor.memory": "1g"}})
    assert sp.engine == "spark" and not sp.engine_errors
    assert keys(duck), "the DuckDB engine found nothing to compare with"
    assert keys(sp) == keys(duck)
    assert {d.source for d in sp.detections} >= {str(files[0]), str(files[1])}


def test_unreachable_master_is_one_line_error(inputs):
    files, rules, duck = inputs
    from spark_cluster import free_port

    with pytest.raises(TtpscopeError, match=r"spark://127\.0\.0\.1:\d+ does not answer"):
        detect(files[:1], rules, cache=False, compiled=duck.compiled, engine="spark",
               engine_options={"master": f"spark://127.0.0.1:{free_port()}"})


def _event_rows(files):
    """The events of the EVTX files as plain string rows (their fields only), each with its file's index."""
    from ttpscope.ingest import read_table
    from ttpscope.ingest.base import SRC, is_internal

    table, reader = read_table(files)
    rows = []
    for row in table.to_pylist():
        fields = {k: v for k, v in row.items() if v is not None and not is_internal(k)}
        fields["origin"] = str(files.index(type(files[0])(reader.sources[row[SRC]])))
        rows.append(fields)
    return rows


def _by_event(detections):
    return {(d.rule_id, str(d.event.get("origin")), str(d.event.get("EventRecordID"))) for d in detections}


def test_spark_reads_hive_parquet_and_json_lines_by_uri(cluster, inputs, tmp_path):
    import orjson
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    files, rules, duck = inputs
    files = files[:2]  # Security and Sysmon events: enough classes, a small share of CI
    rows = _event_rows(files)
    names = sorted({k for r in rows for k in r})
    table = pa.table({n: pa.array([r.get(n) for r in rows], pa.string()) for n in names})
    hive = tmp_path / "events"  # events/origin=0/Channel=Security/part-0.parquet ...
    ds.write_dataset(table, hive, format="parquet", partitioning=["origin", "Channel"], partitioning_flavor="hive")
    assert len(list(hive.glob("origin=*/Channel=*/*.parquet"))) >= 2
    lines = tmp_path / "events.jsonl"
    lines.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n{not json\n")
    want = {(d.rule_id, str(files.index(type(files[0])(d.source))), str(d.event.get("EventRecordID")))
            for d in duck.detections if type(files[0])(d.source) in files}
    assert {w[1] for w in want} == {"0", "1"}
    options = {"master": cluster.master, "conf": {"spark.driver.host": "127.0.0.1"}}
    sp = detect([hive.as_uri(), "json:" + lines.as_uri()], rules, cache=False, compiled=duck.compiled,
                engine="spark", engine_options=options)
    assert not sp.engine_errors
    by_source = {s.source: s for s in sp.ingest}
    parquet, jsonl = by_source[hive.as_uri()], by_source["json:" + lines.as_uri()]
    assert (parquet.read, parquet.accepted, parquet.rejected) == (len(rows), len(rows), 0)
    assert (jsonl.read, jsonl.accepted, jsonl.rejected) == (len(rows) + 1, len(rows), 1)
    for uri in (hive.as_uri(), "json:" + lines.as_uri()):
        got = _by_event([d for d in sp.detections if d.source == uri])
        assert got == want, uri
    # results back as Parquet, read by Spark on the cluster
    from ttpscope.detect.engines.spark import spark_session
    from ttpscope.detect.results import write_parquet

    out = tmp_path / "out"
    write_parquet(sp.detections, out.as_uri())
    session = spark_session(cluster.master, conf=options["conf"])
    try:
        back = session.read.parquet(out.as_uri())
        assert back.count() == len(sp.detections)
        assert {(r.rule_id, r.source) for r in back.select("rule_id", "source").collect()} == \
            {(d.rule_id, d.source) for d in sp.detections}
    finally:
        session.stop()


def test_spark_connect_on_the_cluster_matches_duckdb(cluster, inputs):
    from spark_cluster import connect_server

    files, rules, duck = inputs
    one = [files[0]]
    want = {k for k in keys(duck) if k[1] == str(files[0])}
    assert want
    with connect_server(cluster.master, conf={"spark.executor.memory": "1g"}) as url:
        sp = detect(one, rules, cache=False, compiled=duck.compiled, engine="spark", engine_options={"master": url})
    assert not sp.engine_errors
    assert keys(sp) == want
