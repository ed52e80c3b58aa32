"""Checking feed objects and turning indicators into rows with a lifetime.

Validation is the part of STIX 2.1 that decides whether an object can be stored and used: a ``type--UUID``
id whose prefix is its type, ``spec_version`` 2.1 where given, a parsable ``modified`` (or ``created``) on
objects that version, and for indicators a ``pattern`` that parses. Full ``stix2.parse`` costs ~0.3 ms an
object, which alone would take minutes on a large feed, so only these checks run on every object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from ttpscope.feeds.patterns import InvalidPattern, UnsupportedPattern, parse_pattern, pattern_kinds
from ttpscope.model import parse_time

_ID = re.compile(r"^([a-z0-9][a-z0-9-]*[a-z0-9])--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                 r"[0-9a-fA-F]{12}$")
# objects that carry no versioning (STIX 2.1 SCOs, marking definitions, language content may omit it)
_UNVERSIONED = {"marking-definition", "artifact", "autonomous-system", "directory", "domain-name", "email-addr",
                "email-message", "file", "ipv4-addr", "ipv6-addr", "mac-addr", "mutex", "network-traffic",
                "process", "software", "url", "user-account", "windows-registry-key", "x509-certificate"}

# How long an indicator stays current when its feed gives no valid_until (per kind of value; None: no end).
# Addresses change hands fastest, hashes never stop naming the same file.
DEFAULT_LIFETIMES: dict[str, timedelta | None] = {
    "ip": timedelta(days=30),
    "domain": timedelta(days=90),
    "url": timedelta(days=60),
    "email": timedelta(days=90),
    "filename": timedelta(days=180),
    "process": timedelta(days=180),
    "regkey": timedelta(days=365),
    "mutex": timedelta(days=365),
    "hash": None,
}


def parse_lifetimes(spec: dict[str, Any] | None) -> dict[str, timedelta | None]:
    """Feed options ``{"ip": "7d", "hash": "none"}`` over the defaults (units s, m, h, d, w)."""
    out = dict(DEFAULT_LIFETIMES)
    for kind, value in (spec or {}).items():
        out[kind] = parse_duration(value)
    return out


def parse_duration(value: Any) -> timedelta | None:
    if value is None or str(value).lower() in ("none", "never", "0"):
        return None
    if isinstance(value, (int, float)):
        return timedelta(seconds=float(value))
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(value).lower())
    if not m:
        raise ValueError(f"not a duration: {value!r} (e.g. 30d, 12h, 1w)")
    n, unit = float(m.group(1)), m.group(2)
    return timedelta(seconds=n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit])


@dataclass
class Rejected:
    """An object (or a whole feed page) that could not be used, and why."""

    feed: str
    object_id: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"feed": self.feed, "object_id": self.object_id, "reason": self.reason}


@dataclass
class Checked:
    """What a page of raw objects gives the store: object rows, indicator rows, term rows, rejections."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    indicators: list[dict[str, Any]] = field(default_factory=list)
    terms: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    unsupported: list[Rejected] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_objects(feed: str, raw: list[Any], lifetimes: dict[str, timedelta | None] | None = None,
                  pattern_cache: dict[str, Any] | None = None) -> Checked:
    """Validate a page of STIX objects; build the rows the store keeps. Never raises for a bad object."""
    lifetimes = lifetimes if lifetimes is not None else DEFAULT_LIFETIMES
    cache = pattern_cache if pattern_cache is not None else {}
    out = Checked()
    for obj in raw:
        oid = obj.get("id") if isinstance(obj, dict) else None
        reason = _problem(obj)
        if reason:
            out.rejected.append(Rejected(feed, oid if isinstance(oid, str) else None, reason))
            continue
        modified = obj.get("modified") or obj.get("created")
        mod_key = _iso(parse_time(modified)) if modified else ""
        row = {"id": oid, "modified": mod_key, "type": obj["type"], "revoked": bool(obj.get("revoked")),
               "json": orjson.dumps(obj).decode()}
        if obj["type"] == "indicator":
            ind, terms, problem = indicator_row(obj, mod_key, lifetimes, cache)
            if problem and problem[0] == "invalid":
                out.rejected.append(Rejected(feed, oid, problem[1]))
                continue
            if problem:
                out.unsupported.append(Rejected(feed, oid, problem[1]))
            out.indicators.append(ind)
            out.terms.extend(terms)
        if row["revoked"]:
            out.revoked.append(oid)
        out.objects.append(row)
    return out


