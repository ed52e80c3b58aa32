"""Kubernetes API server audit events (``audit.k8s.io`` ``Event``, as the log backend writes them one per
line, or as cloud providers forward them). SigmaHQ's rules use the event's own dotted names (``verb``,
``objectRef.resource``, ``responseStatus.code``); the log source is ``product: kubernetes``,
``service: audit`` and, as some of those rules also name it, ``category: application``."""

from __future__ import annotations

from typing import Mapping

from ttpscope.ingest.logsource import Family, LogSource, register

AUDIT = LogSource("kubernetes", "audit", "application")


def recognise(fields: Mapping[str, str]) -> LogSource | None:
    if fields.get("kind") == "Event" and str(fields.get("apiVersion", "")).startswith("audit.k8s.io/"):
        return AUDIT
    if "verb" in fields and "auditID" in fields and "requestURI" in fields:
        return AUDIT
    return None


FAMILY = register(Family(
    "kubernetes-audit", recognise,
    entities={"time": ("requestReceivedTimestamp", "stageTimestamp", "timestamp"),
              "user": ("user.username", "impersonatedUser.username"),
              "src_ip": ("sourceIPs",),
              "account": ("objectRef.namespace",)}))
