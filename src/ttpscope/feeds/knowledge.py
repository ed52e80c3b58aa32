"""The feed knowledge layer: intrusion sets, campaigns, malware/tools and their ``uses`` links from feeds,
laid over an ATT&CK knowledge base.

``kb_with_feeds(kb, store)`` returns a new ``KnowledgeBase`` (the given one is untouched): attribution,
overlap and anticipation take it as they take any KB, so feed groups become candidates with profiles of
their own. What a feed says about an object ATT&CK already has joins that object instead of duplicating
it: attack patterns resolve to ATT&CK techniques by their ``mitre-attack`` external id (revoked and
re-numbered ids followed to the current one), else by the ATT&CK STIX id or exact name; intrusion sets,
software and campaigns by external id, STIX id, then name or alias. New ones keep their STIX id as id.
Every procedure a feed adds cites ``feed <name>``, so each candidate's past instances say which feed
they came from, and a new group's ``context["source"]`` names its feed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable

from ttpscope.kb.aliases import normalize
from ttpscope.kb.base import KnowledgeBase
from ttpscope.kb.objects import Campaign, Group, Procedure, Software
from ttpscope.store.feeds import FeedStore

LAYER_TYPES = ("intrusion-set", "campaign", "malware", "tool", "attack-pattern", "relationship")


@dataclass
class LayerReport:
    """What the feed layer added, and what it could not place."""

    feeds: list[str] = field(default_factory=list)
    groups_added: list[str] = field(default_factory=list)
    groups_enriched: list[str] = field(default_factory=list)
    software_added: list[str] = field(default_factory=list)
    campaigns_added: list[str] = field(default_factory=list)
    procedures: int = 0
    unresolved: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _ext_id(obj: dict[str, Any]) -> str | None:
    for ref in obj.get("external_references") or []:
        if isinstance(ref, dict) and ref.get("source_name") in ("mitre-attack", "mitre-mobile-attack",
                                                                "mitre-ics-attack") and ref.get("external_id"):
            return str(ref["external_id"])
    return None


def kb_with_feeds(kb: KnowledgeBase, store: FeedStore | None = None, feeds: Iterable[str] | None = None,
                  report: LayerReport | None = None) -> KnowledgeBase:
    """``kb`` with the knowledge of the workspace's feeds (all, or the named ones) laid over it."""
    store = store or FeedStore()
    wanted = set(feeds) if feeds is not None else None
    objs = [o for o in store.objects(types=LAYER_TYPES, include_revoked=True)
            if wanted is None or o["x_ttpscope_feed"] in wanted]
    report = report if report is not None else LayerReport()
    if not objs:
        return kb
    new = copy.copy(kb)
    new.groups = dict(kb.groups)
    new.software = dict(kb.software)
    new.campaigns = {k: copy.copy(v) for k, v in kb.campaigns.items()}
    for c in new.campaigns.values():
        c.groups = list(c.groups)
    new.procedures = list(kb.procedures)
    new.group_software = {k: list(v) for k, v in kb.group_software.items()}
    new.campaign_software = {k: list(v) for k, v in kb.campaign_software.items()}
    new.warnings = list(kb.warnings)

    by_stix_tech = {t.stix_id: t.id for t in kb.techniques.values() if t.stix_id}
    by_stix = {o.stix_id: o.id for table in (kb.groups, kb.software, kb.campaigns) for o in table.values()
               if o.stix_id}
    ids: dict[str, str] = {}  # STIX id -> KB id (technique, group, software, campaign)
    kinds: dict[str, str] = {}  # KB id -> group | software | campaign
    revoked = {o["id"] for o in objs if o.get("revoked")}
    feeds_seen: set[str] = set()

    def resolve_tech(o: dict[str, Any]) -> str | None:
        ext = _ext_id(o)
        if ext:
            res = kb.resolve_technique(ext)
            if res.id:
                return res.id
        if o["id"] in by_stix_tech:
            tid = by_stix_tech[o["id"]]
            return kb.resolve_technique(tid).id or tid
        if o.get("name"):
            res = kb.resolve_technique(o["name"])
            return res.id
        return None

    for o in objs:
        if o["id"] in revoked or o["type"] == "relationship":
            continue
        feed = o["x_ttpscope_feed"]
        feeds_seen.add(feed)
        sid, name = o["id"], str(o.get("name") or o["id"])
        if o["type"] == "attack-pattern":
            tid = resolve_tech(o)
            if tid:
                ids[sid] = tid
            else:
                report.unresolved.append({"feed": feed, "id": sid, "reason": f"attack pattern {name!r} is not a "
                                          f"technique of {kb.label}"})
        elif o["type"] == "intrusion-set":
            gid = _existing(kb, o, by_stix, "group")
            if gid:
                report.groups_enriched.append(gid)
            else:
                gid = sid
                aliases = [a for a in o.get("aliases") or [] if isinstance(a, str)]
                new.groups[gid] = Group(id=gid, name=name, aliases=[name, *[a for a in aliases if a != name]],
                                        description=str(o.get("description") or ""),
                                        context={"source": f"feed {feed}"}, stix_id=sid)
                report.groups_added.append(gid)
            ids[sid], kinds[gid] = gid, "group"
        elif o["type"] in ("malware", "tool"):
            swid = _existing(kb, o, by_stix, "software")
            if not swid:
                swid = sid
                new.software[swid] = Software(id=swid, name=name, type=o["type"],
                                              aliases=[name, *[a for a in o.get("aliases") or [] if a != name]],
                                              platforms=list(o.get("x_mitre_platforms") or []),
                                              description=str(o.get("description") or ""), stix_id=sid)
                report.software_added.append(swid)
            ids[sid], kinds[swid] = swid, "software"
        elif o["type"] == "campaign":
            cid = _existing(kb, o, by_stix, "campaign")
            if not cid:
                cid = sid
                new.campaigns[cid] = Campaign(id=cid, name=name, aliases=[name], description=str(o.get("description")
                                              or ""), first_seen=o.get("first_seen"), last_seen=o.get("last_seen"),
                                              stix_id=sid)
                report.campaigns_added.append(cid)
            ids[sid], kinds[cid] = cid, "campaign"

    def ref(stix_id: str) -> str | None:
        if stix_id in ids:
            return ids[stix_id]
        if stix_id in by_stix_tech:  # a feed may point at ATT&CK's own objects without shipping them
            return kb.resolve_technique(by_stix_tech[stix_id]).id
        if stix_id in by_stix:
            kinds.setdefault(by_stix[stix_id], _kind_of(kb, by_stix[stix_id]))
            return by_stix[stix_id]
        return None

    have = {(p.source_id, p.technique_id) for p in kb.procedures}
    for o in objs:
        if o["type"] != "relationship" or o["id"] in revoked:
            continue
        rtype, src_s, dst_s = o.get("relationship_type"), o.get("source_ref", ""), o.get("target_ref", "")
        if src_s in revoked or dst_s in revoked:
            continue
        feed = o["x_ttpscope_feed"]
        src, dst = ref(src_s), ref(dst_s)
        if src is None or dst is None:
            if rtype in ("uses", "attributed-to"):
                report.unresolved.append({"feed": feed, "id": o["id"],
                                          "reason": f"{rtype} {src_s} -> {dst_s}: an end is not known"})
            continue
        skind = kinds.get(src)
        dst_is_tech = dst_s.startswith("attack-pattern--")
        if rtype == "uses" and dst_is_tech and skind in ("group", "software", "campaign"):
            if (src, dst) not in have:
                have.add((src, dst))
                new.procedures.append(Procedure(src, skind, dst, str(o.get("description") or ""),
                                                citations=(f"feed {feed}",)))
                report.procedures += 1
        elif rtype == "uses" and kinds.get(dst) == "software":
            if skind == "group" and dst not in new.group_software.setdefault(src, []):
                new.group_software[src].append(dst)
            elif skind == "campaign" and dst not in new.campaign_software.setdefault(src, []):
                new.campaign_software[src].append(dst)
        elif rtype == "attributed-to" and skind == "campaign" and kinds.get(dst) == "group":
            if dst not in new.campaigns[src].groups:
                new.campaigns[src].groups.append(dst)

    report.feeds = sorted(feeds_seen)
    # where each profile came from (attribution names it per candidate): a feed's own group or campaign
    # says "feed X"; an ATT&CK group or campaign a feed added techniques or software to, both
    added_by: dict[str, set[str]] = {}
    for p in new.procedures[len(kb.procedures):]:
        added_by.setdefault(p.source_id, set()).update(c.removeprefix("feed ") for c in p.citations)
    new.profile_sources = {}
    for oid, feeds_of in added_by.items():
        if oid in kb.groups or oid in kb.campaigns:
            new.profile_sources[oid] = f"{kb.label} + feed {', '.join(sorted(feeds_of))}"
    for cid in report.campaigns_added:
        new.profile_sources[cid] = "feed " + next((o["x_ttpscope_feed"] for o in objs if o["id"] == cid), "?")
    for gid, source in new.profile_sources.items():
        if gid in kb.groups:  # a copy: the ATT&CK KB's group is untouched
            g = copy.copy(kb.groups[gid])
            g.context = {**g.context, "source": source}
            new.groups[gid] = g
    new.procedures.sort(key=lambda p: (p.source_id, p.technique_id))
    new.source = f"{kb.source} + feeds: {', '.join(report.feeds)}" if report.feeds else kb.source
    ambiguous = {normalize(a) for g in kb.groups.values() for a in g.misp_aliases
                 if normalize(a) and normalize(a) not in kb._group_alias}
    new.index(ambiguous)
    # feed ids are STIX ids: reachable by lookups that normalise their query
    for gid in report.groups_added:
        new._group_alias.setdefault(normalize(gid), gid)
    for swid in report.software_added:
        new._software_alias.setdefault(normalize(swid), swid)
    return new


