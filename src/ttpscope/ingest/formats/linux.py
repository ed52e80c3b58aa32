"""Linux beyond raw audit logs: syslog and journald JSON records, Sysmon for Linux, and auoms audit records.

Shapes read (all arrive as JSON lines, through the JSON reader):

* **Syslog rows** of Azure Monitor / Microsoft Sentinel (``Type: Syslog``, ``SyslogMessage``,
  ``ProcessName``, ``Facility``, ``HostName``), **journald** exports (``journalctl -o json``: ``MESSAGE``,
  ``SYSLOG_IDENTIFIER``, ``_HOSTNAME``) and **ECS/rsyslog** JSON (``message`` with ``process.name`` or
  ``syslog.*``). Their log source is ``product: linux`` with the service SigmaHQ names after the program
  (``sshd``, ``cron``, ``vsftpd``, ``clamav``, ``guacamole``), else ``syslog``.
* **Sysmon for Linux**: its event XML inside a syslog message is unwrapped into the event's own fields
  (``Image``, ``CommandLine``, ``ParentImage``...; ``EventID``, ``Computer`` from ``System``); records that
  already have the EVTX shape are flattened by the JSON reader. The category follows the EventID (1
  process_creation, 3 network_connection, 11 file_event...), ``product: linux``.
* **Syslog text** (RFC 3164 / 5424 lines, e.g. ``/var/log/syslog`` where Sysmon for Linux writes its
  XML): :func:`read_syslog` gives each line the Syslog table's names and unwraps it the same way.
* **auoms** (the Azure Monitor audit daemon) records in syslog rows: the ``k=v`` payload becomes fields,
  ``type`` the auoms record type; an ``AUOMS_EXECVE`` record also gets the process-creation fields.

:func:`expand` does the unwrapping; the JSON reader calls it on each record that carries a syslog
message (a key lookup for every other record).
"""

from __future__ import annotations

import html
import io
import re
from datetime import datetime, timezone
from typing import Iterator, Mapping

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from ttpscope.ingest.formats import auditd
from ttpscope.ingest.logsource import Family, LogSource, register

_NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"
_SYSTEM_ATTRS = {("Provider", "Name"): "Provider_Name", ("Provider", "Guid"): "Provider_Guid",
                 ("TimeCreated", "SystemTime"): "TimeCreated", ("Execution", "ProcessID"): "ExecutionProcessID",
                 ("Execution", "ThreadID"): "ExecutionThreadID", ("Security", "UserId"): "UserID",
                 ("Security", "UserID"): "UserID"}
# envelope fields of a syslog row that say nothing once the message is unwrapped
_SYSLOG_BODY = ("SyslogMessage", "MESSAGE", "message", "EventData", "Data")


def event_xml_fields(xml: str) -> dict[str, str] | None:
    """An ``<Event>`` XML document (Sysmon for Linux, Windows event XML) → flat fields, named as the
    EVTX flattening names them; None when it is not event XML. The flat ``System`` + ``<Data Name=>``
    shape machines write is read by pattern (4x the XML parser's speed, and it survives a cut); anything
    else (``UserData``, no ``EventID`` found) goes through the (defused) XML parser."""
    if "<UserData" not in xml:
        fields = _cut_event_xml(xml)
        if fields is not None:
            if xml.rstrip().endswith("</Event>"):
                del fields["EventTruncated"]
            return fields
    try:
        root = ElementTree.fromstring(xml)
    except DefusedXmlException:
        return None
    except (ElementTree.ParseError, ValueError):
        return None
    out: dict[str, str] = {}
    for section in root:
        tag = section.tag.replace(_NS, "")
        if tag == "System":
            for child in section:
                name = child.tag.replace(_NS, "")
                for attr, value in child.attrib.items():
                    flat = _SYSTEM_ATTRS.get((name, attr))
                    if flat:
                        out[flat] = value
                if child.text and child.text.strip():
                    out[name] = child.text.strip()
        elif tag in ("EventData", "UserData"):
            for item in section.iter():
                if item is section:
                    continue
                name = item.get("Name") or item.tag.replace(_NS, "")
                if item.text is not None:
                    out[name.replace(" ", "")] = item.text
    return out


_SYSTEM_TEXT = re.compile(r"<(EventID|Version|Level|Task|Opcode|Keywords|EventRecordID|Channel|Computer)>"
                          r"([^<]*)</\1>")
