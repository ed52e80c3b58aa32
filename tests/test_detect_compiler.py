"""The detection layers on their own: inline YAML → IR (compiler, variants), IR → SQL text (sql), and which
rules survive folding for one event class (planner)."""

from __future__ import annotations

import textwrap

import pyarrow as pa
import pytest

from ttpscope.detect.compiler import compile_rule
from ttpscope.detect.ir import ANY, FALSE, TRUE, And, Not, Or, Pred, fold
from ttpscope.detect.planner import Planner
from ttpscope.detect.rules import load_rules
from ttpscope.detect.sql import DUCKDB, SPARK, ColumnMap, render, spark_string, sql_ident, sql_string
from ttpscope.ingest.base import EventBatch
from ttpscope.ingest.logsource import UNKNOWN, LogSource

SYSMON = "Microsoft-Windows-Sysmon/Operational"


def rule(tmp_path, logsource: str, detection: str, name: str = "r", rid: str = "00000000-0000-0000-0000-0000000000c1"):
    path = tmp_path / f"{name}.yml"
    path.write_text(f"title: {name}\nid: {rid}\nlevel: high\nlogsource:\n" + textwrap.indent(logsource, "    ")
                    + "\ndetection:\n" + textwrap.indent(textwrap.dedent(detection), "    "), encoding="utf-8")
    return path


def compiled(tmp_path, logsource, detection, kb, **kw):
    rs = load_rules(rule(tmp_path, logsource, detection, **kw), kb=kb, cache=False)
    assert not rs.errors
    return compile_rule(rs.rules[0])


# ---------------------------------------------------------------------------------------------- IR
def test_inline_yaml_to_ir(tmp_path, kb):
    cr = compiled(tmp_path, "product: zeek\nservice: conn", """\
        sel:
            id.resp_p: 3389
            history|startswith: 'Sh'
        filter:
            id.orig_h|cidr: '10.0.0.0/8'
        condition: sel and not filter
        """, kb)
    assert cr.error is None and set(cr.variants) == {"plain"} and cr.logsource == {"product": "zeek", "service": "conn"}
    assert cr.variants["plain"] == And((Pred("id.resp_p", "eq", "3389"), Pred("history", "startswith", "sh"),
                                        Not(Pred("id.orig_h", "startswith", "10."))))


def test_modifiers_to_ir(tmp_path, kb):
    cr = compiled(tmp_path, "product: testing", """\
        sel:
            CommandLine|contains|all: ['-enc', 'Bypass']
            Image|endswith: ['\\\\a.exe', '\\\\b.exe']
            User|cased: 'Admin'
            Path: 'C:\\\\*\\\\x?.dll'
            Size|gte: 10
            Note|re: '(?i)mimi'
        kw:
            - 'sekurlsa'
        condition: sel or kw
        """, kb)
    sel, kw = cr.variants["plain"].args
    assert sel.args[:2] == (Pred("CommandLine", "contains", "-enc"), Pred("CommandLine", "contains", "bypass"))
    assert sel.args[2] == Or((Pred("Image", "endswith", "\\a.exe"), Pred("Image", "endswith", "\\b.exe")))
    assert Pred("User", "eq", "Admin", cased=True) in sel.args
    like = next(a for a in sel.args if isinstance(a, Pred) and a.op == "like")
    assert like.field == "Path" and like.value[0] == "c:\\" and like.value[1] is ANY
    assert Pred("Size", "cmp", (">=", 10.0)) in sel.args and Pred("Note", "re", ("(?i)mimi", ""), cased=True) in sel.args
    assert kw == Pred(None, "contains", "sekurlsa")


def test_windows_variants_carry_channel_and_field_mapping(tmp_path, kb):
    cr = compiled(tmp_path, "product: windows\ncategory: process_creation",
                  "sel:\n    Image|endswith: '\\\\whoami.exe'\ncondition: sel\n", kb)
    assert set(cr.variants) == {"sysmon", "security", "plain"}
    cmap = _cmap("channel", "eventid", "image", "newprocessname", "provider_name")
    assert "'microsoft-windows-sysmon/operational'" in render(cr.variants["sysmon"], cmap)
    security = render(cr.variants["security"], cmap)
    # Image → NewProcessName (column l3), never Image (l2)
    assert security == "((l0 = 'security') AND (l1 = '4688') AND suffix(l3, '\\whoami.exe'))"
    assert render(cr.variants["plain"], cmap) == "suffix(l2, '\\whoami.exe')"


