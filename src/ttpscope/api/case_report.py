"""What the case page shows: a summary of the case plus each analysis whose part of ttpscope is installed."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ttpscope.api.deps import missing, part


def summary(kb, case) -> dict[str, Any]:
    """Counts, sources, hosts and time span of a case's observations."""
    obs = case.observations
    times = sorted(o.time for o in obs if o.time)
    return {
        "observations": len(obs),
        "techniques": len(case.technique_ids()),
        "by_source": dict(sorted(Counter(o.source_kind for o in obs).items())),
        "hosts": sorted({o.host for o in obs if o.host}),
        "documents": sorted({o.document for o in obs if o.document}),
        "first": times[0] if times else None,
        "last": times[-1] if times else None,
    }


def evidence_rows(kb, case, limit: int = 300) -> list[dict[str, Any]]:
    """Observations for the evidence table, strongest first (then by technique id, time)."""
    rows = sorted(case.observations, key=lambda o: (-o.confidence, o.technique_id, o.time.isoformat() if o.time else ""))
    return [{"technique_id": o.technique_id, "name": kb.name_of(o.technique_id), "kind": o.source_kind,
             "ref": o.source_ref, "time": o.time, "host": o.host, "document": o.document,
             "confidence": o.confidence, "evidence": o.evidence} for o in rows[:limit]]


def build(request, kb, case) -> dict[str, Any]:
    report: dict[str, Any] = {"summary": summary(kb, case), "evidence": evidence_rows(kb, case),
                              "missing": missing("lifecycle", "attribution", "anticipation", "coverage")}
    return report
