"""One event record (EVTX-as-JSON, Winlogbeat/ECS, NXLog, flat JSON) → one flat dict of Sigma field names.

The flattening rule, applied to every JSON source:

1. **EVTX shape** (``{"Event": {"System": ..., "EventData" | "UserData": ...}}``, as the ``evtx`` parser and
   ``evtx_dump`` write it): ``System`` children become ``Provider_Name``, ``Provider_Guid``, ``EventID``,
   ``Version``, ``Level``, ``Task``, ``Opcode``, ``Keywords``, ``TimeCreated`` (SystemTime),
   ``EventRecordID``, ``ActivityID``, ``RelatedActivityID``, ``ExecutionProcessID``, ``ExecutionThreadID``,
   ``Channel``, ``Computer``, ``UserID``; every ``EventData`` item keeps its own name (``Image``,
   ``CommandLine``...) with spaces removed (Defender's ``Threat Name`` → ``ThreatName``, as rules spell
   it); the one element under ``UserData`` is unwrapped the same way. Unnamed ``<Data>`` items become
   ``Data`` (several are joined with a newline); ``Binary`` stays ``Binary``.
2. **Data containers are hoisted**: the children of ``winlog.event_data``, ``winlog.user_data``,
   ``event_data``, ``user_data``, ``EventData`` and ``UserData`` become top-level fields under their own
   names, as Sigma rules name them.
3. **Well-known envelope fields get their Sigma names** when the Sigma name is not already present:
   ``winlog.channel``/``log_name`` → ``Channel``; ``winlog.event_id``/``event_id``/``event.code`` →
   ``EventID``; ``winlog.provider_name``/``source_name``/``SourceName`` → ``Provider_Name``;
   ``winlog.computer_name``/``computer_name``/``Hostname``/``host.name`` → ``Computer``;
   ``winlog.record_id``/``record_number``/``RecordNumber`` → ``EventRecordID``.
4. **Everything else** nested is joined with dots (``user.name``); lists of scalars are joined with a
   newline, other lists are kept as JSON text.
5. **Values are text**: Sigma compares strings. Numbers keep their decimal form, booleans become
   ``true``/``false``, JSON ``null`` stays missing (SQL NULL) so that Sigma's ``null`` matches it.

Field names are unique ignoring case (DuckDB and Sigma both compare names that way): a later name that
differs from an earlier one only by case is dropped from the event, not allowed to shadow it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# System element children that are attribute-only: (child, attribute) → flat name
_SYSTEM_ATTRS = {
    ("Provider", "Name"): "Provider_Name",
    ("Provider", "Guid"): "Provider_Guid",
    ("Provider", "EventSourceName"): "EventSourceName",
    ("TimeCreated", "SystemTime"): "TimeCreated",
    ("Correlation", "ActivityID"): "ActivityID",
    ("Correlation", "RelatedActivityID"): "RelatedActivityID",
    ("Execution", "ProcessID"): "ExecutionProcessID",
    ("Execution", "ThreadID"): "ExecutionThreadID",
    ("Security", "UserID"): "UserID",
}
DATA_CONTAINERS = ("winlog.event_data", "winlog.user_data", "event_data", "user_data", "EventData", "UserData")
# Sigma name ← envelope names, first present wins (only when the Sigma name itself is absent)
ENVELOPE_ALIASES: dict[str, tuple[str, ...]] = {
    "Channel": ("winlog.channel", "log_name", "event.provider_channel"),
    "EventID": ("winlog.event_id", "event_id", "event.code"),
    "Provider_Name": ("winlog.provider_name", "source_name", "SourceName", "event.provider"),
    "Computer": ("winlog.computer_name", "computer_name", "Hostname", "host.name", "host.hostname"),
    "EventRecordID": ("winlog.record_id", "record_number", "RecordNumber"),
}
# where the record's time and host come from, first present wins
TIME_FIELDS = ("TimeCreated", "@timestamp", "timestamp", "EventTime", "UtcTime", "event.created", "time",
               "TimeGenerated", "_time")
HOST_FIELDS = ("Computer", "host.name", "hostname", "host")


def text(value: Any) -> str | None:
    """A JSON scalar (or list) as the text Sigma compares against; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            return "\n".join(t for t in map(text, value) if t is not None)
        return _dumps(value)
    if isinstance(value, dict):
        if "#text" in value and not isinstance(value["#text"], (dict, list)):  # an XML element with attributes
            return text(value["#text"])
        return _dumps(value)
    if isinstance(value, (bytes, bytearray, memoryview)):  # Parquet binary columns
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _dumps(value: Any) -> str:
    """A nested value as JSON text. orjson stops at 254 levels: deeper values raise ValueError, and the
    reader rejects that one record."""
    try:
        return orjson.dumps(value, default=_json_default).decode()
    except orjson.JSONEncodeError as exc:
        try:  # integers beyond 64 bits: the stdlib writes them (and stops at its own recursion limit)
            return json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=True)
        except (RecursionError, ValueError, TypeError):
            raise ValueError(f"value not representable as JSON text: {exc}") from None


