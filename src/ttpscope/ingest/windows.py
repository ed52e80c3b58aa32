"""The Windows log families: event log records (EVTX, winlogbeat, NXLog), the Microsoft Sentinel / Log
Analytics table shapes, and Microsoft Defender XDR advanced-hunting tables.

All are ``product: windows``. Where a record names its event log (``Channel``, or ``EventLog`` in the
Log Analytics ``Event`` table) the service comes from pySigma's Windows channel table and the category from
the Sysmon / Security-auditing / PowerShell event ids, the same tables the detection pipelines add as
conditions (so the rules' channel and EventID checks keep deciding what runs where). Defender XDR records
carry no channel: the table they come from names the category (``DeviceProcessEvents`` →
``process_creation``), and their columns get the Sigma names back through the inverse of pySigma's
Microsoft XDR field mappings (``FolderPath`` → ``Image``, ``ProcessCommandLine`` → ``CommandLine``).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any, Mapping

from ttpscope.ingest.logsource import Family, LogSource, register


def pysigma_release() -> str:
    """pySigma and its plugins as installed (their dist-info folders name the versions), found without
    importing pySigma (``importlib.metadata`` takes a quarter of a second to answer)."""
    spec = importlib.util.find_spec("sigma")
    names: set[str] = set()
    for loc in list(spec.submodule_search_locations or []) if spec is not None else []:
        try:  # a namespace package: pySigma and each plugin may sit in another site folder
            names.update(p.name for p in Path(loc).parent.iterdir() if p.name.lower().startswith("pysigma")
                         and p.name.endswith((".dist-info", ".egg-info", ".egg-link")))
        except OSError:
            continue
    return ",".join(sorted(names)) or "pysigma ?"


def _pysigma_tables() -> dict[str, Any]:
    """pySigma's Windows tables (channels by service, Sysmon and audit event ids by category, Defender XDR
    tables and field names) as plain data, kept in the rules cache per pySigma release: importing pySigma's
    pipelines for them costs half a second a run."""
    from ttpscope.paths import cache_dir, load_cache, save_cache

    file = None
    try:
        file = cache_dir("rules") / f"pysigma-tables-{hashlib.sha1(pysigma_release().encode()).hexdigest()[:16]}.pickle"
        tables = load_cache(file, dict, "pySigma table cache")
    except OSError:  # no writable home: read pySigma each time
        tables = None
    names = ("services", "xdr_tables", "xdr_fields", "sysmon", "audit")
    if tables is not None and set(tables) == set(names):
        return tables
    from sigma.pipelines.common import windows_logsource_mapping
    from sigma.pipelines.microsoftxdr.mappings import CATEGORY_TO_TABLE_MAPPINGS, MICROSOFT_XDR_FIELD_MAPPINGS
    from sigma.pipelines.sysmon.sysmon import sysmon_generic_logsource_eventid_mapping
    from sigma.pipelines.windows.windows import generic_logsource_to_windows_audit_event_mapping

    tables = dict(zip(names, (windows_logsource_mapping, CATEGORY_TO_TABLE_MAPPINGS,
                              MICROSOFT_XDR_FIELD_MAPPINGS.table_mappings, sysmon_generic_logsource_eventid_mapping,
                              generic_logsource_to_windows_audit_event_mapping)))
    if file is not None:
        save_cache(file, tables, "pySigma table cache")
    return tables


_TABLES = _pysigma_tables()

# Channels pySigma's table lacks (the detection compiler maps the same services)
EXTRA_SERVICE_CHANNELS = {
    "iis-configuration": "Microsoft-IIS-Configuration/Operational",
    "smbserver-connectivity": "Microsoft-Windows-SmbServer/Connectivity",
    "ldap": "Microsoft-Windows-LDAP-Client/Debug",
}


def _service_of_channel() -> dict[str, str]:
    out: dict[str, str] = {}
    for service, channels in {**_TABLES["services"], **EXTRA_SERVICE_CHANNELS}.items():
        for channel in [channels] if isinstance(channels, str) else channels:
            out.setdefault(channel.lower(), service)
    return out


def _categories_by_eid(mapping: Mapping, key=lambda v: v) -> dict[str, str]:
    """event id → the first (most specific) category naming it alone."""
    out: dict[str, str] = {}
    for category, ids in mapping.items():
        ids = key(ids)
        for eid in ids if isinstance(ids, list) else [ids]:
            out.setdefault(str(eid), category)
    return out


SERVICE_OF_CHANNEL = _service_of_channel()
# Sigma's `category: antivirus` (rules naming no product, fields Signature and Filename) on Windows is
# Microsoft Defender's Operational log: its malware detected / action taken / action failed / suspicious
# behaviour events, which carry ThreatName and Path
DEFENDER_CHANNEL = "Microsoft-Windows-Windows Defender/Operational"
ANTIVIRUS_EVENT_IDS = (1006, 1007, 1008, 1015, 1116, 1117, 1118, 1119)
ANTIVIRUS_FIELDS = {"Signature": "ThreatName", "Filename": "Path"}
CATEGORY_OF_EID = {
    "sysmon": _categories_by_eid(_TABLES["sysmon"]),
    "security": _categories_by_eid(_TABLES["audit"], lambda v: v["EventID"]),
    "powershell": {"4103": "ps_module", "4104": "ps_script"},
    "windefend": {str(eid): "antivirus" for eid in ANTIVIRUS_EVENT_IDS},
    "powershell-classic": {"400": "ps_classic_start", "600": "ps_classic_provider_start",
                           "800": "ps_classic_script"},
}

TIME = ("TimeCreated", "@timestamp", "TimeGenerated", "Timestamp", "timestamp", "EventTime", "UtcTime",
        "event.created", "time", "_time")
HOST = ("Computer", "DeviceName", "host.name", "hostname", "host")
USER = ("User", "TargetUserName", "SubjectUserName", "AccountName", "UserName", "user.name")
SRC_IP = ("IpAddress", "SourceIp", "SourceAddress", "ClientAddress", "LocalIP")
DST_IP = ("DestinationIp", "DestAddress", "RemoteIP")
ENTITIES = {"time": TIME, "host": HOST, "user": USER, "src_ip": SRC_IP, "dst_ip": DST_IP,
            "account": ("TenantId", "tenantId")}


def channel_source(channel: str | None, event_id: str | None) -> LogSource:
    """The log source of a Windows event log record."""
    service = SERVICE_OF_CHANNEL.get((channel or "").lower())
    category = CATEGORY_OF_EID.get(service or "", {}).get(str(event_id)) if event_id is not None else None
    return LogSource("windows", service, category)


def _event_log(fields: Mapping[str, str]) -> LogSource | None:
    """EVTX, winlogbeat (``winlog.channel`` is flattened to ``Channel``), NXLog, Sentinel ``WindowsEvent``
    and ``SecurityEvent`` with their ``Channel`` column."""
    channel = fields.get("Channel")
    if channel is None:  # an EVTX record without a channel (e.g. the event forwarder's own events)
        if "Provider_Name" in fields and "EventID" in fields and "EventRecordID" in fields:
            return LogSource("windows")
        return None
    if channel.startswith("Linux-"):  # Sysmon for Linux writes EVTX-shaped records too
        return None
    return channel_source(channel, fields.get("EventID"))


def _security_event(fields: Mapping[str, str]) -> LogSource | None:
    """Sentinel's ``SecurityEvent`` table exported without its ``Channel`` column."""
    if fields.get("Type") == "SecurityEvent" or (
            "EventID" in fields and "EventSourceName" in fields and "Activity" in fields):
        return channel_source("Security", fields.get("EventID"))
    return None


