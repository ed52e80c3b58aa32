"""GitHub organisation / enterprise audit log events (REST API, streaming, or the JSON export):
``action`` (``repo.create``, ``org.remove_member``...), ``actor``, ``@timestamp`` in milliseconds,
``org``, ``repo``. SigmaHQ's GitHub rules match on ``action``."""

from __future__ import annotations

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


FAMILY = register(Family(
    "github-audit", recognise,
    entities={"time": ("@timestamp", "created_at"),
              "user": ("actor", "user"),
              "src_ip": ("actor_ip",),
              "account": ("org", "business")}))
