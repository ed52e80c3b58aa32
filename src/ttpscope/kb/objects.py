"""Typed records of the ATT&CK knowledge base, keyed by their ATT&CK ids (T1059.001, G0016, S0002...).

Slotted dataclasses: the Enterprise bundle yields ~25k of these, and slots keep both the memory and
the warm-cache (pickle) load small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Tactic:
    id: str  # TA0002
    shortname: str  # execution
    name: str
    description: str
    order: int  # position in the matrix (x-mitre-matrix.tactic_refs)
    stix_id: str = ""
    url: str = ""


@dataclass(slots=True)
class Technique:
    id: str  # T1059 or T1059.001
    name: str
    description: str
    tactics: list[str]  # tactic shortnames, in matrix order
    platforms: list[str]
    is_subtechnique: bool
    parent: str | None = None
    subtechniques: list[str] = field(default_factory=list)
    data_sources: list[str] = field(default_factory=list)  # legacy "Process: Process Creation" strings
    detection: str = ""  # legacy free-text detection advice
    deprecated: bool = False
    stix_id: str = ""
    url: str = ""


@dataclass(slots=True)
class Group:
    id: str  # G0016
    name: str
    aliases: list[str]  # ATT&CK's own aliases (the name first)
    description: str
    misp_aliases: list[str] = field(default_factory=list)  # synonyms added from MISP galaxies
    context: dict[str, Any] = field(default_factory=dict)  # MISP metadata: country, victims, sectors
    deprecated: bool = False
    stix_id: str = ""
    url: str = ""


@dataclass(slots=True)
class Software:
    id: str  # S0002
    name: str
    type: str  # malware | tool
    aliases: list[str]
    platforms: list[str]
    description: str
    deprecated: bool = False
    stix_id: str = ""
    url: str = ""


@dataclass(slots=True)
class Campaign:
    id: str  # C0024
    name: str
    aliases: list[str]
    description: str
    first_seen: str | None = None
    last_seen: str | None = None
    groups: list[str] = field(default_factory=list)  # attributed-to group ids
    deprecated: bool = False
    stix_id: str = ""
    url: str = ""


@dataclass(slots=True)
class Mitigation:
    id: str  # M1036
    name: str
    description: str
    deprecated: bool = False
    stix_id: str = ""
    url: str = ""


@dataclass(slots=True)
class DataSource:
    id: str  # DS0009
    name: str
    description: str
    stix_id: str = ""


@dataclass(slots=True)
class DataComponent:
    id: str  # DC0032 (v18) or the STIX id where the bundle gives no ATT&CK id
    name: str
    data_source: str | None  # data source id (pre-v18 bundles)
    description: str
    log_sources: list[dict[str, str]] = field(default_factory=list)  # v18: [{name, channel}]
    stix_id: str = ""


@dataclass(slots=True)
class Analytic:
    id: str  # AN1881
    name: str
    description: str
    platforms: list[str]
    log_sources: list[dict[str, str]]  # [{data_component, name, channel}]
    stix_id: str = ""


@dataclass(slots=True)
class DetectionStrategy:
    id: str  # DET0738
    name: str
    analytics: list[str]
    techniques: list[str] = field(default_factory=list)
    stix_id: str = ""


@dataclass(slots=True)
class Procedure:
    """A ``uses`` relationship from a group, software or campaign to a technique: a procedure example."""

    source_id: str  # G..., S..., C...
    source_type: str  # group | software | campaign
    technique_id: str
    description: str
    citations: tuple[str, ...] = ()  # source names of the references
    urls: tuple[str, ...] = ()


@dataclass(slots=True, frozen=True)
class ProfileEntry:
    """One technique of a group's profile and the path it came by."""

    technique_id: str
    via: str  # direct | software | campaign
    via_id: str | None = None  # the software or campaign id for indirect entries


@dataclass(slots=True)
class Resolution:
    """The answer to an id lookup: the current id and, if the id given was old, why it changed."""

    requested: str
    id: str | None
    note: str | None = None
