"""The records every part shares, each validated when built and round-tripped by ``to_dict``/``from_dict``.

An Observation is a technique seen, with its evidence; a Case is a set of them. Every producer (Sigma
detection, report extraction, manual entry, import) emits Observations and every analysis consumes a Case,
so the parts never need to know about each other. A Detection is one rule hit on one event and a
ReportDocument one report read: the workspace keeps both beside their case, and the case report reads them.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from ttpscope.errors import InputError

TECHNIQUE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")
TACTIC_ID = re.compile(r"^TA\d{4}$")
SOURCE_KINDS = ("sigma", "text", "manual", "import")
REVIEW_STATES = ("unreviewed", "confirmed", "rejected")
# how much a hit of a rule of this level says the technique happened
LEVEL_CONFIDENCE = {"critical": 0.95, "high": 0.85, "medium": 0.7, "low": 0.5, "informational": 0.3}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_time(value: Any) -> datetime | None:
    """Accept ISO-8601 strings (with or without zone, 'Z' suffix) and datetimes; naive times are UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip().replace("Z", "+00:00") if value.strip().endswith("Z") else value.strip()
        try:
            dt = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"not an ISO-8601 time: {value!r}") from exc
    else:
        raise ValueError(f"not a time: {value!r}")
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def ioc_target(ioc_type: str, value: str) -> str:
    """The review target of an IOC: ``ioc:<type>:<value>`` (type lower-cased, value as extracted)."""
    return f"ioc:{str(ioc_type).strip().lower()}:{value}"


@dataclass(slots=True)
class Review:
    """An analyst's decision on a finding: ``target`` is an observation id, ``ioc:<type>:<value>`` or a
    technique id (the whole technique). ``confidence`` (0-100) is what a confirmation vouches for; the
    STIX export uses it. ``fingerprint`` identifies an observation by its content, so the decision
    follows it when a re-investigation gives it a new id."""

    target: str
    state: str = "unreviewed"
    by: str | None = None
    note: str = ""
    time: datetime | None = None
    confidence: int | None = None
    fingerprint: str | None = None

    FIELDS = ("target", "state", "by", "note", "time", "confidence", "fingerprint")

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target.strip():
            raise ValueError(f"review target {self.target!r} is not a non-empty string")
        if self.state not in REVIEW_STATES:
            raise ValueError(f"review state {self.state!r} is not one of {', '.join(REVIEW_STATES)}")
        if self.state != "unreviewed" and not (isinstance(self.by, str) and self.by.strip()):
            raise ValueError("a review decision needs who made it (by)")
        for name in ("by", "fingerprint"):
            _check_optional_str(name, getattr(self, name))
        if not isinstance(self.note, str):
            raise ValueError(f"review note {self.note!r} is not a string")
        if self.confidence is not None:
            if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)) \
                    or not 0 <= self.confidence <= 100:
                raise ValueError(f"review confidence {self.confidence!r} is not in [0, 100]")
            self.confidence = int(round(self.confidence))
        if self.time is not None and not isinstance(self.time, datetime):
            self.time = parse_time(self.time)
        elif self.time is not None and self.time.tzinfo is None:
            self.time = self.time.replace(tzinfo=timezone.utc)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.FIELDS if getattr(self, k) is not None}
        if self.time is not None:
            out["time"] = _iso(self.time)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Review:
        if not isinstance(data, dict):
            raise ValueError("a review must be a JSON object")
        if "target" not in data:
            raise ValueError("review lacks target")
        return cls(**{k: data[k] for k in cls.FIELDS if data.get(k) is not None})


