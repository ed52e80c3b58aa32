"""Sigma detection semantics on the DuckDB engine: every modifier and condition form, on hand-built events."""

from __future__ import annotations

import base64
import textwrap

import orjson
import pytest

from ttpscope.detect.runner import detect


# Each test runs on both paths of the engine: the SQL one (DuckDB) and the Python one for small classes,
# chosen through the engine's own option.
PATHS = {"duckdb": {"python_rows": 0}, "python": {"python_rows": 10**9}}
OPTIONS: dict = {}


@pytest.fixture(params=sorted(PATHS), autouse=True)
def engine_path(request):
    OPTIONS.clear()
    OPTIONS.update(PATHS[request.param])
    yield request.param
    OPTIONS.clear()


def run(tmp_path, detection: str, events: list[dict], logsource: str = "product: testing") -> list[int]:
    """Indexes (0-based) of the events the rule fires on."""
    rule = tmp_path / "rule.yml"
    rule.write_text(textwrap.dedent(f"""\
        title: Modifier test
        id: 11111111-2222-3333-4444-555555555555
        status: test
        level: high
        tags:
            - attack.execution
            - attack.t1059
        logsource:
            {logsource}
        detection:
        """) + textwrap.indent(textwrap.dedent(detection), "    "), encoding="utf-8")
    logs = tmp_path / "events.jsonl"
    logs.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    # the events name no log source: the rule's own is declared for them
    result = detect(logs, rule, cache=False, engine_options=dict(OPTIONS), logsource=_declared(logsource))
    assert not result.rules.errors, result.rules.errors
    assert not result.compile_errors, result.compile_errors
    assert not result.engine_errors, result.engine_errors
    return sorted(d.record - 1 for d in result.detections)


def _declared(logsource: str) -> str:
    """'product: testing' (the rule's logsource block) → 'product=testing' (as --logsource takes it)."""
    return ",".join("=".join(p.strip() for p in line.split(":", 1)) for line in logsource.splitlines() if ":" in line)


CMD = [
    {"CommandLine": "C:\\Windows\\System32\\cmd.exe /c whoami", "Image": "C:\\Windows\\System32\\cmd.exe"},
    {"CommandLine": "POWERSHELL.EXE -NoP -Enc SQBFAFgA", "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"},
    {"CommandLine": "notepad.exe readme.txt", "Image": "C:\\Windows\\notepad.exe"},
    {"Image": "C:\\Tools\\nocmdline.exe"},
]