def _log_analytics_event(fields: Mapping[str, str]) -> LogSource | None:
    """Log Analytics' ``Event`` table: ``EventLog`` names the channel, ``Source`` the provider."""
    if ("EventLog" in fields and "EventID" in fields) or (fields.get("Type") == "Event" and "EventLog" in fields):
        return channel_source(fields.get("EventLog"), fields.get("EventID"))
    return None


# ---------------------------------------------------------------------------------------------- Defender XDR
XDR_CATEGORY = {table: category for category, table in reversed(_TABLES["xdr_tables"].items())}
XDR_CATEGORY.update({"DeviceEvents": None, "DeviceLogonEvents": None})
# columns that tell the tables apart (in exports the table name is often not a column)
XDR_SIGNATURES = (
    ("DeviceProcessEvents", ("ProcessCommandLine", "InitiatingProcessFileName", "ProcessId")),
    ("DeviceNetworkEvents", ("RemoteIP", "RemotePort", "LocalIP")),
    ("DeviceRegistryEvents", ("RegistryKey", "RegistryValueName")),
    ("DeviceImageLoadEvents", ("FolderPath", "InitiatingProcessFolderPath", "SHA256")),
    ("DeviceLogonEvents", ("LogonType", "AccountName", "Protocol")),
    ("DeviceFileEvents", ("FolderPath", "FileName", "InitiatingProcessFolderPath")),
    ("DeviceEvents", ("ActionType", "AdditionalFields")),
)
XDR_PREFIXES = ("properties.",)  # the streaming API's {"category": "AdvancedHunting-<table>", "properties": {..}}


