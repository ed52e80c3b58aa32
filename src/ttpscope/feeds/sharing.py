"""Sharing back: a case's indicator sightings as STIX 2.1 ``sighting`` objects.

Each sighting record (indicator × source × host) becomes one ``sighting`` with ``sighting_of_ref`` (the
feed's indicator), ``count``, ``first_seen``/``last_seen`` and ``where_sighted_refs`` (an ``identity`` of class
``system`` for the host). The indicators themselves come along from the workspace so the bundle stands on
its own. Ids are UUIDv5 of what they describe, so exporting twice gives the same objects.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Iterable

from ttpscope.model import parse_time
from ttpscope.store.feeds import FeedStore

_NS = uuid.UUID("8f0c5a53-2f4e-4c38-9d1b-3c6f9e2a7b10")  # ttpscope's namespace for derived STIX ids


def _ts(value: Any) -> str | None:
    dt = parse_time(value) if value is not None and not isinstance(value, datetime) else value
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def identity(name: str, identity_class: str = "system") -> dict[str, Any]:
    return {"type": "identity", "spec_version": "2.1", "id": f"identity--{uuid.uuid5(_NS, identity_class + ':' + name)}",
            "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z", "name": name,
            "identity_class": identity_class}


def sightings_to_stix(sightings: Iterable[Any], store: FeedStore | None = None, case_id: str | None = None,
                      producer: str = "ttpscope") -> list[dict[str, Any]]:
    """STIX objects for sightings (``Sighting`` records or the dicts ``FeedStore.sightings`` returns):
    the producer identity, one system identity per host, the sighted indicators, the sightings."""
    rows = [s.to_dict() if hasattr(s, "to_dict") else dict(s) for s in sightings]
    if not rows:
        return []
    me = identity(producer, "organization")
    out: list[dict[str, Any]] = [me]
    hosts: dict[str, dict[str, Any]] = {}
    indicators: dict[tuple[str, str], dict[str, Any]] = {}
    if store is not None:
        wanted = {(r["feed"], r["indicator_id"]) for r in rows}
        for obj in store.objects(types=["indicator"]):
            key = (obj["x_ttpscope_feed"], obj["id"])
            if key in wanted:
                obj = {k: v for k, v in obj.items() if k != "x_ttpscope_feed"}
                indicators[key] = obj
    now = _ts(datetime.now(timezone.utc))
    sightings_out = []
    for r in sorted(rows, key=lambda r: (r["feed"], r["indicator_id"], r.get("source") or "", r.get("host") or "")):
        where = []
        if r.get("host"):
            ident = hosts.setdefault(r["host"], identity(r["host"]))
            where.append(ident["id"])
        key = "|".join([case_id or "", r["feed"], r["indicator_id"], r.get("source") or "", r.get("host") or ""])
        first, last = _ts(r.get("first_seen")), _ts(r.get("last_seen"))
        s = {"type": "sighting", "spec_version": "2.1", "id": f"sighting--{uuid.uuid5(_NS, key)}",
             "created": now, "modified": now, "created_by_ref": me["id"], "sighting_of_ref": r["indicator_id"],
             "count": max(int(r.get("count") or 0), 0), "x_ttpscope_feed": r["feed"]}
        if first:
            s["first_seen"] = first
        if last:
            s["last_seen"] = last
        if where:
            s["where_sighted_refs"] = where
        if r.get("source"):
            s["description"] = f"matched in {r['source']}"
        sightings_out.append(s)
    out.extend(hosts[h] for h in sorted(hosts))
    out.extend(indicators[k] for k in sorted(indicators))
    out.extend(sightings_out)
    return out


def case_sightings_stix(case_id: str, store: FeedStore | None = None) -> list[dict[str, Any]]:
    """The STIX objects of one case's stored sightings (what the case's STIX export adds)."""
    store = store or FeedStore()
    return sightings_to_stix(store.sightings(case_id), store, case_id)


def case_sightings(case_id: str, store: FeedStore) -> list[dict[str, Any]]:
    """A case's stored sightings, each with the STIX indicator it matched (``indicator``, without the
    workspace's own ``x_ttpscope_feed``) and that indicator's name and pattern: what every output of the
    case shows in its sightings section."""
    rows = store.sightings(case_id)
    if not rows:
        return []
    objs = store.indicator_objects((r["feed"], r["indicator_id"]) for r in rows)
    out = []
    for r in rows:
        obj = objs.get((r["feed"], r["indicator_id"]))
        out.append({**r, "indicator": obj, "name": (obj or {}).get("name"), "pattern": (obj or {}).get("pattern")})
    return out