@pytest.mark.parametrize("detection, expected", [
    # plain value: whole-value match, case-insensitive
    ("sel:\n    Image: 'c:\\windows\\notepad.EXE'\ncondition: sel", [2]),
    ("sel:\n    CommandLine|contains: 'WHOAMI'\ncondition: sel", [0]),
    ("sel:\n    Image|startswith: 'C:\\Windows\\System32\\'\ncondition: sel", [0, 1]),
    ("sel:\n    Image|endswith:\n        - '\\cmd.exe'\n        - '\\notepad.exe'\ncondition: sel", [0, 2]),
    # wildcards inside a value, single-character wildcard, escaped wildcard
    ("sel:\n    CommandLine: 'c:\\windows*cmd.exe /c *'\ncondition: sel", [0]),
    ("sel:\n    CommandLine: 'notepad.ex? readme.txt'\ncondition: sel", [2]),
    ("sel:\n    CommandLine|contains: 'a\\*b'\ncondition: sel", []),
    # all: every value must be present
    ("sel:\n    CommandLine|contains|all:\n        - '-nop'\n        - '-enc'\ncondition: sel", [1]),
    ("sel:\n    CommandLine|contains|all:\n        - '-nop'\n        - 'whoami'\ncondition: sel", []),
    # lists are OR; several fields in one map are AND
    ("sel:\n    CommandLine|contains: ['whoami', 'readme']\n    Image|endswith: '.exe'\ncondition: sel", [0, 2]),
    # cased: exact case
    ("sel:\n    CommandLine|cased|contains: 'POWERSHELL'\ncondition: sel", [1]),
    ("sel:\n    CommandLine|cased|contains: 'powershell'\ncondition: sel", []),
    # regular expressions: case-sensitive unless i; search, not full match
    ("sel:\n    CommandLine|re: '-Enc [A-Z]+'\ncondition: sel", [1]),
    ("sel:\n    CommandLine|re: 'powershell\\.exe'\ncondition: sel", []),
    ("sel:\n    CommandLine|re|i: 'powershell\\.exe'\ncondition: sel", [1]),
    ("sel:\n    CommandLine|re: '^notepad'\ncondition: sel", [2]),
    # a lookahead RE2 cannot run: Python's re through a UDF
    ("sel:\n    CommandLine|re: 'cmd\\.exe(?= /c)'\ncondition: sel", [0]),
    # exists / null
    ("sel:\n    CommandLine|exists: false\ncondition: sel", [3]),
    ("sel:\n    CommandLine|exists: true\ncondition: sel", [0, 1, 2]),
    ("sel:\n    CommandLine: null\ncondition: sel", [3]),
    # not on a missing field is true (SQL NULL does not leak through NOT)
    ("sel:\n    Image|endswith: '.exe'\nfilter:\n    CommandLine|contains: 'whoami'\ncondition: sel and not filter",
     [1, 2, 3]),
    # conditions: 1 of / all of with wildcards, them, parentheses
    ("sel_a:\n    CommandLine|contains: 'whoami'\nsel_b:\n    CommandLine|contains: 'readme'\n"
     "condition: 1 of sel_*", [0, 2]),
    ("sel_a:\n    CommandLine|contains: 'whoami'\nsel_b:\n    Image|endswith: 'cmd.exe'\n"
     "condition: all of sel_*", [0]),
    ("sel_a:\n    CommandLine|contains: 'whoami'\nsel_b:\n    CommandLine|contains: 'enc'\ncondition: 1 of them",
     [0, 1]),
    ("a:\n    Image|endswith: 'cmd.exe'\nb:\n    Image|endswith: 'notepad.exe'\nc:\n    CommandLine|contains: 'whoami'\n"
     "condition: (a or b) and not c", [2]),
    # keywords: anywhere in the event
    ("keywords:\n    - 'readme.txt'\n    - 'nocmdline'\ncondition: keywords", [2, 3]),
    ("keywords:\n    - 'readme.txt'\n    - 'nocmdline'\nsel:\n    Image|endswith: 'notepad.exe'\ncondition: keywords and sel",
     [2]),
])
def test_string_modifiers_and_conditions(tmp_path, detection, expected):
    assert run(tmp_path, detection, CMD) == expected


def test_windash(tmp_path):
    events = [{"CommandLine": "net user /add x"}, {"CommandLine": "net user -add x"},
              {"CommandLine": "net user \u2013add x"}, {"CommandLine": "net user add x"}]
    assert run(tmp_path, "sel:\n    CommandLine|windash|contains: ' -add '\ncondition: sel", events) == [0, 1, 2]


def test_base64_and_base64offset(tmp_path):
    secret = "Invoke-Mimikatz"
    events = [{"Payload": base64.b64encode(secret.encode()).decode()},
              {"Payload": "xx" + base64.b64encode(("A" + secret).encode()).decode()},
              {"Payload": "xx" + base64.b64encode(("AB" + secret).encode()).decode() + "yy"},
              {"Payload": base64.b64encode(b"harmless text").decode()}]
    assert run(tmp_path, f"sel:\n    Payload|base64: '{secret}'\ncondition: sel", events) == [0]
    assert run(tmp_path, f"sel:\n    Payload|base64offset|contains: '{secret}'\ncondition: sel", events) == [0, 1, 2]


