"""Windows events as Microsoft Sentinel / Log Analytics table rows: ``SecurityEvent`` (the Security
channel; the event's data as ``<EventData>`` XML text), ``WindowsEvent`` (any channel; the data as JSON
text, the provider as ``Provider``) and ``Event`` (System/Application/other channels through the legacy
agent; ``EventLog`` and ``Source``, the data as XML text).

Only the shape is worked on here: the data items become the event's own fields (``Image``,
``CommandLine``...) beside the table's columns, and the channel and provider get the names the EVTX
flattening gives them (``Channel``, ``Provider_Name``), so that these rows are recognised and matched like
any Windows event. No family is registered: Windows recognition lives with the Windows family.
"""

from __future__ import annotations

import orjson

from ttpscope.ingest.flatten import text
from ttpscope.ingest.formats.linux import event_xml_fields

WINDOWS_TABLES = frozenset({"SecurityEvent", "WindowsEvent", "Event"})


def expand_table(fields: dict[str, str]) -> dict[str, str]:
    """One Sentinel Windows-table row with its EventData unwrapped (see the module docstring)."""
    data = fields.get("EventData")
    out = dict(fields)
    if not out.get("Provider_Name"):
        provider = out.get("Provider") or out.get("EventSourceName") or out.get("Source")
        if provider:
            out["Provider_Name"] = provider
    if not out.get("Channel") and out.get("EventLog"):
        out["Channel"] = out["EventLog"]
    if not data:
        return out
    items = _data_items(data)
    if items is None:
        return out
    del out["EventData"]
    lower = {k.lower() for k in out}
    for key, value in items.items():
        if key.lower() not in lower:  # the table's own column wins (names compare ignoring case)
            out[key] = value
            lower.add(key.lower())
    return out


def _data_items(data: str) -> dict[str, str] | None:
    head = data.lstrip()[:1]
    if head == "{":
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        return {k.replace(" ", ""): t for k, v in obj.items() if (t := text(v)) is not None}
    if head == "<":
        start = data.find("<EventData")  # the Event table wraps it in <DataItem>
        if start < 0:
            return None
        end = data.find("</EventData>", start)
        xml = data[start:end + len("</EventData>")] if end >= 0 else data[start:]
        items = event_xml_fields(f"<Event>{xml}</Event>")
        if items is not None:
            items.pop("EventTruncated", None)
        return items
    return None
