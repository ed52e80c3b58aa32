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
