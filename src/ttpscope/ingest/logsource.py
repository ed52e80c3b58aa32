"""Where an event came from: its Sigma log source (product, category, service) and its entity fields.

Every event class carries a :class:`LogSource` recognised from the event's content, never from a file
name. A *family* (Windows event log, AWS CloudTrail, Zeek, Linux auditd, ...) is registered once with
:func:`register`: how to recognise its events, and which of its fields hold the shared entity vocabulary
(time, host, user, source/destination IP, cloud account/tenant/project, region). Families are tried in
registration order; the first that recognises a record names its log source. A record no family knows
has the log source :data:`UNKNOWN`, and no rule of any product runs on it.

    from ttpscope.ingest.logsource import recognise
    family, source = recognise(fields)     # fields: one flat record (see ttpscope.ingest.flatten)
    source.admits({"product": "aws", "service": "cloudtrail"})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

ENTITY_KINDS = ("time", "host", "user", "src_ip", "dst_ip", "account", "region")


@dataclass(frozen=True, slots=True)
class LogSource:
    """A Sigma log source. ``None`` means the attribute is not known for these events."""

    product: str | None = None
    service: str | None = None
    category: str | None = None

    def admits(self, rule_logsource: Mapping[str, str | None]) -> bool:
        """Whether a rule with this ``logsource`` may run here: every attribute the rule names must be
        known here and equal (case-insensitive). A rule naming nothing runs nowhere by itself."""
        named = {k: (v or "").lower() for k in ("product", "service", "category")
                 if (v := rule_logsource.get(k))}
        if not named:
            return False
        for key, want in named.items():
            have = getattr(self, key)
            if have is None or have.lower() != want:
                return False
        return True

    @property
    def known(self) -> bool:
        return any(v is not None for v in (self.product, self.service, self.category))

    def label(self) -> str:
        return "/".join(v for v in (self.product, self.service, self.category) if v) or "unknown"


UNKNOWN = LogSource()


@dataclass(frozen=True)
class Family:
    """One kind of log: how its records are recognised and where their entity fields are.

    ``recognise(fields)`` returns the record's :class:`LogSource`, or ``None`` when the record is not of
    this family. ``entities`` maps an entity kind (see :data:`ENTITY_KINDS`) to the field names that hold
    it, first present wins. ``renames`` maps a field name as the family's records spell it to the name
    Sigma rules of that log source use (e.g. Entra ID's diagnostic export ``properties.resultType`` →
    ``ResultType``), applied at ingest so that every engine sees the rules' names; a rename whose target
    the record already has is skipped. ``fill`` gives fields a value when the record lacks them (Sentinel's
    ``SecurityEvent`` without ``Channel`` is still the Security log). ``entities`` are looked up after the
    renames.

    Recognition is cached per record *shape* (its field names) and the values of the
    ``discriminators`` of every registered family (plus Channel, Provider_Name and EventID): a family whose
    answer depends on a field's value, not only on which fields are present, names that field there.
    """

    name: str
    recognise: Callable[[Mapping[str, str]], LogSource | None]
    entities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    renames: Mapping[str, str] = field(default_factory=dict)
    fill: Mapping[str, str] = field(default_factory=dict)
    discriminators: tuple[str, ...] = ()

    def entity(self, fields: Mapping[str, str], kind: str) -> str | None:
        for name in self.entities.get(kind, ()):
            value = fields.get(name)
            if value:
                return value
        return None


FAMILIES: list[Family] = []
BASE_DISCRIMINATORS = ("Channel", "Provider_Name", "EventID")


def discriminators() -> tuple[str, ...]:
    """Fields whose values (not only presence) decide some family's log source."""
    return tuple(dict.fromkeys([*BASE_DISCRIMINATORS, *(d for f in FAMILIES for d in f.discriminators)]))


def parse_logsource(text: str) -> LogSource:
    """``product=aws,service=cloudtrail`` (as given to ``--logsource``) → a LogSource."""
    values: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in ("product", "service", "category") or not value:
            raise ValueError(f"'{part}': expected product=…, service=… or category=…")
        values[key] = value.lower()
    if not values:
        raise ValueError(f"'{text}': name at least one of product, service, category")
    return LogSource(**values)


def register(family: Family) -> Family:
    """Add a family (a later registration of the same name replaces the earlier one in place)."""
    for i, known in enumerate(FAMILIES):
        if known.name == family.name:
            FAMILIES[i] = family
            return family
    FAMILIES.append(family)
    return family


def recognise(fields: Mapping[str, str]) -> tuple[Family | None, LogSource]:
    """The family and log source of one flat record; ``(None, UNKNOWN)`` when no family knows it."""
    for family in FAMILIES:
        source = family.recognise(fields)
        if source is not None:
            return family, source
    return None, UNKNOWN
