"""Correlation over detections: Sigma correlation rules, and activity chains per host/user.

Sigma correlation rules (``correlation:`` documents, Sigma 2.0) are evaluated on the detections of the
rules they reference, per ``group-by`` group, ordered by event time:

- ``event_count``: the number of matching events in a ``timespan`` window satisfies the condition;
- ``value_count``: the number of distinct values of ``condition.field`` in a window satisfies it;
- ``temporal``: every referenced rule matched within one window, in any order;
- ``temporal_ordered``: they matched in the order listed, within one window.

Windows slide with the events: for ``gt``/``gte`` (and the temporal types) a match is reported for the
first window where the condition holds, and the search resumes after that window, so a burst of 500
failed logons reads as one match, not 480. For ``lt``/``lte``/``eq``/``neq`` the windows tumble from
each group's first event (a sliding window of "fewer than N" would hold almost everywhere). Group-by
fields are read from the matched events, through the rule's field ``aliases``; the entity names
``src_ip``, ``dst_ip``, ``user``, ``account``, ``region`` (and ``host``) fall back to the detection's
entity field, which every log source fills from its own field (``IpAddress``, ``id.orig_h``,
``sourceIPAddress``), so rules of different log sources group on one entity.

Activity chains: detections of one host (and user, if asked) whose times are within ``gap`` of the
previous one form one chain, read as an ordered sequence of techniques and tactics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from ttpscope.detect.results import Detection

OPERATORS = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b,
             "lte": lambda a, b: a <= b, "eq": lambda a, b: a == b, "neq": lambda a, b: a != b}
SUPPORTED = ("event_count", "value_count", "temporal", "temporal_ordered")
# group-by names that, when the event has no field of that name, mean the detection's entity field (so a
# correlation over Windows, Zeek and CloudTrail rules can group by `src_ip` or `user` without aliases)
ENTITY_FIELDS = ("src_ip", "dst_ip", "user", "account", "region")


@dataclass
class CorrelationSpec:
    """A correlation rule in plain terms (built from a pySigma ``SigmaCorrelationRule``)."""

    rule_id: str
    title: str
    level: str | None
    type: str
    rules: list[str]  # referenced rule ids, in the order given
    group_by: list[str]
    timespan: timedelta
    op: str | None = None
    count: int | None = None
    value_field: str | None = None
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)  # alias → {rule id: field}
    techniques: list[str] = field(default_factory=list)
    tactics: list[str] = field(default_factory=list)


def spec_from_rule(info) -> CorrelationSpec:
    """A :class:`CorrelationSpec` from a correlation :class:`~ttpscope.detect.rules.RuleInfo`."""
    rule = info.rule
    ctype = str(rule.type.name).lower()
    if ctype not in SUPPORTED:
        raise ValueError(f"correlation type {ctype} is not supported (supported: {', '.join(SUPPORTED)})")
    refs = []
    names = {}
    for ref in rule.rules or []:
        target = getattr(ref, "rule", None)
        rid = str(target.id) if target is not None and target.id is not None else ref.reference
        refs.append(rid)
        names[ref.reference] = rid
    aliases: dict[str, dict[str, str]] = {}
    for alias in rule.aliases:
        aliases[alias.alias] = {}
        for ref, fld in alias.mapping.items():
            target = getattr(ref, "rule", None)
            rid = str(target.id) if target is not None and target.id is not None else names.get(ref.reference, ref.reference)
            aliases[alias.alias][rid] = fld
    try:
        timespan = timedelta(seconds=rule.timespan.seconds)
    except (OverflowError, ValueError, TypeError):
        raise ValueError(f"timespan {getattr(rule.timespan, 'spec', rule.timespan)} is out of range "
                         "(at most 999,999,999 days)") from None
    cond = rule.condition
    op = cond.op.name.lower() if getattr(cond, "op", None) is not None else None
    fieldref = getattr(cond, "fieldref", None)
    if isinstance(fieldref, list):
        fieldref = fieldref[0] if fieldref else None
    return CorrelationSpec(
        rule_id=info.id, title=info.title, level=info.level, type=ctype, rules=refs,
        group_by=list(rule.group_by or []), timespan=timespan,
        op=op, count=getattr(cond, "count", None), value_field=fieldref, aliases=aliases,
        techniques=list(info.techniques), tactics=list(info.tactics))


def _value(det: Detection, name: str, spec: CorrelationSpec) -> Any:
    fld = spec.aliases.get(name, {}).get(det.rule_id, name)
    if fld in det.event:
        return det.event[fld]
    low = fld.lower()
    for k, v in det.event.items():
        if k.lower() == low:
            return v
    if low in ("computer", "host", "hostname"):
        return det.host
    if low in ENTITY_FIELDS:  # the shared entity vocabulary: one name across log sources
        return getattr(det, low)
    return None


def correlate(detections: Iterable[Detection], specs: Iterable[CorrelationSpec]) -> list[Detection]:
    """Evaluate correlation rules; each match becomes a Detection of the correlation rule whose ``event``
    describes the match (type, group, count or values, and the events that made it)."""
    dets = [d for d in detections if d.time is not None]
    out: list[Detection] = []
    for spec in specs:
        wanted = set(spec.rules)
        groups: dict[tuple, list[Detection]] = {}
        for d in dets:
            if d.rule_id in wanted:
                key = tuple(_value(d, g, spec) for g in spec.group_by)
                groups.setdefault(key, []).append(d)
        for key in sorted(groups, key=lambda k: tuple("" if v is None else str(v) for v in k)):
            events = sorted(groups[key], key=Detection.sort_key)
            for window, measure in _windows(spec, events):
                out.append(_as_detection(spec, dict(zip(spec.group_by, key)), window, measure))
    return sorted(out, key=Detection.sort_key)


def _windows(spec: CorrelationSpec, events: list[Detection]):
    span = spec.timespan
    if spec.type in ("event_count", "value_count") and spec.op in ("lt", "lte", "eq", "neq"):
        start = 0
        while start < len(events):
            end = start
            while end < len(events) and events[end].time - events[start].time <= span:
                end += 1
            window = events[start:end]
            measure = _measure(spec, window)
            if OPERATORS[spec.op](measure, spec.count):
                yield window, measure
            start = end
        return
    start = 0
    i = 0
    while i < len(events):
        while events[i].time - events[start].time > span:
            start += 1
        window = events[start:i + 1]
        measure = _measure(spec, window)
        if _holds(spec, window, measure):
            yield window, measure
            start = i + 1
        i += 1


def _measure(spec: CorrelationSpec, window: list[Detection]):
    if spec.type == "event_count":
        return len(window)
    if spec.type == "value_count":
        return len({_value(d, spec.value_field, spec) for d in window} - {None})
    return len({d.rule_id for d in window})


def _holds(spec: CorrelationSpec, window: list[Detection], measure) -> bool:
    if spec.type in ("event_count", "value_count"):
        return OPERATORS[spec.op or "gte"](measure, spec.count)
    if spec.type == "temporal":
        return {d.rule_id for d in window} >= set(spec.rules)
    # temporal_ordered: the referenced rules appear in order (greedy subsequence)
    pos = 0
    for d in window:
        if pos < len(spec.rules) and d.rule_id == spec.rules[pos]:
            pos += 1
    return pos == len(spec.rules)


def _as_detection(spec: CorrelationSpec, group: dict, window: list[Detection], measure) -> Detection:
    last = window[-1]
    hosts = {d.host for d in window if d.host}
    users = {d.user for d in window if d.user}
    event = {
        "correlation_type": spec.type, "group": group, "measure": measure,
        "condition": f"{spec.op} {spec.count}" if spec.op else None, "timespan_s": spec.timespan.total_seconds(),
        "first": window[0].time.isoformat(), "last": last.time.isoformat(),
        "events": [{"rule_id": d.rule_id, "source": d.source, "record": d.record,
                    "time": d.time.isoformat()} for d in window],
    }
    return Detection(spec.rule_id, spec.title, spec.level, list(spec.techniques), list(spec.tactics),
                     last.time, hosts.pop() if len(hosts) == 1 else None, users.pop() if len(users) == 1 else None,
                     last.source, None, event, matched=dict(group))


# ---------------------------------------------------------------------------------------------- chains
@dataclass
class Chain:
    """Detections of one host (and user) close in time: one piece of activity, in order."""

    host: str | None
    user: str | None
    start: datetime
    end: datetime
    detections: list[Detection]

    @property
    def techniques(self) -> list[str]:
        return list(dict.fromkeys(t for d in self.detections for t in d.techniques))

    @property
    def tactics(self) -> list[str]:
        return list(dict.fromkeys(t for d in self.detections for t in d.tactics))

    def to_dict(self) -> dict[str, Any]:
        levels: dict[str, int] = {}
        for d in self.detections:
            levels[d.level or "-"] = levels.get(d.level or "-", 0) + 1
        return {"host": self.host, "user": self.user, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "detections": len(self.detections), "techniques": self.techniques, "tactics": self.tactics,
                "levels": levels,
                "steps": [{"time": d.time.isoformat(), "rule_id": d.rule_id, "title": d.title, "level": d.level,
                           "techniques": d.techniques} for d in self.detections]}


def cluster_activity(detections: Iterable[Detection], gap: timedelta = timedelta(minutes=30),
                     by_user: bool = False) -> list[Chain]:
    """Chains of detections per host (and user): a new chain starts after ``gap`` without detections.
    Detections without a time are left out. Ordered by chain start, then host."""
    groups: dict[tuple, list[Detection]] = {}
    for d in detections:
        if d.time is None:
            continue
        key = (d.host, d.user if by_user else None)
        groups.setdefault(key, []).append(d)
    chains: list[Chain] = []
    for (host, user), dets in groups.items():
        dets.sort(key=Detection.sort_key)
        current = [dets[0]]
        for d in dets[1:]:
            if d.time - current[-1].time > gap:
                chains.append(Chain(host, user, current[0].time, current[-1].time, current))
                current = [d]
            else:
                current.append(d)
        chains.append(Chain(host, user, current[0].time, current[-1].time, current))
    return sorted(chains, key=lambda c: (c.start, c.host or "", c.user or ""))


def parse_gap(text: str) -> timedelta:
    """'30m', '2h', '90s', '1d' → timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    if text[-1:] in units and text[:-1].isdigit():
        return timedelta(seconds=int(text[:-1]) * units[text[-1]])
    if text.isdigit():
        return timedelta(seconds=int(text))
    from ttpscope.errors import InputError

    raise InputError("--gap", text, "use a number and a unit: 90s, 30m, 2h, 1d")
