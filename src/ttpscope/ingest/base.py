"""Streaming event ingest: sources → flat records → narrow Arrow batches, one event class per batch.

Every reader yields ``(record, fields)`` pairs (``fields`` flattened by :mod:`ttpscope.ingest.flatten`).
The :class:`Batcher` recognises each record's log-source family and :class:`~ttpscope.ingest.logsource.LogSource`
(:mod:`ttpscope.ingest.logsource`; cached per record shape), applies the family's field renames, and groups
records by *event class* — (``Channel``, ``Provider_Name``, ``EventID``, log source) — so that each Arrow
batch holds only the columns its class uses: a Sysmon process-creation batch has ~25 columns, not the
thousand-odd union of every field seen (that wide table is what cost 11 GB in the naive engine). Memory
stays bounded: a class is flushed at ``batch_rows`` rows, and the largest class is flushed whenever all
buffered rows exceed ``max_buffered``.

Columns of every batch: the internal columns (:data:`BASE_COLUMNS`, all named with the prefix
:data:`INTERNAL_PREFIX` ``"::"``, which no event field keeps: an event field spelled so is stored as
``"_::…"``) — :data:`SRC` (int32, index into :attr:`EventReader.sources`), :data:`REC` (int64: EVTX
EventRecordID, else the line/row number), :data:`TIME` (timestamp[us, UTC], may be null), then the
entities :data:`HOST`, :data:`USER`, :data:`SRC_IP`, :data:`DST_IP`, :data:`ACCOUNT`, :data:`REGION` and
:data:`LOGSOURCE` (the class's log-source label), strings — then the event's fields as strings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ttpscope.errors import InputError
from ttpscope.ingest import windows  # noqa: F401  (registers the Windows families)
from ttpscope.ingest.flatten import HOST_FIELDS, TIME_FIELDS
from ttpscope.ingest.logsource import UNKNOWN, Family, LogSource, discriminators, recognise
from ttpscope.ingest.sniff import LOG, sniff

# Internal columns live under a prefix no event field keeps (the batcher escapes such a field), so that a
# Splunk export's own `_time` or a field named `_rec` never collides with them.
INTERNAL_PREFIX = "::"
SRC, REC, TIME, HOST = "::src", "::rec", "::time", "::host"
USER, SRC_IP, DST_IP, ACCOUNT, REGION = "::user", "::src_ip", "::dst_ip", "::account", "::region"
LOGSOURCE = "::logsource"
ROW = "::row"  # row numbers the engines add
ENTITY_COLUMNS = {"time": TIME, "host": HOST, "user": USER, "src_ip": SRC_IP, "dst_ip": DST_IP,
                  "account": ACCOUNT, "region": REGION}
BASE_COLUMNS = (SRC, REC, TIME, HOST, USER, SRC_IP, DST_IP, ACCOUNT, REGION, LOGSOURCE)
CLASS_FIELDS = ("Channel", "Provider_Name", "EventID")
# entity fields of records no family recognises (or of a declared source)
DEFAULT_ENTITIES = {"time": TIME_FIELDS, "host": HOST_FIELDS,
                    "user": ("User", "TargetUserName", "SubjectUserName", "AccountName", "UserName", "user.name"),
                    "src_ip": ("src_ip", "SourceIp", "source.ip", "id.orig_h", "sourceIPAddress"),
                    "dst_ip": ("dst_ip", "DestinationIp", "destination.ip", "id.resp_h")}


def is_internal(name: str) -> bool:
    """Whether a column is one of ingest's (or an engine's) own, not an event field."""
    return name.startswith(INTERNAL_PREFIX)
MAX_SAMPLES = 20
TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass
class IngestStats:
    """What one source gave: records read, accepted, rejected (with reasons and the first few records)."""

    source: str
    format: str
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    samples: list[tuple[str | int | None, str]] = field(default_factory=list)

    def reject(self, record: str | int | None, reason: str, count: int = 1) -> None:
        """Count a rejected record (or a lost chunk) with a short reason; keep the first few verbatim."""
        self.rejected += count
        self.read += count
        key = reason.split(":")[0][:80]
        self.reasons[key] += count
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append((record, reason[:300]))

    def accept(self) -> None:
        self.read += 1
        self.accepted += 1

    def to_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "read": self.read, "accepted": self.accepted,
                "rejected": self.rejected, "reasons": dict(self.reasons.most_common()),
                "samples": [{"record": r, "problem": p} for r, p in self.samples]}


@dataclass
class EventBatch:
    """Events of one class (same Channel, provider, EventID and log source) as an Arrow table."""

    key: tuple  # (Channel, Provider_Name, EventID, LogSource)
    table: pa.Table
    sources: list[str]  # SRC indexes into this list (shared with the reader)

    @property
    def channel(self) -> str | None:
        return self.key[0]

    @property
    def provider(self) -> str | None:
        return self.key[1]

    @property
    def event_id(self) -> str | None:
        return self.key[2]

    @property
    def logsource(self) -> LogSource:
        return self.key[3] if len(self.key) > 3 else UNKNOWN

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def fields(self) -> list[str]:
        return [c for c in self.table.column_names if not is_internal(c)]


def parse_times(values) -> pa.Array:
    """ISO-8601-ish texts → timestamp[us, UTC]; zone-less times are taken as UTC, unparsable ones → null."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type=pa.string())
    try:
        return pc.cast(arr, TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:  # zone-less texts all in one format: read as UTC
        return pc.cast(pc.cast(arr, pa.timestamp("us")), TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    out = []
    for v in (values.to_pylist() if isinstance(values, (pa.Array, pa.ChunkedArray)) else values):
        dt = None
        if v:
            try:
                dt = datetime.fromisoformat(v.strip())
            except ValueError:
                dt = None
            if dt is not None and dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
        out.append(dt)
    return pa.array(out, type=TIMESTAMP)


@dataclass(frozen=True, slots=True)
class _Shape:
    """What the batcher does with every record of one shape: its family and log source, the renames and
    fills to apply, and where each entity is (candidate field names present in the shape)."""

    family: Family | None
    source: LogSource
    renames: tuple[tuple[str, str], ...]
    fill: tuple[tuple[str, str], ...]
    entities: tuple[tuple[str, ...], ...]  # per ENTITY_COLUMNS kind


SHAPE_CACHE_MAX = 16_384


class Batcher:
    """Accumulates flat records per event class and emits narrow Arrow batches.

    ``declared``: the log source of records no family recognises (``--logsource``), else they are of the
    unknown source, which no rule runs on.
    """

    def __init__(self, sources: list[str], batch_rows: int = 16_384, max_buffered: int = 49_152,
                 declared: LogSource | None = None):
        self.sources = sources
        self.batch_rows = batch_rows
        self.max_buffered = max_buffered
        self.declared = declared
        self.buffers: dict[tuple, list[tuple[int, int, dict, tuple]]] = {}
        self.counts: dict[tuple, int] = {}
        self.buffered = 0
        # field name → its first spelling: "message" and "Message" from two events are one column (as
        # Sigma and DuckDB compare names), else a class would carry both and a search could miss one
        self.spelling: dict[str, str] = {}
        self.shapes: dict[tuple, _Shape] = {}
        self.discriminators = discriminators()

    def _shape(self, fields: dict) -> _Shape:
        family, source = recognise(fields)
        if family is None and self.declared is not None:
            source = self.declared
        renames = []
        names = set(fields)
        for name in fields:
            if name.startswith(INTERNAL_PREFIX):
                renames.append((name, "_" + name))
        if family is not None:
            for old, new in family.renames.items():
                if old in names and new not in names:
                    renames.append((old, new))
        final = (names - {o for o, _ in renames}) | {n for _, n in renames}
        fill = tuple((k, v) for k, v in (family.fill.items() if family else ()) if k not in final)
        final |= {k for k, _ in fill}
        where = family.entities if family is not None else DEFAULT_ENTITIES
        entities = tuple(tuple(n for n in where.get(kind, ()) if n in final) for kind in ENTITY_COLUMNS)
        return _Shape(family, source, tuple(renames), fill, entities)

    def add(self, src: int, rec: int, fields: dict) -> Iterator[EventBatch]:
        get = fields.get
        ckey = (tuple(fields), *[get(d) for d in self.discriminators])
        shape = self.shapes.get(ckey)
        if shape is None:
            if len(self.shapes) >= SHAPE_CACHE_MAX:
                self.shapes.clear()
            shape = self.shapes[ckey] = self._shape(fields)
        if shape.renames or shape.fill:
            fields = dict(fields)
            for old, new in shape.renames:
                fields[new] = fields.pop(old)
            fields.update(shape.fill)
            get = fields.get
        ents = tuple(next((v for n in names if (v := get(n))), None) for names in shape.entities)
        key = (get("Channel"), get("Provider_Name"), get("EventID"), shape.source)
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = []
        buf.append((src, rec, fields, ents))
        yield from self._counted(key, 1)

    def _counted(self, key: tuple, n: int) -> Iterator[EventBatch]:
        self.counts[key] = self.counts.get(key, 0) + n
        self.buffered += n
        if self.counts[key] >= self.batch_rows:
            yield self._flush(key)
        elif self.buffered >= self.max_buffered:
            yield self._flush(max(self.counts, key=self.counts.__getitem__))

    def flush_all(self) -> Iterator[EventBatch]:
        for key in sorted(self.counts, key=class_order):
            yield self._flush(key)

    def _flush(self, key: tuple) -> EventBatch:
        rows = self.buffers.pop(key)
        self.buffered -= self.counts.pop(key)
        return EventBatch(key, self._rows_table(rows, key[3]), self.sources)

    def _rows_table(self, rows: list, source: LogSource = UNKNOWN) -> pa.Table:
        names: dict[str, None] = {}
        fields = [r[2] for r in rows]
        for keys in dict.fromkeys(tuple(f) for f in fields):  # events of one kind share their keys
            names.update(dict.fromkeys(keys))
        respell = {n: c for n in names if (c := self.spelling.setdefault(n.lower(), n)) != n}
        if respell:
            fields = [{respell.get(k, k): v for k, v in f.items()} if any(k in respell for k in f) else f
                      for f in fields]
            names = dict.fromkeys(respell.get(n, n) for n in names)
        columns = {
            SRC: pa.array([r[0] for r in rows], type=pa.int32()),
            REC: pa.array([r[1] for r in rows], type=pa.int64()),
            TIME: parse_times([r[3][0] for r in rows]),
        }
        for i, column in enumerate(list(ENTITY_COLUMNS.values())[1:], start=1):
            columns[column] = pa.array([r[3][i] for r in rows], type=pa.string())
        columns[LOGSOURCE] = pa.array([source.label() if source.known else None] * len(rows), type=pa.string())
        # dicts → columns in C++: a struct array built from the dicts, then split
        struct = pa.array(fields, type=pa.struct([(n, pa.string()) for n in names]))
        for name, column in zip(names, struct.flatten()):
            columns[name] = column
        return pa.table(columns)


def class_order(key: tuple) -> tuple:
    """A deterministic order of class keys (None first; the log source by its label)."""
    return tuple("" if v is None else v.label() if isinstance(v, LogSource) else v for v in key)


# ---------------------------------------------------------------------------------------------- sources
# format name → reader(opener, stats) yielding (record, fields); the built-in readers register in
# ttpscope.ingest.readers, other formats (Zeek TSV, auditd, ...) beside them. The format of a file is
# judged by content (ttpscope.ingest.sniff), never by its name.
READERS: dict[str, Callable] = {}
LOG_SUFFIXES = (".evtx", ".jsonl", ".ndjson", ".json", ".parquet", ".csv", ".tsv", ".zip", ".tar.gz",
                ".tgz", ".tar", ".gz")


def detect_format(name: str) -> str | None:
    """The format a file name suggests — only to pick files out of folders and to name a source whose
    content could not be read; the reader always goes by content."""
    low = name.lower()
    for suffix, fmt in ((".evtx", "evtx"), (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"),
                        (".parquet", "parquet"), (".csv", "csv"), (".zip", "zip"), (".tar.gz", "tar"),
                        (".tgz", "tar"), (".tar", "tar"), (".gz", "gz")):
        if low.endswith(suffix):
            return fmt
    return None


def _is_pair(item) -> bool:
    """A ``(path, format)`` item: a format name is a bare word (``evtx``, ``jsonl``), never a path."""
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (str, type(None))) and \
        (item[1] is None or item[1].isidentifier())


def _path_of(item) -> Path:
    return Path(item[0] if _is_pair(item) else item).expanduser()


def expand_sources(paths) -> list[Path]:
    """Files and folders (recursively: every file whose content is an event log, and every file whose name
    says it should be one, so that a damaged one is reported) → sorted list of files. Items may be
    ``(path, format)`` pairs."""
    items = [paths] if isinstance(paths, (str, Path)) or _is_pair(paths) else list(paths)
    out: list[Path] = []
    for item in items:
        p = _path_of(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                              and (f.name.lower().endswith(LOG_SUFFIXES) or sniff(f).kind == LOG)))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(str(_path_of(item)), None, "no such file or folder")
    return out


class EventReader:
    """Reads event sources into narrow Arrow batches, counting what each source gave.

    ``EventReader(paths).batches()`` yields :class:`EventBatch` objects; ``stats`` holds one
    :class:`IngestStats` per source (archive members count as sources of their own). A file's format is
    the one given — ``(path, format)`` items or ``formats={path: format}``, as a caller that sniffed the
    file knows it — else :func:`ttpscope.ingest.sniff.sniff` judges it by content (never by name).
    ``on_progress``, when set, is called as ``on_progress(events_read, files_done, files_total)`` every
    few thousand events.
    ``logsource``: the declared log source of records no family recognises.
    """

    def __init__(self, paths, batch_rows: int = 16_384, max_buffered: int = 49_152,
                 on_progress: Callable[[int, int, int], None] | None = None, evtx_threads: int = 1,
                 logsource: LogSource | None = None, formats: dict | None = None):
        self.logsource = logsource
        items = [paths] if isinstance(paths, (str, Path)) or _is_pair(paths) else list(paths)
        self.files = expand_sources(items)
        self.formats: dict[Path, str] = {Path(k).expanduser(): v for k, v in (formats or {}).items()}
        for item in items:
            if _is_pair(item) and item[1]:
                self.formats[_path_of(item)] = item[1]
        self.sources: list[str] = []
        self.stats: list[IngestStats] = []
        self.batch_rows = batch_rows
        self.max_buffered = max_buffered
        self.on_progress = on_progress
        self.evtx_threads = evtx_threads
        self.events_read = 0

    def batches(self) -> Iterator[EventBatch]:
        from ttpscope.ingest import readers

        batcher = Batcher(self.sources, self.batch_rows, self.max_buffered, declared=self.logsource)
        for done, path in enumerate(self.files):
            # problems of the file as a whole (unreadable archive, not a log) are counted here
            fmt = self.formats.get(path)
            file_stats = IngestStats(str(path), fmt or detect_format(path.name) or "unknown")
            for member in readers.open_members(path, file_stats, fmt):
                src = len(self.sources)
                self.sources.append(member.name)
                stats = IngestStats(member.name, member.format)
                self.stats.append(stats)
                try:
                    for rec, fields in readers.read(member.format, member.opener(), stats,
                                                    evtx_threads=self.evtx_threads):
                        yield from batcher.add(src, rec, fields)
                        self.events_read += 1
                        if self.on_progress and self.events_read & 4095 == 0:
                            self.on_progress(self.events_read, done, len(self.files))
                finally:
                    member.stream.close()
            if file_stats.rejected:
                self.stats.append(file_stats)
            if self.on_progress:
                self.on_progress(self.events_read, done + 1, len(self.files))
        yield from batcher.flush_all()

    def totals(self) -> dict[str, int]:
        return {"sources": sum(1 for s in self.stats if s.read or s.rejected),
                "read": sum(s.read for s in self.stats), "accepted": sum(s.accepted for s in self.stats),
                "rejected": sum(s.rejected for s in self.stats)}


def read_table(paths, **kwargs) -> tuple[pa.Table, EventReader]:
    """All events of small inputs as one Arrow table (union of columns, nulls where a class lacks one)."""
    reader = EventReader(paths, **kwargs)
    tables = [b.table for b in reader.batches()]
    if not tables:
        return pa.table({c: pa.array([], pa.int32() if c == SRC else pa.int64() if c == REC
                                     else TIMESTAMP if c == TIME else pa.string()) for c in BASE_COLUMNS}), reader
    return pa.concat_tables(tables, promote_options="default"), reader
