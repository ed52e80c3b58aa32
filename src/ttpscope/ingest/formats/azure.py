"""Microsoft cloud and identity logs: Azure Activity, Entra ID (Azure AD) sign-in and audit logs, Entra ID
risk detections, and the Microsoft 365 unified audit log / Sentinel ``OfficeActivity``.

Each arrives in two shapes, and both are recognised:

* the **Azure diagnostic export** (Event Hub, storage account, ``az monitor``): ``time``, ``resourceId``,
  ``operationName``, ``category`` (``SignInLogs``, ``NonInteractiveUserSignInLogs``, ``AuditLogs``,
  ``Administrative``...), ``resultType``, ``callerIpAddress`` and the payload under ``properties``;
* the **Log Analytics / Microsoft Sentinel table** rows, named by ``Type`` (``SigninLogs``,
  ``AADNonInteractiveUserSignInLogs``, ``AuditLogs``, ``AzureActivity``, ``OfficeActivity``...) with the
  payload as top-level PascalCase columns.

SigmaHQ's Entra ID rules name the Sentinel columns (``ResultType``, ``AuthenticationRequirement``,
``DeviceDetail.isCompliant``...), so the diagnostic export's ``properties.*`` payload fields are renamed to
them; field names compare ignoring case, so only the path matters. ``properties.message``, which the
rules also use, keeps its name. SigmaHQ's Activity rules name ``operationName`` with the operation's
resource-provider value, which the Sentinel table calls ``OperationNameValue``.
"""

from __future__ import annotations

from typing import Mapping

from ttpscope.ingest.logsource import Family, LogSource, register

ACTIVITY = LogSource("azure", "activitylogs")
SIGNIN = LogSource("azure", "signinlogs")
AUDIT = LogSource("azure", "auditlogs")
RISK = LogSource("azure", "riskdetection")
M365 = LogSource("m365", "audit")

# Sentinel / Log Analytics table → log source
TABLES = {
    "SigninLogs": SIGNIN, "AADNonInteractiveUserSignInLogs": SIGNIN, "AADServicePrincipalSignInLogs": SIGNIN,
    "AADManagedIdentitySignInLogs": SIGNIN, "AuditLogs": AUDIT, "AzureActivity": ACTIVITY,
    "AADUserRiskEvents": RISK, "AADRiskyUsers": RISK, "OfficeActivity": M365,
}
# diagnostic export category → log source (Azure Activity categories are the rest)
CATEGORIES = {
    "signinlogs": SIGNIN, "noninteractiveusersigninlogs": SIGNIN, "serviceprincipalsigninlogs": SIGNIN,
    "managedidentitysigninlogs": SIGNIN, "auditlogs": AUDIT, "userriskevents": RISK, "riskyusers": RISK,
    "administrative": ACTIVITY, "security": ACTIVITY, "servicehealth": ACTIVITY, "alert": ACTIVITY,
    "recommendation": ACTIVITY, "policy": ACTIVITY, "autoscale": ACTIVITY, "resourcehealth": ACTIVITY,
}
# M365 unified audit log workloads (the Management Activity API has no table name)
M365_WORKLOADS = {"Exchange", "SharePoint", "OneDrive", "AzureActiveDirectory", "MicrosoftTeams",
                  "SecurityComplianceCenter", "PowerBI", "MicrosoftForms", "Yammer", "ThreatIntelligence",
                  "MicrosoftStream", "Dynamics 365", "PowerApps", "MicrosoftFlow", "Compliance"}


def _table_or_category(fields: Mapping[str, str]) -> LogSource | None:
    table = fields.get("Type")
    if table is not None:
        source = TABLES.get(table)
        if source is not None:
            return source
    category = fields.get("category")
    if category is not None and "operationName" in fields and ("resourceId" in fields or "time" in fields):
        return CATEGORIES.get(category.lower())
    return None


def recognise_activity(fields: Mapping[str, str]) -> LogSource | None:
    source = _table_or_category(fields)
    return source if source is ACTIVITY else None


def recognise_entra(fields: Mapping[str, str]) -> LogSource | None:
    source = _table_or_category(fields)
    return source if source is SIGNIN or source is AUDIT or source is RISK else None