@dataclass(slots=True)
class Observation:
    """A technique seen, with the evidence that says so.

    ``source_ref`` names what produced it: a Sigma rule id, or ``document#start-end`` for a sentence.
    ``evidence`` is the proof itself: matched event fields, or ``{"sentence": ...}``.
    ``count`` is how many hits it stands for: one rule's hits for one technique on one entity within a time
    window are one Observation (``ttpscope.detect.results.observations_of``), seen from ``first_seen``
    (= ``time``) to ``last_seen``; every raw hit stays a Detection in the workspace.
    """

    technique_id: str
    source_kind: str
    source_ref: str
    evidence: dict[str, Any] = field(default_factory=dict)
    tactic_ids: list[str] = field(default_factory=list)
    time: datetime | None = None
    host: str | None = None
    user: str | None = None
    document: str | None = None
    confidence: float = 1.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    count: int = 1
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    review: Review | None = None  # the analyst's decision, when one was made (kept by the workspace apart)

    def __post_init__(self) -> None:
        self.validate()

    def fingerprint(self) -> str:
        """What identifies this observation apart from its id: the same finding of a re-investigation has it."""
        import hashlib

        ident = "|".join(str(x) for x in (self.technique_id, self.source_kind, self.source_ref, self.host,
                                           _iso(self.time), self.document))
        return hashlib.sha256(ident.encode()).hexdigest()[:24]

    def validate(self) -> None:
        if not isinstance(self.technique_id, str) or not TECHNIQUE_ID.match(self.technique_id):
            raise ValueError(f"technique_id {self.technique_id!r} is not of the form T1234 or T1234.567")
        if self.source_kind not in SOURCE_KINDS:
            raise ValueError(f"source_kind {self.source_kind!r} is not one of {', '.join(SOURCE_KINDS)}")
        if not isinstance(self.confidence, (int, float)) or not 0.0 <= float(self.confidence) <= 1.0:
            raise ValueError(f"confidence {self.confidence!r} is not in [0, 1]")
        self.confidence = float(self.confidence)
        for tactic in self.tactic_ids:
            if not isinstance(tactic, str) or not tactic:
                raise ValueError(f"tactic id {tactic!r} is not a non-empty string")
        if not isinstance(self.evidence, dict):
            raise ValueError("evidence must be an object")
        if self.review is not None and not isinstance(self.review, Review):
            raise ValueError("review must be a Review")
        if self.time is not None and not isinstance(self.time, datetime):
            self.time = parse_time(self.time)
        elif self.time is not None and self.time.tzinfo is None:
            self.time = self.time.replace(tzinfo=timezone.utc)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"count {self.count!r} is not a positive whole number")
        if self.first_seen is None:
            self.first_seen = self.time
        if self.last_seen is None:
            self.last_seen = self.first_seen
        for name in ("first_seen", "last_seen"):  # kept in UTC: the span of an aggregate, compared as instants
            value = getattr(self, name)
            if value is not None:
                dt = value if isinstance(value, datetime) else parse_time(value)
                setattr(self, name, dt.astimezone(timezone.utc) if dt.tzinfo else dt.replace(tzinfo=timezone.utc))
        if self.first_seen and self.last_seen and self.last_seen < self.first_seen:
            raise ValueError(f"last_seen {_iso(self.last_seen)} is before first_seen {_iso(self.first_seen)}")

    def to_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "technique_id": self.technique_id,
            "tactic_ids": list(self.tactic_ids),
            "source_kind": self.source_kind,
            "source_ref": self.source_ref,
            "evidence": self.evidence,
            "time": _iso(self.time),
            "host": self.host,
            "user": self.user,
            "document": self.document,
            "confidence": self.confidence,
            "count": self.count,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
        }
        if self.review is not None:
            out["review"] = self.review.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Observation:
        if not isinstance(data, dict):
            raise ValueError("an observation must be a JSON object")
        missing = [k for k in ("technique_id", "source_kind", "source_ref") if k not in data]
        if missing:
            raise ValueError(f"observation lacks {', '.join(missing)}")
        kwargs = {k: data[k] for k in (
            "technique_id", "source_kind", "source_ref", "evidence", "tactic_ids",
            "host", "user", "document", "confidence", "id", "count") if data.get(k) is not None}
        for name in ("time", "first_seen", "last_seen"):  # observations saved before aggregation have time only
            kwargs[name] = parse_time(data.get(name))
        if data.get("review") is not None:
            kwargs["review"] = Review.from_dict(data["review"])
        return cls(**kwargs)


def _check_techniques(what: str, ids: Any) -> list[str]:
    if not isinstance(ids, (list, tuple)):
        raise ValueError(f"{what} must be a list of technique ids")
    for tid in ids:
        if not isinstance(tid, str) or not TECHNIQUE_ID.match(tid):
            raise ValueError(f"{what}: {tid!r} is not of the form T1234 or T1234.567")
    return list(ids)


def _check_optional_str(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} {value!r} is not a string")


