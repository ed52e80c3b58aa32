"""Threat profiles (groups, software opt-in, prevalence, rankings, technique sets) and newer ATT&CK ids."""

from __future__ import annotations

import pytest

from ttpscope.analyze.crosswalk import resolve_any_release
from ttpscope.analyze.profile import (profile_all_groups, profile_from_groups, profile_from_ranking,
                                      profile_from_techniques)
from ttpscope.errors import NotFoundError


def test_profile_groups_and_aliases(kb):
    p = profile_from_groups(kb, ["Cozy Bear", "FIN7", "G0016"])
    assert p.groups == ["G0016", "G0046"]  # alias and id of APT29 collapse
    both = kb.group_techniques("G0016", via={"direct", "campaign"}) & kb.group_techniques("G0046", via={"direct", "campaign"})
    assert both and all(p.weights[t] == 2.0 for t in both)
    assert set(p.weights) == (kb.group_techniques("G0016", via={"direct", "campaign"})
                              | kb.group_techniques("G0046", via={"direct", "campaign"}))
    with pytest.raises(NotFoundError, match="NoSuchActor"):
        profile_from_groups(kb, ["NoSuchActor"])


def test_profile_software_is_opt_in(kb):
    base = profile_from_groups(kb, ["APT29"])
    wide = profile_from_groups(kb, ["APT29"], via={"direct", "campaign", "software"})
    assert set(base.weights) < set(wide.weights)


def test_profile_all_groups_is_prevalence(kb):
    p = profile_all_groups(kb)
    n = len(kb.live_groups())
    users = len(p.actors["T1105"])
    assert p.weights["T1105"] == pytest.approx(users / n, abs=1e-6)
    assert max(p.weights.values()) <= 1.0


def test_profile_from_ranking_and_techniques(kb):
    p = profile_from_ranking(kb, [("G0016", 0.7), ("G0046", 0.2), ("G0007", 0.1)], top=2)
    assert p.groups == ["G0016", "G0046"] and p.kind == "attribution" and p.group_weights["G0046"] == 0.2
    logs = profile_from_ranking(kb, [("G0016", 3.2), ("G0046", -1.5)], top=5)  # log scores: equal weights
    assert logs.groups == ["G0016", "G0046"] and set(logs.group_weights.values()) == {1.0}
    with pytest.raises(NotFoundError):
        profile_from_ranking(kb, [], top=3)
    t = profile_from_techniques(kb, ["T1003.001", "T1086"])  # T1086 is revoked -> T1059.001
    assert set(t.weights) == {"T1003.001", "T1059.001"} and t.notes
    with pytest.raises(NotFoundError):
        profile_from_techniques(kb, ["T9999"])


def test_crosswalk_newer_ids(kb):
    assert resolve_any_release(kb, "T1685").id == "T1562.001"
    assert resolve_any_release(kb, "T1219.002").id == "T1219"  # newer sub-technique: its parent
    assert resolve_any_release(kb, "T1003.001").id == "T1003.001" and resolve_any_release(kb, "T1003.001").note is None
    assert resolve_any_release(kb, "T9999").id is None
