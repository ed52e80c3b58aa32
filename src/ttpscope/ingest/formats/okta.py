"""Okta System Log events (the System Log API / event hooks / exports): ``eventType``, ``actor``,
``client``, ``outcome``, ``securityContext``, ``debugContext``. SigmaHQ's Okta rules use the API's own
dotted names (``outcome.result``, ``actor.alternateId``), which the JSON flattening already gives."""

from __future__ import annotations

from typing import Mapping

from ttpscope.ingest.logsource import Family, LogSource, register

OKTA = LogSource("okta", "okta")


def recognise(fields: Mapping[str, str]) -> LogSource | None:
    if "eventType" in fields and "published" in fields and ("actor.id" in fields or "actor.alternateId" in fields
                                                           or "uuid" in fields and "legacyEventType" in fields):
        return OKTA
    return None


FAMILY = register(Family(
    "okta", recognise,
    entities={"time": ("published",),
              "user": ("actor.alternateId", "actor.displayName", "actor.id"),
              "src_ip": ("client.ipAddress", "request.ipChain"),
              "account": ("target.id",)}))
