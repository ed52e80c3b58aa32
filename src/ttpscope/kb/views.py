"""JSON-ready descriptions of KB objects: what `ttpscope kb ...` and `GET /api/...` both return."""

from __future__ import annotations

from ttpscope.kb.base import KnowledgeBase, plain


def _ref(kb: KnowledgeBase, any_id: str) -> dict:
    return {"id": any_id, "name": kb.name_of(any_id)}


def technique_view(kb: KnowledgeBase, query: str, procedures: int | None = None) -> dict:
    """Everything about one technique; an old id answers with its replacement and a ``note``."""
    res = kb.resolve_technique(query)
    tech = kb.technique(query)
    procs = kb.procedures_for(technique_id=tech.id)
    groups = kb.groups_using(tech.id, via={"direct"})
    indirect = sorted(set(kb.groups_using(tech.id)) - set(groups))
    strategies = kb.detection_strategies_of(tech.id)
    return {
        "id": tech.id,
        "name": tech.name,
        "requested": query,
        "note": res.note,
        "tactics": list(tech.tactics),
        "platforms": tech.platforms,
        "is_subtechnique": tech.is_subtechnique,
        "parent": _ref(kb, tech.parent) if tech.parent else None,
        "subtechniques": [_ref(kb, s.id) for s in kb.subtechniques(tech.id)],
        "deprecated": tech.deprecated,
        "description": plain(tech.description),
        "url": tech.url,
        "mitigations": [{"id": m.id, "name": m.name, "how": plain(text)} for m, text in kb.mitigations_of(tech.id)],
        "data_components": [{"id": dc.id, "name": dc.name,
                             "data_source": kb.data_sources[dc.data_source].name
                             if dc.data_source in kb.data_sources else None}
                            for dc in kb.data_components_of(tech.id)],
        "detection_strategies": [{"id": d.id, "name": d.name, "analytics": d.analytics} for d in strategies],
        "detection": plain(tech.detection),
        "groups": [_ref(kb, g) for g in groups],
        "groups_indirect": [_ref(kb, g) for g in indirect],
        "software": [_ref(kb, s) for s in kb.software_using(tech.id)],
        "procedures": [{"source": _ref(kb, p.source_id), "source_type": p.source_type,
                        "description": plain(p.description)} for p in procs[:procedures]],
        **kb.provenance(),
    }


def group_view(kb: KnowledgeBase, query: str) -> dict:
    res = kb.resolve_group(query)
    group = kb.group(query)
    entries = kb.group_profile(group.id)
    techniques: dict[str, dict] = {}
    for e in entries:
        item = techniques.setdefault(e.technique_id, {"id": e.technique_id, "name": kb.name_of(e.technique_id),
                                                      "via": []})
        item["via"].append(e.via if e.via == "direct" else f"{e.via}:{e.via_id}")
    direct_text = {p.technique_id: plain(p.description) for p in kb.procedures_for(source_id=group.id)}
    for tid, item in techniques.items():
        item["procedure"] = direct_text.get(tid)
    return {
        "id": group.id,
        "name": group.name,
        "requested": query,
        "note": res.note,
        "aliases": group.aliases,
        "misp_aliases": group.misp_aliases,
        "context": group.context,
        "description": plain(group.description),
        "url": group.url,
        "deprecated": group.deprecated,
        "techniques": sorted(techniques.values(), key=lambda t: t["id"]),
        "software": [_ref(kb, s) for s in kb.group_software.get(group.id, [])],
        "campaigns": [_ref(kb, c.id) for c in kb.campaigns_of_group(group.id)],
        **kb.provenance(),
    }


def software_view(kb: KnowledgeBase, query: str) -> dict:
    sw = kb.software_item(query)
    return {
        "id": sw.id, "name": sw.name, "type": sw.type, "aliases": sw.aliases, "platforms": sw.platforms,
        "description": plain(sw.description), "url": sw.url,
        "techniques": [{"id": p.technique_id, "name": kb.name_of(p.technique_id), "procedure": plain(p.description)}
                       for p in kb.procedures_for(source_id=sw.id)],
        "groups": [_ref(kb, g) for g, sws in sorted(kb.group_software.items()) if sw.id in sws],
        "campaigns": [_ref(kb, c) for c, sws in sorted(kb.campaign_software.items()) if sw.id in sws],
        **kb.provenance(),
    }


def campaign_view(kb: KnowledgeBase, query: str) -> dict:
    c = kb.campaign(query)
    return {
        "id": c.id, "name": c.name, "aliases": c.aliases, "description": plain(c.description), "url": c.url,
        "first_seen": c.first_seen, "last_seen": c.last_seen,
        "groups": [_ref(kb, g) for g in c.groups],
        "techniques": [{"id": p.technique_id, "name": kb.name_of(p.technique_id), "procedure": plain(p.description)}
                       for p in kb.procedures_for(source_id=c.id)],
        "software": [_ref(kb, s) for s in kb.campaign_software.get(c.id, [])],
        **kb.provenance(),
    }


def tactic_view(kb: KnowledgeBase, query: str) -> dict:
    res = kb.resolve_tactic(query)
    t = kb.tactic(query)
    return {
        "id": t.id, "shortname": t.shortname, "name": t.name, "order": t.order, "note": res.note,
        "description": plain(t.description), "url": t.url,
        "techniques": [{"id": x.id, "name": x.name, "is_subtechnique": x.is_subtechnique}
                       for x in kb.techniques_of_tactic(t.id)],
        **kb.provenance(),
    }
