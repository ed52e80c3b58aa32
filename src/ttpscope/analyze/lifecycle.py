"""Lifecycle: where in the attack lifecycle a case's activity sits, in what order, and what it suggests.

Each observation is placed under a tactic. A technique with several tactics (T1078 Valid Accounts is
defense evasion, persistence, privilege escalation and initial access) goes where its evidence says (the
observation's ``tactic_ids``, e.g. a Sigma rule's ``attack.persistence`` tag, kept when the technique
belongs to that tactic) and otherwise under its earliest tactic in matrix order.

A tactic is reached *decisively* when some technique placed under it has evidence strong enough for a headline
(:func:`ttpscope.analyze.evidence.is_decisive`: no informational rule, no lone weak report claim). The
furthest stage and the reading of intent go by the decisive tactics; a later stage reached on weak evidence
only is named apart (``furthest_weak``), with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ttpscope.analyze._inputs import TechniqueInput, resolve_input
from ttpscope.analyze.evidence import is_decisive, weak_reason
from ttpscope.kb.base import KnowledgeBase
from ttpscope.model import Observation

# What reaching a tactic says about intent, in plain words (Enterprise, Mobile and ICS shortnames).
_OBJECTIVES = {
    "collection": "data gathering", "exfiltration": "data theft", "impact": "disruption or destruction",
    "inhibit-response-function": "disabling safety and response functions",
    "impair-process-control": "tampering with the physical process",
}
_SPREAD = ("credential-access", "lateral-movement")
_WATCH_NEXT = ("lateral-movement", "collection", "exfiltration", "impact")


@dataclass
class Placement:
    """One observation placed under a tactic."""

    observation_id: str | None
    technique_id: str
    tactic: str  # shortname
    placed_by: str  # evidence | earliest
    time: str | None = None
    host: str | None = None
    user: str | None = None
    source_kind: str | None = None
    source_ref: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Lifecycle:
    """The answer of ``lifecycle``."""

    case: dict[str, Any]
    tactics: list[dict[str, Any]]  # reached tactics in matrix order, with their techniques
    not_reached: list[dict[str, str]]
    furthest: dict[str, Any] | None  # the furthest tactic reached on decisive evidence
    timeline: list[dict[str, Any]]  # all timed steps, by time
    timelines: dict[str, list[dict[str, Any]]]  # per host
    reading: str
    notes: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    provenance: dict[str, str] = field(default_factory=dict)
    furthest_weak: dict[str, Any] | None = None  # a later tactic reached on weak evidence only, with why
    weak_tactics: list[dict[str, Any]] = field(default_factory=list)  # every tactic reached on weak evidence only

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _iso(dt) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def _tactic_ref(kb: KnowledgeBase, short: str) -> dict[str, Any]:
    t = kb.tactic_by_shortname(short)
    return {"tactic_id": t.id, "shortname": short, "name": t.name, "order": t.order}


def place(obs: Observation | None, technique_id: str, kb: KnowledgeBase) -> tuple[list[str], str]:
    """Tactic shortnames for one observation of a technique, and whether the evidence or the default chose."""
    own = [t for t in kb.techniques[technique_id].tactics if kb.tactic_by_shortname(t)]
    if obs is not None and obs.tactic_ids:
        said = []
        for raw in obs.tactic_ids:
            res = kb.resolve_tactic(raw)
            if res.id:
                said.append(kb.tactics[res.id].shortname)
        confirmed = [t for t in own if t in said]
        if confirmed:
            return confirmed, "evidence"
    order = {s: i for i, s in enumerate(kb.tactic_order())}
    own.sort(key=lambda s: order.get(s, 99))
    return own[:1], "earliest"


def lifecycle(case: TechniqueInput, kb: KnowledgeBase) -> Lifecycle:
    """Tactics reached (matrix order) with techniques and evidence, furthest stage, timelines, intent.

    ``case``: a Case, Observations or technique ids (ids have no time, host or tactic evidence).
    """
    res = resolve_input(case, kb)
    items: list[tuple[Observation | None, str]] = list(res.observations)
    if not items:  # plain technique ids
        items = [(None, t) for t in res.techniques]
    placements: list[Placement] = []
    placed: dict[tuple[str, str], list[Observation]] = {}  # (tactic, technique) -> its observations there
    for obs, tid in items:
        tactics, how = place(obs, tid, kb)
        for short in tactics:
            if obs is not None:
                placed.setdefault((short, tid), []).append(obs)
            placements.append(Placement(
                obs.id if obs else None, tid, short, how,
                _iso(obs.time) if obs else None, obs.host if obs else None, obs.user if obs else None,
                obs.source_kind if obs else None, obs.source_ref if obs else None))

    order = kb.tactic_order()
    by_tactic: dict[str, dict[str, list[Placement]]] = {}
    for p in placements:
        by_tactic.setdefault(p.tactic, {}).setdefault(p.technique_id, []).append(p)
    tactics_out = []
    for short in order:
        if short not in by_tactic:
            continue
        techs = []
        for tid in sorted(by_tactic[short]):
            ps = by_tactic[short][tid]
            times = sorted(p.time for p in ps if p.time)
            observed = placed.get((short, tid))  # None: technique ids given without evidence, taken as stated
            techs.append({
                "technique_id": tid, "name": kb.name_of(tid), "observations": len(ps),
                "placed_by": "evidence" if any(p.placed_by == "evidence" for p in ps) else "earliest",
                "sources": sorted({p.source_kind for p in ps if p.source_kind}),
                "hosts": sorted({p.host for p in ps if p.host}),
                "first_seen": times[0] if times else None, "last_seen": times[-1] if times else None,
                "evidence": sorted({p.observation_id for p in ps if p.observation_id}),
                "decisive": observed is None or is_decisive(observed),
                "weak": weak_reason(observed) if observed else "",
            })
        tactics_out.append({**_tactic_ref(kb, short), "techniques": techs,
                            "decisive": any(t["decisive"] for t in techs)})
    reached = [t["shortname"] for t in tactics_out]
    decisive = [t["shortname"] for t in tactics_out if t["decisive"]]
    not_reached = [{"tactic_id": kb.tactic_by_shortname(s).id, "shortname": s,
                    "name": kb.tactic_by_shortname(s).name} for s in order if s not in reached]
    furthest = _tactic_ref(kb, decisive[-1]) if decisive else None
    weak_tactics = [{**_tactic_ref(kb, t["shortname"]),
                     "techniques": [{"technique_id": x["technique_id"], "name": x["name"], "weak": x["weak"]}
                                    for x in t["techniques"]]}
                    for t in tactics_out if not t["decisive"]]
    furthest_weak = None
    if reached and (not decisive or order.index(reached[-1]) > order.index(decisive[-1])):
        furthest_weak = weak_tactics[-1]

    timed = [p for p in placements if p.time]
    rank = {s: i for i, s in enumerate(order)}
    timed.sort(key=lambda p: (p.time, rank.get(p.tactic, 99), p.technique_id, p.observation_id or ""))
    steps = [{**p.to_dict(), "technique_name": kb.name_of(p.technique_id),
              "tactic_name": kb.tactic_by_shortname(p.tactic).name} for p in timed]
    per_host: dict[str, list[dict[str, Any]]] = {}
    for s in steps:
        per_host.setdefault(s["host"] or "(no host)", []).append(s)

    return Lifecycle(
        case={"id": res.case_id, "name": res.case_name, "techniques": len(res.weights),
              "observations": len(res.observations)},
        tactics=tactics_out, not_reached=not_reached, furthest=furthest, timeline=steps,
        timelines=dict(sorted(per_host.items())), reading=read_intent(kb, decisive, steps, weak_tactics),
        notes=res.notes, unresolved=res.unresolved, provenance=kb.provenance(), furthest_weak=furthest_weak,
        weak_tactics=weak_tactics)


def weak_note(weak_tactics: list[dict[str, Any]], limit: int = 3) -> str:
    """"Impact (T1531 Account Access Removal: informational rule only (User Logoff Event))" for each tactic
    reached on weak evidence only, latest first."""
    parts = []
    for t in reversed(weak_tactics[-limit:]):
        x = t["techniques"][0]
        more = f" +{len(t['techniques']) - 1} more" if len(t["techniques"]) > 1 else ""
        parts.append(f"{t['name']} ({x['technique_id']} {x['name']}: {x['weak'] or 'weak evidence'}{more})")
    return "; ".join(parts) + (f"; +{len(weak_tactics) - limit} more" if len(weak_tactics) > limit else "")


def read_intent(kb: KnowledgeBase, reached: list[str], steps: list[dict[str, Any]] | None = None,
                weak_tactics: list[dict[str, Any]] | None = None) -> str:
    """A short plain-language reading of what the reached tactics suggest (``reached``: the tactics reached on
    decisive evidence; ``weak_tactics``: those reached on weak evidence only, named apart)."""
    weak = (" Reached on weak evidence only, so not counted: " + weak_note(weak_tactics) + ".") if weak_tactics else ""
    if not reached:
        if weak_tactics:
            return "No tactic is reached on decisive evidence." + weak
        return "No known technique observed: nothing to read."
    order = kb.tactic_order()
    name = lambda s: kb.tactic_by_shortname(s).name.lower()  # noqa: E731
    parts = [f"{len(reached)} of {len(order)} tactics reached, furthest: {kb.tactic_by_shortname(reached[-1]).name}."]
    objectives = [s for s in reached if s in _OBJECTIVES]
    spread = [s for s in _SPREAD if s in reached]
    if objectives:
        parts.append("Objective stage reached: " + "; ".join(f"{name(s)} ({_OBJECTIVES[s]})" for s in objectives) + ".")
    if spread:
        parts.append(f"{' and '.join(name(s) for s in spread).capitalize()} reached: the intruder is "
                     "working to move beyond the first foothold.")
    absent = [s for s in _WATCH_NEXT if s in order and s not in reached and order.index(s) > order.index(reached[0])]
    if absent:
        names = [name(s) for s in absent]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        parts.append(f"No {listed} observed.")
    if not objectives and not spread:
        parts.append("Activity is at an early stage (no credential access, lateral movement or objective "
                     "tactic seen).")
    if steps:
        hosts = {s["host"] for s in steps if s["host"]}
        parts.append(f"Timed activity from {steps[0]['time']} to {steps[-1]['time']}"
                     + (f" on {len(hosts)} host{'s' if len(hosts) != 1 else ''}." if hosts else "."))
        seq = [s["tactic"] for s in steps]
        idx = [order.index(t) for t in seq if t in order]
        if len(idx) > 2 and len({s["time"] for s in steps}) > 2:  # an order needs distinct instants
            backwards = sum(1 for a, b in zip(idx, idx[1:]) if b < a)
            if backwards == 0:
                parts.append("The timeline progresses forward through the lifecycle.")
            elif backwards > len(idx) // 2:
                parts.append("The timeline often steps back to earlier tactics: several intrusion cycles or "
                             "repeated attempts.")
    return " ".join(parts) + weak
