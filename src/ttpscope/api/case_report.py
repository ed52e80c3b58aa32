"""What the case page shows: the case, its heatmap and evidence, and every analysis section computed by
``ttpscope.investigate.analysis`` (each section says so when its part is missing or had nothing to say)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ttpscope.api.deps import missing, part
from ttpscope.api.figures import timeline_svg


def summary(kb, case) -> dict[str, Any]:
    """Counts, sources, hosts and time span of a case's observations (used when no analysis is available)."""
    obs = case.observations
    times = sorted(o.time for o in obs if o.time)
    return {"observations": len(obs), "techniques": len(case.technique_ids()),
            "by_kind": dict(sorted(Counter(o.source_kind for o in obs).items())),
            "hosts": sorted({o.host for o in obs if o.host}),
            "first_seen": times[0].isoformat() if times else None, "last_seen": times[-1].isoformat() if times else None}


def evidence_rows(kb, case, limit: int = 300) -> list[dict[str, Any]]:
    """Observations for the evidence table, strongest first (then technique id, time)."""
    rows = sorted(case.observations, key=lambda o: (-o.confidence, o.technique_id,
                                                    o.time.isoformat() if o.time else ""))
    return [{"technique_id": o.technique_id, "name": kb.name_of(o.technique_id), "kind": o.source_kind,
             "ref": o.source_ref, "time": o.time, "host": o.host, "document": o.document,
             "confidence": o.confidence, "evidence": o.evidence} for o in rows[:limit]]


def build(request, kb, case) -> dict[str, Any]:
    """Everything the case template needs."""
    report: dict[str, Any] = {"evidence": evidence_rows(kb, case), "sections": {}, "missing": [],
                              "timeline": None, "rules": [], "sentences": []}
    if part("analyse_case") is None:
        report["summary"] = summary(kb, case)
        report["missing"] = missing("analyse_case")
        return report
    from ttpscope.api.api_cases import case_analysis

    _, analysis = case_analysis(request, case.id)
    report["summary"] = analysis.summary()
    report["sections"] = {k: s.to_dict() for k, s in analysis.sections.items()}
    report["rules"] = analysis.rule_summary(limit=25)
    report["sentences"] = analysis.report_sentences(limit=25)
    lc = analysis.sections.get("lifecycle")
    if lc is not None and lc.ok and isinstance(lc.data, dict):
        names = {t.shortname: t.name for t in kb.tactic_list()}
        report["timeline"] = timeline_svg(lc.data.get("timeline") or [], kb.tactic_order(), names)
    return report
