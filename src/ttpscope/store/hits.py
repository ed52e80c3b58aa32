"""The detection timeline of a case: every raw rule hit kept in the workspace, one row each, in time order
(the Hayabusa-style timeline), as JSON lines, CSV or Parquet.

    from ttpscope.store import Workspace
    from ttpscope.store.hits import hits_table, render_hits
    table = hits_table(Workspace(), "intrusion-42")   # a pyarrow Table, HIT_COLUMNS
    data = render_hits(table, "csv")                  # bytes

Observations aggregate hits (one per rule, technique, entity and time window); this is where each hit
stays visible.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ttpscope.errors import InputError

HIT_FORMATS = ("jsonl", "csv", "parquet")
HIT_COLUMNS = ("time", "host", "user", "src_ip", "dst_ip", "account", "region", "logsource", "channel", "level",
               "rule", "rule_id", "techniques", "details", "source", "record")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_DETAIL = 1000  # characters of the key fields per hit

# the stored detection's JSON (Detection.to_dict) holds the entity fields; the indexed columns the rest
_QUERY = """
SELECT time, host, data->>'user', data->>'src_ip', data->>'dst_ip', data->>'account', data->>'region',
       data->>'logsource', data->'event'->>'Channel', level, title, rule_id, techniques, data->>'matched',
       source, record
FROM detections WHERE case_id = ? ORDER BY time NULLS LAST, ord
"""


def _details(matched: str | None) -> str:
    """The values of the fields the rule tested, ``Field=value; ...`` (one line)."""
    if not matched:
        return ""
    try:
        fields = orjson.loads(matched)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(fields, dict):
        return ""
    text = "; ".join(f"{k}={v}" for k, v in fields.items())
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def hits_table(ws, ref: str) -> pa.Table:
    """Every detection of a case (id or name), oldest first (untimed last), as a table of HIT_COLUMNS."""
    with ws._connect() as con:
        cid = ws._require(con, ref)[0]
        rows = con.execute(_QUERY, [cid]).fetchall()
    cols: dict[str, list[Any]] = {name: [] for name in HIT_COLUMNS}
    for r in rows:
        values = list(r)
        values[12] = ";".join(values[12] or [])
        values[13] = _details(values[13])
        for name, value in zip(HIT_COLUMNS, values):
            cols[name].append(value)
    types = {name: pa.string() for name in HIT_COLUMNS}
    types["time"] = pa.timestamp("us", tz="UTC")
    return pa.table({name: pa.array(cols[name], types[name]) for name in HIT_COLUMNS})


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (event values are attacker-controlled)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def render_hits(table: pa.Table, fmt: str) -> bytes:
    """The timeline in one of HIT_FORMATS."""
    if fmt not in HIT_FORMATS:
        raise InputError("hits", None, f"unknown timeline format {fmt!r}; one of {', '.join(HIT_FORMATS)}")
    if fmt == "parquet":
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        return buf.getvalue().to_pybytes()
    rows = table.to_pylist()
    if fmt == "jsonl":
        return b"".join(orjson.dumps(dict(r, time=_iso(r["time"]))) + b"\n" for r in rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HIT_COLUMNS)
    for r in rows:
        writer.writerow([_iso(r["time"]) or "" if k == "time" else _cell(r[k]) for k in HIT_COLUMNS])
    return out.getvalue().encode("utf-8")
