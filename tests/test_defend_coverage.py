"""Coverage, gaps and hunting leads on the real SigmaHQ rules (loaded by ttpscope.detect.rules)."""

from __future__ import annotations

import pytest

from ttpscope.analyze.coverage import coverage_report, hunt_leads
from ttpscope.analyze.profile import profile_all_groups, profile_from_groups
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