def _problem(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return f"not a JSON object ({type(obj).__name__})"
    oid, otype = obj.get("id"), obj.get("type")
    if not isinstance(otype, str) or not otype:
        return "missing 'type'"
    if not isinstance(oid, str) or not _ID.match(oid):
        return f"'id' {oid!r} is not <type>--<UUID>"
    if oid.split("--", 1)[0] != otype:
        return f"'id' prefix does not match type {otype!r}"
    if otype == "bundle":
        return "a bundle inside a bundle"
    spec = obj.get("spec_version")
    if spec is not None and spec != "2.1":
        return f"spec_version {spec!r} is not 2.1"
    if otype not in _UNVERSIONED:
        for key in ("created", "modified"):
            if key not in obj:
                return f"missing '{key}'"
        for key in ("created", "modified", "valid_from", "valid_until"):
            if key in obj:
                try:
                    parse_time(obj[key])
                except ValueError as exc:
                    return f"'{key}': {exc}"
    if otype == "relationship":
        for key in ("relationship_type", "source_ref", "target_ref"):
            if not isinstance(obj.get(key), str):
                return f"relationship without '{key}'"
    if otype == "indicator":
        if not isinstance(obj.get("pattern"), str):
            return "indicator without 'pattern'"
        if obj.get("pattern_type", "stix") != "stix":
            return None  # other pattern languages are kept, reported unsupported later
        if "valid_from" not in obj:
            return "indicator without 'valid_from'"
    return None


def indicator_row(obj: dict[str, Any], mod_key: str, lifetimes: dict[str, timedelta | None],
                  cache: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], tuple[str, str] | None]:
    """(indicator row, term rows, problem): problem is ('invalid', why) to reject the object, ('unsupported',
    why) to keep it without matching it, or None."""
    pattern = obj.get("pattern", "")
    problem: tuple[str, str] | None = None
    dnf: list = []
    if obj.get("pattern_type", "stix") != "stix":
        problem = ("unsupported", f"pattern_type {obj.get('pattern_type')!r} is not matched on logs")
    else:
        hit = cache.get(pattern)
        if hit is None:
            try:
                hit = ("ok", parse_pattern(pattern))
            except InvalidPattern as exc:
                hit = ("invalid", f"malformed pattern {pattern[:120]!r}: {exc}")
            except UnsupportedPattern as exc:
                hit = ("unsupported", f"unsupported pattern {pattern[:120]!r}: {exc}")
            if len(cache) < 200_000:
                cache[pattern] = hit
        if hit[0] == "ok":
            dnf = hit[1]
        else:
            problem = (hit[0], hit[1])
    kinds = pattern_kinds(dnf)
    valid_from = parse_time(obj.get("valid_from")) or parse_time(obj.get("created"))
    valid_until = parse_time(obj.get("valid_until")) if obj.get("valid_until") else None
    source = "feed" if valid_until else None
    if valid_until is None and kinds and valid_from is not None:
        # the shortest lifetime of the kinds the pattern compares; a kind without an end never expires
        spans = [lifetimes.get(k, DEFAULT_LIFETIMES.get(k)) for k in kinds]
        if all(s is not None for s in spans):
            start = parse_time(obj.get("x_misp_last_seen")) or valid_from
            valid_until = start + min(spans)
            source = "default:" + ",".join(kinds)
    to_ids = obj.get("x_misp_to_ids")
    ind = {"id": obj["id"], "modified": mod_key, "name": obj.get("name"), "pattern": pattern, "kinds": kinds,
           "valid_from": valid_from, "valid_until": valid_until, "lifetime_source": source,
           "revoked": bool(obj.get("revoked")), "to_ids": to_ids is not False, "supported": problem is None,
           "problem": problem[1] if problem else None}
    terms = []
    comp = 0
    for c, conj in enumerate(dnf):
        for t in conj:
            terms.append({"indicator_id": obj["id"], "modified": mod_key, "conj": c, "comp": comp,
                          "conj_size": len(conj), "kind": t.kind, "op": t.op, "value": t.value})
            comp += 1
    return ind, terms, problem
