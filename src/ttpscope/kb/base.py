"""The in-memory ATT&CK knowledge base of one domain and version, and its queries."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from ttpscope.errors import NotFoundError
from ttpscope.kb.aliases import normalize
from ttpscope.kb.objects import (
    Analytic,
    Campaign,
    DataComponent,
    DataSource,
    DetectionStrategy,
    Group,
    Mitigation,
    Procedure,
    ProfileEntry,
    Resolution,
    Software,
    Tactic,
    Technique,
)

DOMAINS = ("enterprise", "mobile", "ics")
VIA_ALL = frozenset({"direct", "software", "campaign"})

# Tactics renamed or split between ATT&CK releases. v19 split Defense Evasion into Stealth (which keeps
# TA0005) and Defense Impairment; SigmaHQ already tags with the new names. When the loaded bundle lacks a
# tactic, these are tried in order. Only equivalences published by ATT&CK belong here.
TACTIC_EQUIVALENTS: dict[str, tuple[str, ...]] = {
    "stealth": ("defense-evasion",),
    "defense-impairment": ("defense-evasion",),
    "defense-evasion": ("stealth", "defense-impairment"),
}

# Techniques ATT&CK v19 moved to new ids when it split Defense Evasion (Impair Defenses' sub-techniques
# became techniques of Defense Impairment), as SigmaHQ and Atomic Red Team re-tagged them (SigmaHQ snapshot
# 2026-08): new id -> the id the same behaviour has in earlier releases. Consulted only when the loaded
# bundle does not know the id itself, so a v19 bundle answers with its own objects.
NEWER_TECHNIQUE_EQUIVALENTS: dict[str, str] = {
    "T1685": "T1562.001",      # Disable or Modify Tools
    "T1685.001": "T1562.002",  # Disable or Modify Windows Event Log
    "T1685.002": "T1562.008",  # Disable or Modify Cloud Log(s)
    "T1685.004": "T1562.012",  # Disable or Modify Linux Audit System
    "T1685.005": "T1070.001",  # Clear Windows Event Logs
    "T1685.006": "T1070.002",  # Clear Linux or Mac System Logs
    "T1686": "T1562.004",      # Disable or Modify System Firewall
    "T1686.001": "T1562.007",  # Disable or Modify Cloud Firewall
    "T1686.003": "T1562.004",  # host firewall
    "T1688": "T1562.009",      # Safe Mode Boot
    "T1689": "T1562.010",      # Downgrade Attack
    "T1690": "T1562.003",      # Impair Command History Logging
}

_ID_PATTERNS = {
    "technique": re.compile(r"^T\d{4}(\.\d{3})?$", re.I),
    "tactic": re.compile(r"^TA\d{4}$", re.I),
    "group": re.compile(r"^G\d{4}$", re.I),
    "software": re.compile(r"^S\d{4}$", re.I),
    "campaign": re.compile(r"^C\d{4}$", re.I),
    "mitigation": re.compile(r"^M\d{4}$", re.I),
}
_CITATION = re.compile(r"\(Citation:[^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\((?:https?://[^)]*)\)")


def plain(text: str) -> str:
    """ATT&CK description markdown to plain text: links become their label, citations are dropped."""
    text = _MD_LINK.sub(r"\1", text or "")
    text = _CITATION.sub("", text)
    text = re.sub(r"<code>|</code>", "", text)
    return re.sub(r"[ \t]+", " ", text).strip()


@dataclass
class KnowledgeBase:
    """ATT&CK of one domain at one version: objects keyed by ATT&CK id, relationships as indexes.

    Deprecated objects are kept (flagged) so that a lookup by id can say what happened to them, but every
    listing, profile and search hides them. Revoked ids live only in ``revoked`` (old id -> replacement).
    """

    domain: str
    version: str
    source: str
    tactics: dict[str, Tactic] = field(default_factory=dict)
    techniques: dict[str, Technique] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    software: dict[str, Software] = field(default_factory=dict)
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    mitigations: dict[str, Mitigation] = field(default_factory=dict)
    data_sources: dict[str, DataSource] = field(default_factory=dict)
    data_components: dict[str, DataComponent] = field(default_factory=dict)
    analytics: dict[str, Analytic] = field(default_factory=dict)
    detection_strategies: dict[str, DetectionStrategy] = field(default_factory=dict)
    procedures: list[Procedure] = field(default_factory=list)
    # relationship indexes (ids only)
    group_software: dict[str, list[str]] = field(default_factory=dict)
    campaign_software: dict[str, list[str]] = field(default_factory=dict)
    technique_mitigations: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    technique_components: dict[str, list[str]] = field(default_factory=dict)
    technique_strategies: dict[str, list[str]] = field(default_factory=dict)
    revoked: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # old id -> (new id, old name)
    warnings: list[str] = field(default_factory=list)
    include_deprecated: bool = False
    # derived indexes, rebuilt by index()
    _proc_by_technique: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _proc_by_source: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _profiles: dict[str, list[ProfileEntry]] = field(default_factory=dict, repr=False)
    _group_alias: dict[str, str] = field(default_factory=dict, repr=False)
    _software_alias: dict[str, str] = field(default_factory=dict, repr=False)
    _tactic_by_short: dict[str, str] = field(default_factory=dict, repr=False)
    _search_index: object | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ building
    def index(self, ambiguous_aliases: Iterable[str] = ()) -> None:
        """Build the derived lookup tables from the primary records (after load or cache restore)."""
        by_tech: dict[str, list[int]] = defaultdict(list)
        by_src: dict[str, list[int]] = defaultdict(list)
        for i, proc in enumerate(self.procedures):
            by_tech[proc.technique_id].append(i)
            by_src[proc.source_id].append(i)
        self._proc_by_technique = dict(by_tech)
        self._proc_by_source = dict(by_src)
        self._tactic_by_short = {t.shortname: t.id for t in self.tactics.values()}
        self._profiles = {gid: self._build_profile(gid) for gid in self.groups}
        skip = set(ambiguous_aliases)
        self._group_alias = {}
        # MISP synonyms first so that ATT&CK's own names and aliases override them
        for group in self.groups.values():
            for name in group.misp_aliases:
                key = normalize(name)
                if key and key not in skip:
                    self._group_alias.setdefault(key, group.id)
        for group in self.groups.values():
            for name in [group.name, *group.aliases]:
                self._group_alias[normalize(name)] = group.id
            self._group_alias[group.id.lower()] = group.id
        self._software_alias = {}
        for sw in self.software.values():
            for name in [sw.name, *sw.aliases]:
                self._software_alias.setdefault(normalize(name), sw.id)
            self._software_alias[sw.id.lower()] = sw.id
        self._search_index = None

    def _build_profile(self, gid: str) -> list[ProfileEntry]:
        entries: list[ProfileEntry] = []
        seen: set[tuple[str, str, str | None]] = set()

        def add(tid: str, via: str, via_id: str | None) -> None:
            key = (tid, via, via_id)
            if key not in seen and tid in self.techniques and not self.techniques[tid].deprecated:
                seen.add(key)
                entries.append(ProfileEntry(tid, via, via_id))

        for i in self._proc_by_source.get(gid, ()):
            add(self.procedures[i].technique_id, "direct", None)
        for sid in self.group_software.get(gid, ()):
            for i in self._proc_by_source.get(sid, ()):
                add(self.procedures[i].technique_id, "software", sid)
        for campaign in self.campaigns.values():
            if gid in campaign.groups and not campaign.deprecated:
                for i in self._proc_by_source.get(campaign.id, ()):
                    add(self.procedures[i].technique_id, "campaign", campaign.id)
        return entries

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_search_index"] = None  # rebuilt lazily; not worth its pickle time
        return state

    # ------------------------------------------------------------------ description
    @property
    def label(self) -> str:
        """'enterprise ATT&CK v15.1': say which data answered."""
        return f"{self.domain} ATT&CK v{self.version}"

    def provenance(self) -> dict[str, str]:
        return {"domain": self.domain, "attack_version": self.version, "source": self.source}

    def info(self) -> dict:
        live = lambda objs: sum(1 for o in objs.values() if not getattr(o, "deprecated", False))  # noqa: E731
        techniques = [t for t in self.techniques.values() if not t.deprecated]
        return {
            **self.provenance(),
            "counts": {
                "tactics": len(self.tactics),
                "techniques": sum(1 for t in techniques if not t.is_subtechnique),
                "subtechniques": sum(1 for t in techniques if t.is_subtechnique),
                "groups": live(self.groups),
                "software": live(self.software),
                "campaigns": live(self.campaigns),
                "mitigations": live(self.mitigations),
                "data_sources": len(self.data_sources),
                "data_components": len(self.data_components),
                "detection_strategies": len(self.detection_strategies),
                "analytics": len(self.analytics),
                "procedures": len(self.procedures),
                "revoked_ids": len(self.revoked),
                "deprecated": sum(
                    1 for objs in (self.techniques, self.groups, self.software, self.campaigns, self.mitigations)
                    for o in objs.values() if o.deprecated),
            },
            "tactics": [t.shortname for t in self.tactic_list()],
            "warnings": len(self.warnings),
        }

    # ------------------------------------------------------------------ tactics
    def tactic_list(self) -> list[Tactic]:
        """Tactics in matrix order."""
        return sorted(self.tactics.values(), key=lambda t: t.order)

    def tactic_order(self) -> list[str]:
        return [t.shortname for t in self.tactic_list()]

    def resolve_tactic(self, query: str) -> Resolution:
        """A tactic by TA id, shortname, name or Sigma tag (``attack.credential-access``), with equivalences."""
        q = query.strip()
        if q.lower().startswith("attack."):
            q = q[7:]
        if _ID_PATTERNS["tactic"].match(q):
            tid = q.upper()
            if tid in self.tactics:
                return Resolution(query, tid)
            return Resolution(query, None, f"{tid} is not in {self.label}")
        short = q.lower().replace("_", "-").replace(" ", "-")
        if short in self._tactic_by_short:
            return Resolution(query, self._tactic_by_short[short])
        for tactic in self.tactics.values():
            if normalize(tactic.name) == normalize(q):
                return Resolution(query, tactic.id)
        for alt in TACTIC_EQUIVALENTS.get(short, ()):
            if alt in self._tactic_by_short:
                return Resolution(query, self._tactic_by_short[alt],
                                  f"tactic '{short}' is not in {self.label}; mapped to its equivalent '{alt}'")
        return Resolution(query, None, f"tactic '{query}' is not in {self.label}")

    def tactic(self, query: str) -> Tactic:
        res = self.resolve_tactic(query)
        if res.id is None:
            raise NotFoundError(res.note or f"no tactic {query!r}")
        return self.tactics[res.id]

    def tactic_by_shortname(self, shortname: str) -> Tactic | None:
        tid = self._tactic_by_short.get(shortname)
        return self.tactics[tid] if tid else None

    def techniques_of_tactic(self, query: str, subtechniques: bool = True) -> list[Technique]:
        short = self.tactic(query).shortname
        return sorted((t for t in self.techniques.values()
                       if short in t.tactics and not t.deprecated and (subtechniques or not t.is_subtechnique)),
                      key=lambda t: t.id)

    # ------------------------------------------------------------------ techniques
    def resolve_technique(self, query: str) -> Resolution:
        """Current id for a technique id, following revoked-by chains; a note says what changed."""
        tid = query.strip().upper()
        if not _ID_PATTERNS["technique"].match(tid):
            # a technique name is accepted too
            key = normalize(query)
            for tech in self.techniques.values():
                if normalize(tech.name) == key and not tech.deprecated:
                    return Resolution(query, tech.id)
            return Resolution(query, None, f"'{query}' is not a technique id or name in {self.label}")
        if tid in self.techniques:
            tech = self.techniques[tid]
            note = f"{tid} is deprecated in {self.label}" if tech.deprecated else None
            return Resolution(query, tid, note)
        seen = []
        current = tid
        while current in self.revoked and current not in seen:
            seen.append(current)
            new_id, old_name = self.revoked[current]
            if new_id is None:
                return Resolution(query, None, f"{tid} ({old_name}) is revoked in {self.label} without replacement")
            current = new_id
        if seen and current in self.techniques:
            old_name = self.revoked[tid][1]
            return Resolution(query, current,
                              f"{tid} ({old_name}) is revoked in {self.label}; replaced by {current} "
                              f"({self.techniques[current].name})")
        older = NEWER_TECHNIQUE_EQUIVALENTS.get(tid)
        if older in self.techniques and not self.techniques[older].deprecated:
            return Resolution(query, older, f"{tid} is not in {self.label} (a newer ATT&CK id); mapped to its "
                                            f"equivalent {older} ({self.techniques[older].name})")
        return Resolution(query, None, f"{tid} is not in {self.label}")

    def technique(self, query: str) -> Technique:
        res = self.resolve_technique(query)
        if res.id is None:
            raise NotFoundError(res.note or f"no technique {query!r}")
        return self.techniques[res.id]

    def live_techniques(self) -> list[Technique]:
        return sorted((t for t in self.techniques.values() if not t.deprecated), key=lambda t: t.id)

    def subtechniques(self, tid: str) -> list[Technique]:
        return [self.techniques[s] for s in self.technique(tid).subtechniques
                if s in self.techniques and not self.techniques[s].deprecated]

    def mitigations_of(self, tid: str) -> list[tuple[Mitigation, str]]:
        """Mitigations of a technique, with the technique-specific advice of the relationship."""
        out = []
        for mid, text in self.technique_mitigations.get(self.technique(tid).id, ()):
            if mid in self.mitigations:
                out.append((self.mitigations[mid], text))
        return sorted(out, key=lambda p: p[0].id)

    def data_components_of(self, tid: str) -> list[DataComponent]:
        """Data components that detect a technique: legacy ``detects`` links and v18 analytics' log sources."""
        tech_id = self.technique(tid).id
        ids = list(self.technique_components.get(tech_id, ()))
        for det in self.technique_strategies.get(tech_id, ()):
            for an in self.detection_strategies[det].analytics:
                for ls in self.analytics[an].log_sources if an in self.analytics else ():
                    if ls.get("data_component") and ls["data_component"] not in ids:
                        ids.append(ls["data_component"])
        return [self.data_components[i] for i in ids if i in self.data_components]

    def detection_strategies_of(self, tid: str) -> list[DetectionStrategy]:
        return [self.detection_strategies[d] for d in self.technique_strategies.get(self.technique(tid).id, ())]

    # ------------------------------------------------------------------ procedures
    def procedures_for(self, technique_id: str | None = None, source_id: str | None = None) -> list[Procedure]:
        """Procedure examples (``uses`` with text) of a technique, of a group/software/campaign, or both."""
        if technique_id is not None:
            idx = self._proc_by_technique.get(technique_id, [])
            procs = [self.procedures[i] for i in idx]
            return [p for p in procs if source_id is None or p.source_id == source_id]
        if source_id is not None:
            return [self.procedures[i] for i in self._proc_by_source.get(source_id, [])]
        return list(self.procedures)

    def name_of(self, any_id: str) -> str:
        """Display name of any ATT&CK id this KB holds."""
        for table in (self.techniques, self.groups, self.software, self.campaigns, self.mitigations,
                      self.tactics, self.data_components, self.detection_strategies, self.analytics):
            if any_id in table:
                return table[any_id].name
        return any_id

    # ------------------------------------------------------------------ groups
    def resolve_group(self, query: str) -> Resolution:
        """A group by G-id, name or any alias (ATT&CK or MISP), case- and punctuation-insensitive."""
        q = query.strip()
        if _ID_PATTERNS["group"].match(q):
            gid = q.upper()
            if gid in self.groups:
                g = self.groups[gid]
                return Resolution(query, gid, f"{gid} is deprecated in {self.label}" if g.deprecated else None)
            if gid in self.revoked:
                new_id, old_name = self.revoked[gid]
                if new_id:
                    return Resolution(query, new_id, f"{gid} ({old_name}) is revoked; replaced by {new_id}")
            return Resolution(query, None, f"group {gid} is not in {self.label}")
        gid = self._group_alias.get(normalize(q))
        if gid:
            return Resolution(query, gid)
        return Resolution(query, None, f"no group named '{query}' in {self.label} (ATT&CK and MISP aliases)")

    def group(self, query: str) -> Group:
        res = self.resolve_group(query)
        if res.id is None:
            raise NotFoundError(res.note or f"no group {query!r}")
        return self.groups[res.id]

    def live_groups(self) -> list[Group]:
        return sorted((g for g in self.groups.values() if not g.deprecated), key=lambda g: g.id)

    def group_profile(self, gid: str, via: Iterable[str] = VIA_ALL) -> list[ProfileEntry]:
        """A group's techniques with provenance: direct ``uses``, via its software, via its campaigns."""
        wanted = set(via)
        return [e for e in self._profiles.get(self.group(gid).id, []) if e.via in wanted]

    def group_techniques(self, gid: str, via: Iterable[str] = VIA_ALL) -> set[str]:
        return {e.technique_id for e in self.group_profile(gid, via)}

    def groups_using(self, tid: str, via: Iterable[str] = VIA_ALL) -> list[str]:
        """Group ids whose profile (through the given paths) holds the technique."""
        tech_id = self.technique(tid).id
        wanted = set(via)
        return sorted(gid for gid, entries in self._profiles.items()
                      if not self.groups[gid].deprecated
                      and any(e.technique_id == tech_id and e.via in wanted for e in entries))

    def campaigns_of_group(self, gid: str) -> list[Campaign]:
        group_id = self.group(gid).id
        return sorted((c for c in self.campaigns.values() if group_id in c.groups and not c.deprecated),
                      key=lambda c: c.id)

    # ------------------------------------------------------------------ software / campaigns
    def resolve_software(self, query: str) -> Resolution:
        q = query.strip()
        if _ID_PATTERNS["software"].match(q):
            sid = q.upper()
            if sid in self.software:
                return Resolution(query, sid)
            if sid in self.revoked and self.revoked[sid][0]:
                return Resolution(query, self.revoked[sid][0], f"{sid} is revoked; replaced by {self.revoked[sid][0]}")
            return Resolution(query, None, f"software {sid} is not in {self.label}")
        sid = self._software_alias.get(normalize(q))
        if sid:
            return Resolution(query, sid)
        return Resolution(query, None, f"no software named '{query}' in {self.label}")

    def software_item(self, query: str) -> Software:
        res = self.resolve_software(query)
        if res.id is None:
            raise NotFoundError(res.note or f"no software {query!r}")
        return self.software[res.id]

    def software_techniques(self, sid: str) -> set[str]:
        return {p.technique_id for p in self.procedures_for(source_id=self.software_item(sid).id)}

    def software_using(self, tid: str) -> list[str]:
        tech_id = self.technique(tid).id
        return sorted({p.source_id for p in self.procedures_for(technique_id=tech_id) if p.source_type == "software"})

    def campaign(self, query: str) -> Campaign:
        q = query.strip()
        cid = q.upper()
        if cid in self.campaigns:
            return self.campaigns[cid]
        key = normalize(q)
        for c in self.campaigns.values():
            if key in {normalize(n) for n in [c.name, *c.aliases]}:
                return c
        raise NotFoundError(f"no campaign '{query}' in {self.label}")

    def campaign_techniques(self, cid: str) -> set[str]:
        return {p.technique_id for p in self.procedures_for(source_id=self.campaign(cid).id)}

    # ------------------------------------------------------------------ search
    def search(self, query: str, kinds: Iterable[str] | None = None, limit: int = 20) -> list[dict]:
        """Ranked free-text search over names, aliases and descriptions (see kb.search)."""
        from ttpscope.kb.search import SearchIndex

        if self._search_index is None:
            self._search_index = SearchIndex.build(self)
        return self._search_index.query(query, kinds=kinds, limit=limit)
