"""Coverage, gaps and hunting leads on the real SigmaHQ rules (loaded by ttpscope.detect.rules), coverage
scoring on known answers, and data-source inventories."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ttpscope.errors import InputError

from ttpscope.analyze.coverage import coverage_report, hunt_leads
from ttpscope.analyze.profile import profile_all_groups, profile_from_groups, profile_from_techniques
from ttpscope.export.layers import coverage_layers, validate_layer
from ttpscope.kb.inventory import load_inventory


@pytest.fixture(scope="module")
def sigmahq(shared_data, kb):
    from ttpscope.detect.rules import load_rules

    return load_rules([shared_data / "sigma" / "rules"], kb=kb)


def test_apt29_coverage_and_gaps(sigmahq, kb):
    rep = coverage_report(kb, sigmahq, profile_from_groups(kb, ["APT29"]))
    assert 0.5 < rep["coverage"] < 1.0
    rows = {t["id"]: t for t in rep["techniques"]}
    # well-covered Windows techniques of APT29
    for tid in ("T1059.001", "T1003.002", "T1047", "T1021.002", "T1053.005"):
        assert rows[tid]["detected"] and rows[tid]["rules"] >= 5, tid
    # SigmaHQ tags these v19 ids (T1685 = Disable or Modify Tools): they must count for T1562.001
    assert rows["T1562.001"]["detected"]
    gaps = {g["id"]: g for g in rep["gaps"]}
    assert "T1027.006" in gaps  # HTML smuggling: no SigmaHQ rule tags it
    assert "T1110.003" in gaps and gaps["T1110.003"]["parent_rules"] > 0  # spraying rules are tagged T1110 only
    pre = [g["pre_compromise"] for g in rep["gaps"]]
    assert pre == sorted(pre)  # PRE-only techniques (domain registration...) come last
    assert all(validate_layer(layer, kb) == [] for layer in coverage_layers(rep, kb).values())


def test_all_groups_weighted_coverage(sigmahq, kb):
    rep = coverage_report(kb, sigmahq, profile_all_groups(kb), platforms=["Windows"])
    assert 0 < rep["weighted_coverage"] <= 1 and rep["weighted_coverage"] > rep["coverage"] - 0.3
    weights = [g["weight"] for g in rep["gaps"] if not g["pre_compromise"]]
    assert weights == sorted(weights, reverse=True)


def test_visibility_from_inventory(sigmahq, kb, tmp_path):
    inv = tmp_path / "inv.yml"
    inv.write_text("platforms:\n  Windows:\n    sigma: [process_creation, windows/security]\n")
    full = coverage_report(kb, sigmahq, profile_from_groups(kb, ["APT29"]))
    part = coverage_report(kb, sigmahq, profile_from_groups(kb, ["APT29"]), load_inventory(inv))
    assert part["coverage"] < full["coverage"]  # rules on registry, image load... no longer count
    assert part["blind_rules"] and part["visible_undetected"]


def test_hunt_leads_real(sigmahq, kb):
    leads = hunt_leads(kb, sigmahq, ["T1003.001", "T9999"], "splunk")
    assert leads["unknown"] == ["T9999"]
    rules = leads["techniques"][0]["rules"]
    assert len(rules) >= 10 and rules[0]["level"] in ("critical", "high")
    assert sum(1 for r in rules if r["queries"]) / len(rules) > 0.9


@dataclass
class Rule:
    """A hand-made stand-in with the RuleInfo attributes coverage reads."""

    id: str
    level: str = "high"
    status: str = "test"
    techniques: list = field(default_factory=list)
    logsource: dict = field(default_factory=lambda: {"product": "windows", "category": "process_creation"})
    title: str = ""


RULES = [
    Rule("r1", "critical", "stable", ["T1003.001"]),
    Rule("r2", "medium", "experimental", ["T1003.001"]),
    Rule("r3", "informational", "test", ["T1059.001"]),  # not alerting
    Rule("r4", "high", "deprecated", ["T1566.001"]),  # deprecated: not alerting
    Rule("r5", "high", "test", ["T1059"]),  # parent only: does not count for T1059.001
    Rule("r6", "high", "test", ["T1021.002"], {"product": "windows", "service": "security"}),
    Rule("r7", "low", "test", ["T1685"]),  # v19 id of T1562.001
]


def test_coverage_scores_known_answer(kb):
    prof = profile_from_techniques(kb, ["T1003.001", "T1059.001", "T1566.001", "T1021.002", "T1562.001",
                                        "T1003", "T1583.001"])
    rep = coverage_report(kb, RULES, prof)
    rows = {t["id"]: t for t in rep["techniques"]}
    assert rows["T1003.001"]["score"] == pytest.approx(1 - (1 - 1.0) * (1 - 0.6 * 0.6))
    assert rows["T1003.001"]["detected"] and rows["T1003.001"]["rules_by_level"] == {"critical": 1, "medium": 1}
    assert rows["T1003"]["detected"] and rows["T1003"]["rules"] == 2  # sub-technique rules count for the parent
    assert not rows["T1059.001"]["detected"] and rows["T1059.001"]["parent_rules"] == 1
    assert not rows["T1566.001"]["detected"]
    assert rows["T1562.001"]["detected"]  # tagged with the newer id
    detected = {"T1003.001", "T1003", "T1021.002", "T1562.001"}
    assert rep["coverage"] == pytest.approx(len(detected) / 7, abs=1e-4)
    gaps = [g["id"] for g in rep["gaps"]]
    # equal weights: matrix order of the first tactic (initial-access before execution), PRE-only last
    assert gaps == ["T1566.001", "T1059.001", "T1583.001"]
    assert rep["gaps"][-1]["pre_compromise"]


def test_coverage_gap_priority_by_actors(kb):
    prof = profile_from_groups(kb, ["APT29", "FIN7"])
    rep = coverage_report(kb, [], prof)
    weights = [g["weight"] for g in rep["gaps"] if not g["pre_compromise"]]
    assert weights == sorted(weights, reverse=True) and weights[0] == 2.0
    assert rep["coverage"] == 0.0 and len(rep["gaps"]) == len(prof.weights)
    assert all(len(g["actors"]) == g["weight"] for g in rep["gaps"])


def test_inventory_visibility_and_blind_rules(kb, tmp_path):
    inv_file = tmp_path / "inv.yml"
    inv_file.write_text("platforms:\n  Windows:\n    data_components: [Process Access]\n"
                        "    sigma: [process_creation]\n")
    inv = load_inventory(inv_file)
    prof = profile_from_techniques(kb, ["T1003.001", "T1021.002", "T1566.001"])
    rep = coverage_report(kb, RULES, prof, inv)
    rows = {t["id"]: t for t in rep["techniques"]}
    assert rows["T1003.001"]["visible"] and "data component: Process Access" in rows["T1003.001"]["visible_via"]
    assert rows["T1021.002"]["rules"] == 1 and rows["T1021.002"]["rules_usable"] == 0  # security log not collected
    assert not rows["T1021.002"]["detected"]
    assert [b["id"] for b in rep["blind_rules"]] == ["T1021.002"]
    # visible (process creation collected -> Process Creation component) but no usable rule
    assert "T1021.002" in [g["id"] for g in rep["visible_undetected"]]
    layers = coverage_layers(rep, kb)
    assert all(validate_layer(layer, kb) == [] for layer in layers.values())
    # the same sources collected on Linux only: Windows rules are no longer usable
    inv_file.write_text("platforms:\n  Linux:\n    sigma: [process_creation, security]\n")
    linux = coverage_report(kb, RULES, prof, load_inventory(inv_file))
    assert not any(t["rules_usable"] for t in linux["techniques"])


@pytest.mark.parametrize("text,problem", [
    ("platforms: [a, b]", "'platforms' mapping"),
    ("platforms:\n  Windows:\n    data_components: Process Creation\n", "must be a list"),
    ("platforms:\n  Windows:\n    sigma: [{vendor: x}]\n", "product / category / service"),
    ("platforms:\n  Windows:\n    colect: []\n", "unknown keys"),
    ("platforms: {Windows: [unclosed\n", "not valid YAML"),
    ("!!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),  # safe loader refuses
])
def test_malformed_inventory(tmp_path, text, problem):
    f = tmp_path / "inv.yml"
    f.write_text(text)
    with pytest.raises(InputError) as err:
        load_inventory(f)
    assert str(f) in str(err.value) and problem in str(err.value)


def test_inventory_v18_log_sources_and_dc_ids(shared_data, tmp_path):
    from ttpscope.kb import load_kb

    ics = load_kb("ics", str(shared_data / "attack" / "ics-attack-18.1.json"))
    prof = profile_from_techniques(ics, ["T0807", "T0886"])
    f = tmp_path / "inv.yml"
    f.write_text('platforms:\n  "*":\n    log_sources: ["Process"]\n')
    rows = {t["id"]: t for t in coverage_report(ics, [], prof, load_inventory(f))["techniques"]}
    assert rows["T0807"]["visible"] and "log source: Process" in rows["T0807"]["visible_via"]
    f.write_text('platforms:\n  all:\n    data_components: [DC0064]\n')  # Command Execution, by id
    rows = {t["id"]: t for t in coverage_report(ics, [], prof, load_inventory(f))["techniques"]}
    assert rows["T0807"]["visible"] and "data component: Command Execution" in rows["T0807"]["visible_via"]
    f.write_text('platforms:\n  Linux:\n    data_components: [DC0064]\n')  # T0807 runs on no such platform
    rows = {t["id"]: t for t in coverage_report(ics, [], prof, load_inventory(f))["techniques"]}
    assert rows["T0807"]["visible"] is False
