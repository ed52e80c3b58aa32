"""Detections (rule × event; the record is :class:`ttpscope.model.Detection`) and the Observations they become.

JSON shape of a detection (``--json`` list items, ``--jsonl`` lines)::

    {"rule_id", "title", "level", "techniques": [...], "tactics": [...], "time", "host", "user",
     "source": input file (archive members as "archive.zip!member"), "record": EVTX record id or line number,
     "event": {field: value}}

Each detection yields one :class:`~ttpscope.model.Observation` per technique of its rule
(``source_kind="sigma"``, ``source_ref`` = rule id); a rule without techniques still yields the detection,
and no observation.
"""

from __future__ import annotations

from typing import Any

from ttpscope.model import LEVEL_CONFIDENCE, Detection, Observation  # noqa: F401 (re-exported)

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


def observations_of(detections: list[Detection], kb=None) -> list[Observation]:
    return [o for d in detections for o in d.observations(kb)]
