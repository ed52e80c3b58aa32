"""Detections (rule × event) and the Observations they become.

JSON shape of a detection (``--json`` list items, ``--jsonl`` lines)::

    {"rule_id", "title", "level", "techniques": [...], "tactics": [...], "time", "host", "user",
     "source": input file (archive members as "archive.zip!member"), "record": EVTX record id or line number,
     "event": {field: value}}

Each detection yields one :class:`~ttpscope.model.Observation` per technique of its rule
(``source_kind="sigma"``, ``source_ref`` = rule id); a rule without techniques still yields the detection,
and no observation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ttpscope.model import Observation

# how much a hit of a rule of this level says the technique happened
LEVEL_CONFIDENCE = {"critical": 0.95, "high": 0.85, "medium": 0.7, "low": 0.5, "informational": 0.3}
USER_FIELDS = ("User", "TargetUserName", "SubjectUserName", "AccountName", "UserName", "user.name")
DOMAIN_FOR = {"TargetUserName": "TargetDomainName", "SubjectUserName": "SubjectDomainName", "AccountName": "Domain"}
_NO_USER = {"", "-", "SYSTEM"}


def event_user(event: dict[str, Any]) -> str | None:
    """The acting/affected account of an event, DOMAIN\\name when the domain is known."""
    for name in USER_FIELDS:
        value = event.get(name)
        if isinstance(value, str) and value.strip() and value not in ("-",):
            domain = event.get(DOMAIN_FOR.get(name, ""))
            if domain and "\\" not in value and domain != "-":
                return f"{domain}\\{value}"
            return value
    return None


@dataclass
class Detection:
    """One rule matching one event."""

    rule_id: str
    title: str
    level: str | None
    techniques: list[str]
    tactics: list[str]
    time: datetime | None
    host: str | None
    user: str | None
    source: str
    record: int | None
    event: dict[str, Any]
    matched: dict[str, Any] = field(default_factory=dict)  # the event's values of the fields the rule tests
    logsource: str | None = None  # the event's log source, e.g. "windows/sysmon/process_creation"
    src_ip: str | None = None
    dst_ip: str | None = None
    account: str | None = None  # cloud account / tenant / project
    region: str | None = None

    def sort_key(self) -> tuple:
        return (self.time or datetime.min.replace(tzinfo=timezone.utc), self.source, self.record or 0, self.rule_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id, "title": self.title, "level": self.level,
            "techniques": list(self.techniques), "tactics": list(self.tactics),
            "time": self.time.isoformat().replace("+00:00", "Z") if self.time else None,
            "host": self.host, "user": self.user, "source": self.source, "record": self.record,
            "logsource": self.logsource, "src_ip": self.src_ip, "dst_ip": self.dst_ip, "account": self.account,
            "region": self.region, "event": self.event,
        }

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


def observations_of(detections: list[Detection], kb=None) -> list[Observation]:
    return [o for d in detections for o in d.observations(kb)]
