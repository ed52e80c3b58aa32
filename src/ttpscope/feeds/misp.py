"""MISP feed events → STIX 2.1 objects, read directly from the MISP JSON.

``misp-stix`` (the MISP project's converter) was not used: installing it pulls the STIX 1 stack (stix,
cybox, maec, mixbox) and upgrades packages of the shared environment, and a feed needs only the mapping
of attribute types to indicator patterns plus the event as a report. Kept from MISP: ``to_ids`` (an
attribute not meant for detection is stored but never matched), ``first_seen`` (→ ``valid_from``),
``last_seen`` (the default lifetime counts from it), ``deleted`` (→ revoked), tags (→ labels).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ttpscope.feeds.objects import Rejected

# MISP attribute type -> (STIX object path, how to take the value)
_PATHS: dict[str, str] = {
    "ip-src": "ip", "ip-dst": "ip", "ip-src|port": "ip", "ip-dst|port": "ip",
    "domain": "domain-name:value", "hostname": "domain-name:value", "domain|ip": "domain-name:value",
    "url": "url:value", "uri": "url:value", "link": None,
    "md5": "file:hashes.MD5", "sha1": "file:hashes.'SHA-1'", "sha256": "file:hashes.'SHA-256'",
    "sha512": "file:hashes.'SHA-512'", "imphash": None,
    "filename": "file:name",
    "filename|md5": "file:name|file:hashes.MD5", "filename|sha1": "file:name|file:hashes.'SHA-1'",
    "filename|sha256": "file:name|file:hashes.'SHA-256'",
    "regkey": "windows-registry-key:key", "regkey|value": "windows-registry-key:key",
    "email-src": "email-addr:value", "email-dst": "email-addr:value", "email": "email-addr:value",
    "mutex": "mutex:name",
}
REQUIRED_EVENT = ("uuid", "info", "timestamp")
REQUIRED_ATTRIBUTE = ("uuid", "type", "value")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _epoch(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        ts = float(value)
    except (TypeError, ValueError):
        # MISP first_seen/last_seen are ISO strings
        return str(value)
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def attribute_pattern(mtype: str, value: str) -> str | None:
    """The STIX pattern of one MISP attribute, or None for types that are no indicator."""
    path = _PATHS.get(mtype)
    if path is None:
        return None
    if path == "ip":
        ip = value.split("|", 1)[0]
        return f"[{'ipv6-addr' if ':' in ip else 'ipv4-addr'}:value = {_quote(ip)}]"
    if "|" in path:  # composite attribute: both halves on the same file
        left, right = path.split("|")
        a, _, b = value.partition("|")
        return f"[{left} = {_quote(a)} AND {right} = {_quote(b)}]"
    if "|" in mtype:  # domain|ip, regkey|value: the first half is the observable
        value = value.split("|", 1)[0]
    return f"[{path} = {_quote(value)}]"


def event_to_stix(feed: str, event_doc: Any, ref: str) -> tuple[list[dict[str, Any]], list[Rejected], int]:
    """One MISP event file → (STIX objects, rejections, attributes skipped as non-indicators)."""
    event = event_doc.get("Event") if isinstance(event_doc, dict) else None
    if not isinstance(event, dict):
        return [], [Rejected(feed, ref, "MISP event file without an 'Event' object")], 0
    missing = [k for k in REQUIRED_EVENT if not event.get(k)]
    if missing:
        return [], [Rejected(feed, event.get("uuid") or ref, f"MISP event missing {', '.join(missing)}")], 0
    euuid = str(event["uuid"])
    try:
        modified = _epoch(float(event["timestamp"]))
    except (TypeError, ValueError):
        return [], [Rejected(feed, euuid, f"MISP event timestamp {event['timestamp']!r} is not epoch seconds")], 0
    labels = sorted({str(t.get("name")) for t in event.get("Tag") or [] if isinstance(t, dict) and t.get("name")})
    attributes = [a for a in event.get("Attribute") or []]
    for obj in event.get("Object") or []:
        if isinstance(obj, dict):
            attributes.extend(obj.get("Attribute") or [])
    objects: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    skipped = 0
    for i, attr in enumerate(attributes):
        if not isinstance(attr, dict):
            rejected.append(Rejected(feed, f"{euuid}/attribute#{i}", "attribute is not a JSON object"))
            continue
        miss = [k for k in REQUIRED_ATTRIBUTE if attr.get(k) in (None, "")]
        if miss:
            rejected.append(Rejected(feed, f"{euuid}/{attr.get('uuid') or f'attribute#{i}'}",
                                     f"MISP attribute missing {', '.join(miss)}"))
            continue
        pattern = attribute_pattern(str(attr["type"]), str(attr["value"]))
        if pattern is None:
            skipped += 1
            continue
        stamp = _epoch(attr.get("timestamp")) or modified
        ind = {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{attr['uuid']}",
               "created": stamp, "modified": stamp, "name": f"{attr['type']}: {attr['value']}"[:200],
               "pattern": pattern, "pattern_type": "stix",
               "valid_from": _epoch(attr.get("first_seen")) or stamp,
               "indicator_types": ["malicious-activity"], "x_misp_type": attr["type"],
               "x_misp_category": attr.get("category"), "x_misp_to_ids": bool(attr.get("to_ids", True)),
               "x_misp_event": euuid}
        if attr.get("last_seen"):
            ind["x_misp_last_seen"] = _epoch(attr["last_seen"])
        if attr.get("comment"):
            ind["description"] = str(attr["comment"])
        if attr.get("deleted") in (True, 1, "1", "true"):
            ind["revoked"] = True
        if labels:
            ind["labels"] = labels
        objects.append(ind)
    report = {"type": "report", "spec_version": "2.1", "id": f"report--{euuid}", "created": modified,
              "modified": modified, "name": str(event["info"])[:500],
              "published": _epoch(event.get("publish_timestamp")) or modified,
              "object_refs": [o["id"] for o in objects] or [f"report--{euuid}"],
              "x_misp_event_date": event.get("date"), "x_misp_threat_level": event.get("threat_level_id")}
    if labels:
        report["labels"] = labels
    return [report, *objects], rejected, skipped
