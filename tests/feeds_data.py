"""Generated feed content for the feed tests and bench: STIX objects and MISP feed folders."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path


def ts(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


NOW = datetime.now(timezone.utc).replace(microsecond=0)


def indicator(value: str, kind: str = "ipv4-addr:value", *, valid_from: datetime | None = None,
              valid_until: datetime | None = None, modified: datetime | None = None, oid: str | None = None,
              **extra) -> dict:
    created = modified or (NOW - timedelta(days=1))
    obj = {"type": "indicator", "spec_version": "2.1", "id": oid or f"indicator--{uuid.uuid4()}",
           "created": ts(created), "modified": ts(modified or created), "name": value,
           "pattern": f"[{kind} = '{value}']", "pattern_type": "stix",
           "valid_from": ts(valid_from or NOW - timedelta(days=1))}
    if valid_until:
        obj["valid_until"] = ts(valid_until)
    obj.update(extra)
    return obj


def generated_objects(n: int, seed: int = 0) -> list[dict]:
    """``n`` objects in feed-like proportions: ~80% indicators, ~15% relationships, the rest groups/malware."""
    out: list[dict] = []
    groups = [f"intrusion-set--{uuid.UUID(int=seed * 10_000_000 + i)}" for i in range(max(n // 200, 1))]
    created = ts(NOW - timedelta(days=2))
    for gid in groups:
        out.append({"type": "intrusion-set", "spec_version": "2.1", "id": gid, "created": created,
                    "modified": created, "name": f"Generated Group {gid[-6:]}"})
    i = 0
    while len(out) < n:
        i += 1
        ind_id = f"indicator--{uuid.UUID(int=(seed + 1) * 100_000_000 + i)}"
        value = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" if i % 3 else f"host{i}.example.net"
        kind = "ipv4-addr:value" if i % 3 else "domain-name:value"
        out.append(indicator(value, kind, oid=ind_id, modified=NOW - timedelta(days=2)))
        if i % 5 == 0 and len(out) < n:
            out.append({"type": "relationship", "spec_version": "2.1",
                        "id": f"relationship--{uuid.UUID(int=(seed + 2) * 100_000_000 + i)}", "created": created,
                        "modified": created, "relationship_type": "indicates", "source_ref": ind_id,
                        "target_ref": groups[i % len(groups)]})
    return out[:n]


def misp_event(info: str, attributes: list[dict], *, stamp: int, event_uuid: str | None = None) -> dict:
    event = {"uuid": event_uuid or str(uuid.uuid4()), "info": info, "date": "2026-11-01", "timestamp": str(stamp),
             "threat_level_id": "2", "analysis": "2", "Orgc": {"name": "test-org", "uuid": str(uuid.uuid4())},
             "Tag": [{"name": "tlp:white"}], "Attribute": []}
    for a in attributes:
        attr = {"uuid": str(uuid.uuid4()), "category": "Network activity", "to_ids": True, "timestamp": str(stamp)}
        attr.update(a)
        event["Attribute"].append(attr)
    return {"Event": event}


def write_misp_feed(root: Path, events: list[dict]) -> dict:
    """A MISP feed folder: manifest.json + <uuid>.json per event (events given as {"Event": ...})."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for doc in events:
        ev = doc["Event"]
        key = ev.get("uuid") or str(uuid.uuid4())
        (root / f"{key}.json").write_text(json.dumps(doc))
        manifest[key] = {"info": ev.get("info"), "timestamp": ev.get("timestamp") or "1", "date": ev.get("date")}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return manifest
