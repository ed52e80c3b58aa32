"""Zeek logs: the TSV writer's files (``#separator``/``#fields``/``#types`` header) and Zeek JSON lines.

TSV: the header names the columns and their types; ``#path`` names the log (conn, dns, http...), which
the reader keeps as the ``_path`` field, as Zeek's JSON writer does when asked to. The unset (``-``) and
empty (``(empty)``) markers become missing fields; ``time`` columns become ISO-8601 UTC (Zeek's own
``JSON::TS_ISO8601`` spelling), booleans ``true``/``false`` and sets/vectors one item a line, as the JSON
flattening writes lists. A data line whose column count differs from the header's is rejected with its
line number. Field names stay Zeek's (``id.orig_h``, ``query``...): SigmaHQ's Zeek rules use them as is.

The family recognises a record as Zeek by ``_path`` (or RockNSM's ``@stream``) with Zeek's ``ts``/``uid``
shape, or, for JSON lines without ``_path``, by the fields that only one log has; its log source is
``product: zeek`` with the log's path as ``service`` (conn, dns, http, smb_files, dce_rpc...), as SigmaHQ's
Zeek rules name them. RockNSM's underscored ``id_orig_h``... are renamed to Zeek's dotted names.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Iterator, Mapping

from ttpscope.ingest.base import IngestStats
from ttpscope.ingest.logsource import Family, LogSource, register


def _unescape(value: str) -> str:
    r"""Zeek writes separators and non-printable bytes inside values as ``\xNN``."""
    if "\\x" not in value:
        return value
    out, i = [], 0
    while i < len(value):
        if value.startswith("\\x", i) and i + 4 <= len(value):
            try:
                out.append(chr(int(value[i + 2:i + 4], 16)))
                i += 4
                continue
            except ValueError:
                pass
        out.append(value[i])
        i += 1
    return "".join(out)


def _iso(epoch: str) -> str | None:
    try:
        ts = float(epoch)
    except ValueError:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def read_zeek_tsv(opener, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    """A Zeek TSV log → one event per data line (record number = line number)."""
    sep, set_sep, empty, unset = "\t", ",", "(empty)", "-"
    path = None
    names: list[str] = []
    convert: list[str] = []
    plain: list[tuple[int, str]] = []
    special: list[tuple[int, str, str]] = []
    with opener() as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="\n")
        for lineno, line in enumerate(text, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            if line[0] == "#":
                key, _, value = line.partition(sep if not line.startswith("#separator") else " ")
                if key == "#separator":
                    sep = _unescape(value.strip())
                elif key == "#set_separator":
                    set_sep = value
                elif key == "#empty_field":
                    empty = value
                elif key == "#unset_field":
                    unset = value
                elif key == "#path":
                    path = value
                elif key == "#fields":
                    names = value.split(sep)
                    convert = [""] * len(names)
                elif key == "#types":
                    types = value.split(sep)
                    convert = [("time" if t == "time" else "bool" if t == "bool"
                                else "list" if t.startswith(("set[", "vector[")) else "") for t in types]
                # columns read as they are, and those converted (time, bool, set/vector)
                plain = [(i, n) for i, (n, k) in enumerate(zip(names, convert + [""] * len(names))) if not k]
                special = [(i, n, k) for i, (n, k) in enumerate(zip(names, convert)) if k]
                continue
            if not names:
                stats.reject(lineno, f"line {lineno}: a data line before the #fields header")
                continue
            cells = line.split(sep)
            if len(cells) != len(names):
                stats.reject(lineno, f"line {lineno}: {len(cells)} columns, the #fields header names {len(names)}")
                continue
            missing = (unset, empty)
            escaped = "\\x" in line
            fields = {name: (_unescape(cells[i]) if escaped else cells[i]) for i, name in plain
                      if cells[i] not in missing}
            if path:
                fields["_path"] = path
            for i, name, kind in special:
                cell = cells[i]
                if cell in missing:
                    continue
                if kind == "time":
                    value = _iso(cell)
                    if value is None:
                        continue
                elif kind == "bool":
                    value = "true" if cell == "T" else "false" if cell == "F" else cell
                else:
                    value = "\n".join(_unescape(v) for v in cell.split(set_sep))
                fields[name] = value
            stats.accept()
            yield lineno, fields


def sniff_zeek(text: str, suffix: str) -> str | None:
    """Zeek's TSV writer starts every log with its ``#separator`` line, then ``#fields`` further down."""
    if text.startswith("#separator") and "\n#fields" in text:
        return "zeek-tsv"
    return None


# ---------------------------------------------------------------------------------------------- family
# fields that only one Zeek log has → its path, for JSON lines written without _path
_SIGNATURES = (
    ("conn_state", "conn"), ("qtype_name", "dns"), ("trans_id", "dns"), ("query", "dns"),
    ("trans_depth", "http"), ("request_body_len", "http"), ("fuid", "files"), ("cert_chain_fuids", "ssl"),
    ("server_name", "ssl"), ("certificate.serial", "x509"), ("request_type", "kerberos"),
    ("named_pipe", "dce_rpc"), ("operation", "dce_rpc"), ("share_type", "smb_mapping"),
    ("cookie", "rdp"), ("auth_attempts", "ssh"), ("mailfrom", "smtp"), ("notice", "weird"),
    ("note", "notice"), ("analyzer", "dpd"),
)
_SOURCES: dict[str, LogSource] = {}


def _source(path: str) -> LogSource:
    source = _SOURCES.get(path)
    if source is None:
        source = _SOURCES[path] = LogSource("zeek", path)
    return source


def recognise(fields: Mapping[str, str]) -> LogSource | None:
    path = fields.get("_path") or fields.get("@stream")  # @stream: RockNSM's JSON writer
    if path and ("ts" in fields or "uid" in fields or "fuid" in fields or fields.get("@proc") == "zeek"
                 or path == "loaded_scripts"):  # Zeek's inventory of its scripts: no time, no connection
        return _source(path)
    if "ts" in fields and ("uid" in fields or "fuid" in fields or "id" in fields or "id.orig_h" in fields):
        if "certificate.serial" in fields:
            return _source("x509")
        if "id.orig_h" not in fields:
            return None
        if "path" in fields and "action" in fields and "name" in fields:
            return _source("smb_files")
        for key, path in _SIGNATURES:
            if key in fields:
                return _source(path)
    return None


def expand_json(fields: dict[str, str]) -> dict[str, str]:
    """A Zeek JSON record: its epoch ``ts`` (and other epoch times) as ISO-8601 UTC, as the TSV reader
    writes them, so that the event has a time on the timeline."""
    ts = fields.get("ts")
    if ts and ts[:1].isdigit() and "-" not in ts:
        iso = _iso(ts)
        if iso:
            fields["ts"] = iso
    return fields


# RockNSM writes the connection tuple with underscores; SigmaHQ's Zeek rules use Zeek's dotted names
RENAMES = {"id_orig_h": "id.orig_h", "id_orig_p": "id.orig_p", "id_resp_h": "id.resp_h",
           "id_resp_p": "id.resp_p", "certificate_serial": "certificate.serial"}

FAMILY = register(Family(
    "zeek", recognise, renames=RENAMES,
    entities={"time": ("ts",),
              "user": ("username", "client", "user"),
              "src_ip": ("id.orig_h", "id_orig_h", "tx_hosts"),
              "dst_ip": ("id.resp_h", "id_resp_h", "rx_hosts")}))