@dataclass(slots=True)
class Detection:
    """One Sigma rule matching one event.

    ``source`` is the input file (archive members as ``archive.zip!member``), ``record`` the EVTX record id
    or line number, ``event`` the event's fields and ``matched`` the values of the fields the rule tests.
    ``logsource`` (a label such as ``windows/sysmon``) and the entity fields are filled when the reader
    knows them. ``id`` is given by the workspace when the detection is stored.
    """

    rule_id: str
    title: str = ""
    level: str | None = None
    techniques: list[str] = field(default_factory=list)
    tactics: list[str] = field(default_factory=list)
    time: datetime | None = None
    host: str | None = None
    user: str | None = None
    source: str = ""
    record: int | str | None = None
    event: dict[str, Any] = field(default_factory=dict)
    matched: dict[str, Any] = field(default_factory=dict)
    logsource: str | None = None
    src_ip: str | None = None
    dst_ip: str | None = None
    account: str | None = None
    region: str | None = None
    id: str | None = None

    OPTIONAL = ("logsource", "src_ip", "dst_ip", "account", "region", "id")  # in to_dict only when set

    def __post_init__(self) -> None:
        if not isinstance(self.rule_id, str) or not self.rule_id:
            raise ValueError(f"rule_id {self.rule_id!r} is not a non-empty string")
        self.techniques = _check_techniques("techniques", self.techniques)
        if not isinstance(self.tactics, (list, tuple)) or not all(isinstance(t, str) for t in self.tactics):
            raise ValueError("tactics must be a list of strings")
        for name in ("host", "user", "src_ip", "dst_ip", "account", "region"):  # entity values come from events: as text
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                setattr(self, name, str(value))
        for name in ("title", "level", "logsource", "id"):
            _check_optional_str(name, getattr(self, name))
        if not isinstance(self.source, str):
            self.source = str(self.source)
        if not isinstance(self.event, dict) or not isinstance(self.matched, dict):
            raise ValueError("event and matched must be objects")
        if self.time is not None and not isinstance(self.time, datetime):
            self.time = parse_time(self.time)
        elif self.time is not None and self.time.tzinfo is None:
            self.time = self.time.replace(tzinfo=timezone.utc)

    def sort_key(self) -> tuple:
        return (self.time or datetime.min.replace(tzinfo=timezone.utc), self.source, self.record or 0, self.rule_id)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``ttpscope detect --json`` items (and of what the workspace stores)."""
        out = {
            "rule_id": self.rule_id, "title": self.title, "level": self.level,
            "techniques": list(self.techniques), "tactics": list(self.tactics), "time": _iso(self.time),
            "host": self.host, "user": self.user, "source": self.source, "record": self.record,
            "event": self.event,
        }
        if self.matched:
            out["matched"] = self.matched
        for name in self.OPTIONAL:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Detection:
        if not isinstance(data, dict):
            raise ValueError("a detection must be a JSON object")
        if "rule_id" not in data:
            raise ValueError("detection lacks rule_id")
        names = ("rule_id", "title", "level", "techniques", "tactics", "host", "user", "source", "record",
                 "event", "matched", *cls.OPTIONAL)
        kwargs = {k: data[k] for k in names if data.get(k) is not None}
        kwargs["time"] = parse_time(data.get("time"))
        return cls(**kwargs)

    def observations(self, kb=None) -> list[Observation]:
        """One Observation per technique; tactics are the rule's, narrowed to the technique's when known."""
        out = []
        for tid in self.techniques:
            tactics = list(self.tactics)
            if kb is not None and tid in kb.techniques:
                own = kb.techniques[tid].tactics
                narrowed = [t for t in tactics if t in own]
                tactics = narrowed or list(own)
            out.append(Observation(
                technique_id=tid, source_kind="sigma", source_ref=self.rule_id,
                evidence={"rule": self.title, "rule_id": self.rule_id, "level": self.level,
                          "source": self.source, "record": self.record, "matched": self.matched,
                          "event": self.event},
                tactic_ids=tactics, time=self.time, host=self.host, user=self.user,
                confidence=LEVEL_CONFIDENCE.get(self.level or "", 0.5),
            ))
        return out


@dataclass(slots=True)
class ReportDocument:
    """A threat report read for a case: what it is, and what the extraction found in it.

    ``techniques`` are the extraction's technique summaries, ``groups``/``software`` the ATT&CK entities it
    names (``{id, name, count}``), ``iocs`` ``{type, value}`` items, ``cves`` ``{id, techniques?, mapped?}``
    items. ``id`` is given by the workspace (the content hash when known).
    """

    name: str
    path: str | None = None
    kind: str | None = None
    title: str | None = None
    sha256: str | None = None
    characters: int | None = None
    sentences: int | None = None
    techniques: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    software: list[dict[str, Any]] = field(default_factory=list)
    iocs: list[dict[str, Any]] = field(default_factory=list)
    cves: list[dict[str, Any]] = field(default_factory=list)
    model: dict[str, Any] | None = None  # the extraction model that read it
    min_confidence: float | None = None
    text: str | None = None
    date: str | None = None  # the report's own publication date (ISO), when it states one
    tlp: str | None = None  # its TLP marking (clear, green, amber, amber+strict, red), when it states one
    not_indicators: list[dict[str, Any]] = field(default_factory=list)  # {type, value, reason, list?}: screened out
    vendor_domains: list[str] = field(default_factory=list)  # the publisher's own domains
    id: str | None = None
    campaigns: list[dict[str, Any]] = field(default_factory=list)  # ATT&CK campaigns it names ({id, name, count})

    FIELDS = ("name", "path", "kind", "title", "sha256", "characters", "sentences", "techniques", "groups",
              "software", "iocs", "cves", "model", "min_confidence", "text", "date", "tlp", "not_indicators",
              "vendor_domains", "id", "campaigns")

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"document name {self.name!r} is not a non-empty string")
        for name in ("path", "kind", "title", "sha256", "text", "date", "tlp", "id"):
            _check_optional_str(name, getattr(self, name))
        if self.model is not None and not isinstance(self.model, dict):
            raise ValueError("model must be an object")
        if not isinstance(self.vendor_domains, list) or not all(isinstance(d, str) for d in self.vendor_domains):
            raise ValueError("vendor_domains must be a list of strings")
        for name in ("techniques", "groups", "software", "iocs", "cves", "not_indicators", "campaigns"):
            items = getattr(self, name)
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError(f"{name} must be a list of objects")
        for ioc in self.iocs:
            if not isinstance(ioc.get("type"), str) or not isinstance(ioc.get("value"), str):
                raise ValueError(f"ioc {ioc!r} needs a type and a value")
        for cve in self.cves:
            if not isinstance(cve.get("id"), str):
                raise ValueError(f"cve {cve!r} needs an id")

    @property
    def label(self) -> str:
        """The file name the report is known by."""
        from pathlib import PurePath

        return PurePath(self.name or self.path or self.id or "").name

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS if getattr(self, k) is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReportDocument:
        if not isinstance(data, dict):
            raise ValueError("a document must be a JSON object")
        if not data.get("name"):
            raise ValueError("document lacks name")
        return cls(**{k: data[k] for k in cls.FIELDS if data.get(k) is not None})


@dataclass(slots=True)
class Case:
    """A named set of observations: the input of every analysis."""

    name: str
    observations: list[Observation] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, observations: list[Observation]) -> None:
        self.observations.extend(observations)
        self.updated = utcnow()

    def technique_ids(self) -> list[str]:
        """Distinct technique ids, in first-seen order."""
        return list(dict.fromkeys(o.technique_id for o in self.observations))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
            "meta": self.meta,
            "observations": [o.to_dict() for o in self.observations],
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<case>") -> Case:
        if not isinstance(data, dict) or "name" not in data:
            raise InputError(source, None, "a case must be a JSON object with a name")
        observations = []
        for i, raw in enumerate(data.get("observations") or []):
            try:
                observations.append(Observation.from_dict(raw))
            except (ValueError, TypeError) as exc:
                raise InputError(source, f"observation {i}", str(exc)) from exc
        kwargs: dict[str, Any] = {"name": data["name"], "observations": observations,
                                  "meta": data.get("meta") or {}}
        if data.get("id"):
            kwargs["id"] = data["id"]
        for key in ("created", "updated"):
            if data.get(key):
                kwargs[key] = parse_time(data[key])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, raw: bytes | str, source: str = "<case>") -> Case:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InputError(source, None, f"not valid JSON: {exc}") from exc
        return cls.from_dict(data, source)
