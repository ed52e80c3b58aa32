"""What changed between two ATT&CK releases of a domain.

Objects are matched by STIX id, which survives renames and re-numbering; ATT&CK ids are what is shown.
"""

from __future__ import annotations

from ttpscope.kb.base import KnowledgeBase


def _by_stix(objs: dict) -> dict:
    return {o.stix_id: o for o in objs.values()}


def diff_kb(old: KnowledgeBase, new: KnowledgeBase) -> dict:
    """Techniques added / revoked / deprecated / renamed / re-numbered / moved; groups added / removed;
    group profile changes (techniques gained and lost, old ids mapped through revocations)."""
    old_t, new_t = _by_stix(old.techniques), _by_stix(new.techniques)
    added, deprecated, renamed, moved, renumbered = [], [], [], [], []
    for sid, t in sorted(new_t.items(), key=lambda p: p[1].id):
        before = old_t.get(sid)
        if before is None:
            if not t.deprecated:
                added.append({"id": t.id, "name": t.name, "tactics": t.tactics})
            continue
        if t.deprecated and not before.deprecated:
            deprecated.append({"id": t.id, "name": t.name})
        if t.name != before.name:
            renamed.append({"id": t.id, "old_name": before.name, "new_name": t.name})
        if t.id != before.id:
            renumbered.append({"old_id": before.id, "new_id": t.id, "name": t.name})
        if t.tactics != before.tactics and not t.deprecated:
            moved.append({"id": t.id, "name": t.name, "old_tactics": before.tactics, "new_tactics": t.tactics})
    revoked = []
    for sid, t in sorted(old_t.items(), key=lambda p: p[1].id):
        if sid not in new_t and t.id in new.revoked:
            replacement = new.revoked[t.id][0]
            revoked.append({"id": t.id, "name": t.name, "replaced_by": replacement,
                            "replacement_name": new.name_of(replacement) if replacement else None})
    removed = [{"id": t.id, "name": t.name} for sid, t in sorted(old_t.items(), key=lambda p: p[1].id)
               if sid not in new_t and t.id not in new.revoked]

    old_tac, new_tac = {t.shortname for t in old.tactics.values()}, {t.shortname for t in new.tactics.values()}
    old_g, new_g = _by_stix(old.groups), _by_stix(new.groups)
    groups_added = [{"id": g.id, "name": g.name} for sid, g in sorted(new_g.items(), key=lambda p: p[1].id)
                    if sid not in old_g and not g.deprecated]
    groups_removed = [{"id": g.id, "name": g.name} for sid, g in sorted(old_g.items(), key=lambda p: p[1].id)
                      if sid not in new_g or new_g[sid].deprecated and not g.deprecated]

    def added_objects(table: str) -> list[dict]:
        before = _by_stix(getattr(old, table))
        return [{"id": o.id, "name": o.name} for sid, o in sorted(_by_stix(getattr(new, table)).items(),
                key=lambda p: p[1].id) if sid not in before and not getattr(o, "deprecated", False)]

    def current(tid: str) -> str:
        res = new.resolve_technique(tid)
        return res.id or tid

    profile_changes = []
    for sid, g in sorted(new_g.items(), key=lambda p: p[1].id):
        if sid not in old_g or g.deprecated:
            continue
        before = {current(t) for t in old.group_techniques(old_g[sid].id)}
        after = new.group_techniques(g.id)
        gained, lost = sorted(after - before), sorted(before - after)
        if gained or lost:
            profile_changes.append({"id": g.id, "name": g.name, "gained": gained, "lost": lost})
    return {
        "old": old.provenance(),
        "new": new.provenance(),
        "tactics": {"added": sorted(new_tac - old_tac), "removed": sorted(old_tac - new_tac)},
        "techniques": {"added": added, "revoked": revoked, "deprecated": deprecated, "renamed": renamed,
                       "renumbered": renumbered, "moved": moved, "removed": removed},
        "groups": {"added": groups_added, "removed": groups_removed, "profile_changes": profile_changes},
        "added": {table: added_objects(table) for table in
                  ("software", "campaigns", "mitigations", "data_components", "detection_strategies", "analytics")},
        "summary": {
            "techniques_added": len(added), "techniques_revoked": len(revoked),
            "techniques_deprecated": len(deprecated), "techniques_renamed": len(renamed),
            "techniques_moved": len(moved), "groups_added": len(groups_added),
            "groups_with_profile_changes": len(profile_changes),
            "campaigns_added": len(added_objects("campaigns")),
            "software_added": len(added_objects("software")),
            "detection_strategies_added": len(added_objects("detection_strategies")),
        },
    }