_SYSTEM_ATTR = re.compile(r"<(Provider|TimeCreated|Execution|Security)\s([^>]*?)/?>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_DATA = re.compile(r'<Data Name="([^"]+)">([^<]*)(</Data>|$)')


def _cut_event_xml(xml: str) -> dict[str, str] | None:
    """Event XML that syslog cut short (its line limit truncates long command lines): the elements that
    are whole, and the cut data item's text so far, with ``EventTruncated: true``."""
    if "<System>" not in xml:
        return None
    out: dict[str, str] = {}
    for m in _SYSTEM_ATTR.finditer(xml):
        for attr, value in _ATTR.findall(m.group(2)):
            flat = _SYSTEM_ATTRS.get((m.group(1), attr))
            if flat:
                out[flat] = html.unescape(value)
    for name, value in _SYSTEM_TEXT.findall(xml):
        out[name] = html.unescape(value)
    for name, value, _close in _DATA.findall(xml):
        out[name.replace(" ", "")] = html.unescape(value)
    if "EventID" not in out:
        return None
    out["EventTruncated"] = "true"
    return out


def _message_body(fields: Mapping[str, str], message: str) -> str:
    """The ``k=v`` payload of an auoms/audit syslog message (the JSON may carry it apart, as EventData)."""
    body = fields.get("EventData") or fields.get("Data")
    if body:
        return body
    cut = message.find("): ")
    return message[cut + 3:] if cut >= 0 else message


def expand(fields: dict[str, str]) -> dict[str, str]:
    """A syslog-carried record → its own fields (Sysmon for Linux XML, auoms or audit ``k=v``); any other
    record unchanged."""
    realtime = fields.get("__REALTIME_TIMESTAMP")  # journald: epoch microseconds
    if realtime and realtime.isdigit():
        fields["__REALTIME_TIMESTAMP"] = datetime.fromtimestamp(int(realtime) / 1e6, tz=timezone.utc).isoformat(
            timespec="microseconds").replace("+00:00", "Z")
    message = fields.get("SyslogMessage") or fields.get("MESSAGE") or fields.get("message")
    if not message:
        return fields
    if message.startswith("<Event"):
        inner = event_xml_fields(message)
        if inner is None:
            return fields
        out = {k: v for k, v in fields.items() if k not in _SYSLOG_BODY and k.lower() not in _lower(inner)}
        out.update(inner)
        return out
    if message.startswith("type=AUOMS_") or fields.get("ProcessName") == "auoms":
        kv = auditd.parse_kv(_message_body(fields, message))
        kind = fields.get("EventType")
        if not kind and message.startswith("type="):
            kind = message[5:message.find(" ")]
        out = {k: v for k, v in fields.items() if k not in _SYSLOG_BODY and k not in ("Type", "EventType")}
        for key, value in kv.items():
            if value in auditd.MISSING:
                continue
            if key.endswith("_r") and auditd._HEX.match(value):  # auoms's raw hex copy of a field
                continue
            if key not in out:
                out[key] = value
        if kind:
            out["type"] = kind
            out["record_types"] = kind
        if "cmdline" in out or kind == "AUOMS_EXECVE":
            _auoms_process(out)
        return out
    if message.startswith(("type=", "node=")) and "msg=audit(" in message:
        try:
            parsed = auditd.parse_record(message)
        except auditd.Truncated:
            return fields
        if parsed is None:
            return fields
        stamp, epoch, record = parsed
        out = {k: v for k, v in fields.items() if k not in _SYSLOG_BODY and k != "Type"}
        out.update(auditd.group_event([record], epoch, stamp))
        return out
    return fields


def _lower(fields: Mapping[str, str]) -> set[str]:
    return {k.lower() for k in fields}


def _auoms_process(out: dict[str, str]) -> None:
    """auoms execve: the process-creation names SigmaHQ's Linux rules use (auoms writes the command line
    as ``cmdline``, or only ``proctitle``; its a0... are raw syscall arguments, not the argv)."""
    for sigma_name, names in (("Image", ("exe",)), ("CommandLine", ("cmdline", "proctitle")),
                              ("CurrentDirectory", ("cwd",)), ("ProcessId", ("pid",)),
                              ("ParentProcessId", ("ppid",)), ("User", ("user", "uid"))):
        for name in names:
            if out.get(name):
                out.setdefault(sigma_name, out[name])
                break


# ---------------------------------------------------------------------------------------------- syslog text
_RFC3164 = re.compile(r"(?:<(\d{1,3})>)?([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+) (\S+) "
                      r"([^\s:\[]+)(?:\[(\d+)\])?: ?(.*)\Z", re.S)
_RFC5424 = re.compile(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*?\](?:\[.*?\])*) ?(.*)\Z", re.S)
_SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def parse_syslog_line(line: str) -> dict[str, str] | None:
    """One syslog text line (RFC 3164 / RFC 5424 / rsyslog's ISO-timestamped form) → the Syslog table's
    field names (``EventTime``, ``HostName``, ``ProcessName``, ``ProcessID``, ``SyslogMessage``), or None."""
    m = _RFC5424.match(line)
    if m is not None:
        pri, when, host, app, pid, _msgid, _sd, message = m.groups()
    else:
        m = _RFC3164.match(line)
        if m is None:
            return None
        pri, when, host, app, pid, message = m.groups()
    fields = {"EventTime": when, "HostName": host, "ProcessName": app, "SyslogMessage": message}
    if pid and pid != "-":
        fields["ProcessID"] = pid
    if pri:
        fields["SeverityLevel"] = _SEVERITIES[int(pri) & 7]
        fields["Facility"] = str(int(pri) >> 3)
    return fields


def read_syslog(opener, stats) -> Iterator[tuple[int, dict]]:
    """Syslog text → one event per line, unwrapped like a syslog row (Sysmon for Linux XML, audit
    records); a line that is not syslog is rejected with its number."""
    with opener() as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
        for lineno, line in enumerate(text, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = parse_syslog_line(line)
            if fields is None:
                stats.reject(lineno, f"line {lineno}: not a syslog line: {line[:80]!r}")
                continue
            stats.accept()
            yield lineno, expand(fields)


def sniff_syslog(text: str, suffix: str) -> str | None:
    """Syslog text: its first line and more than half of the next ones (a cut last one aside) are syslog."""
    lines = [ln for ln in text.splitlines()[:21] if ln.strip()][:20]
    if len(lines) > 1:
        lines = lines[:-1]
    if not lines or not (_RFC5424.match(lines[0]) or _RFC3164.match(lines[0])):
        return None
    good = sum(1 for ln in lines if _RFC5424.match(ln) or _RFC3164.match(ln))
    return "syslog" if good * 2 > len(lines) else None


# ---------------------------------------------------------------------------------------------- family
SYSMON_CATEGORIES = {"1": "process_creation", "3": "network_connection", "5": "process_termination",
                     "9": "raw_access_thread", "11": "file_event", "23": "file_delete", "26": "file_delete",
                     "4": "sysmon_status", "16": "sysmon_status", "255": "sysmon_error"}
SYSLOG_SERVICES = {"sshd": "sshd", "cron": "cron", "crond": "cron", "CRON": "cron", "vsftpd": "vsftpd",
                   "clamd": "clamav", "freshclam": "clamav", "clamav": "clamav", "guacd": "guacamole",
                   "guacamole": "guacamole"}
_SOURCES: dict[tuple, LogSource] = {}


def _source(service: str | None, category: str | None) -> LogSource:
    key = (service, category)
    source = _SOURCES.get(key)
    if source is None:
        source = _SOURCES[key] = LogSource("linux", service, category)
    return source


def recognise_sysmon(fields: Mapping[str, str]) -> LogSource | None:
    if fields.get("Provider_Name") == "Linux-Sysmon" or fields.get("Channel") == "Linux-Sysmon/Operational":
        return _source(None, SYSMON_CATEGORIES.get(str(fields.get("EventID"))))
    return None


def recognise_syslog(fields: Mapping[str, str]) -> LogSource | None:
    if fields.get("Type") == "Syslog" and "SyslogMessage" in fields:  # Azure Monitor's Syslog table
        program = fields.get("ProcessName")
    elif "SyslogMessage" in fields and "ProcessName" in fields and "HostName" in fields:  # syslog text
        program = fields.get("ProcessName")
    elif "MESSAGE" in fields and ("_HOSTNAME" in fields or "SYSLOG_IDENTIFIER" in fields):  # journald
        program = fields.get("SYSLOG_IDENTIFIER") or fields.get("_COMM")
    elif "message" in fields and ("syslog.facility" in fields or "log.syslog.facility.name" in fields
                                  or "syslog.appname" in fields or "log.syslog.appname" in fields):
        program = (fields.get("process.name") or fields.get("syslog.appname")
                   or fields.get("log.syslog.appname"))
    else:
        return None
    return _source(SYSLOG_SERVICES.get(program or "", "syslog"), None)


SYSMON = register(Family(
    "linux-sysmon", recognise_sysmon,
    entities={"time": ("TimeCreated", "UtcTime", "TimeGenerated", "EventTime"),
              "host": ("Computer", "HostName"),
              "user": ("User", "TargetUser", "SourceUser"),
              "src_ip": ("SourceIp", "HostIP"),
              "dst_ip": ("DestinationIp",)}))

SYSLOG = register(Family(
    "linux-syslog", recognise_syslog,
    entities={"time": ("EventTime", "TimeGenerated", "@timestamp", "__REALTIME_TIMESTAMP", "timestamp"),
              "host": ("HostName", "Computer", "_HOSTNAME", "host.name", "host.hostname", "hostname"),
              "src_ip": ("HostIP",)}))
