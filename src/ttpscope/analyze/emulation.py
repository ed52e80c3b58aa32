"""Adversary emulation plans: a group's techniques ordered by tactic, with its procedure text and the Atomic
Red Team tests that exercise each technique. ttpscope plans; it never executes anything.

The Atomic index is read by :func:`ttpscope.kb.atomics.load_atomics` from a path the user gives.

Atomic Red Team follows the newest ATT&CK release while the knowledge base may be older. An Atomic technique
id the knowledge base lacks (a technique added or moved later, e.g. v19's T1685 "Disable or Modify Tools")
is mapped with ``crosswalk.resolve_any_release`` (v19's moves), else to the knowledge base's live technique of
the same name when exactly one has it; each such bridge is reported in the plan's ``atomics_bridged``. Tests of a
newer sub-technique are not credited to the parent: a plan step needs a test of that very behaviour.
"""

from __future__ import annotations

from typing import Iterable

from ttpscope.kb import KnowledgeBase, plain
from ttpscope.kb.aliases import normalize
from ttpscope.kb.atomics import AtomicIndex

from ttpscope.analyze.crosswalk import resolve_any_release
from ttpscope.analyze.profile import DEFAULT_VIA


def atomics_for_kb(atomics: AtomicIndex, kb: KnowledgeBase) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Atomic technique ids filed under each KB technique id (itself, and name-bridged newer ids), and the
    bridges made: {atomic id: KB id}."""
    out: dict[str, list[str]] = {}
    by_name: dict[str, list[str]] = {}
    for t in kb.live_techniques():
        by_name.setdefault(normalize(t.name), []).append(t.id)
    bridged: dict[str, str] = {}
    for aid in sorted(atomics.by_technique):
        if aid in kb.techniques and not kb.techniques[aid].deprecated:
            out.setdefault(aid, []).append(aid)
            continue
        res = resolve_any_release(kb, aid)
        if res.id is not None and "parent" not in (res.note or ""):  # revoked or moved: follow it
            out.setdefault(res.id, []).append(aid)
            bridged[aid] = res.id
            continue
        tname = atomics.tests[atomics.by_technique[aid][0]].technique_name
        leaf = tname.split(":")[-1].strip()
        hits = by_name.get(normalize(leaf), [])
        if len(hits) == 1:
            out.setdefault(hits[0], []).append(aid)
            bridged[aid] = hits[0]
    return out, bridged


def emulation_plan(kb: KnowledgeBase, group: str, atomics: AtomicIndex | None = None,
                   via: Iterable[str] = DEFAULT_VIA, platforms: Iterable[str] | None = None) -> dict:
    """An ordered emulation plan for a group: one step per technique, in matrix order of its first tactic.

    Each step: ``{tactic, tactics, technique, name, procedure, procedures: [{source, text}], atomics:
    [{name, guid, platform, executor, technique}]}``. ``platforms`` keeps only Atomic tests for those
    platforms (windows, linux, macos...). Raises NotFoundError for an unknown group.
    """
    g = kb.group(group)
    res = kb.resolve_group(group)
    order = {short: i for i, short in enumerate(kb.tactic_order())}
    filed, bridged = atomics_for_kb(atomics, kb) if atomics is not None else ({}, {})
    plats = [p.lower() for p in platforms] if platforms else None
    campaign_ids = {c.id for c in kb.campaigns_of_group(g.id)}
    steps = []
    for tid in sorted(kb.group_techniques(g.id, via=via)):
        tech = kb.techniques[tid]
        tactics = sorted(tech.tactics, key=lambda s: order.get(s, 99))
        procs = []
        for p in kb.procedures_for(technique_id=tid):
            if p.source_id == g.id or p.source_id in campaign_ids or (
                    "software" in via and p.source_id in kb.group_software.get(g.id, ())):
                procs.append({"source": {"id": p.source_id, "name": kb.name_of(p.source_id)},
                              "source_type": p.source_type, "text": plain(p.description)})
        procs.sort(key=lambda p: ({"group": 0, "campaign": 1}.get(p["source_type"], 2), p["source"]["id"]))
        tests = []
        if atomics is not None:
            for aid in filed.get(tid, ()):
                tests.extend(t.to_dict() for t in atomics.tests_for(aid, plats))
        steps.append({"tactic": tactics[0] if tactics else "", "tactics": tactics, "technique": tid,
                      "name": tech.name, "procedure": procs[0]["text"] if procs else "", "procedures": procs,
                      "atomics": tests})
    steps.sort(key=lambda s: (order.get(s["tactic"], 99), s["technique"]))
    with_tests = sum(1 for s in steps if s["atomics"])
    return {
        "group": {"id": g.id, "name": g.name, "aliases": g.aliases},
        "note": res.note,
        "via": sorted(via),
        "platforms": plats,
        "steps": steps,
        "summary": {"steps": len(steps), "with_atomics": with_tests,
                    "atomic_tests": sum(len(s["atomics"]) for s in steps),
                    "tactics": [t for t in kb.tactic_order() if any(s["tactic"] == t for s in steps)]},
        "atomics_sources": atomics.sources if atomics is not None else [],
        "atomics_bridged": {a: k for a, k in sorted(bridged.items())
                            if any(k == s["technique"] for s in steps)},
        **kb.provenance(),
    }


def plan_markdown(plan: dict, max_tests: int = 5) -> str:
    """The plan as a Markdown document (one section per tactic, one numbered step per technique)."""
    g = plan["group"]
    lines = [f"# Emulation plan: {g['name']} ({g['id']})", "",
             f"Knowledge base: {plan['domain']} ATT&CK v{plan['attack_version']} ({plan['source']}). "
             f"Techniques via: {', '.join(plan['via'])}. "
             f"{plan['summary']['steps']} steps, {plan['summary']['with_atomics']} with Atomic Red Team tests "
             f"({plan['summary']['atomic_tests']} tests)" +
             (f", platforms: {', '.join(plan['platforms'])}" if plan["platforms"] else "") + ".", "",
             "> A plan to review and schedule with the system owners; ttpscope executes nothing.", ""]
    n = 0
    current = None
    for step in plan["steps"]:
        if step["tactic"] != current:
            current = step["tactic"]
            lines += [f"## {current.replace('-', ' ').title()}", ""]
        n += 1
        lines.append(f"### {n}. {step['technique']} {step['name']}")
        lines.append("")
        if len(step["tactics"]) > 1:
            lines += [f"Also: {', '.join(step['tactics'][1:])}.", ""]
        if step["procedure"]:
            src = step["procedures"][0]["source"]
            lines += [f"Procedure ({src['name']}): {step['procedure']}", ""]
        if step["atomics"]:
            lines.append("| Atomic test | GUID | platform | executor |")
            lines.append("|---|---|---|---|")
            for t in step["atomics"][:max_tests]:
                name = t["name"].replace("|", "\\|")
                lines.append(f"| {name} | `{t['guid']}` | {t['platform']} | {t['executor']} |")
            if len(step["atomics"]) > max_tests:
                lines.append(f"| … {len(step['atomics']) - max_tests} more | | | |")
        else:
            lines.append("No Atomic Red Team test: emulate manually or with another framework.")
        lines.append("")
    if plan["atomics_bridged"]:
        lines += ["## Notes", ""]
        for aid, kid in plan["atomics_bridged"].items():
            lines.append(f"- Atomic {aid} matched by name to {kid} of this knowledge base.")
        lines.append("")
    return "\n".join(lines)
