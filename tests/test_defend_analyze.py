"""Profiles, mitigations, emulation plans, CVE ranking and coverage scoring: known answers and real data."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ttpscope.analyze.coverage import coverage_report
from ttpscope.analyze.crosswalk import resolve_any_release
from ttpscope.analyze.emulation import emulation_plan, plan_markdown
from ttpscope.analyze.mitigations import greedy_cover, mitigation_plan
from ttpscope.analyze.profile import (profile_all_groups, profile_from_groups, profile_from_ranking,
                                      profile_from_techniques)
from ttpscope.analyze.vulns import rank_cves
from ttpscope.errors import InputError, NotFoundError
from ttpscope.export.layers import coverage_layers, plan_layer, validate_layer
from ttpscope.kb.atomics import load_atomics
from ttpscope.kb.inventory import load_inventory
from ttpscope.kb.vulns import load_mappings


@dataclass
class Rule:
    """A hand-made stand-in with the RuleInfo attributes coverage reads."""

    id: str
    level: str = "high"
    status: str = "test"
    techniques: list = field(default_factory=list)
    logsource: dict = field(default_factory=lambda: {"product": "windows", "category": "process_creation"})
    title: str = ""


# ------------------------------------------------------------------ profiles
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


# ------------------------------------------------------------------ mitigations
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


# ------------------------------------------------------------------ emulation
@pytest.fixture(scope="module")
def atomics(shared_data):
    return load_atomics([shared_data / "atomic-red-team" / "Indexes-CSV"])


@pytest.mark.parametrize("group", ["APT29", "FIN7"])
def test_emulation_plan_real(kb, atomics, group):
    plan = emulation_plan(kb, group, atomics)
    order = {s: i for i, s in enumerate(kb.tactic_order())}
    idx = [order[s["tactic"]] for s in plan["steps"]]
    assert idx == sorted(idx)  # ordered by tactic
    assert plan["summary"]["with_atomics"] >= 20
    step = next(s for s in plan["steps"] if s["technique"] == "T1059.001")
    assert step["procedure"] and step["atomics"]
    assert {"name", "guid", "platform"} <= set(step["atomics"][0])
    assert all(len(a["guid"]) == 36 for s in plan["steps"] for a in s["atomics"])
    md = plan_markdown(plan)
    assert md.startswith(f"# Emulation plan: {plan['group']['name']}") and "T1059.001" in md
    assert validate_layer(plan_layer(plan, kb), kb) == []


def test_emulation_bridges_newer_atomic_ids(kb, atomics):
    plan = emulation_plan(kb, "APT29", atomics, platforms=["windows"])
    step = next(s for s in plan["steps"] if s["technique"] == "T1562.001")  # Atomic files it as T1685 now
    assert step["atomics"] and all(a["technique"] == "T1685" for a in step["atomics"])
    assert all("windows" in a["platforms"] for s in plan["steps"] for a in s["atomics"])


def test_atomics_handmade_and_bad(tmp_path, kb):
    good = tmp_path / "windows-index.csv"
    good.write_text("Tactic,Technique #,Technique Name,Test #,Test Name,Test GUID,Executor Name\n"
                    "credential-access,T1003.001,OS Credential Dumping: LSASS Memory,1,Dump LSASS,"
                    "11111111-1111-1111-1111-111111111111,powershell\n"
                    "credential-access,BAD,x,2,y,,powershell\n")
    idx = load_atomics([good])
    assert [t.name for t in idx.tests_for("T1003.001")] == ["Dump LSASS"]
    assert idx.tests_for("T1003.001")[0].platforms == ["windows"]
    assert len(idx.errors) == 1 and "line 3" in idx.errors[0]
    bad = tmp_path / "x-index.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputError, match="not an Atomic Red Team CSV"):
        load_atomics([bad])
    with pytest.raises(InputError, match="no such file"):
        load_atomics([tmp_path / "missing"])
    with pytest.raises(NotFoundError, match="no group"):
        emulation_plan(kb, "Definitely Not A Group", idx)


# ------------------------------------------------------------------ CVE ranking
def test_rank_cves_known_answer(tmp_path, kb):
    f = tmp_path / "m.csv"
    f.write_text("CVE ID,Primary Impact,Secondary Impact,Exploitation Technique,Uncategorized,Phase\n"
                 "CVE-2000-0001,T1059.001,,T1190,,Phase 1\n"
                 "CVE-2000-0002,,T1005,,,Phase 1\n")
    maps = load_mappings([f])
    prof = profile_from_groups(kb, ["APT29"])
    r = rank_cves(kb, maps, ["CVE-2000-0002", "cve-2000-0001", "CVE-2000-0003"], prof)
    assert [x["cve"] for x in r["ranked"]] == ["CVE-2000-0001", "CVE-2000-0002"]
    apt29 = prof.actors
    expected = (1.0 if "T1059.001" in apt29 else 0.0) + (1.0 if "T1190" in apt29 else 0.0)
    assert r["ranked"][0]["score"] == pytest.approx(expected)
    assert r["ranked"][1]["score"] == pytest.approx(0.5 if "T1005" in apt29 else 0.0)
    assert r["unmapped"] == ["CVE-2000-0003"]


def test_rank_cves_real_prevalence(kb, shared_data):
    maps = load_mappings([shared_data / "ctid-mappings-explorer" / "mappings" / "kev"])
    r = rank_cves(kb, maps, ["CVE-2021-44228", "CVE-2017-11882"])
    assert r["profile"]["kind"] == "all-groups"
    assert all(0 < x["score"] for x in r["ranked"])
    scores = [x["score"] for x in r["ranked"]]
    assert scores == sorted(scores, reverse=True)


# ------------------------------------------------------------------ coverage
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