def _json_default(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


class _Out(dict):
    """A dict that refuses a key equal to an existing one ignoring case."""

    __slots__ = ("lower",)

    def __init__(self):
        super().__init__()
        self.lower: set[str] = set()

    def put(self, key: str, value: Any) -> None:
        if value is None:
            return
        low = key.lower()
        if low in self.lower:
            if key in self:  # same spelling: last wins (e.g. a hoisted field over its envelope copy)
                self[key] = value
            return
        self.lower.add(low)
        self[key] = value


def _data_items(out: _Out, data: Any) -> None:
    """EventData / unwrapped UserData children → fields."""
    if not isinstance(data, dict):
        if data is not None:
            out.put("Data", text(data))
        return
    for key, value in data.items():
        if key == "#attributes":
            continue
        if " " in key:  # Defender's "Threat Name": rules say ThreatName
            key = key.replace(" ", "")
        if key in ("Data", "#text"):
            out.put("Data", text(value))
        elif isinstance(value, dict) and "#text" not in value and "#attributes" not in value:
            _flatten_into(out, value, key)
        else:
            out.put(key, text(value))


def flatten_evtx_event(event: dict) -> dict[str, str]:
    """``{"Event": {...}}`` or its inner object → flat fields (rule 1)."""
    ev = event.get("Event", event)
    if type(ev) is not dict:
        return flatten_json_event({"Event": ev}) if ev is not event else {}
    fast = _evtx_fast(ev)
    if fast is not None:
        return fast
    out = _Out()
    system = ev.get("System")
    if type(system) is dict:
        _evtx_system(system, out.put)
    elif system is not None:  # not the EVTX shape after all (a list, a text): kept as a field
        out.put("System", text(system))
    if "EventData" in ev:
        _data_items(out, ev["EventData"])
    user_data = ev.get("UserData")
    if isinstance(user_data, dict):
        for inner in user_data.values():  # one wrapper element named by the provider
            _data_items(out, inner)
    for key, value in ev.items():  # rare extra sections (e.g. ProcessingErrorData)
        if key not in ("System", "EventData", "UserData", "#attributes") and isinstance(value, dict):
            _data_items(out, value)
    return out


def _evtx_system(system: dict, put) -> None:
    for key, value in system.items():
        if type(value) is dict:
            attrs = value.get("#attributes")
            if type(attrs) is dict:
                for attr, attr_value in attrs.items():
                    name = _SYSTEM_ATTRS.get((key, attr))
                    if name and attr_value is not None:
                        put(name, text(attr_value))
            if "#text" in value:  # <EventID Qualifiers="16384">7036</EventID>
                put(key, text(value["#text"]))
        elif value is not None:
            put(key, value if type(value) is str else text(value))


def _evtx_fast(ev: dict) -> dict[str, str] | None:
    """The common EVTX record (System + flat EventData of scalars), built as a plain dict; None sends the
    record to the general path (UserData, nested or unnamed data, spaced or case-colliding names)."""
    data = ev.get("EventData")
    system = ev.get("System")
    if "UserData" in ev or len(ev) > 3 or (data is not None and type(data) is not dict) or \
            (system is not None and type(system) is not dict):
        return None
    out: dict[str, str] = {}
    _evtx_system(system or {}, out.__setitem__)
    if data:
        for key, value in data.items():
            if " " in key or key in ("Data", "#text", "#attributes"):
                return None
            kind = type(value)
            if kind is str:
                out[key] = value
            elif value is None:
                continue
            elif kind is dict or kind is list:
                return None
            else:
                out[key] = text(value)
    if len({k.lower() for k in out}) != len(out):
        return None
    return out


def _flatten_into(out: _Out, obj: dict, prefix: str) -> None:
    """Nested objects → dotted names, depth first in key order; iterative, so no depth is too deep."""
    stack = [(prefix, iter(obj.items()))]
    while stack:
        base, items = stack[-1]
        for key, value in items:
            name = f"{base}.{key}" if base else key
            if isinstance(value, dict) and value and "#text" not in value:
                stack.append((name, iter(value.items())))
                break
            out.put(name, text(value))
        else:
            stack.pop()


def flatten_json_event(obj: dict) -> dict[str, str]:
    """A JSON object from a JSON-lines or JSON source → flat Sigma fields (rules 1–5)."""
    event = obj.get("Event")
    if type(event) is dict and type(event.get("System")) is dict:
        return flatten_evtx_event(obj)
    flat = _flat_fast(obj)
    if flat is not None:
        return flat
    out = _Out()
    # hoisted data containers first: their names are the ones rules use
    for container in DATA_CONTAINERS:
        node: Any = obj
        for part in container.split("."):
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            if container.endswith(("user_data", "UserData")) and len(node) == 1:
                (inner,) = node.values()
                node = inner if isinstance(inner, dict) else node
            _data_items(out, node)
    skip = {c.split(".")[0] for c in DATA_CONTAINERS if "." not in c}
    for key, value in obj.items():
        if key in skip:
            continue
        if key == "winlog" and isinstance(value, dict):
            rest = {k: v for k, v in value.items() if k not in ("event_data", "user_data")}
            _flatten_into(out, rest, "winlog")
        elif isinstance(value, dict) and value:
            _flatten_into(out, value, key)
        else:
            out.put(key, text(value))
    _envelope(out, out.lower)
    return out


_SHAPES: dict[tuple, tuple | None] = {}  # key tuple of a flat object → its envelope copies (None: collision)
_SHAPES_MAX = 4096


def _shape(keys: tuple) -> tuple | None:
    """For a set of flat keys: the (Sigma name, alias) copies rule 3 calls for, or None when two keys are
    equal but for case. Events of one kind share their keys, so this is worked out once per kind."""
    lower = {k.lower() for k in keys}
    if len(lower) != len(keys):
        return None
    copies = []
    for sigma_name, aliases in ENVELOPE_ALIASES.items():
        if sigma_name.lower() not in lower:
            present = [a for a in aliases if a in keys]
            if present:
                copies.append((sigma_name, tuple(present)))
    return tuple(copies)


def _flat_fast(obj: dict) -> dict[str, str] | None:
    """The common case, an already flat object (NXLog, flat exports), without the general machinery.
    Returns None when the object is nested or has names that collide ignoring case."""
    out: dict[str, str] = {}
    for key, value in obj.items():
        kind = type(value)
        if kind is str:
            out[key] = value
        elif kind is int:
            out[key] = str(value)
        elif value is None:
            continue
        elif kind is dict:
            return None
        else:
            out[key] = text(value)
    keys = tuple(out)
    shape = _SHAPES.get(keys, False)
    if shape is False:
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.clear()
        shape = _SHAPES[keys] = _shape(keys)
    if shape is None:
        return None
    for sigma_name, aliases in shape:
        for alias in aliases:  # first alias with a value (a JSON null is not in `out`)
            value = out.get(alias)
            if value is not None:
                out[sigma_name] = value
                break
    return out


def _envelope(out: dict, lower: set[str]) -> None:
    """Rule 3: give well-known envelope fields their Sigma names."""
    for sigma_name, aliases in ENVELOPE_ALIASES.items():
        if sigma_name.lower() in lower:
            continue
        for alias in aliases:
            value = out.get(alias)
            if value is not None:
                out[sigma_name] = value
                lower.add(sigma_name.lower())
                break


def first_of(fields: dict[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = fields.get(name)
        if value:
            return value
    return None
