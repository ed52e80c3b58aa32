"""Lifecycle: placement of multi-tactic techniques, furthest stage, timelines, reading of intent."""

from __future__ import annotations

from ttpscope.analyze.lifecycle import lifecycle, place
from ttpscope.model import Case, Observation


def _case():
    return Case("intrusion", [
        Observation("T1566.001", "text", "report#10-80", evidence={"sentence": "a phishing mail"},
                    time="2024-03-01T08:00:00Z", host="ws1"),
        Observation("T1078", "sigma", "rule-a", tactic_ids=["attack.persistence"], time="2024-03-01T09:00:00Z",
                    host="ws1", user="bob"),
        Observation("T1003.001", "sigma", "rule-b", tactic_ids=["TA0006"], time="2024-03-01T10:00:00Z", host="dc1"),
        Observation("T1021.002", "sigma", "rule-c", time="2024-03-01T10:30:00Z", host="dc1"),
        Observation("T1053.005", "sigma", "rule-d"),  # no time: in the tactics, not in the timeline
    ])


def test_tactics_in_matrix_order_with_evidence(kb):
    r = lifecycle(_case(), kb)
    shorts = [t["shortname"] for t in r.tactics]
    order = kb.tactic_order()
    assert shorts == sorted(shorts, key=order.index)
    assert shorts == ["initial-access", "execution", "persistence", "credential-access", "lateral-movement"]
    t1078 = next(t for t in r.tactics if t["shortname"] == "persistence")["techniques"][0]
    assert t1078["technique_id"] == "T1078" and t1078["placed_by"] == "evidence" and t1078["hosts"] == ["ws1"]
    assert r.furthest["shortname"] == "lateral-movement" and r.furthest["tactic_id"] == "TA0008"
    assert {t["shortname"] for t in r.not_reached} >= {"exfiltration", "impact"}


def test_multi_tactic_technique_without_evidence_goes_to_earliest(kb):
    tactics, how = place(None, "T1078", kb)  # defense-evasion, persistence, privilege-escalation, initial-access
    assert tactics == ["initial-access"] and how == "earliest"
    # scheduled task: execution, persistence, privilege-escalation -> execution
    assert place(None, "T1053.005", kb) == (["execution"], "earliest")
    # a tactic the technique does not have is not trusted
    obs = Observation("T1003.001", "sigma", "r", tactic_ids=["attack.impact"])
    assert place(obs, "T1003.001", kb) == (["credential-access"], "earliest")
    # a v19 tactic name maps to its v15 equivalent
    obs = Observation("T1078", "sigma", "r", tactic_ids=["attack.stealth"])
    assert place(obs, "T1078", kb) == (["defense-evasion"], "evidence")


def test_timelines_overall_and_per_host(kb):
    r = lifecycle(_case(), kb)
    times = [s["time"] for s in r.timeline]
    assert times == sorted(times) and len(times) == 4
    assert list(r.timelines) == ["dc1", "ws1"]
    assert [s["technique_id"] for s in r.timelines["ws1"]] == ["T1566.001", "T1078"]
    assert r.timeline[1]["tactic"] == "persistence" and r.timeline[1]["user"] == "bob"


def test_reading_says_what_was_and_was_not_reached(kb):
    text = lifecycle(_case(), kb).reading
    assert "furthest: Lateral Movement" in text
    assert "Credential access and lateral movement reached" in text
    assert "No collection, exfiltration or impact observed" in text
    assert "progresses forward" in text and "2 hosts" in text


def test_objective_stage_reading(kb):
    text = lifecycle(["T1486", "T1490", "T1059.001"], kb).reading
    assert "Impact" in text and "disruption or destruction" in text


def test_plain_ids_and_unknowns(kb):
    r = lifecycle(["T1059.001", "T1086", "T0000"], kb)
    assert r.timeline == [] and r.unresolved == ["T0000"]
    assert [t["shortname"] for t in r.tactics] == ["execution"]
    assert r.tactics[0]["techniques"][0]["technique_id"] == "T1059.001"
    assert r.notes and "revoked" in r.notes[0]
    empty = lifecycle([], kb)
    assert empty.tactics == [] and empty.furthest is None and "nothing" in empty.reading


def test_json_ready_and_deterministic(kb):
    import orjson

    a = lifecycle(_case(), kb).to_dict()
    assert orjson.loads(orjson.dumps(a)) == a
    assert a["provenance"]["domain"] == "enterprise"


def test_ics_domain(ics_kb):
    tid = next(t.id for t in ics_kb.live_techniques() if "inhibit-response-function" in t.tactics)
    r = lifecycle([tid], ics_kb)
    assert r.furthest["shortname"] == "inhibit-response-function"
    assert "safety" in r.reading
