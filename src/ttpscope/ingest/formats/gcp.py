"""Google Cloud Audit Logs (Cloud Logging ``LogEntry`` with an ``AuditLog`` ``protoPayload``) and Google
Workspace admin/login activity.

Cloud Logging exports a ``LogEntry``: ``protoPayload.methodName``, ``protoPayload.serviceName``,
``protoPayload.authenticationInfo.principalEmail``, ``logName`` (``.../logs/cloudaudit.googleapis.com%2F
activity``). SigmaHQ's ``gcp.audit`` rules name the method ``gcp.audit.method_name`` (the Elastic
integration's spelling), so ``protoPayload.methodName`` is renamed to it; their few ``data.protoPayload.*``
names are the same entry under a ``data`` envelope, kept as they arrive.
"""

from __future__ import annotations

from typing import Mapping

from ttpscope.ingest.logsource import Family, LogSource, register

AUDIT = LogSource("gcp", "gcp.audit")
WORKSPACE_ADMIN = LogSource("gcp", "google_workspace.admin")
WORKSPACE_LOGIN = LogSource("gcp", "google_workspace.login")
_AUDIT_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"


def recognise(fields: Mapping[str, str]) -> LogSource | None:
    for prefix in ("protoPayload.", "data.protoPayload."):
        kind = fields.get(prefix + "@type")
        if kind == _AUDIT_TYPE or (kind is None and prefix + "methodName" in fields
                                   and prefix + "serviceName" in fields):
            service = fields.get(prefix + "serviceName")
            if service == "login.googleapis.com":
                return WORKSPACE_LOGIN
            if service == "admin.googleapis.com":
                return WORKSPACE_ADMIN
            return AUDIT
    if "gcp.audit.method_name" in fields:
        return AUDIT
    # the Workspace Admin SDK Reports API: id.applicationName + events
    app = fields.get("id.applicationName")
    if app and "kind" in fields and str(fields["kind"]).startswith("admin#reports"):
        return WORKSPACE_LOGIN if app == "login" else WORKSPACE_ADMIN if app == "admin" else None
    return None


FAMILY = register(Family(
    "gcp-audit", recognise,
    renames={"protoPayload.methodName": "gcp.audit.method_name"},
    entities={"time": ("timestamp", "receiveTimestamp", "id.time", "data.timestamp"),
              "user": ("protoPayload.authenticationInfo.principalEmail",
                       "data.protoPayload.authenticationInfo.principalEmail", "actor.email"),
              "src_ip": ("protoPayload.requestMetadata.callerIp", "data.protoPayload.requestMetadata.callerIp",
                         "ipAddress"),
              "account": ("resource.labels.project_id", "data.resource.labels.project_id", "id.customerId"),
              "region": ("resource.labels.location", "resource.labels.zone", "resource.labels.region")}))