def test_unmapped_windows_category_has_only_the_plain_variant(tmp_path, kb):
    cr = compiled(tmp_path, "product: windows\ncategory: file_access", "sel:\n    FileName: x\ncondition: sel\n", kb)
    assert set(cr.variants) == {"plain"} and "file_access" in cr.note


# ---------------------------------------------------------------------------------------------- SQL
def _cmap(*fields: str) -> ColumnMap:
    cmap = ColumnMap()
    for i, f in enumerate(fields):
        cmap.lower[f] = f"l{i}"
        cmap.orig[f] = f"o{i}"
    cmap.text = [f"o{i}" for i in range(len(fields))]
    return cmap


def test_sql_text_and_escaping():
    cmap = _cmap("commandline", "size")
    assert render(Pred("CommandLine", "contains", "it's 100%"), cmap) == "contains(l0, 'it''s 100%')"
    assert render(Pred("CommandLine", "like", ("a_b", ANY, "50%\\")), cmap) == \
        "(l0 LIKE 'a\\_b%50\\%\\\\' ESCAPE '\\')"
    assert render(Pred("CommandLine", "eq", "x\x00y'; DROP TABLE t; --"), cmap) == \
        "(l0 = ('x' || chr(0) || 'y''; DROP TABLE t; --'))"
    assert render(Not(Pred("CommandLine", "eq", "a")), cmap) == "(NOT coalesce((l0 = 'a'), false))"
    assert render(Pred("Size", "cmp", (">=", 10.0)), cmap) == "(TRY_CAST(o1 AS DOUBLE) >= 10.0)"
    assert render(Pred(None, "contains", "mimi"), cmap) == \
        "(regexp_matches(o0, '(?i)mimi') OR regexp_matches(o1, '(?i)mimi'))"
    or3 = Or(tuple(Pred("CommandLine", "contains", v) for v in ("a.b", "c", "d")))
    assert render(or3, cmap) == "regexp_matches(l0, 'a\\.b|c|d')"  # one alternation
    assert render(TRUE, cmap) == "true" and render(FALSE, cmap) == "false"
    assert sql_ident('we"ird') == '"we""ird"' and sql_string("") == "''"
    # Spark: no quote doubling, backslashes spelled out
    assert spark_string("it's a\\b") == "concat('it', chr(39), 's a', chr(92), 'b')"
    assert render(Pred("CommandLine", "startswith", "x"), cmap, SPARK) == "startswith(l0, 'x')"
    assert DUCKDB.ident("::row") == '"::row"' and SPARK.ident("a`b") == "`a``b`"


# ---------------------------------------------------------------------------------------------- planner
def _batch(key: tuple, columns: dict) -> EventBatch:
    n = len(next(iter(columns.values())))
    return EventBatch(key, pa.table({c: pa.array(v, pa.string()) for c, v in columns.items()}), ["s"])


def test_fold_constants_and_missing_columns():
    cond = And((Pred("Channel", "eq", "security"), Pred("Image", "endswith", "x.exe")))
    assert fold(cond, {"channel": "Security"}, frozenset({"image"})) == Pred("Image", "endswith", "x.exe")
    assert fold(cond, {"channel": "System"}, frozenset({"image"})) == FALSE
    assert fold(cond, {"channel": "Security"}, frozenset()) == FALSE  # a field the class lacks
    assert fold(Not(Pred("Image", "exists")), {}, frozenset()) == TRUE