def xdr_table(fields: Mapping[str, str]) -> str | None:
    """The advanced-hunting table of a record: named (``Type``, ``$table``, the streaming API's
    ``category``) or, failing that, told by its columns."""
    for name in ("Type", "$table", "category"):
        value = fields.get(name) or ""
        table = value.removeprefix("AdvancedHunting-")
        if table in XDR_CATEGORY:
            return table
    if "DeviceName" not in fields and "properties.DeviceName" not in fields:
        return None
    if "ActionType" not in fields and "properties.ActionType" not in fields:
        return None
    for table, columns in XDR_SIGNATURES:
        if all(c in fields or f"properties.{c}" in fields for c in columns):
            return table
    return "DeviceEvents"


def _xdr(fields: Mapping[str, str]) -> LogSource | None:
    table = xdr_table(fields)
    if table is None:
        return None
    return LogSource("windows", None, XDR_CATEGORY[table])


def _xdr_renames() -> dict[str, str]:
    """XDR column → Sigma field, for every table at once (a table's columns map to one Sigma name each;
    where tables disagree the process-creation meaning wins, as most rules are process rules)."""
    out: dict[str, str] = {}
    for table in ("DeviceProcessEvents", "DeviceImageLoadEvents", "DeviceFileEvents", "DeviceNetworkEvents",
                  "DeviceRegistryEvents"):
        for sigma_name, xdr_name in _TABLES["xdr_fields"].get(table, {}).items():
            for column in [xdr_name] if isinstance(xdr_name, str) else xdr_name:
                if column != sigma_name:
                    out.setdefault(column, sigma_name)
    out.pop("DeviceName", None)  # the host, not a network source name
    for column, sigma_name in list(out.items()):
        for prefix in XDR_PREFIXES:
            out[prefix + column] = sigma_name
    return out


WINDOWS = register(Family("windows", _event_log, ENTITIES, renames={"Provider": "Provider_Name"}))  # WindowsEvent
SENTINEL_SECURITY_EVENT = register(Family("windows-sentinel-securityevent", _security_event, ENTITIES,
                                          fill={"Channel": "Security"}))
LOG_ANALYTICS_EVENT = register(Family("windows-loganalytics-event", _log_analytics_event, ENTITIES,
                                      renames={"EventLog": "Channel", "Source": "Provider_Name"}))
DEFENDER_XDR = register(Family("windows-defender-xdr", _xdr, {
    **ENTITIES, "user": ("User", "AccountName", "InitiatingProcessAccountName", "properties.AccountName"),
    "host": ("DeviceName", "properties.DeviceName"), "time": ("Timestamp", "properties.Timestamp", "time"),
    "src_ip": ("SourceIp", "LocalIP"), "dst_ip": ("DestinationIp", "RemoteIP")},
    renames=_xdr_renames(), discriminators=("Type", "$table", "category")))
