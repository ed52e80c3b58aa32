"""GitHub organisation / enterprise audit log events (REST API, streaming, or the JSON export):
``action`` (``repo.create``, ``org.remove_member``...), ``actor``, ``@timestamp`` in milliseconds,
``org``, ``repo``. SigmaHQ's GitHub rules match on ``action``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Mapping

from ttpscope.ingest.logsource import Family, LogSource, register

AUDIT = LogSource("github", "audit")


def recognise(fields: Mapping[str, str]) -> LogSource | None:
    action = fields.get("action")
    if action is None or "." not in action or "actor" not in fields:
        return None
    if "_document_id" in fields or "org" in fields or "business" in fields or "repo" in fields:
        return AUDIT
    return None


def iso_times(fields: dict[str, str]) -> dict[str, str]:
    """GitHub writes ``@timestamp`` and ``created_at`` as epoch milliseconds: ISO-8601 UTC instead, so
    the event has a time on the timeline."""
    for name in ("@timestamp", "created_at"):
        value = fields.get(name)
        if value and value.isdigit() and len(value) >= 12:
            when = datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)
            fields[name] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return fields


FAMILY = register(Family(
    "github-audit", recognise,
    entities={"time": ("@timestamp", "created_at"),
              "user": ("actor", "user"),
              "src_ip": ("actor_ip",),
              "account": ("org", "business")}))
