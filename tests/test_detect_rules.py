"""Rule loading: pySigma parsing, per-file errors, ATT&CK tag mapping through the KB, filters."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ttpscope.detect.rules import load_rules, parse_levels
from ttpscope.errors import InputError, NotFoundError


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


RULE = """\
title: {title}
id: {id}
status: {status}
level: {level}
tags:
{tags}
logsource:
    product: windows
    category: {category}
detection:
    selection:
        Image|endswith: '\\{image}'
    condition: selection
"""


def rule(folder, name, *, title, id, tags, level="high", status="test", category="process_creation",
         image="x.exe"):
    tag_lines = "\n".join(f"    - {t}" for t in tags) if tags else "    []"
    if not tags:
        text = RULE.replace("tags:\n{tags}\n", "")
    else:
        text = RULE
    return write(folder, name, text.format(title=title, id=id, status=status, level=level, tags=tag_lines,
                                           category=category, image=image))


@pytest.fixture()
def rules_dir(tmp_path):
    d = tmp_path / "rules"
    rule(d, "a/powershell.yml", title="Old PowerShell tag", id="00000000-0000-0000-0000-000000000001",
         tags=["attack.execution", "attack.t1086"], level="medium")
    rule(d, "a/stealth.yml", title="v19 tactic names", id="00000000-0000-0000-0000-000000000002",
         tags=["attack.stealth", "attack.defense-impairment", "attack.t1562.001", "attack.t1685", "attack.t1999",
               "car.2016-04-002",
               "attack.s0002", "attack.g0016"], level="critical", status="stable", category="registry_set")
    rule(d, "b/untagged.yml", title="No tags at all", id="00000000-0000-0000-0000-000000000003", tags=[],
         level="low", status="experimental")
    rule(d, "b/notactic.yml", title="Technique without tactic tag", id="00000000-0000-0000-0000-000000000004",
         tags=["attack.t1003.001"], level="high")
    write(d, "b/broken_yaml.yml", "title: broken\n  detection: [unclosed\n")
    write(d, "b/bad_modifier.yml", """\
        title: Bad modifier
        id: 00000000-0000-0000-0000-000000000005
        logsource:
            product: windows
        detection:
            selection:
                Image|nosuchmodifier: x
            condition: selection
        """)
    return d


def test_load_maps_tags_and_keeps_going_past_bad_files(rules_dir, kb):
    rs = load_rules(rules_dir, kb=kb)
    by_id = {r.id[-1]: r for r in rs.rules}
    assert sorted(by_id) == ["1", "2", "3", "4"]
    assert rs.files == 6
    bad_paths = sorted(Path(p).name for p, _ in rs.errors)
    assert bad_paths == ["bad_modifier.yml", "broken_yaml.yml"]
    assert any("nosuchmodifier" in msg for _, msg in rs.errors)

    old = by_id["1"]
    assert old.techniques == ["T1059.001"]  # revoked T1086 follows revoked-by
    assert old.tactics == ["execution"]
    assert old.remapped_tags and "revoked" in old.remapped_tags[0][1]
    assert old.logsource == {"product": "windows", "category": "process_creation", "service": None}
    assert old.level == "medium" and old.status == "test"

    v19 = by_id["2"]
    assert v19.tactics == ["defense-evasion"]  # stealth and defense-impairment on a v15.1 KB
    assert v19.techniques == ["T1562.001"]  # T1685 is v19's id for it
    assert any(t == "attack.t1685" and "newer ATT&CK id" in n for t, n in v19.remapped_tags)
    assert [t for t, _ in v19.unknown_tags] == ["attack.t1999"]
    assert "not in enterprise ATT&CK v15.1" in v19.unknown_tags[0][1]
    assert v19.software == ["S0002"] and v19.groups == ["G0016"]
    assert "car.2016-04-002" in v19.tags

    assert by_id["3"].techniques == [] and by_id["3"].tactics == []
    assert by_id["4"].tactics == ["credential-access"]  # taken from the technique when no tactic tag
    assert by_id["4"].rule.title == "Technique without tactic tag"


def test_filters(rules_dir, kb):
    ids = lambda rs: sorted(r.id[-1] for r in rs.rules)  # noqa: E731
    assert ids(load_rules(rules_dir, kb=kb, level="high+")) == ["2", "4"]
    assert ids(load_rules(rules_dir, kb=kb, level=["low", "medium"])) == ["1", "3"]
    assert ids(load_rules(rules_dir, kb=kb, technique="T1059")) == ["1"]  # parent keeps sub-techniques
    assert ids(load_rules(rules_dir, kb=kb, technique="T1086")) == ["1"]  # revoked id in the filter too
    assert ids(load_rules(rules_dir, kb=kb, tactic="attack.stealth")) == ["2"]
    assert ids(load_rules(rules_dir, kb=kb, tactic="TA0006")) == ["4"]
    assert ids(load_rules(rules_dir, kb=kb, category="registry_set", status="stable")) == ["2"]
    assert ids(load_rules(rules_dir, kb=kb, exclude_status="experimental")) == ["1", "2", "4"]
    rs = load_rules(rules_dir, kb=kb, level="critical")
    assert rs.filtered_out == 3
    with pytest.raises(InputError):
        parse_levels("severe")
    with pytest.raises(NotFoundError):
        load_rules(rules_dir, kb=kb, technique="T9999")


def test_parse_cache_sees_edits(rules_dir, kb):
    first = load_rules(rules_dir, kb=kb)
    assert first.get("00000000-0000-0000-0000-000000000003").title == "No tags at all"
    path = rules_dir / "b/untagged.yml"
    path.write_text(path.read_text().replace("No tags at all", "Edited title, longer"), encoding="utf-8")
    again = load_rules(rules_dir, kb=kb)
    assert again.get("00000000-0000-0000-0000-000000000003").title == "Edited title, longer"
    # the cached objects are private copies: mutating one load does not leak into the next
    again.rules[0].rule.title = "mutated"
    assert load_rules(rules_dir, kb=kb).rules[0].rule.title != "mutated"


def test_fresh_rule_is_a_copy(rules_dir, kb):
    info = load_rules(rules_dir, kb=kb).rules[0]
    copy = info.fresh_rule()
    copy.title = "changed"
    assert info.rule.title != "changed"


def test_missing_path_is_an_input_error(tmp_path, kb):
    with pytest.raises(InputError, match="no such rule file"):
        load_rules(tmp_path / "nope", kb=kb)


def test_sigma_filter_documents_apply(tmp_path, kb):
    d = tmp_path / "rules"
    rule(d, "r.yml", title="Rule with exclusions", id="00000000-0000-0000-0000-00000000000a",
         tags=["attack.t1059"], image="cmd.exe")
    write(d, "filter.yml", """\
        title: Exclude the admin host
        id: 00000000-0000-0000-0000-0000000000f1
        logsource:
            product: windows
            category: process_creation
        filter:
            rules:
                - 00000000-0000-0000-0000-00000000000a
            selection:
                Computer: ADMIN01
            condition: not selection
        """)
    rs = load_rules(d, kb=kb)
    assert rs.errors == []
    (info,) = rs.rules
    assert len(info.rule.detection.detections) == 2  # the filter's selection was merged into the rule


def test_all_sigmahq_windows_rules_load(shared_data, kb):
    rs = load_rules(shared_data / "sigma" / "rules" / "windows", kb=kb)
    assert rs.errors == []
    assert len(rs.rules) == rs.files >= 2400
    tagged = sum(1 for r in rs.rules if r.techniques)
    assert tagged / len(rs.rules) > 0.8  # the rest are untagged or tagged only with post-v15.1 ids
    assert all(r.tactics or not r.techniques for r in rs.rules)
