"""Entity co-occurrence: which hosts, users, IP addresses and cloud accounts appear together in events.

Rule hits alone link only what a rule fired on; a case also needs to know that host ``MKT01`` had the
address ``192.168.1.41`` (its logons and Sysmon connections name both), and that Zeek saw that address talk
to ``10.0.5.13``, even when no rule fired on a Zeek record. :class:`EntityLinks` collects this during the
scan from the entity columns every batch carries (``::host``, ``::user``, ``::src_ip``, ``::dst_ip``,
``::account``): per (log source, entity pair, hour) an event count and the first and last time seen —
an aggregate, never one row per event. Memory is bounded (:data:`MAX_KEYS` distinct keys; later new
keys are counted as dropped), and :meth:`EntityLinks.select` keeps a bounded set of rows for a case,
those near the entities of its detections first.

    links = EntityLinks()
    for batch in links.tap(reader.batches()): ...
    links.select(seeds={"host:mkt01"}, limit=2000)   # {"rows": [...], "events": n, "pairs": n, ...}

Entity values are keyed as the case's entity graph keys them (:func:`entity_key`): IPs as addresses
(loopback, unspecified and multicast addresses are no entity), a host by its first name label, a user by
the bare account name.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

# batch column -> (entity kind, field name in link rows)
LINK_COLUMNS = {"::host": ("host", "host"), "::user": ("user", "user"), "::src_ip": ("ip", "src_ip"),
                "::dst_ip": ("ip", "dst_ip"), "::account": ("account", "account")}
MAX_KEYS = 200_000  # distinct (log source, pair, hour) keys held during a scan
MAX_ROWS = 2_000  # rows a case keeps
_NO_VALUE = {"", "-", "n/a", "null", "none", "unknown", "redacted", "system", "nt authority\\system", "local system",
             "localsystem", "local service", "network service", "nt authority\\local service",
             "nt authority\\network service"}


def entity_key(kind: str, value: Any) -> tuple[str, str] | None:
    """(node id, display value) of an entity value, None when it names nothing.

    A user is the bare account name: ``CORP\\alice``, ``alice@corp.com``, the IAM ARN ``...:user/alice``
    and Zeek Kerberos' ``alice/CORP.COM`` are ``alice``."""
    if value is None:
        return None
    text = str(value).strip()
    if text.lower() in _NO_VALUE:
        return None
    if kind == "ip":
        try:
            addr = ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            return None
        if addr.is_loopback or addr.is_unspecified or addr.is_multicast:
            return None
        return f"ip:{addr.compressed}", addr.compressed
    name = text.lower()
    if kind == "host":
        try:
            ipaddress.ip_address(name)
        except ValueError:
            name = name.split(".", 1)[0] or name
    elif kind == "user":
        name = name.rsplit("\\", 1)[-1]
        # an ARN keeps the name last (…:user/alice); a Kerberos principal first (alice/REALM)
        name = name.rsplit("/", 1)[-1] if ":" in name else name.split("/", 1)[0]
        name = name.split("@", 1)[0] or name
        if name in _NO_VALUE:
            return None
    return f"{kind}:{name}", text


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t else None