def test_wide_utf16(tmp_path):
    ps = "IEX"
    wide = base64.b64encode(ps.encode("utf-16-le")).decode()
    big = base64.b64encode(ps.encode("utf-16-be")).decode()
    # pySigma's utf16 prefixes a byte-order mark, encoded as EF BB BF ("77u/"): mirror its definition
    bom = base64.b64encode(b"\xef\xbb\xbf" + ps.encode("utf-16-le")).decode()
    events = [{"Payload": f"-enc {wide}"}, {"Payload": f"-enc {big}"}, {"Payload": base64.b64encode(b"IEX").decode()},
              {"Payload": bom}]
    assert run(tmp_path, f"sel:\n    Payload|wide|base64|contains: '{ps}'\ncondition: sel", events) == [0, 3]
    assert run(tmp_path, f"sel:\n    Payload|utf16be|base64|contains: '{ps}'\ncondition: sel", events) == [1]
    assert run(tmp_path, f"sel:\n    Payload|utf16|base64: '{ps}'\ncondition: sel", events) == [3]


def test_cidr(tmp_path):
    events = [{"DestinationIp": "10.1.2.3"}, {"DestinationIp": "192.168.7.9"}, {"DestinationIp": "172.20.0.1"},
              {"DestinationIp": "172.32.0.1"}, {"DestinationIp": "fe80::1"}, {"DestinationIp": "2001:db8::5"}]
    det = "sel:\n    DestinationIp|cidr:\n        - '10.0.0.0/8'\n        - '172.16.0.0/12'\n        - 'fe80::/10'\ncondition: sel"
    assert run(tmp_path, det, events) == [0, 2, 4]


def test_numeric_comparisons(tmp_path):
    events = [{"Size": "5"}, {"Size": "10"}, {"Size": "15"}, {"Size": "not a number"}, {}]
    assert run(tmp_path, "sel:\n    Size|lt: 10\ncondition: sel", events) == [0]
    assert run(tmp_path, "sel:\n    Size|lte: 10\ncondition: sel", events) == [0, 1]
    assert run(tmp_path, "sel:\n    Size|gt: 10\ncondition: sel", events) == [2]
    assert run(tmp_path, "sel:\n    Size|gte: 10\ncondition: sel", events) == [1, 2]
    assert run(tmp_path, "sel:\n    Size: 10\ncondition: sel", events) == [1]


def test_neq_and_fieldref(tmp_path):
    events = [{"User": "alice", "TargetUser": "ALICE"}, {"User": "alice", "TargetUser": "bob"},
              {"User": "carol"}]
    assert run(tmp_path, "sel:\n    User|fieldref: TargetUser\ncondition: sel", events) == [0]
    assert run(tmp_path, "sel:\n    User|neq: alice\ncondition: sel", events) == [2]


def test_regex_flags(tmp_path):
    events = [{"Text": "first line\nSecond line"}, {"Text": "one\ntwo"}]
    assert run(tmp_path, "sel:\n    Text|re: '^Second'\ncondition: sel", events) == []
    assert run(tmp_path, "sel:\n    Text|re|m: '^Second'\ncondition: sel", events) == [0]
    assert run(tmp_path, "sel:\n    Text|re: 'one.two'\ncondition: sel", events) == []
    assert run(tmp_path, "sel:\n    Text|re|s: 'one.two'\ncondition: sel", events) == [1]
    assert run(tmp_path, "sel:\n    Text|re|i|m: '^second'\ncondition: sel", events) == [0]


