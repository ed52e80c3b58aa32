"""The case's entity graph: hosts, users, IP addresses and cloud accounts, linked when one detection names
two of them, with the log sources ("environments") each was seen in, per-entity timelines and one case
timeline across sources.

    from ttpscope.analyze.entities import entity_graph
    graph = entity_graph(detections, case.meta.get("entity_links"))
    graph.environments     # [{logsource, product, detections, entities}] most hits first
    graph.nodes            # [{id: "host:ws01", kind, value, detections, logsources, products, first, last, ...}]
    graph.edges            # [{source, target, relation, detections, logsources, first, last}]
    graph.bridges          # entities seen in more than one product (e.g. an IP in Zeek and in CloudTrail)
    graph.timeline         # runs of one rule on one entity in one log source (kind "detection") and, from
                           # products no rule fired on, co-occurrence entries (kind "activity"), in time order
    graph.notes            # e.g. linked products whose times lie hours apart

A pure function of the detections (rule hits with their entity fields) and, optionally, the case's entity
co-occurrence (``links``: pairs of entities seen together in any event, :mod:`ttpscope.ingest.links`),
which links what no rule fired on (a host to its address, that address to its Zeek peers). A Windows
logon with user and source IP links the host, the user and the IP; a Zeek connection its source and
destination; a CloudTrail call its user, source IP and account. Values are compared case-insensitively and IPs as addresses; a host
by its first name label (``WS01.corp.local`` is ``WS01``) and a user by the bare account name
(``CORP\\alice``, ``alice@corp.com`` and the IAM ARN ``...:user/alice`` are ``alice``), so that one
account links across Windows, Linux, identity and cloud logs (two domains' same-named accounts merge:
the node keeps every spelling seen). Loopback, unspecified and multicast addresses, and placeholder
values, are no entity.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import combinations
from typing import Any, Iterable

from ttpscope.ingest.links import entity_key
from ttpscope.model import Detection

# detection field -> entity kind
ENTITY_FIELDS = {"host": "host", "user": "user", "src_ip": "ip", "dst_ip": "ip", "account": "account"}
MAX_NODES, MAX_EDGES = 200, 500  # kept in the report: the most-hit first
MAX_TIMELINE, MAX_ENTITY_TIMELINES, MAX_ENTITY_POINTS = 1000, 25, 100
MAX_ACTIVITY = 300  # activity entries (co-occurring entities in sources no rule fired on) in the case timeline
WINDOW = timedelta(hours=1)  # hits of one rule on one entity further apart than this are separate runs


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def product_of(logsource: str | None) -> str:
    """The product part of a log-source label (``windows/sysmon`` → ``windows``)."""
    return (logsource or "unknown").split("/", 1)[0] or "unknown"


def entities_of(det: Detection) -> list[tuple[str, str, str, str]]:
    """(node id, kind, value, field) of every entity a detection names, without repeats."""
    out, seen = [], set()
    for name, kind in ENTITY_FIELDS.items():
        key = entity_key(kind, getattr(det, name))
        if key and key[0] not in seen:
            seen.add(key[0])
            out.append((key[0], kind, key[1], name))
    return out


@dataclass
class EntityGraph:
    environments: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    bridges: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    entity_timelines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    components: list[dict[str, Any]] = field(default_factory=list)  # linked groups spanning several products
    detections: int = 0
    with_entities: int = 0
    notes: list[str] = field(default_factory=list)  # e.g. linked products whose times do not overlap


def _span(row: dict[str, Any], t: datetime | None) -> None:
    if t is not None:
        row["first"] = t if row["first"] is None or t < row["first"] else row["first"]
        row["last"] = t if row["last"] is None or t > row["last"] else row["last"]


def _count(table: dict[str, int], key: str) -> None:
    table[key] = table.get(key, 0) + 1


def _runs(dets: list[Detection]) -> list[dict[str, Any]]:
    """Hits grouped by (log source, rule, first entity) into runs no longer than WINDOW from their first hit."""
    groups: dict[tuple[str, str, str], list[Detection]] = {}
    for det in dets:
        ents = entities_of(det)
        groups.setdefault((det.logsource or "", det.rule_id, ents[0][0] if ents else ""), []).append(det)
    runs = []
    for (logsource, _rule, _entity), hits in groups.items():
        timed = sorted((d for d in hits if d.time is not None), key=lambda d: d.time)
        current: list[Detection] = []
        for det in timed:
            if current and det.time - current[0].time > WINDOW:
                runs.append(_run_row(logsource, current))
                current = []
            current.append(det)
        if current:
            runs.append(_run_row(logsource, current))
    runs.sort(key=lambda r: (r["time"], r["logsource"], r["rule"]))
    return runs


def _run_row(logsource: str, hits: list[Detection]) -> dict[str, Any]:
    first = hits[0]
    entities = []
    for det in hits:
        for node, *_ in entities_of(det):
            if node not in entities:
                entities.append(node)
    return {"kind": "detection", "time": _iso(first.time), "last": _iso(hits[-1].time), "count": len(hits), "logsource": logsource,
            "product": product_of(logsource), "rule": first.title or first.rule_id, "rule_id": first.rule_id,
            "level": first.level, "techniques": list(first.techniques), "entities": entities[:10]}


def entity_graph(detections: Iterable[Detection], links: dict[str, Any] | None = None) -> EntityGraph:
    """The entity graph, environments and timelines of a case's detections (see the module docstring).

    ``links``: the case's entity co-occurrence (:meth:`ttpscope.ingest.links.EntityLinks.select`, kept in
    ``case.meta["entity_links"]``). Its pairs joined to the detections' entities (directly or through other
    pairs) become links too — a host to the addresses its events name, those addresses to their Zeek
    peers — and, from products no rule fired on, activity entries of the case timeline."""
    dets = list(detections)
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[str, str, str], dict[str, Any]] = {}
    envs: dict[str, dict[str, Any]] = {}
    with_entities = 0
    for det in dets:
        label = det.logsource or "unknown"
        env = envs.setdefault(label, {"logsource": label, "product": product_of(label), "detections": 0,
                                      "entities": set()})
        env["detections"] += 1
        ents = entities_of(det)
        if ents:
            with_entities += 1
        for node, kind, value, name in ents:
            env["entities"].add(node)
            row = nodes.setdefault(node, _new_node(node, kind, value))
            row["detections"] += 1
            if len(row["spellings"]) < 10:
                row["spellings"].add(value)
            _count(row["logsources"], label)
            row["fields"].add(name)
            row["rules"].add(det.rule_id)
            row["techniques"].update(det.techniques)
            _span(row, det.time)
        for (a, _ka, _va, fa), (b, _kb, _vb, fb) in combinations(ents, 2):
            if (a, fa) > (b, fb):
                a, fa, b, fb = b, fb, a, fa
            relation = "connected to" if {fa, fb} == {"src_ip", "dst_ip"} else f"{fa} + {fb}"
            key = (a, b, relation)
            edge = edges.setdefault(key, _new_edge(a, b, relation))
            edge["detections"] += 1
            _count(edge["logsources"], label)
            edge["rules"].add(det.rule_id)
            _span(edge, det.time)
    activity = _add_links(links, nodes, edges, {product_of(d.logsource) for d in dets})
    graph = EntityGraph(detections=len(dets), with_entities=with_entities)
    graph.environments = sorted(({**e, "entities": len(e["entities"])} for e in envs.values()),
                                key=lambda e: (-e["detections"], e["logsource"]))
    node_rows = sorted(nodes.values(), key=lambda n: (-n["detections"], -sum(n["seen_in"].values()), n["id"]))
    for n in node_rows:
        n["products"] = sorted({product_of(ls) for ls in (*n["logsources"], *n["seen_in"])})
    graph.bridges = [_node_out(n) for n in node_rows if len(n["products"]) > 1]
    graph.components = _components(nodes, edges)
    graph.nodes = [_node_out(n) for n in node_rows[:MAX_NODES]]
    edge_rows = sorted(edges.values(), key=lambda e: (-e["detections"], -e["events"], e["source"], e["target"]))
    graph.edges = [{**e, "rules": len(e["rules"]), "first": _iso(e["first"]), "last": _iso(e["last"]),
                    "products": sorted({product_of(ls) for ls in (*e["logsources"], *e["seen_in"])})}
                   for e in edge_rows[:MAX_EDGES]]
    runs = _runs(dets)
    if activity:
        runs = sorted(runs + activity, key=lambda r: (r["time"] or "", r["logsource"], r["rule"]))
    graph.timeline = runs[:MAX_TIMELINE]
    graph.notes = _time_gaps(runs, graph.components)
    for n in node_rows[:MAX_ENTITY_TIMELINES]:
        graph.entity_timelines[n["id"]] = [r for r in runs if n["id"] in r["entities"]][:MAX_ENTITY_POINTS]
    return graph


def _new_node(node: str, kind: str, value: str) -> dict[str, Any]:
    return {"id": node, "kind": kind, "value": value, "detections": 0, "logsources": {}, "seen_in": {},
            "fields": set(), "rules": set(), "techniques": set(), "first": None, "last": None, "spellings": set()}


def _new_edge(a: str, b: str, relation: str) -> dict[str, Any]:
    return {"source": a, "target": b, "relation": relation, "detections": 0, "logsources": {}, "events": 0,
            "seen_in": {}, "rules": set(), "first": None, "last": None}


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _add_links(links: dict[str, Any] | None, nodes: dict[str, dict[str, Any]], edges: dict,
               rule_products: set[str]) -> list[dict[str, Any]]:
    """Join the co-occurrence pairs reachable from the detections' entities into the graph (nodes and edges
    gain ``seen_in``/``events``: event counts per log source); return the activity entries of the pairs
    from products without a detection (Zeek beside Windows hits), at most MAX_ACTIVITY, in time order."""
    rows = [r for r in (links or {}).get("rows") or [] if isinstance(r, dict) and r.get("source") and r.get("target")]
    if not rows or not nodes:
        return []
    values = (links or {}).get("values") or {}
    adjacent: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        adjacent.setdefault(r["source"], []).append(r)
        adjacent.setdefault(r["target"], []).append(r)
    reached, frontier, used = set(nodes), [n for n in nodes if n in adjacent], []
    seen_rows: set[int] = set()
    while frontier:
        nxt = []
        for node in frontier:
            for r in adjacent.get(node, ()):
                if id(r) in seen_rows:
                    continue
                seen_rows.add(id(r))
                used.append(r)
                for peer in (r["source"], r["target"]):
                    if peer not in reached:
                        reached.add(peer)
                        nxt.append(peer)
        frontier = nxt
    activity = []
    for r in used:
        label, n = r.get("logsource") or "unknown", int(r.get("events") or 0)
        first, last = _time(r.get("first")), _time(r.get("last"))
        for node in (r["source"], r["target"]):
            kind = node.split(":", 1)[0]
            row = nodes.get(node)
            if row is None:
                row = nodes[node] = _new_node(node, kind, values.get(node) or node.split(":", 1)[-1])
            row["seen_in"][label] = row["seen_in"].get(label, 0) + n
            _span(row, first)
            _span(row, last)
        a, b = sorted((r["source"], r["target"]))
        edge = edges.setdefault((a, b, r.get("relation") or "seen with"), _new_edge(a, b, r.get("relation") or "seen with"))
        edge["events"] += n
        edge["seen_in"][label] = edge["seen_in"].get(label, 0) + n
        _span(edge, first)
        _span(edge, last)
        if product_of(label) not in rule_products:
            shown = [values.get(x) or x.split(":", 1)[-1] for x in (r["source"], r["target"])]
            activity.append({"time": r.get("first"), "last": r.get("last"), "count": n, "logsource": label,
                             "product": product_of(label), "rule": f"activity: {shown[0]} {r.get('relation')} {shown[1]}",
                             "rule_id": None, "level": None, "techniques": [], "entities": [r["source"], r["target"]],
                             "kind": "activity"})
    activity.sort(key=lambda e: (e["time"] or "", e["logsource"], e["rule"]))
    return activity[:MAX_ACTIVITY]


def _time_gaps(runs: list[dict[str, Any]], components: list[dict[str, Any]]) -> list[str]:
    """Products linked through shared entities whose times lie more than an hour apart: worth saying, as a
    clock or time-zone offset between the sources reads like a gap in the intrusion."""
    spans: dict[str, list[str]] = {}
    for r in runs:
        if r.get("time"):
            span = spans.setdefault(r["product"], [r["time"], r.get("last") or r["time"]])
            span[0], span[1] = min(span[0], r["time"]), max(span[1], r.get("last") or r["time"])
    notes = []
    for comp in components:
        present = sorted((spans[p], p) for p in comp["products"] if p in spans)
        for (span_a, a), (span_b, b) in zip(present, present[1:]):
            start, end = _time(span_b[0]), _time(span_a[1])
            if start and end and start - end > WINDOW:
                gap = start - end
                hours, minutes = divmod(int(gap.total_seconds()) // 60, 60)
                notes.append(f"{b} events of linked entities begin {hours} h {minutes:02d} min after the last {a} "
                             "event: the sources' clocks or time zones may differ")
    return list(dict.fromkeys(notes))


def _node_out(n: dict[str, Any]) -> dict[str, Any]:
    return {"id": n["id"], "kind": n["kind"], "value": n["value"], "detections": n["detections"],
            "logsources": dict(sorted(n["logsources"].items(), key=lambda kv: -kv[1])), "products": n["products"],
            "seen_in": dict(sorted(n["seen_in"].items(), key=lambda kv: -kv[1])),
            "fields": sorted(n["fields"]), "spellings": sorted(n["spellings"]), "rules": len(n["rules"]), "techniques": sorted(n["techniques"]),
            "first": _iso(n["first"]), "last": _iso(n["last"])}


def _components(nodes: dict[str, dict[str, Any]], edges: dict) -> list[dict[str, Any]]:
    """Connected groups of entities whose detections come from more than one product: the cross-environment
    links of the case (a host's Sysmon hits and its Zeek connections, a user in Entra ID and on Windows)."""
    parent = {n: n for n in nodes}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _rel in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    groups: dict[str, list[str]] = {}
    for n in nodes:
        groups.setdefault(find(n), []).append(n)
    out = []
    for members in groups.values():
        products = sorted({p for m in members for p in nodes[m]["products"]})
        if len(products) > 1:
            members.sort(key=lambda m: (-nodes[m]["detections"], m))
            out.append({"products": products, "entities": members[:50], "size": len(members),
                        "entity_hits": sum(nodes[m]["detections"] for m in members)})
    return sorted(out, key=lambda c: (-len(c["products"]), -c["entity_hits"]))
