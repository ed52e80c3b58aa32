"""Evidence in the headline (ttpscope.analyze.evidence): informational rules and a lone weak report claim stay on
the case's record but never decide the furthest stage or the key findings, and the headline says when they are
the only evidence for a stage."""

from __future__ import annotations

from ttpscope.analyze.evidence import DECISIVE, headline_strength, is_decisive, technique_evidence, weak_reason
from ttpscope.analyze.lifecycle import lifecycle
from ttpscope.analyze.sections import analyse
from ttpscope.export.html import findings, headline
from ttpscope.export.tables import markdown_report
from ttpscope.model import LEVEL_CONFIDENCE, Case, Observation


def rule(tid: str, ref: str, level: str, when: str, title: str | None = None, tactic: str | None = None,
         host: str = "ws1.corp.local") -> Observation:
    return Observation(tid, "sigma", ref, {"rule": title or f"rule {ref}", "level": level},
                       [f"attack.{tactic}"] if tactic else [], time=when, host=host,
                       confidence=LEVEL_CONFIDENCE[level])


def claim(tid: str, ref: str, confidence: float, kind: str = "prose") -> Observation:
    return Observation(tid, "text", ref, {"sentence": f"claim {ref}", "method": "classifier", "kind": kind}, [],
                       document="r.md", confidence=confidence)


def logoffs() -> list[Observation]:
    # three informational rules on ordinary logoffs, tagged T1531 Account Access Removal (impact): by the
    # evidence-strength rule alone they add up to 66, more than a low-level rule's 50
    return [rule("T1531", f"logoff-{i}", "informational", f"2024-03-05T1{i}:00:00Z", title=f"User Logoff Event {i}",
                 tactic="impact") for i in range(3)]


def intrusion() -> list[Observation]:
    return [rule("T1059.001", "ps", "low", "2024-03-05T08:00:00Z", tactic="execution"),
            rule("T1003.001", "lsass", "low", "2024-03-05T08:30:00Z", tactic="credential-access"),
            rule("T1021.002", "smb", "low", "2024-03-05T09:00:00Z", tactic="lateral-movement",
                 host="fs1.corp.local")]


def test_headline_weight_of_each_kind(kb):
    assert headline_strength(logoffs()) == 0.0 and not is_decisive(logoffs())
    assert weak_reason(logoffs()).startswith("informational rules only (User Logoff Event 0, User Logoff Event 1")
    cell = [claim("T1486", "r.md#10-20", 0.16, kind="table")]
    assert not is_decisive(cell) and weak_reason(cell) == "one report claim from a table cell (strength 16)"
    # a strong sentence of prose decides; two middling ones corroborate each other, one alone does not
    assert is_decisive([claim("T1486", "r.md#1-9", 0.9)])
    assert not is_decisive([claim("T1486", "r.md#1-9", 0.4)])
    assert is_decisive([claim("T1486", "r.md#1-9", 0.4), claim("T1486", "r.md#30-40", 0.4)])
    # repeats of one sentence are one source, as in the evidence-strength rule
    assert not is_decisive([claim("T1486", "r.md#1-9", 0.4)] * 5)
    low = [rule("T1059.001", "ps", "low", "2024-03-05T08:00:00Z")]
    assert headline_strength(low) == LEVEL_CONFIDENCE["low"] >= DECISIVE and weak_reason(low) == ""
    ev = {e.id: e for e in technique_evidence(Case("c", logoffs() + low), kb)}
    assert ev["T1531"].strength > ev["T1059.001"].strength  # the record keeps what the rules said...
    assert not ev["T1531"].decisive and ev["T1059.001"].decisive  # ...the headline does not follow it
    assert ev["T1531"].to_dict()["weak"].startswith("informational rules only")


def test_weak_impact_decides_neither_stage_nor_findings(kb):
    case = Case("weak-impact", intrusion() + logoffs() + [claim("T1486", "r.md#10-20", 0.16, kind="table")])
    lc = lifecycle(case, kb)
    assert lc.furthest["shortname"] == "lateral-movement"
    assert lc.furthest_weak["shortname"] == "impact"
    impact = next(t for t in lc.tactics if t["shortname"] == "impact")
    assert not impact["decisive"] and {x["technique_id"] for x in impact["techniques"]} == {"T1531", "T1486"}
    assert "furthest: Lateral Movement" in lc.reading and "Objective stage reached" not in lc.reading
    assert "Reached on weak evidence only, so not counted: Impact" in lc.reading

    analysis = analyse(case, kb, only=["lifecycle", "intrusions", "attribution"])
    text = headline(analysis, kb)
    assert "furthest stage reached: Lateral Movement (Impact reached on weak evidence only: " in text
    assert "informational rules only (User Logoff Event" in text or "one report claim from a table cell" in text
    keys = findings(analysis)
    strongest = next(f for f in keys if f.startswith("Strongest evidence"))
    assert "T1531" not in strongest and "T1486" not in strongest
    weak = next(f for f in keys if f.startswith("On weak evidence only"))
    assert "T1531 Account Access Removal (informational rules only" in weak
    assert "T1486 Data Encrypted for Impact (one report claim from a table cell (strength 16))" in weak
    md = markdown_report(analysis, kb)
    assert "Furthest stage reached on decisive evidence: **Lateral Movement**" in md
    assert "> Impact is reached on weak evidence only" in md
    sec = analysis.sections["lifecycle"].data
    stage = {s["tactic"]: s for s in sec.stages}
    assert stage["impact"]["reached"] and not stage["impact"]["decisive"] and stage["lateral-movement"]["decisive"]


def test_only_weak_evidence_says_so(kb):
    case = Case("only-weak", logoffs() + [claim("T1486", "r.md#10-20", 0.16, kind="table")])
    lc = lifecycle(case, kb)
    assert lc.furthest is None and lc.furthest_weak["shortname"] == "impact"
    assert lc.reading.startswith("No tactic is reached on decisive evidence.")
    analysis = analyse(case, kb, only=["lifecycle"])
    assert "no stage reached on decisive evidence (Impact (" in headline(analysis, kb)
    assert not any(f.startswith("Strongest evidence") for f in findings(analysis))


def test_technique_ids_without_evidence_are_taken_as_stated(kb):
    lc = lifecycle(["T1059.001", "T1486"], kb)
    assert lc.furthest["shortname"] == "impact" and lc.furthest_weak is None and lc.weak_tactics == []
