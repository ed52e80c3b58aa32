"""Attribution: hand-built profiles with known answers, and the real embedded ATT&CK KB."""

from __future__ import annotations

import pytest

from ttpscope.analyze._profiles import DIRECT, SOFTWARE, Corpus, Profiles
from ttpscope.analyze.attribution import (AttributionModel, AttributionParams, actor_names, attribute,
                                          mask_actor_names)
from ttpscope.model import Case, Observation


def _model(kb, profiles, **params):
    prof = {g: {t: [paths] if isinstance(paths, tuple) else paths for t, paths in p.items()}
            for g, p in profiles.items()}
    return AttributionModel(kb, prof, AttributionParams(**params))


def _toy(kb):
    """Three groups that all use PowerShell; only G0001 uses a rare technique."""
    d = (DIRECT, None)
    return _model(kb, {
        "G0001": {"T1059.001": d, "T1003.001": d, "T1553.006": d},
        "G0002": {"T1059.001": d, "T1003.001": d, "T1105": d},
        "G0003": {"T1059.001": d, "T1105": d},
        "G0004": {"T1059.001": d, "T1105": d, "T1082": d},
    })


def test_rare_technique_decides_and_common_one_says_little(kb):
    model = _toy(kb)
    ranked = model.rank({"T1553.006": 1.0, "T1059.001": 1.0})
    assert ranked[0][0] == "G0001"
    i = model.ids.index("G0001")
    assert model.term("T1553.006")[i] > 0.5  # rare and known: strong evidence (log 2.5 with 4 groups)
    assert abs(model.term("T1059.001")[i]) < 0.3  # everyone uses it: next to nothing


def test_unexplained_noise_costs_every_candidate_alike(kb):
    model = _toy(kb)
    base = model.scores({"T1553.006": 1.0})
    noisy = model.scores({"T1553.006": 1.0, "T1486": 1.0})  # nobody in the toy uses T1486
    assert (noisy - base) == pytest.approx([noisy[0] - base[0]] * 4)
    assert model.rank({"T1553.006": 1.0, "T1486": 1.0})[0][0] == "G0001"


def test_subtechnique_rollup_gives_partial_credit(kb):
    d = (DIRECT, None)
    model = _model(kb, {"G0001": {"T1059.001": d}, "G0002": {"T1059": d}, "G0003": {"T1059.003": d},
                        "G0004": {"T1105": d}})
    p = model.params
    m = model.coverage("T1059.001")
    exact, parent, sibling, none = (m[model.ids.index(g)] for g in ("G0001", "G0002", "G0003", "G0004"))
    assert exact == 1.0 and parent == p.parent_credit and sibling == p.sibling_credit and none == 0.0
    assert 1.0 > p.parent_credit > p.sibling_credit > 0
    # an observed parent is matched by a group's sub-technique
    assert model.coverage("T1059")[model.ids.index("G0001")] == p.parent_credit
    explained, _ = model.explain("G0003", {"T1059.001": 1.0})
    assert explained[0].match == "sibling" and explained[0].matched_id == "T1059.003"


def test_software_path_counts_less_than_direct_use(kb):
    model = _model(kb, {"G0001": {"T1553.006": (DIRECT, None)}, "G0002": {"T1553.006": (SOFTWARE, "S0001")},
                        "G0003": {"T1105": (DIRECT, None)}})
    s = dict((g, sc) for g, sc, _ in model.rank({"T1553.006": 1.0}))
    assert s["G0001"] > s["G0002"] > s["G0003"]
    explained, _ = model.explain("G0002", {"T1553.006": 1.0})
    assert explained[0].via == ["software:S0001"]


def test_observation_confidence_weighs_techniques(kb):
    model = _toy(kb)
    strong = model.parts({"T1553.006": 1.0})["techniques"]
    weak = model.parts({"T1553.006": 0.3})["techniques"]
    i = model.ids.index("G0001")
    assert weak[i] == pytest.approx(0.3 * strong[i])


def test_hunting_leads_are_known_unobserved_techniques_rarest_first(kb):
    model = _toy(kb)
    _, missing = model.explain("G0001", {"T1059.001": 1.0})
    assert [m["technique_id"] for m in missing] == ["T1553.006", "T1003.001"]


def test_common_techniques_alone_are_insufficient_evidence(kb):
    result = attribute(["T1059.001", "T1105", "T1082"], kb)
    assert result.insufficient_evidence
    assert result.verdict.startswith("insufficient evidence")
    assert result.information < result.params["min_information"]
    assert result.groups  # still listed, as leads


