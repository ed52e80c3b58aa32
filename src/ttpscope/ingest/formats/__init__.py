"""Log formats beyond Windows: one module per family (CloudTrail, Zeek, Linux audit, syslog/journald and
Sysmon for Linux, Azure/Entra ID/M365, GCP, Okta, Kubernetes, GitHub), and the unwrapping of Sentinel's
Windows tables (``windows_tables``). Importing this package registers
every family with :mod:`ttpscope.ingest.logsource`, every text-format sniffer with
:data:`ttpscope.ingest.sniff.TEXT_SNIFFERS`, and gives the ingest:

* :data:`FORMAT_READERS` — format name → ``reader(opener, stats)`` yielding ``(record, fields)``, for the
  formats that are not JSON lines (Zeek TSV, raw auditd, syslog text, CloudTrail ``Records`` documents);
* :func:`expand` — called on each flat JSON record: unwraps what a carrier hides (Sysmon for Linux XML and
  auoms records inside syslog rows, the EventData of Sentinel's Windows tables), gives Zeek and GitHub
  epoch times as ISO and CloudTrail's request and response objects whole; other records pass after a few
  key lookups;
* :func:`records_document` — whether a JSON document is a CloudTrail ``Records`` file, which is read
  record by record rather than as one event.
"""

from __future__ import annotations

from typing import Callable

from ttpscope.ingest import sniff as _sniff
from ttpscope.ingest.formats import (auditd, azure, cloudtrail, gcp, github, kubernetes, linux, okta,  # noqa: F401
                                     windows_tables, zeek)

FORMAT_READERS: dict[str, Callable] = {
    "zeek-tsv": zeek.read_zeek_tsv,
    "auditd": auditd.read_auditd,
    "cloudtrail": cloudtrail.read_cloudtrail,
    "syslog": linux.read_syslog,
}

for _sniffer in (zeek.sniff_zeek, auditd.sniff_auditd, linux.sniff_syslog):
    if _sniffer not in _sniff.TEXT_SNIFFERS:
        _sniff.TEXT_SNIFFERS.append(_sniffer)

records_document = cloudtrail.is_records_document
read_records_document = cloudtrail.read_records_document


def expand(fields: dict[str, str]) -> dict[str, str]:
    """One flat JSON record with what its carrier hides unwrapped (see the module docstring)."""
    if fields.get("Type") in windows_tables.WINDOWS_TABLES:
        return windows_tables.expand_table(fields)
    if "SyslogMessage" in fields or "MESSAGE" in fields:
        return linux.expand(fields)
    if "_path" in fields or "@stream" in fields or ("ts" in fields and ("uid" in fields or "fuid" in fields)):
        return zeek.expand_json(fields)
    if "eventSource" in fields and "awsRegion" in fields:
        return cloudtrail.whole_objects(fields)
    if "detail-type" in fields:
        return cloudtrail.unwrap_eventbridge(fields)
    if "action" in fields and "actor" in fields:
        return github.iso_times(fields)
    message = fields.get("message")
    if message and message.startswith(("<Event", "type=")):
        return linux.expand(fields)
    return fields


def sniff_text(head: bytes, suffix: str = "") -> str | None:
    """The log format of a file's first bytes, for files and archive members whose name says nothing:
    a registered text format, else JSON lines / a JSON document by their first character, else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = head[:exc.start].decode("utf-8")
    for text_sniffer in _sniff.TEXT_SNIFFERS:
        fmt = text_sniffer(text, suffix)
        if fmt:
            return fmt
    start = text.lstrip("\ufeff \t\r\n")[:1]
    return "jsonl" if start == "{" else "json" if start == "[" else None  # Zeek JSON in a conn.log
