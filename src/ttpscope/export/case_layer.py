"""The Navigator layer of a case: score = evidence strength (0-100), comment = the evidence itself."""

from __future__ import annotations

from typing import Any

from ttpscope.export.evidence import TechniqueEvidence, comment_of, technique_evidence
from ttpscope.export.navigator import make_layer
from ttpscope.model import Case

GRADIENT = ("#fff5e6ff", "#fdae61ff", "#d7191cff")


def case_layer(case: Case, kb, evidence: list[TechniqueEvidence] | None = None) -> dict[str, Any]:
    """A Navigator 4.5 layer of the case's techniques, each in the tactic(s) its evidence places it.

    Techniques the knowledge base does not know are left out (Navigator could not place them) and named in
    the layer description.
    """
    evidence = technique_evidence(case, kb) if evidence is None else evidence
    entries = []
    unknown = []
    for ev in evidence:
        if not ev.known:
            unknown.append(ev.id)
            continue
        meta = {"observations": ev.observations, "sources": ev.sources,
                "kinds": ", ".join(f"{k}={n}" for k, n in ev.kinds.items())}
        if ev.hosts:
            meta["hosts"] = ", ".join(ev.hosts[:10])
        if ev.first_seen:
            meta["first seen"] = ev.first_seen.isoformat()
        for tactic in ev.tactics or [None]:
            entries.append({"id": ev.id, "score": ev.score, "comment": comment_of(ev), "tactic": tactic,
                            "metadata": meta})
    description = (f"ttpscope case '{case.name}' ({case.id}): {len(evidence)} techniques from "
                   f"{len(case.observations)} observations; score = evidence strength 0-100.")
    if unknown:
        description += f" Not in {kb.label}, left out: {', '.join(unknown)}."
    return make_layer(f"ttpscope case: {case.name}", kb, entries, description=description, gradient=GRADIENT,
                      min_value=0, max_value=100,
                      legend=[("weak evidence", GRADIENT[0]), ("strong evidence", GRADIENT[2])],
                      metadata={"case": case.name, "case id": case.id, "knowledge base": kb.label})