def test_no_known_technique(kb):
    result = attribute(["T9999", "not a technique"], kb)
    assert result.groups == [] and result.insufficient_evidence
    assert result.unresolved == ["T9999", "not a technique"]


def test_revoked_ids_are_followed_and_reported(kb):
    result = attribute(["T1086", "T1553.006"], kb)  # T1086 PowerShell -> T1059.001
    assert "T1059.001" in result.observed
    assert any("T1086" in n and "T1059.001" in n for n in result.notes)


def test_deterministic_and_sorted(kb):
    techniques = sorted(kb.campaign_techniques("C0022"))
    a = attribute(techniques, kb).to_dict()
    b = attribute(list(reversed(techniques)), kb).to_dict()
    assert a == b
    scores = [(-g["score"], g["group_id"]) for g in a["groups"]]
    assert scores == sorted(scores)
    assert a["provenance"]["attack_version"] == "15.1"


def _leak_free(kb, cid):
    """Profiles without campaign ``cid`` and without what its reports alone said."""
    cites = {c for p in kb.procedures_for(source_id=cid) for c in p.citations}
    return Profiles.build(Corpus.from_kb(kb).without(forget_citations=cites, drop_campaigns=[cid]))


def test_forgetting_a_report_drops_only_what_it_alone_supports(kb):
    corpus = Corpus.from_kb(kb)
    shared = next(p for p in corpus.procedures if p.source_type == "group" and len(set(p.citations)) == 2)
    alone = next(p for p in corpus.procedures if p.source_type == "group" and len(p.citations) == 1
                 and p.citations[0] not in shared.citations)
    kept = corpus.without(forget_citations={shared.citations[0], alone.citations[0]})
    same = [p for p in kept.procedures if (p.source_id, p.technique_id) == (shared.source_id, shared.technique_id)]
    assert same and same[0].citations == (shared.citations[1],)
    assert not any(p.citations == alone.citations and p.technique_id == alone.technique_id
                   and p.source_id == alone.source_id for p in kept.procedures)
    profiles = Profiles.build(kept)
    assert f"report:{shared.citations[0]}" not in profiles.instances["group"][shared.source_id]


@pytest.mark.parametrize("cid", ["C0024", "C0022", "C0017"])
def test_campaign_techniques_find_their_group_without_the_leak(kb, cid):
    profiles = _leak_free(kb, cid)
    target = kb.campaigns[cid].groups[0]
    result = attribute(sorted(kb.campaign_techniques(cid)), kb, top=5, profiles=profiles)
    assert target in [g.id for g in result.groups]
    assert cid not in [c.id for c in result.campaigns]


def test_campaigns_are_ranked_separately(kb):
    result = attribute(sorted(kb.campaign_techniques("C0024")), kb, top=3)
    assert result.campaigns[0].id == "C0024" and result.campaigns[0].kind == "campaign"
    assert result.groups[0].id == "G0016"
    d = result.campaigns[0].to_dict()
    assert d["campaign_id"] == "C0024" and "first_seen" in d["context"]


def test_group_context_from_misp(kb):
    result = attribute(sorted(kb.campaign_techniques("C0024")), kb, top=1)
    ctx = result.groups[0].to_dict()["context"]
    assert ctx["country"] == "RU" and "Cozy Bear" in ctx["aliases"]


def test_evidence_text_resembling_a_groups_procedures_lifts_it(kb):
    sentence = ("The actor used the SUNBURST backdoor, delivered through a trojanized SolarWinds Orion update, "
                "and deployed TEARDROP and Raindrop loaders to run Cobalt Strike Beacon.")
    ids = ["T1195.002", "T1059.001"]
    plain = attribute(ids, kb, top=200)
    case = Case("text", [Observation("T1195.002", "text", "doc#1", evidence={"sentence": sentence}),
                         Observation("T1059.001", "manual", "analyst")])
    with_text = attribute(case, kb, top=200)
    rank = lambda r: [g.id for g in r.groups].index("G0016")  # noqa: E731
    assert rank(with_text) < rank(plain)
    apt29 = with_text.groups[rank(with_text)]
    assert apt29.parts["text"] == max(g.parts["text"] for g in with_text.groups)  # the closest text
    assert {"sunburst", "teardrop", "solarwinds"} <= set(apt29.text["shared_terms"])
    assert plain.groups[0].text is None and "text" not in plain.groups[0].parts


