"""Mitigation plans: the greedy cover on a known answer, and on real ATT&CK data."""

from __future__ import annotations

import pytest

from ttpscope.analyze.mitigations import greedy_cover, mitigation_plan


def test_greedy_cover_known_answer():
    sets = {"A": {1, 2, 3}, "B": {3, 4}, "C": {4, 5}, "D": {1, 2, 3, 4}}
    order = greedy_cover(sets, {})
    assert order == [("D", [1, 2, 3, 4]), ("C", [5])]
    # weights change the choice: element 5 is worth more than 1-3 together
    order = greedy_cover(sets, {5: 10.0})
    assert order[0] == ("C", [4, 5])


def test_mitigation_plan_real(kb):
    plan = mitigation_plan(kb, ["T1003.001", "T1059.001", "T1566.001", "T1078", "T1583.001", "T9999"])
    assert plan["unknown"] == ["T9999"]
    cover = [m for m in plan["mitigations"] if m["in_cover"]]
    covered = {t for m in cover for t in m["new"]}
    mitigable = {t["id"] for t in plan["techniques"]} - set(plan["uncovered"])
    assert covered == mitigable
    assert cover[-1]["cumulative"] == pytest.approx(len(mitigable) / len(plan["techniques"]), abs=1e-3)
    # the first pick covers at least as many as any other single mitigation
    assert len(cover[0]["new"]) == max(len(m["covers"]) for m in plan["mitigations"])
    assert all(len(c["new"]) > 0 for c in cover)
    names = {d["name"] for d in plan["data_components"]}
    assert {"Process Creation", "Command Execution"} <= names
    assert plan["attack_version"] == "15.1"


def test_mitigation_plan_v18_detection_strategies(shared_data):
    from ttpscope.kb import load_kb

    ics = load_kb("ics", str(shared_data / "attack" / "ics-attack-18.1.json"))
    plan = mitigation_plan(ics, ["T0807", "T0886"])
    assert plan["detection_strategies"], "v18 bundle has detection strategies"
    det = plan["detection_strategies"][0]
    assert det["analytics"] and det["analytics"][0]["log_sources"]
    assert plan["data_components"]
