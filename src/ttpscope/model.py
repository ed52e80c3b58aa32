"""The one data contract: an Observation is a technique seen, with its evidence; a Case is a set of them.

Every producer (Sigma detection, report extraction, manual entry, import) emits Observations and every
analysis consumes a Case, so the parts never need to know about each other.
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


@dataclass(slots=True)
class Observation:
    """A technique seen, with the evidence that says so.

    ``source_ref`` names what produced it: a Sigma rule id, or ``document#start-end`` for a sentence.
    ``evidence`` is the proof itself: matched event fields, or ``{"sentence": ...}``.
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

    def __post_init__(self) -> None:
        self.validate()

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
        if self.time is not None and not isinstance(self.time, datetime):
            self.time = parse_time(self.time)
        elif self.time is not None and self.time.tzinfo is None:
            self.time = self.time.replace(tzinfo=timezone.utc)

    def to_dict(self) -> dict[str, Any]:
        return {
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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Observation:
        if not isinstance(data, dict):
            raise ValueError("an observation must be a JSON object")
        missing = [k for k in ("technique_id", "source_kind", "source_ref") if k not in data]
        if missing:
            raise ValueError(f"observation lacks {', '.join(missing)}")
        kwargs = {k: data[k] for k in (
            "technique_id", "source_kind", "source_ref", "evidence", "tactic_ids",
            "host", "user", "document", "confidence", "id") if data.get(k) is not None}
        kwargs["time"] = parse_time(data.get("time"))
        return cls(**kwargs)


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