def test_values_are_literal_never_sql(tmp_path):
    """Quotes, %, _, backslashes and SQL keywords in a rule value match themselves and nothing else."""
    nasty = "it's 100% a_b\\c'); DROP TABLE batch; -- OR 1=1"
    events = [{"CommandLine": f"x {nasty} y"}, {"CommandLine": "its 1000 aXb\\c OR 1=1"},
              {"CommandLine": "it's 100% a_b\\c"}, {"CommandLine": "anything at all"}]
    def q(value: str) -> str:  # YAML single-quoted scalar: backslashes literal, quotes doubled
        return "'" + value.replace("'", "''") + "'"

    rules = [
        (f"sel:\n    CommandLine|contains: {q(nasty)}\ncondition: sel", [0]),
        (f"sel:\n    CommandLine|contains: {q('100% a_b')}\ncondition: sel", [0, 2]),
        (f"sel:\n    CommandLine|endswith: {q('a_b' + chr(92) + 'c')}\ncondition: sel", [2]),
        (f"sel:\n    CommandLine: {q(events[2]['CommandLine'])}\ncondition: sel", [2]),
        # a LIKE-shaped value (wildcard in the middle) with % and _ taken literally
        (f"sel:\n    CommandLine: {q('it*100% a_b' + chr(92) + 'c')}\ncondition: sel", [2]),
        (f"sel:\n    CommandLine: {q('it*1000 a_b' + chr(92) + 'c')}\ncondition: sel", []),
        # a field name with a double quote is an identifier, not SQL
        (f"sel:\n    {q('Command' + chr(34) + 'Line')}: x\ncondition: sel", []),
    ]
    for det, expected in rules:
        assert run(tmp_path, det, events) == expected, det


def test_unicode_case_folding(tmp_path):
    events = [{"Path": "C:\\Users\\ÉLODIE\\Desktop"}, {"Path": "C:\\Users\\elodie"}]
    assert run(tmp_path, "sel:\n    Path|contains: '\\élodie\\'\ncondition: sel", events) == [0]


def test_one_case_folding_rule_for_values_and_columns(tmp_path):
    """Dotted capital I and final sigma fold the same way in rule values and in columns, on both paths
    (issue 15 item 14): Python's own lower() would give 'i̇stanbul' and 'οδος', the engines 'istanbul', 'οδοσ'."""
    events = [{"City": "İstanbul"}, {"City": "istanbul"}, {"City": "ΟΔΟΣ"}, {"City": "οδος"}, {"City": "Istanbul"}]
    assert run(tmp_path, "sel:\n    City|contains: 'İstanbul'\ncondition: sel", events) == [0, 1, 4]
    assert run(tmp_path, "sel:\n    City: 'istanbul'\ncondition: sel", events) == [0, 1, 4]
    assert run(tmp_path, "sel:\n    City|endswith: 'ΟΣ'\ncondition: sel", events) == [2, 3]
    assert run(tmp_path, "sel:\n    City: 'οδος'\ncondition: sel", events) == [2, 3]
    assert run(tmp_path, "sel:\n    City|startswith: 'ΟΔ'\ncondition: sel", events) == [2, 3]


def test_keywords_search_fields_whose_names_start_with_underscore(tmp_path):
    """`_raw` and `_message` are event fields like any other: keyword searches read them on the Arrow
    path as on the SQL path (issue 15 item 15)."""
    events = [{"_raw": "x mimikatz y", "host": "a"}, {"_message": "sekurlsa::logonpasswords", "host": "b"},
              {"_raw": "benign", "host": "c"}]
    assert run(tmp_path, "keywords:\n    - 'mimikatz'\n    - 'sekurlsa'\ncondition: keywords", events) == [0, 1]
    assert run(tmp_path, "keywords:\n    - 'mimikatz'\ncondition: keywords", events) == [0]


def test_field_spelled_two_ways_in_one_class(tmp_path):
    """Events of one class spelling a field "message" and "Message" (NXLog exports do): one column, so
    keyword and field searches see both (the SQL path once missed the second spelling)."""
    events = [{"Channel": "Windows PowerShell", "EventID": "800", "message": "benign"},
              {"Channel": "Windows PowerShell", "EventID": "800", "Message": "x\nmimikatz # lsadump::backupkeys"},
              {"Channel": "Windows PowerShell", "EventID": "800", "message": "sekurlsa::logonpasswords"}]
    assert run(tmp_path, """\
        keywords:
            - 'lsadump::'
            - 'sekurlsa::'
        condition: keywords
        """, events, logsource="product: windows") == [1, 2]
    assert run(tmp_path, """\
        sel:
            Message|contains: '::'
        condition: sel
        """, events, logsource="product: windows") == [1, 2]