class EntityLinks:
    """Aggregated entity pairs seen together in events (see the module docstring)."""

    def __init__(self, max_keys: int = MAX_KEYS):
        self.max_keys = max_keys
        # (logsource, node a, node b, relation, hour) -> [events, first, last]
        self.pairs: dict[tuple, list] = {}
        self.values: dict[str, str] = {}  # node id -> a display value
        self.events = 0  # events that named two entities
        self.dropped = 0  # events whose key came after the bound
        self._keys: dict[tuple[str, str], tuple[str, str] | None] = {}

    def _key(self, kind: str, value: str) -> tuple[str, str] | None:
        got = self._keys.get((kind, value), False)
        if got is False:
            if len(self._keys) > 100_000:
                self._keys.clear()
            got = self._keys[(kind, value)] = entity_key(kind, value)
        return got

    def tap(self, batches: Iterable) -> Iterator:
        """Pass the batches on, observing each one."""
        for batch in batches:
            self.observe(batch)
            yield batch

    def observe(self, batch) -> None:
        """Count the entity pairs of one batch (an :class:`ttpscope.ingest.base.EventBatch`)."""
        table = batch.table
        present = [c for c in LINK_COLUMNS if c in table.column_names and table[c].null_count < table.num_rows]
        if len(present) < 2 or table.num_rows == 0:
            return
        label = batch.logsource.label()
        cols = {c: table[c] for c in present}
        if "::time" in table.column_names:
            cols["::time"] = table["::time"]
            cols["::hour"] = pc.floor_temporal(table["::time"], unit="hour")
        else:
            cols["::time"] = cols["::hour"] = pa.nulls(table.num_rows, pa.timestamp("us", tz="UTC"))
        grouped = pa.table(cols).group_by([*present, "::hour"], use_threads=False).aggregate(
            [("::time", "min"), ("::time", "max"), ([], "count_all")])
        for row in grouped.to_pylist():
            ents = []
            for c in present:
                kind, name = LINK_COLUMNS[c]
                key = self._key(kind, row[c]) if row[c] else None
                if key and all(key[0] != e[0] for e in ents):
                    ents.append((key[0], name, key[1]))
            if len(ents) < 2:
                continue
            n, first, last, hour = row["count_all"], row["::time_min"], row["::time_max"], row["::hour"]
            self.events += n
            for i in range(len(ents)):
                for j in range(i + 1, len(ents)):
                    (a, fa, va), (b, fb, vb) = sorted((ents[i], ents[j]))
                    relation = "connected to" if {fa, fb} == {"src_ip", "dst_ip"} else f"{fa} + {fb}"
                    key = (label, a, b, relation, hour)
                    got = self.pairs.get(key)
                    if got is None:
                        if len(self.pairs) >= self.max_keys:
                            self.dropped += n
                            continue
                        got = self.pairs[key] = [0, first, last]
                        self.values.setdefault(a, va)
                        self.values.setdefault(b, vb)
                    got[0] += n
                    if first is not None and (got[1] is None or first < got[1]):
                        got[1] = first
                    if last is not None and (got[2] is None or last > got[2]):
                        got[2] = last

    def merge(self, other: EntityLinks) -> None:
        """Add another collector's counts (a worker process's)."""
        self.events += other.events
        self.dropped += other.dropped
        for key, (n, first, last) in other.pairs.items():
            got = self.pairs.get(key)
            if got is None:
                if len(self.pairs) >= self.max_keys:
                    self.dropped += n
                    continue
                self.pairs[key] = [n, first, last]
                continue
            got[0] += n
            got[1] = min((t for t in (got[1], first) if t is not None), default=None)
            got[2] = max((t for t in (got[2], last) if t is not None), default=None)
        for node, value in other.values.items():
            self.values.setdefault(node, value)

    def select(self, seeds: Iterable[str] = (), limit: int = MAX_ROWS, hops: int = 2) -> dict[str, Any]:
        """At most ``limit`` rows for a case: first those within ``hops`` links of the ``seeds`` (the node
        ids its detections name; nearest first, then most events), then the busiest others.

        Each row: ``{logsource, source, target, relation, events, first, last}`` (``source``/``target``
        node ids), one per log source, pair and hour; ``values`` maps node ids to a display value."""
        adjacent: dict[str, set[str]] = {}
        for _ls, a, b, _rel, _hour in self.pairs:
            adjacent.setdefault(a, set()).add(b)
            adjacent.setdefault(b, set()).add(a)
        distance = {s: 0 for s in seeds if s in adjacent}
        frontier = list(distance)
        for hop in range(1, hops + 1):
            nxt = []
            for node in frontier:
                for peer in adjacent.get(node, ()):
                    if peer not in distance:
                        distance[peer] = hop
                        nxt.append(peer)
            frontier = nxt
        far = hops + 1

        def rank(item):
            (ls, a, b, rel, hour), (n, _f, _l) = item
            return (min(distance.get(a, far), distance.get(b, far)), -n, ls, a, b, rel, hour or datetime.min.replace(tzinfo=timezone.utc))

        chosen = sorted(self.pairs.items(), key=rank)[:limit]
        chosen.sort(key=lambda kv: (kv[1][1] or datetime.max.replace(tzinfo=timezone.utc), kv[0][0], kv[0][1], kv[0][2]))
        rows = [{"logsource": ls, "source": a, "target": b, "relation": rel, "events": n, "first": _iso(first),
                 "last": _iso(last)} for (ls, a, b, rel, _hour), (n, first, last) in chosen]
        nodes = {r["source"] for r in rows} | {r["target"] for r in rows}
        return {"rows": rows, "values": {k: v for k, v in sorted(self.values.items()) if k in nodes},
                "events": self.events, "keys": len(self.pairs), "kept": len(rows),
                "left_out": len(self.pairs) - len(rows), "dropped_events": self.dropped}


def combine(old: dict[str, Any] | None, new: dict[str, Any] | None, limit: int = MAX_ROWS) -> dict[str, Any]:
    """Two selections as one (a case that gains evidence): rows of the same log source, pair, relation and
    first time merged, the new selection's rows first when over ``limit``."""
    rows: dict[tuple, dict[str, Any]] = {}
    values: dict[str, str] = {}
    for part in (new or {}, old or {}):
        values.update({k: v for k, v in (part.get("values") or {}).items() if k not in values})
        for r in part.get("rows") or []:
            key = (r.get("logsource"), r.get("source"), r.get("target"), r.get("relation"), r.get("first"))
            rows.setdefault(key, r)
    kept = list(rows.values())[:limit]
    kept.sort(key=lambda r: (r.get("first") or "~", r.get("logsource") or "", r.get("source"), r.get("target")))
    nodes = {r.get("source") for r in kept} | {r.get("target") for r in kept}
    total = {k: sum(int((p or {}).get(k) or 0) for p in (old, new)) for k in ("events", "keys", "dropped_events")}
    return {"rows": kept, "values": {k: v for k, v in sorted(values.items()) if k in nodes}, **total,
            "kept": len(kept), "left_out": max(0, total["keys"] - len(kept))}
