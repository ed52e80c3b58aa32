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
                drop_campaigns: Iterable[str] = (), forget_citations: Iterable[str] = ()) -> Corpus:
        """A copy without some relationships: procedures matching ``drop_procedure``, (group, software)
        links, whole campaigns (their techniques and their attribution), and what some reports said.

        ``forget_citations``: reports held out. A relationship all of whose citations are among them goes;
        one that another report also supports stays, with the held-out reports struck from its citations.
        """
        gone_gs = set(drop_group_software)
        gone_c = set(drop_campaigns)
        forget = set(forget_citations)
        procs = []
        for p in self.procedures:
            if p.source_id in gone_c or (drop_procedure and drop_procedure(p)):
                continue
            if forget and p.citations and forget.intersection(p.citations):
                kept = tuple(c for c in p.citations if c not in forget)
                if not kept:
                    continue
                p = replace(p, citations=kept)
            procs.append(p)
        group_sw = {g: tuple(s for s in sws if (g, s) not in gone_gs) for g, sws in self.group_software.items()}
        return replace(self, procedures=tuple(procs), group_software=group_sw,
                       campaign_groups={c: g for c, g in self.campaign_groups.items() if c not in gone_c},
                       campaign_software={c: s for c, s in self.campaign_software.items() if c not in gone_c},
                       campaigns=tuple(c for c in self.campaigns if c not in gone_c))


@dataclass
class Profiles:
    """Technique -> paths per group, campaign and software; past "instances"; procedure text; from one Corpus.

    An instance is one body of past evidence about an entity: for a group, each report its own technique
    links cite, each of its campaigns and each of its software; for a campaign, itself and its software.
    """

    group: dict[str, dict[str, list[Path]]] = field(default_factory=dict)
    campaign: dict[str, dict[str, list[Path]]] = field(default_factory=dict)
    software: dict[str, dict[str, list[Path]]] = field(default_factory=dict)
    # kind -> entity -> instance label ("report:<citation>", "campaign:C0024", "software:S0154") -> techniques
    instances: dict[str, dict[str, dict[str, frozenset[str] | set[str]]]] = field(default_factory=dict)
    # kind -> entity -> its procedure examples (markdown), for text similarity
    documents: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @classmethod
    def build(cls, corpus: Corpus) -> Profiles:
        live = corpus.techniques
        direct: dict[str, dict[str, list[Path]]] = {}
        texts: dict[str, list[str]] = {}
        reports: dict[str, dict[str, set[str]]] = {}
        for p in corpus.procedures:
            if p.technique_id not in live:
                continue
            direct.setdefault(p.source_id, {}).setdefault(p.technique_id, [(DIRECT, None)])
            if p.description:
                texts.setdefault(p.source_id, []).append(p.description)
            if p.source_type == "group":
                for c in p.citations:
                    reports.setdefault(p.source_id, {}).setdefault(f"report:{c}", set()).add(p.technique_id)
        software = {s: prof for s, prof in direct.items() if s.startswith("S")}
        software_set = {s: frozenset(prof) for s, prof in software.items()}  # shared, read-only

        def add_software(target: dict[str, list[Path]], inst: dict[str, set[str]], sids: Iterable[str]) -> None:
            for sid in sids:
                for tid in software.get(sid, ()):
                    target.setdefault(tid, []).append((SOFTWARE, sid))
                if software.get(sid):
                    inst[f"software:{sid}"] = software_set[sid]

        campaigns: dict[str, dict[str, list[Path]]] = {}
        c_inst: dict[str, dict[str, set[str]]] = {}
        for cid in corpus.campaigns:
            prof = {t: list(paths) for t, paths in direct.get(cid, {}).items()}
            inst = {f"campaign:{cid}": set(prof)} if prof else {}
            add_software(prof, inst, corpus.campaign_software.get(cid, ()))
            campaigns[cid], c_inst[cid] = prof, inst
        groups: dict[str, dict[str, list[Path]]] = {}
        g_inst: dict[str, dict[str, set[str]]] = {}
        g_docs: dict[str, list[str]] = {}
        for gid in corpus.groups:
            prof = {t: list(paths) for t, paths in direct.get(gid, {}).items()}
            inst = dict(reports.get(gid, {}))
            add_software(prof, inst, corpus.group_software.get(gid, ()))
            groups[gid], g_inst[gid], g_docs[gid] = prof, inst, list(texts.get(gid, []))
        for cid in corpus.campaigns:
            for gid in corpus.campaign_groups.get(cid, ()):
                if gid in groups:
                    for tid in direct.get(cid, ()):
                        groups[gid].setdefault(tid, []).append((CAMPAIGN, cid))
                    if direct.get(cid):
                        g_inst[gid][f"campaign:{cid}"] = set(direct[cid])
                    g_docs[gid].extend(texts.get(cid, []))
        return cls(group=groups, campaign=campaigns, software=software,
                   instances={"group": g_inst, "campaign": c_inst},
                   documents={"group": g_docs, "campaign": {c: list(texts.get(c, [])) for c in corpus.campaigns}})

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
