"""The Spark engine in a real local Spark session: the same hits as DuckDB on log-source and modifier cases."""

from __future__ import annotations

import textwrap

import orjson
import pytest

from ttpscope.detect.runner import detect

pyspark = pytest.importorskip("pyspark", reason="the [spark] extra is not installed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark():
    from ttpscope.detect.engines.spark import local_session

    session = local_session("local[2]", "ttpscope-test")
    yield session
    session.stop()


RULES = {
    "proc": ("category: process_creation\nproduct: windows",
             "sel:\n    Image|endswith: '\\whoami.exe'\n    ParentImage|endswith: '\\cmd.exe'\ncondition: sel"),
    "reg": ("category: registry_set\nproduct: windows",
            "sel:\n    TargetObject|contains: '\\CurrentVersion\\Run\\'\ncondition: sel"),
    "quotes": ("product: testing",
               "sel:\n    CommandLine|contains: 'it''s 100% a_b\\c'\ncondition: sel"),
    "regex": ("product: testing",
              "sel:\n    CommandLine|re: 'cmd\\.exe(?= /c)'\ncondition: sel"),
    "cased": ("product: testing", "sel:\n    CommandLine|cased|contains: 'WHOAMI'\ncondition: sel"),
    "keywords": ("product: testing", "keywords:\n    - 'readme'\n    - 'mimikatz'\ncondition: keywords"),
    "notnull": ("product: testing",
                "sel:\n    CommandLine|contains: 'x'\nfilter:\n    ParentImage|endswith: 'explorer.exe'\n"
                "condition: sel and not filter"),
    "numbers": ("product: testing", "sel:\n    Size|gte: 10\ncondition: sel"),
    "unicode": ("product: testing", "sel:\n    City|contains: 'İstanbul'\ncondition: sel"),
    "sigma": ("product: testing", "sel:\n    City: 'οδος'\ncondition: sel"),
    "underscore": ("product: testing", "keywords:\n    - 'lsadump'\ncondition: keywords"),
}

EVENTS = [
    {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "Image": "C:\\W\\whoami.exe",
     "ParentImage": "C:\\W\\cmd.exe"},
    {"Channel": "Security", "EventID": 4688, "NewProcessName": "C:\\W\\whoami.exe", "ParentProcessName": "C:\\W\\cmd.exe"},
    {"Channel": "Application", "EventID": 1, "Image": "C:\\W\\whoami.exe", "ParentImage": "C:\\W\\cmd.exe"},
    {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 13,
     "TargetObject": "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\x"},
    {"CommandLine": "x it's 100% a_b\\c x", "Size": "12"},
    {"CommandLine": "cmd.exe /c WHOAMI", "Size": "9"},
    {"CommandLine": "cmd.exe /k whoami readme.txt", "ParentImage": "C:\\explorer.exe"},
    {"CommandLine": "its 1000 aXb\\c", "Note": "Invoke-Mimikatz"},
    {"commandline": "cmd.exe /c WHOAMI"},  # the same field spelled otherwise: one column for Spark too
    {"City": "İstanbul", "_raw": "lsadump::sam"},  # 10
    {"City": "ΟΔΟΣ"},  # 11: final sigma folds as in the rule value
]


def test_spark_matches_duckdb(tmp_path, spark):
    for name, (logsource, detection) in RULES.items():
        (tmp_path / f"{name}.yml").write_text(
            f"title: {name}\nid: 40000000-0000-0000-0000-{abs(hash(name)) % 10**12:012d}\nlevel: high\n"
            f"logsource:\n{textwrap.indent(logsource, '    ')}\ndetection:\n{textwrap.indent(detection, '    ')}\n",
            encoding="utf-8")
    logs = tmp_path / "events.jsonl"
    logs.write_bytes(b"\n".join(orjson.dumps(e) for e in EVENTS))
    # the "testing" events are of no known log source: declared, as a user would
    duck = detect(logs, tmp_path, cache=False, engine_options={"python_rows": 0}, logsource="product=testing")
    sp = detect(logs, tmp_path, cache=False, engine="spark", engine_options={"spark": spark},
                logsource="product=testing")
    assert not sp.engine_errors and not duck.engine_errors
    got = sorted((d.title, d.record) for d in sp.detections)
    assert got == sorted((d.title, d.record) for d in duck.detections)
    assert set(got) >= {("proc", 1), ("proc", 2), ("reg", 4), ("quotes", 5), ("regex", 6), ("cased", 6),
                        ("keywords", 7), ("keywords", 8), ("numbers", 5)}
    assert ("cased", 9) in got and ("regex", 9) in got
    assert {("unicode", 10), ("sigma", 11), ("underscore", 10)} <= set(got)
    assert ("proc", 3) not in got and ("notnull", 7) not in got and ("notnull", 5) in got
    assert sp.detections[0].event and sp.engine == "spark"


BACKTRACKING = {  # patterns RE2 runs in linear time and Java's backtracking does not (Java 17)
    "two_stars": "sel:\n    CommandLine|re: '.*a.*a$'\ncondition: sel",  # > 30 s on one 5,000-character value
    "nested": "sel:\n    CommandLine|re: '(a+)+$'\ncondition: sel",
    "keyword": "keywords:\n    - '|re': 'b.*a.*a$'\ncondition: keywords",
    "short": "sel:\n    CommandLine|re: '^a{3}b'\ncondition: sel",
    "insensitive": "sel:\n    CommandLine|re|i: 'z{5}aaab$'\ncondition: sel",  # the i flag, on a long value
}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("re2j", [True, False], ids=["re2j", "without-re2j"])
def test_spark_regexes_never_backtrack_without_bound(tmp_path, spark, monkeypatch, re2j):
    """Patterns Java's regexes would not finish on a crafted 5,000-character field give DuckDB's (RE2's)
    answers on RE2/J (Spark's Hadoop client), short and long values alike. On a cluster without RE2/J the
    driver's bounded search takes them: the same answers, or a rule disabled over its time budget — never
    a hang (issue 15 item 7)."""
    from ttpscope.detect.engines.spark import SparkEngine

    if not re2j:
        monkeypatch.setattr(SparkEngine, "_has_re2j", lambda self: False)
    for i, (name, detection) in enumerate(BACKTRACKING.items()):
        (tmp_path / f"{name}.yml").write_text(
            f"title: {name}\nid: 50000000-0000-0000-0000-00000000000{i}\nlevel: high\nlogsource:\n"
            f"    product: testing\ndetection:\n{textwrap.indent(detection, '    ')}\n", encoding="utf-8")
    logs = tmp_path / "events.jsonl"
    values = ["a" * 5000 + "b", "aaab" + "a" * 20, "b" + "a" * 3000, "xaab", "Z" * 2000 + "AAAB"]
    logs.write_bytes(b"\n".join(orjson.dumps({"CommandLine": v}) for v in values))
    duck = detect(logs, tmp_path, cache=False, engine_options={"python_rows": 0}, logsource="product=testing")
    sp = detect(logs, tmp_path, cache=False, engine="spark", engine_options={"spark": spark},
                logsource="product=testing")
    assert not duck.engine_errors
    over_budget = {rid for rid, msg in sp.engine_errors if msg.startswith("regular expression over its time budget")}
    assert {rid for rid, _ in sp.engine_errors} == over_budget and (re2j or len(over_budget) <= 2)
    if re2j:
        assert not over_budget
    got = sorted((d.title, d.record) for d in sp.detections)
    assert got == sorted((d.title, d.record) for d in duck.detections if d.rule_id not in over_budget)
    assert sorted((d.title, d.record) for d in duck.detections) == [
        ("insensitive", 5), ("keyword", 2), ("keyword", 3), ("nested", 2), ("nested", 3), ("short", 2),
        ("two_stars", 2), ("two_stars", 3)]
