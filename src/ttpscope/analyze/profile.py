"""Threat profiles: the techniques a defender must cover, and how much each one matters.

A profile is built from one or more groups, from the top groups of an attribution, from every group of the
knowledge base (each technique weighted by its prevalence: the share of groups that use it), or from a plain
technique set (observed or predicted techniques). Coverage, gap lists and CVE ranking all take one.

Which of a group's techniques count: by default its own ``uses`` and those of its campaigns (``DEFAULT_VIA``).
Techniques that come only through the group's software are left out unless asked for (``via`` with
``"software"``): a group using Cobalt Strike does not use all of Cobalt Strike's forty-odd techniques, and
counting them drowns the group's real tradecraft.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ttpscope.analyze.attribution import attribute
from ttpscope.errors import InputError, NotFoundError
from ttpscope.kb import KnowledgeBase

DEFAULT_VIA = frozenset({"direct", "campaign"})


@dataclass
class ThreatProfile:
    """Techniques of a threat profile with, per technique, the actors using it and its weight."""

    name: str
    kind: str  # groups | all-groups | attribution | techniques
    groups: list[str] = field(default_factory=list)  # group ids, in the order given
    group_weights: dict[str, float] = field(default_factory=dict)
    actors: dict[str, list[str]] = field(default_factory=dict)  # technique id -> group ids using it
    weights: dict[str, float] = field(default_factory=dict)  # technique id -> weight (> 0)
    via: tuple[str, ...] = tuple(sorted(DEFAULT_VIA))
    notes: list[str] = field(default_factory=list)

    @property
    def techniques(self) -> list[str]:
        return sorted(self.weights)

    def to_dict(self, kb: KnowledgeBase | None = None) -> dict:
        return {"name": self.name, "kind": self.kind,
                "groups": [{"id": g, "name": kb.name_of(g) if kb else g, "weight": self.group_weights.get(g, 1.0)}
                           for g in self.groups],
                "via": list(self.via), "techniques": len(self.weights), "notes": self.notes}


def _collect(kb: KnowledgeBase, gids: list[str], group_weights: dict[str, float], via: Iterable[str]):
    actors: dict[str, list[str]] = {}
    for gid in gids:
        for tid in sorted(kb.group_techniques(gid, via=via)):
            actors.setdefault(tid, []).append(gid)
    weights = {tid: round(sum(group_weights.get(g, 1.0) for g in users), 6) for tid, users in actors.items()}
    return actors, weights


def profile_from_groups(kb: KnowledgeBase, names: Iterable[str], via: Iterable[str] = DEFAULT_VIA,
                        weights: dict[str, float] | None = None) -> ThreatProfile:
    """A profile of named groups (ids, names or any alias). A technique's weight is the summed weight of the
    groups using it (1 each by default), so a technique shared by three of them counts three times.

    Raises NotFoundError naming the first unknown group.
    """
    gids: list[str] = []
    notes: list[str] = []
    for name in names:
        res = kb.resolve_group(name)
        if res.id is None:
            raise NotFoundError(res.note or f"no group named '{name}'")
        if res.note:
            notes.append(res.note)
        if res.id not in gids:
            gids.append(res.id)
    if not gids:
        raise InputError("profile", None, "no group given")
    gw = {g: float((weights or {}).get(g, 1.0)) for g in gids}
    actors, tweights = _collect(kb, gids, gw, via)
    label = ", ".join(f"{kb.groups[g].name} ({g})" for g in gids)
    return ThreatProfile(label, "groups", gids, gw, actors, tweights, tuple(sorted(via)), notes)


def profile_all_groups(kb: KnowledgeBase, via: Iterable[str] = DEFAULT_VIA) -> ThreatProfile:
    """Every live group; a technique's weight is its prevalence (share of groups using it, 0..1]."""
    gids = [g.id for g in kb.live_groups()]
    n = len(gids) or 1
    gw = {g: 1.0 / n for g in gids}
    actors, weights = _collect(kb, gids, gw, via)
    return ThreatProfile(f"all {len(gids)} groups of {kb.label}, weighted by prevalence", "all-groups", gids, gw,
                         actors, weights, tuple(sorted(via)))


def profile_from_ranking(kb: KnowledgeBase, ranking: Iterable[tuple[str, float]], top: int,
                         via: Iterable[str] = DEFAULT_VIA) -> ThreatProfile:
    """The top ``top`` groups of an attribution ranking [(group id, score)], best first.

    Each group is weighted by its score when every chosen score is positive (confidences, probabilities);
    otherwise (log-likelihood scores can be negative) each counts 1.
    """
    if top < 1:
        raise InputError("--profile-top", None, f"needs a positive number, got {top}")
    chosen = list(ranking)[:top]
    if not chosen:
        raise NotFoundError("the attribution ranked no group: nothing to build a profile from")
    positive = all(s > 0 for _, s in chosen)
    prof = profile_from_groups(kb, [g for g, _ in chosen], via=via,
                               weights={g: s for g, s in chosen} if positive else None)
    prof.kind = "attribution"
    prof.name = f"top {len(chosen)} attributed groups: {prof.name}"
    return prof


def profile_from_techniques(kb: KnowledgeBase, technique_ids: Iterable[str], name: str = "technique set") -> ThreatProfile:
    """A plain technique set (observed, predicted, a gap list): weight 1 each, no actors.

    Revoked ids are replaced by their successor (noted); unknown ids raise NotFoundError.
    """
    weights: dict[str, float] = {}
    notes: list[str] = []
    for raw in technique_ids:
        res = kb.resolve_technique(raw)
        if res.id is None:
            raise NotFoundError(res.note or f"no technique {raw!r}")
        if res.note:
            notes.append(res.note)
        weights[res.id] = 1.0
    if not weights:
        raise InputError("techniques", None, "no technique given")
    return ThreatProfile(name, "techniques", [], {}, {t: [] for t in weights}, weights, (), notes)


def profile_of_groups(kb: KnowledgeBase, groups: Iterable[str] | None, via: Iterable[str] = DEFAULT_VIA
                      ) -> ThreatProfile | None:
    """The profile a user names: some groups (id, name or alias), ``all`` (every group, by prevalence), or
    None when no group is named."""
    names = list(groups or [])
    if not names:
        return None
    if [g.lower() for g in names] == ["all"]:
        return profile_all_groups(kb, via=via)
    return profile_from_groups(kb, names, via=via)


def profile_of_attribution(kb: KnowledgeBase, techniques: Iterable[str], top: int,
                           via: Iterable[str] = DEFAULT_VIA) -> ThreatProfile:
    """The top ``top`` groups of an attribution of ``techniques``, weighted by their confidence."""
    ranking = [(c.id, c.confidence) for c in attribute(list(techniques), kb).groups]
    return profile_from_ranking(kb, ranking, top, via=via)


def profile_for(kb: KnowledgeBase, groups: Iterable[str] | None = None, case=None) -> ThreatProfile | None:
    """The profile the web app measures coverage against: some groups, a case's own techniques, or None
    (every live technique)."""
    if groups:
        return profile_from_groups(kb, list(groups))
    if case is not None:
        return profile_from_techniques(kb, case.technique_ids(), name=f"case {case.name}")
    return None