def _kind_of(kb: KnowledgeBase, any_id: str) -> str:
    if any_id in kb.groups:
        return "group"
    if any_id in kb.campaigns:
        return "campaign"
    return "software"


def _existing(kb: KnowledgeBase, o: dict[str, Any], by_stix: dict[str, str], kind: str) -> str | None:
    """The KB object a feed object is about: by ATT&CK external id (revocations followed), STIX id, name."""
    table = {"group": kb.groups, "software": kb.software, "campaign": kb.campaigns}[kind]
    ext = _ext_id(o)
    if ext:
        if kind == "group":
            res = kb.resolve_group(ext)
            if res.id:
                return res.id
        elif kind == "software":
            res = kb.resolve_software(ext)
            if res.id:
                return res.id
        elif ext in table:
            return ext
    if o["id"] in by_stix and by_stix[o["id"]] in table:
        return by_stix[o["id"]]
    names = [o.get("name"), *(o.get("aliases") or [])]
    for name in names:
        if not isinstance(name, str) or not name:
            continue
        if kind == "group":
            res = kb.resolve_group(name)
            if res.id:
                return res.id
        elif kind == "software":
            res = kb.resolve_software(name)
            if res.id:
                return res.id
        else:
            for c in kb.campaigns.values():
                if normalize(c.name) == normalize(name):
                    return c.id
    return None
