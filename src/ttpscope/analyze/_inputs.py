"""Turning what a caller hands an analysis (a Case, observations or technique ids) into resolved techniques.

Every analysis accepts the same inputs and reports the same way what it could not use: unknown ids are
listed, revoked ids are followed to their replacement with a note, deprecated ones are set aside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Union

from ttpscope.kb.base import KnowledgeBase
from ttpscope.model import Case, Observation

TechniqueInput = Union[Case, Iterable[Union[str, Observation]]]


@dataclass
class ResolvedInput:
    """Observed techniques (current ids) with their strength and evidence text, plus what was set aside."""

    weights: dict[str, float] = field(default_factory=dict)  # technique id -> max observation confidence
    texts: dict[str, list[str]] = field(default_factory=dict)  # technique id -> evidence sentences
    observations: list[tuple[Observation, str]] = field(default_factory=list)  # (observation, resolved id)
    notes: list[str] = field(default_factory=list)  # revoked ids followed, duplicates...
    unresolved: list[str] = field(default_factory=list)  # ids or names the KB does not know
    case_name: str | None = None
    case_id: str | None = None

    @property
    def techniques(self) -> list[str]:
        """Resolved technique ids, sorted."""
        return sorted(self.weights)


def evidence_text(obs: Observation) -> str | None:
    """The report sentence behind an observation, if it came from text (Sigma matches carry event fields)."""
    for key in ("sentence", "text", "procedure"):
        value = obs.evidence.get(key) if isinstance(obs.evidence, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def resolve_input(items: TechniqueInput, kb: KnowledgeBase) -> ResolvedInput:
    """Resolve a Case, a list of Observations or a list of technique ids/names against ``kb``."""
    out = ResolvedInput()
    if isinstance(items, Case):
        out.case_name, out.case_id = items.name, items.id
        items = items.observations
    elif isinstance(items, (str, Observation)):
        items = [items]
    seen_notes: set[str] = set()
    for item in items:
        if isinstance(item, Observation):
            query, conf, obs = item.technique_id, item.confidence, item
        elif isinstance(item, str):
            query, conf, obs = item, 1.0, None
        else:
            raise TypeError(f"expected a Case, Observations or technique ids, got {type(item).__name__}")
        res = kb.resolve_technique(query)
        if res.id is None:
            if query not in out.unresolved:
                out.unresolved.append(query)
            continue
        tech = kb.techniques[res.id]
        if tech.deprecated:
            note = f"{res.id} ({tech.name}) is deprecated in {kb.label}; ignored"
            if note not in seen_notes:
                seen_notes.add(note)
                out.notes.append(note)
            continue
        if res.note and res.note not in seen_notes:
            seen_notes.add(res.note)
            out.notes.append(res.note)
        out.weights[res.id] = max(out.weights.get(res.id, 0.0), float(conf))
        if obs is not None:
            out.observations.append((obs, res.id))
            text = evidence_text(obs)
            if text and text not in out.texts.get(res.id, []):
                out.texts.setdefault(res.id, []).append(text)
    return out
