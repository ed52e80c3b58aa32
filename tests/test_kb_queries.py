"""Knowledge-base queries on the real embedded ATT&CK v15.1 bundles."""

import pytest

from ttpscope.errors import NotFoundError
from ttpscope.kb.views import group_view, technique_view


def test_info_names_domain_version_and_counts(kb):
    info = kb.info()
    assert info["domain"] == "enterprise" and info["attack_version"] == "15.1"
    c = info["counts"]
    assert c["techniques"] == 202 and c["subtechniques"] == 435  # ATT&CK v15.1 Enterprise
    assert c["groups"] > 140 and c["software"] > 600 and c["campaigns"] >= 28
    assert info["tactics"][0] == "reconnaissance" and info["tactics"][-1] == "impact"
    assert len(info["tactics"]) == 14


def test_technique_view_lsass(kb):
    v = technique_view(kb, "T1003.001")
    assert v["name"] == "LSASS Memory" and v["tactics"] == ["credential-access"]
    assert v["is_subtechnique"] and v["parent"]["id"] == "T1003"
    assert {"id": "G0007", "name": "APT28"} in v["groups"]
    assert any(m["id"] == "M1040" for m in v["mitigations"])  # Behavior Prevention on Endpoint
    assert any(d["name"] == "Process Access" for d in v["data_components"])
    assert v["attack_version"] == "15.1" and v["domain"] == "enterprise"
    parent = technique_view(kb, "T1003")
    assert "T1003.001" in [s["id"] for s in parent["subtechniques"]] and not parent["is_subtechnique"]


def test_revoked_id_resolves_to_replacement_with_note(kb):
    res = kb.resolve_technique("T1086")  # PowerShell, revoked by T1059.001
    assert res.id == "T1059.001" and "revoked" in res.note and "T1059.001" in res.note
    assert technique_view(kb, "T1086")["id"] == "T1059.001"
    assert kb.resolve_technique("T9999").id is None
    with pytest.raises(NotFoundError, match="T9999 is not in enterprise ATT&CK v15.1"):
        kb.technique("T9999")


def test_deprecated_objects_are_flagged_and_hidden(kb):
    deprecated = [t for t in kb.techniques.values() if t.deprecated]
    assert deprecated, "v15.1 has deprecated techniques"
    tid = deprecated[0].id
    assert kb.resolve_technique(tid).note.endswith("is deprecated in enterprise ATT&CK v15.1")
    assert tid not in {t.id for t in kb.live_techniques()}
    assert all(tid not in kb.group_techniques(g.id) for g in kb.live_groups())
    assert all(h["id"] != tid for h in kb.search(deprecated[0].name, limit=50))


@pytest.mark.parametrize("name", ["Fancy Bear", "APT28", "Sofacy", "G0007", "fancy-bear", "SOFACY", "apt 28",
                                  "g0007"])
def test_group_aliases_land_on_apt28(kb, name):
    assert kb.resolve_group(name).id == "G0007"


def test_misp_aliases_and_context(kb):
    assert kb.resolve_group("Cozy Bear").id == "G0016"
    g = kb.group("APT28")
    assert g.context.get("country") == "RU"
    assert "United States" in g.context["suspected_victims"]
    assert kb.resolve_group("no such actor 123").id is None


def test_group_profile_keeps_provenance(kb):
    entries = kb.group_profile("APT29")
    vias = {e.via for e in entries}
    assert vias == {"direct", "software", "campaign"}
    campaign_entries = [e for e in entries if e.via == "campaign"]
    assert {e.via_id for e in campaign_entries} >= {"C0024"}  # SolarWinds Compromise
    software_ids = {e.via_id for e in entries if e.via == "software"}
    assert software_ids <= set(kb.group_software["G0016"])
    direct = kb.group_techniques("G0016", via={"direct"})
    assert direct < kb.group_techniques("G0016")
    # a technique known only through a campaign is absent when campaigns are excluded
    only_campaign = {e.technique_id for e in campaign_entries} - kb.group_techniques("G0016", via={"direct", "software"})
    assert only_campaign and not (only_campaign & kb.group_techniques("G0016", via={"direct", "software"}))
    v = group_view(kb, "Cozy Bear")
    assert v["id"] == "G0016" and "APT29" in v["aliases"]
    assert all({"id", "name", "via"} <= t.keys() for t in v["techniques"])
    assert any(c["id"] == "C0024" for c in v["campaigns"])


def test_relations_both_ways(kb):
    assert "G0007" in kb.groups_using("T1003.001", via={"direct"})
    assert "S0002" in kb.software_using("T1003.001")  # Mimikatz
    assert "T1003.001" in kb.software_techniques("Mimikatz")
    assert [t.id for t in kb.subtechniques("T1059")][:2] == ["T1059.001", "T1059.002"]
    assert kb.campaign("C0024").groups == ["G0016"]
    assert "T1195.002" in kb.campaign_techniques("SolarWinds Compromise")


def test_tactics_in_matrix_order_and_v19_names(kb):
    order = kb.tactic_order()
    assert order.index("initial-access") < order.index("execution") < order.index("exfiltration")
    assert kb.resolve_tactic("attack.credential-access").id == "TA0006"
    res = kb.resolve_tactic("attack.stealth")  # v19 name for what v15.1 calls defense-evasion
    assert res.id == "TA0005" and "not in enterprise ATT&CK v15.1" in res.note
    assert kb.resolve_tactic("defense-impairment").id == "TA0005"
    assert kb.resolve_tactic("attack.made-up").id is None


def test_search_ranks_names_first(kb):
    hits = kb.search("credential dumping")
    assert hits[0]["id"] == "T1003"
    assert [h["id"] for h in kb.search("Mimikatz")][0] == "S0002"
    assert kb.search("Cozy Bear")[0]["id"] == "G0016"
    assert all(h["kind"] == "mitigation" for h in kb.search("multi-factor", kinds=["mitigation"]))


def test_mobile_and_ics_domains_load(kb):
    from ttpscope.kb import load_kb

    mobile, ics = load_kb("mobile", "embedded"), load_kb("ics", "embedded")
    assert mobile.domain == "mobile" and ics.domain == "ics"
    assert ics.tactic_order()[-1] == "impact" and "inhibit-response-function" in ics.tactic_order()
    assert ics.technique("T0807").name == "Command-Line Interface"
    assert mobile.live_techniques() and ics.live_groups()


def test_newer_release_ids_map_to_their_equivalent(kb):
    res = kb.resolve_technique("T1685")  # v19's Disable or Modify Tools
    assert res.id == "T1562.001" and "not in enterprise ATT&CK v15.1" in res.note and "equivalent" in res.note
    assert kb.resolve_technique("T1685.005").id == "T1070.001"
    assert kb.resolve_technique("T1687").id is None  # no published equivalence: kept unknown