def test_rules_surviving_folding_for_one_class(tmp_path, kb):
    for name, logsource, det in [
            ("proc", "product: windows\ncategory: process_creation", "sel:\n    Image|endswith: '\\\\whoami.exe'"),
            ("ps", "product: windows\ncategory: ps_script", "sel:\n    ScriptBlockText|contains: 'x'"),
            ("logon", "product: windows\nservice: security", "sel:\n    EventID: 4624"),
            ("zeek", "product: zeek\nservice: conn", "sel:\n    id.resp_p: 3389"),
            ("nolog", "product: windows\ncategory: process_creation", "sel:\n    Missing: x")]:
        rule(tmp_path, logsource, det + "\ncondition: sel\n", name, f"00000000-0000-0000-0000-{len(name):012d}")
    rs = load_rules(tmp_path, kb=kb, cache=False)
    titles = [r.title for r in rs.rules]
    planner = Planner([compile_rule(r, i) for i, r in enumerate(rs.rules)])

    def survivors(key, columns):
        batch = _batch(key, columns)
        sig, _ = planner._class_of(batch)
        return sorted(titles[i] for i in planner._plan(sig, batch.table.column_names).rules)

    sysmon1 = (SYSMON, "Microsoft-Windows-Sysmon", "1", LogSource("windows", "sysmon", "process_creation"))
    assert survivors(sysmon1, {"Image": ["C:\\whoami.exe"]}) == ["proc"]
    sec4624 = ("Security", "Microsoft-Windows-Security-Auditing", "4624", LogSource("windows", "security"))
    assert survivors(sec4624, {"TargetUserName": ["a"]}) == ["logon"]
    zeek = (None, None, None, LogSource("zeek", "conn"))
    assert survivors(zeek, {"id.resp_p": ["3389"]}) == ["zeek"]
    # the same fields, of no known source: nothing runs
    assert survivors((None, None, None, UNKNOWN), {"id.resp_p": ["3389"], "Image": ["x"]}) == []
    # a Defender XDR process table (no channel): the Windows process rules' plain variant
    xdr = (None, None, None, LogSource("windows", None, "process_creation"))
    assert survivors(xdr, {"Image": ["C:\\whoami.exe"]}) == ["proc"]
    # visibility: the class of "nolog"'s log source was seen even though it lacks the rule's field
    assert {titles[i] for i in planner.with_data} == {"proc", "logon", "zeek", "nolog"}


# ---------------------------------------------------------------------------------------------- bad rules
BAD_RULES = {
    "of_missing": "sel:\n    CommandLine|contains: x\ncondition: 1 of foo*\n",
    "empty_condition": "sel:\n    CommandLine|contains: x\ncondition: ''\n",
}


@pytest.mark.parametrize("engine, options", [("duckdb", {"python_rows": 0}), ("duckdb", {}), ("arrow", {})])
def test_bad_conditions_are_per_rule_errors(tmp_path, engine, options):
    """`1 of foo*` without such a selection and an empty condition: each an error for that rule, never a
    crash nor a rule matching every event; the good rule beside them still fires (issue 15 item 20)."""
    import orjson

    from ttpscope.detect.runner import detect

    for i, (name, det) in enumerate(BAD_RULES.items()):
        rule(tmp_path, "product: testing", det, name, f"00000000-0000-0000-0000-00000000000{i}")
    rule(tmp_path, "product: testing", "sel:\n    CommandLine|contains: x\ncondition: sel\n", "good",
         "00000000-0000-0000-0000-000000000009")
    logs = tmp_path / "events.jsonl"
    logs.write_bytes(orjson.dumps({"CommandLine": "x"}) + b"\n" + orjson.dumps({"CommandLine": "y"}))
    result = detect(logs, tmp_path, cache=False, engine=engine, engine_options=options, logsource="product=testing")
    failed = {rid[-1]: msg for rid, _, msg in result.compile_errors}
    assert set(failed) == {"0", "1"} and "no selection" in failed["0"]
    assert [(d.title, d.record) for d in result.detections] == [("good", 1)]


# ---------------------------------------------------------------------------------------------- backtracking regex
@pytest.mark.timeout(180)
@pytest.mark.parametrize("engine, options", [("duckdb", {"python_rows": 0}), ("duckdb", {}), ("arrow", {}),
                                             pytest.param("spark", {"master": "local[1]"}, marks=pytest.mark.slow)])
