"""What the case page shows: the case, its heatmap and evidence, and every section of the case report
(:mod:`ttpscope.analyze.report`; each section says so when it had nothing to say)."""

from __future__ import annotations

from typing import Any

from ttpscope.api.deps import stored_analysis
from ttpscope.api.figures import timeline_svg


def evidence_rows(kb, case, limit: int = 300) -> list[dict[str, Any]]:
    """Observations for the evidence table, strongest first (then technique id, time)."""
    rows = sorted(case.observations, key=lambda o: (-o.confidence, o.technique_id,
                                                    o.time.isoformat() if o.time else ""))
    return [{"technique_id": o.technique_id, "name": kb.name_of(o.technique_id), "kind": o.source_kind,
             "ref": o.source_ref, "time": o.time, "host": o.host, "document": o.document,
             "confidence": o.confidence, "evidence": o.evidence} for o in rows[:limit]]


def build(request, kb, case) -> dict[str, Any]:
    """Everything the case template needs."""
    report: dict[str, Any] = {"evidence": evidence_rows(kb, case), "sections": {}, "timeline": None, "rules": [],
                              "sentences": []}
    _, analysis = stored_analysis(request, case.id)
    report["summary"] = analysis.summary()
    report["sections"] = {k: s.to_dict() for k, s in analysis.sections.items()}
    report["rules"] = analysis.rule_summary(limit=25)
    report["sentences"] = analysis.report_sentences(limit=25)
    report["sightings"] = [{k: v for k, v in x.items() if k != "indicator"} for x in analysis.sightings]
    lc = analysis.sections.get("lifecycle")
    if lc is not None and lc.ok:
        names = {t.shortname: t.name for t in kb.tactic_list()}
        report["timeline"] = timeline_svg(lc.data.timeline, kb.tactic_order(), names)
    return report
