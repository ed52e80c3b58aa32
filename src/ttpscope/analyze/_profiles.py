"""Technique profiles of groups, campaigns and software, rebuilt from an explicit set of relationships.

Attribution, overlap and anticipation all learn from the same thing: which group, campaign or software
uses which technique, and by which path (a group's own ``uses`` link, its software, its campaigns). The
``Corpus`` holds those relationships as plain data so that a benchmark can drop the links a held-out
report or campaign contributed and rebuild every profile without it (see ``bench/attribution_bench.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

from ttpscope.kb.base import KnowledgeBase
from ttpscope.kb.objects import Procedure

DIRECT, SOFTWARE, CAMPAIGN = "direct", "software", "campaign"

# (via, via_id): how an entity came to use a technique. via_id is the software or campaign id.
Path = tuple[str, str | None]


@dataclass(frozen=True)
class Corpus:
    """The relationships profiles are learned from."""

    procedures: tuple[Procedure, ...]
    group_software: dict[str, tuple[str, ...]]
    campaign_groups: dict[str, tuple[str, ...]]
    campaign_software: dict[str, tuple[str, ...]]
    groups: tuple[str, ...]  # live group ids
    campaigns: tuple[str, ...]  # live campaign ids
    techniques: frozenset[str]  # live technique ids

    @classmethod
    def from_kb(cls, kb: KnowledgeBase) -> Corpus:
        live_groups = tuple(g.id for g in kb.live_groups())
        live_campaigns = tuple(sorted(c.id for c in kb.campaigns.values() if not c.deprecated))
        return cls(
            procedures=tuple(kb.procedures),
            group_software={g: tuple(s) for g, s in kb.group_software.items()},
            campaign_groups={c: tuple(g for g in kb.campaigns[c].groups if g in kb.groups)
                             for c in live_campaigns},
            campaign_software={c: tuple(s) for c, s in kb.campaign_software.items()},
            groups=live_groups,
            campaigns=live_campaigns,
            techniques=frozenset(t.id for t in kb.live_techniques()),
        )

    def without(self, drop_procedure: Callable[[Procedure], bool] | None = None,
                drop_group_software: Iterable[tuple[str, str]] = (),
                drop_campaigns: Iterable[str] = ()) -> Corpus:
        """A copy without some relationships: procedures matching ``drop_procedure``, (group, software)
        links, and whole campaigns (their techniques and their attribution)."""
        gone_gs = set(drop_group_software)
        gone_c = set(drop_campaigns)
        procs = tuple(p for p in self.procedures
                      if p.source_id not in gone_c and not (drop_procedure and drop_procedure(p)))
        group_sw = {g: tuple(s for s in sws if (g, s) not in gone_gs) for g, sws in self.group_software.items()}
        return replace(self, procedures=procs, group_software=group_sw,
                       campaign_groups={c: g for c, g in self.campaign_groups.items() if c not in gone_c},
                       campaign_software={c: s for c, s in self.campaign_software.items() if c not in gone_c},
                       campaigns=tuple(c for c in self.campaigns if c not in gone_c))


@dataclass
class Profiles:
    """Technique -> paths, per group, campaign and software, built from one Corpus."""

    group: dict[str, dict[str, list[Path]]] = field(default_factory=dict)
    campaign: dict[str, dict[str, list[Path]]] = field(default_factory=dict)
    software: dict[str, dict[str, list[Path]]] = field(default_factory=dict)
    texts: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (source id, technique) -> texts

    @classmethod
    def build(cls, corpus: Corpus) -> Profiles:
        live = corpus.techniques
        direct: dict[str, dict[str, list[Path]]] = {}
        texts: dict[tuple[str, str], list[str]] = {}
        for p in corpus.procedures:
            if p.technique_id not in live:
                continue
            direct.setdefault(p.source_id, {}).setdefault(p.technique_id, [(DIRECT, None)])
            if p.description:
                texts.setdefault((p.source_id, p.technique_id), []).append(p.description)
        software = {s: prof for s, prof in direct.items() if s.startswith("S")}

        def add_software(target: dict[str, list[Path]], sids: Iterable[str]) -> None:
            for sid in sids:
                for tid in software.get(sid, ()):
                    target.setdefault(tid, []).append((SOFTWARE, sid))

        campaigns: dict[str, dict[str, list[Path]]] = {}
        for cid in corpus.campaigns:
            prof = {t: list(paths) for t, paths in direct.get(cid, {}).items()}
            add_software(prof, corpus.campaign_software.get(cid, ()))
            campaigns[cid] = prof
        groups: dict[str, dict[str, list[Path]]] = {}
        for gid in corpus.groups:
            prof = {t: list(paths) for t, paths in direct.get(gid, {}).items()}
            add_software(prof, corpus.group_software.get(gid, ()))
            groups[gid] = prof
        for cid in corpus.campaigns:
            for gid in corpus.campaign_groups.get(cid, ()):
                if gid in groups:
                    for tid in direct.get(cid, ()):
                        groups[gid].setdefault(tid, []).append((CAMPAIGN, cid))
        return cls(group=groups, campaign=campaigns, software=software, texts=texts)

    def of_kind(self, kind: str) -> dict[str, dict[str, list[Path]]]:
        return {"group": self.group, "campaign": self.campaign, "software": self.software}[kind]


_default: dict[int, tuple[KnowledgeBase, Corpus, Profiles]] = {}


def default_profiles(kb: KnowledgeBase) -> tuple[Corpus, Profiles]:
    """The corpus and profiles of a loaded KB (memoised per KB object)."""
    hit = _default.get(id(kb))
    if hit is None or hit[0] is not kb:
        corpus = Corpus.from_kb(kb)
        hit = (kb, corpus, Profiles.build(corpus))
        _default[id(kb)] = hit
    return hit[1], hit[2]