def test_backtracking_regex_is_a_bounded_per_rule_error(tmp_path, engine, options):
    """A lookahead pattern RE2 cannot run, `(?=a)(a+)+$`, on a 5,000-character field (as a field value and
    as a keyword): each rule ends in its own error naming the time budget — no hang — and the other rules'
    detections are kept; a lookaround and a backreference RE2 cannot run still match on normal input
    (issue 15 item 7). On Spark the nested repetition is what Java's regexes would never finish: it is
    searched on the driver within the same budget, and the lookaround and backreference run in Java."""
    import orjson

    from ttpscope.detect.runner import detect

    if engine == "spark":
        pytest.importorskip("pyspark", reason="the [spark] extra is not installed")

    rule(tmp_path, "product: testing", "sel:\n    CommandLine|re: '(?=a)(a+)+$'\ncondition: sel\n", "field",
         "00000000-0000-0000-0000-0000000000b1")
    rule(tmp_path, "product: testing", "keywords:\n    - '|re': '(?=a)(a+)+$'\ncondition: keywords\n", "keyword",
         "00000000-0000-0000-0000-0000000000b2")
    rule(tmp_path, "product: testing", "sel:\n    CommandLine|contains: 'aaaa'\ncondition: sel\n", "good",
         "00000000-0000-0000-0000-0000000000b3")
    rule(tmp_path, "product: testing", "sel:\n    User|re: '^(\\w+)@\\1$'\ncondition: sel\n", "backref",
         "00000000-0000-0000-0000-0000000000b4")
    rule(tmp_path, "product: testing", "sel:\n    User|re: '^(?!root)\\w+@'\ncondition: sel\n", "lookahead",
         "00000000-0000-0000-0000-0000000000b5")
    logs = tmp_path / "events.jsonl"
    events = [{"CommandLine": "a" * 5000 + "b", "User": u} for u in ("bob@bob", "root@x", "eve@x")]
    logs.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    result = detect(logs, tmp_path, cache=False, engine=engine, engine_options=options, logsource="product=testing")
    errors = dict(result.engine_errors)
    assert set(errors) == {"00000000-0000-0000-0000-0000000000b1", "00000000-0000-0000-0000-0000000000b2"}, errors
    for message in errors.values():
        assert message.startswith("regular expression over its time budget") and "(?=a)(a+)+$" in message
    assert sorted((d.title, d.record) for d in result.detections) == [
        ("backref", 1), ("good", 1), ("good", 2), ("good", 3), ("lookahead", 1), ("lookahead", 3)]


@pytest.mark.timeout(60)
def test_regex_search_is_bounded():
    from ttpscope.detect.ir import RegexBudget, RegexBudgetExceeded, regex_search

    assert regex_search(r"(\w)\1", "i", ["xAa", None, "abc"]) == [True, None, False]
    budget = RegexBudget(0.5)
    with pytest.raises(RegexBudgetExceeded, match="0.5 s on one batch"):
        regex_search(r"(?=a)(a+)+$", "", ["a" * 5000 + "b"] * 3, budget)
    with pytest.raises(RegexBudgetExceeded):  # the batch's budget is spent: the next call stops at once
        regex_search(r"(?=a)(a+)+$", "", ["a" * 5000 + "b"], budget)


def test_correlation_with_an_impossible_timespan_is_a_rule_error(tmp_path):
    import orjson

    from ttpscope.detect.runner import detect

    (tmp_path / "c.yml").write_text(textwrap.dedent("""\
        title: base
        id: 00000000-0000-0000-0000-0000000000e3
        name: base_rule
        logsource: {product: testing}
        detection:
          sel: {CommandLine|contains: x}
          condition: sel
        ---
        title: corr
        id: 00000000-0000-0000-0000-0000000000e4
        correlation:
          type: event_count
          rules: [base_rule]
          group-by: [User]
          timespan: 99999999999d
          condition: {gte: 2}
        """), encoding="utf-8")
    logs = tmp_path / "events.jsonl"
    logs.write_bytes(b"\n".join(orjson.dumps({"CommandLine": f"x{i}", "User": "a"}) for i in range(2)))
    result = detect(logs, tmp_path / "c.yml", cache=False, logsource="product=testing")
    assert [(rid, msg) for rid, _, msg in result.compile_errors] == [
        ("00000000-0000-0000-0000-0000000000e4", "timespan 99999999999d is out of range (at most 999,999,999 days)")]
    assert len(result.detections) == 2  # the base rule's hits stay