def recognise_m365(fields: Mapping[str, str]) -> LogSource | None:
    if fields.get("Type") == "OfficeActivity":
        return M365
    if "Operation" in fields and "Workload" in fields and "CreationTime" in fields and \
            ("RecordType" in fields or fields["Workload"] in M365_WORKLOADS):
        return M365
    return None


# diagnostic-export payload (properties.*) → the Sentinel column names SigmaHQ's rules use
_SIGNIN_PROPERTIES = (
    "userPrincipalName", "userDisplayName", "userId", "appId", "appDisplayName", "ipAddress", "clientAppUsed",
    "userAgent", "correlationId", "conditionalAccessStatus", "isInteractive", "authenticationRequirement",
    "resourceDisplayName", "resourceId", "riskState", "riskLevelAggregated", "riskLevelDuringSignIn",
    "riskDetail", "authenticationProtocol", "tokenIssuerType", "homeTenantId", "resourceTenantId",
    "status.errorCode", "status.failureReason", "status.additionalDetails", "deviceDetail.deviceId",
    "deviceDetail.displayName", "deviceDetail.operatingSystem", "deviceDetail.browser",
    "deviceDetail.isCompliant", "deviceDetail.isManaged", "deviceDetail.trustType", "location.city",
    "location.countryOrRegion", "location.state", "networkLocationDetails", "authenticationDetails",
    "appliedConditionalAccessPolicies", "activityDisplayName", "activityDateTime", "loggedByService",
    "operationType", "result", "resultReason", "initiatedBy.user.userPrincipalName",
    "initiatedBy.user.ipAddress", "initiatedBy.app.displayName", "targetResources", "additionalDetails",
    "riskEventType", "detectionTimingType", "riskType",
)
RENAMES = {f"properties.{name}": name[:1].upper() + name[1:] for name in _SIGNIN_PROPERTIES}
RENAMES.update({"properties.ipAddress": "IPAddress", "properties.appliedConditionalAccessPolicies":
                "ConditionalAccessPolicies", "properties.status.errorCode": "Status.errorCode"})
_USER = ("UserPrincipalName", "properties.userPrincipalName", "UserId", "Caller", "caller",
         "InitiatedBy.user.userPrincipalName", "properties.initiatedBy.user.userPrincipalName",
         "identity.claims.http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn")
_SRC_IP = ("IPAddress", "IpAddress", "properties.ipAddress", "callerIpAddress", "CallerIpAddress", "ClientIP",
           "ClientIPAddress", "ActorIpAddress")
_TIME = ("TimeGenerated", "time", "CreationTime", "CreatedDateTime", "ActivityDateTime", "EventTimestamp")

ACTIVITY_FAMILY = register(Family(
    "azure-activity", recognise_activity,
    # the Sentinel AzureActivity table: OperationNameValue is what the rules call operationName
    renames={"OperationNameValue": "operationName", "OperationName": "OperationDisplayName"},
    entities={"time": _TIME, "user": _USER, "src_ip": _SRC_IP,
              "account": ("SubscriptionId", "TenantId", "tenantId"), "region": ("Location", "location")}))

ENTRA_FAMILY = register(Family(
    "entra-id", recognise_entra, renames=RENAMES,
    entities={"time": _TIME, "user": _USER, "src_ip": _SRC_IP,
              "account": ("TenantId", "AADTenantId", "tenantId", "properties.homeTenantId"),
              "region": ("Location", "properties.location.countryOrRegion", "location")}))

M365_FAMILY = register(Family(
    "m365-audit", recognise_m365,
    entities={"time": ("CreationTime", "TimeGenerated"), "user": ("UserId", "UserKey"),
              "src_ip": ("ClientIP", "ClientIPAddress", "ActorIpAddress"),
              "account": ("OrganizationId", "TenantId")}))


# Azure Monitor VM insights connection records (``VMConnection``): no SigmaHQ rule reads them, but they tie
# a VM's processes to their network peers, so they carry a log source and entities of their own.
VMCONNECTION = LogSource("azure", "vmconnection")


def recognise_vmconnection(fields: Mapping[str, str]) -> LogSource | None:
    return VMCONNECTION if fields.get("Type") == "VMConnection" else None


VMCONNECTION_FAMILY = register(Family(
    "azure-vmconnection", recognise_vmconnection,
    entities={"time": ("TimeGenerated",), "host": ("Computer",), "src_ip": ("SourceIp",),
              "dst_ip": ("DestinationIp", "RemoteIp")}))