def test_closest_past_instance_is_shown(kb):
    result = attribute(sorted(kb.campaign_techniques("C0024")), kb, top=1)
    assert result.groups[0].closest_instance == {"kind": "campaign", "id": "C0024",
                                                 "name": "SolarWinds Compromise", "similarity": 1.0}


def test_actor_names_are_masked_in_procedure_text(kb):
    text = ("[APT29](https://attack.mitre.org/groups/G0016) used [Cobalt Strike](https://attack.mitre.org/software/S0154)."
            "(Citation: X) Cozy Bear, like the Lazarus Group during Operation Dream Job, used WellMess.")
    masked = mask_actor_names(text)
    assert "APT29" not in masked and "Cobalt Strike" in masked and "Citation" not in masked
    words = mask_actor_names(text, actor_names(kb)).split()
    assert not {"cozy", "lazarus", "dream"} & set(words)
    assert {"cobalt", "strike", "wellmess", "used"} <= set(words)


def test_named_group_and_software_operators_weigh_in_and_stay_apart(kb):
    """A group the evidence names (or the operator of named software) is surfaced next to the verdict and
    ranked up with a bounded weight; the technique-only score is kept apart."""
    from ttpscope.analyze.attribution import attribute

    techs = ["T1566.001", "T1059.001", "T1003.001", "T1021.002", "T1053.005", "T1071.001"]
    plain_ = attribute(techs, kb, top=5)
    named = attribute(techs, kb, top=5, named=[{"kind": "group", "id": "G0008", "mentions": 20},
                                                {"kind": "software", "id": "S0030", "mentions": 5}])
    assert "G0008" not in [c.id for c in plain_.groups[:3]]
    top = named.groups[0]
    assert top.id == "G0008" and "Carbanak (G0008)" in named.verdict
    assert top.parts["named"] > 0 and abs(top.technique_score - (top.score - top.parts["named"])) < 1e-9
    assert {w["via"] for w in top.named} == {"named", "software"}
    # the software's other operator gains a share, not the whole weight
    fin7 = next(c for c in named.groups if c.id == "G0046")
    assert 0 < fin7.parts["named"] < top.parts["named"]
    # the technique-only ranking is unchanged for groups the evidence does not name
    assert [c.id for c in plain_.groups if c.id not in ("G0008", "G0046")][:2] == \
        [c.id for c in named.groups if c.id not in ("G0008", "G0046")][:2]


def _sized(kb):
    """A large profile covering every common technique, and small ones; G0008 alone uses two rare ones."""
    d = (DIRECT, None)
    common = ["T1059.001", "T1105", "T1082", "T1083", "T1057", "T1016", "T1033", "T1047", "T1053.005",
              "T1070.004", "T1027", "T1071.001", "T1547.001", "T1003.001", "T1021.001", "T1566.001", "T1204.002",
              "T1140"]
    prof = {"G0032": {t: d for t in common}, "G0008": {"T1059.001": d, "T1553.006": d, "T1574.002": d},
            "G0001": {"T1105": d, "T1082": d, "T1083": d},
            "G0002": {"T1057": d, "T1016": d, "T1033": d, "T1059.001": d},
            "G0003": {"T1047": d, "T1027": d, "T1140": d}}
    return prof, common


def test_large_profile_correction_on_noisy_queries(kb):
    prof, common = _sized(kb)
    # an extracted report: two rare techniques fairly sure, eight common ones barely (extraction noise)
    noisy = {"T1553.006": 0.6, "T1574.002": 0.6, **{t: 0.3 for t in common[1:9]}}
    plain, corrected = _model(kb, prof), _model(kb, prof, prior_correction=0.5)
    assert plain.rank(noisy)[0][0] == "G0032"  # the big profile wins by covering the noise
    assert corrected.rank(noisy)[0][0] == "G0008"
    i = corrected.ids.index("G0032")
    assert corrected.prior()[i] == max(corrected.prior())  # the big profile expects most from noise
    assert corrected.parts(noisy)["size_prior"][i] == min(corrected.parts(noisy)["size_prior"])
    # certain techniques (log detections, a campaign's links) are scored exactly as without the correction
    certain = {t: 1.0 for t in common[:6]}
    assert corrected.rank(certain) == plain.rank(certain)
    assert "size_prior" not in corrected.parts(certain)
