"""IOC matching: current indicators' comparisons joined against ingested events, in DuckDB.

Input: the events as the ingest's Arrow batches, and the comparisons of the current indicators as an Arrow
table (``FeedStore.current_terms()``: feed, indicator_id, conj, comp, conj_size, kind, op, value; built
from STIX patterns by ``ttpscope.feeds.patterns``). Every string column of a batch is a candidate (so
the matcher needs no field names from the log-source model), and from each value the matcher derives the
keys each kind compares: the value itself (lower case), hex runs of 32-128 characters (hashes inside
Sysmon's ``SHA1=..,MD5=..`` lists), the last path component (file and process names), the host of a URL
(domains) and the registry path with hives abbreviated (keys, matched on the key or any value under it).
Equality is a hash join; CIDR ranges, LIKE and MATCHES are range/predicate joins on the few terms that
use them. An event matches an indicator when all terms of one conjunction match it. The output is one
``Sighting`` per indicator × source × host, with first/last seen and the count of distinct events: these
are kept apart from technique observations.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

import duckdb
import pyarrow as pa

from ttpscope.ingest.base import HOST, REC, SRC, TIME, is_internal

BASE = ("_src", "_rec", "_time", "_host")  # their names in this module's SQL
INTERNAL = (SRC, REC, TIME, HOST)  # the ingest's columns they come from
# Indicator values are short; long cells (rendered messages, script blocks) are free text, where a value is
# not a field of its own. Skipping them halves the matching time on Windows events; a hash list such as
# Sysmon's Hashes field (~200 characters) is well inside the second bound.
MAX_CELL = 2048
MAX_HASH_LIST = 512
FLUSH_CELLS = 4_000_000  # keys are buffered over batches and joined with the terms once per this many cells

# which derived keys each kind compares by equality
_KEYS_OF_KIND = {
    "ip": ("x",), "domain": ("x", "u"), "url": ("x",), "hash": ("x", "h"), "filename": ("x", "b"),
    "process": ("x", "b"), "regkey": ("r",), "email": ("x",), "mutex": ("x",),
}


@dataclass
class Sighting:
    """A current indicator matched on events: which indicator (and feed), where, first/last seen, how often."""

    indicator_id: str
    feed: str
    source: str | None  # the event source (file, archive member)
    host: str | None
    first_seen: datetime | None
    last_seen: datetime | None
    count: int  # distinct events
    value: str | None = None  # the indicator value that matched (first comparison of its pattern)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("first_seen", "last_seen"):
            if d[k] is not None:
                d[k] = d[k].isoformat().replace("+00:00", "Z")
        return d


@dataclass
class MatchResult:
    sightings: list[Sighting]
    events: int = 0
    batches: int = 0
    indicators: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"events": self.events, "batches": self.batches, "indicators": self.indicators,
                "seconds": round(self.seconds, 3), "sightings": [s.to_dict() for s in self.sightings],
                "notes": self.notes}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class IndicatorMatcher:
    """Holds the terms in a DuckDB connection; ``add(batch)`` matches one batch, ``result()`` aggregates."""

    def __init__(self, terms: pa.Table, threads: int | None = None):
        self.con = duckdb.connect()
        if threads:
            self._run(f"SET threads = {int(threads)}")
        self.con.register("_terms_in", terms)
        # comparison numbers are per indicator in the store: give each one a number of its own here
        self._run("CREATE TABLE comps AS SELECT dense_rank() OVER (ORDER BY feed, indicator_id, conj, comp) AS comp, "
                  "feed, indicator_id, conj, conj_size, kind, op, value FROM (SELECT DISTINCT * FROM _terms_in)")
        self.con.unregister("_terms_in")
        kk_rows = [(kind, kk) for kind, kks in _KEYS_OF_KIND.items() for kk in kks]
        self._run("CREATE TABLE kind_keys (kind VARCHAR, kk VARCHAR)")
        if kk_rows:
            self.con.executemany("INSERT INTO kind_keys VALUES (?, ?)", kk_rows)
        self._run("""CREATE TABLE t_eq AS SELECT c.comp, k.kk, c.value AS key FROM comps c
                            JOIN kind_keys k ON k.kind = c.kind WHERE c.op = 'eq'""")
        self._run(r"""CREATE TABLE t_cidr AS SELECT comp,
                   (split_part(net, '.', 1)::BIGINT << 24) + (split_part(net, '.', 2)::BIGINT << 16)
                 + (split_part(net, '.', 3)::BIGINT << 8) + split_part(net, '.', 4)::BIGINT AS lo,
                   bits FROM (SELECT comp, split_part(value, '/', 1) AS net, split_part(value, '/', 2)::INT AS bits
                              FROM comps WHERE op = 'cidr')""")
        self._run("CREATE TABLE t_cidr2 AS SELECT comp, lo, lo + (1::BIGINT << (32 - bits)) - 1 AS hi FROM t_cidr")
        self._run("CREATE TABLE t_like AS SELECT comp, value FROM comps WHERE op = 'like'")
        self._run("CREATE TABLE t_regex AS SELECT comp, value FROM comps WHERE op = 'regex'")
        self._run("CREATE TABLE t_regprefix AS SELECT comp, value || '\\' AS prefix FROM comps "
                         "WHERE kind = 'regkey' AND op = 'eq'")
        self._run("""CREATE TABLE acc (feed VARCHAR, indicator_id VARCHAR, _src INTEGER, _host VARCHAR,
                            first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, n BIGINT)""")
        counts = self._run("SELECT count(DISTINCT (feed, indicator_id)), "
                                  "list(DISTINCT kk) FROM comps JOIN kind_keys USING (kind)")[0]
        self.indicators = counts[0] or 0
        self.needed = set(counts[1] or [])
        for table, kk in (("t_cidr2", "x"), ("t_like", "x"), ("t_regex", "x")):
            if self._run(f"SELECT count(*) FROM {table}")[0][0]:
                self.needed.add(kk)
        self.has = {t: self._run(f"SELECT count(*) FROM {t}")[0][0] > 0
                    for t in ("t_eq", "t_cidr2", "t_like", "t_regex", "t_regprefix")}
        self._run("CREATE TEMP TABLE keys (_src INTEGER, _rec BIGINT, kk VARCHAR, key VARCHAR)")
        self._run("CREATE TEMP TABLE events (_src INTEGER, _rec BIGINT, _time TIMESTAMPTZ, _host VARCHAR)")
        self.buffered = 0
        self.sources: list[str] = []
        self.events = 0
        self.batches = 0

    def _run(self, sql: str, params: list | None = None) -> list[tuple]:
        """Execute and drain: DuckDB wants each result consumed before the next statement."""
        return self.con.execute(sql, params or []).fetchall()

    def add(self, table: pa.Table, sources: list[str] | None = None) -> None:
        """Match one batch of events (an Arrow table with _src/_rec/_time/_host and string fields)."""
        if sources is not None:
            self.sources = sources
        self.events += table.num_rows
        self.batches += 1
        if not self.indicators or table.num_rows == 0:
            return
        for internal in INTERNAL:
            if internal not in table.column_names:
                raise ValueError(f"event batch without {internal!r}")
        fields = [f.name for f in table.schema if not is_internal(f.name)
                  and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]
        if not fields:
            return
        # the SQL below names the ingest's columns _src/_rec/_time/_host and the fields c0, c1, ...: no event
        # field name (Splunk's own _time, say) can collide with either
        table = pa.table([table.column(c) for c in INTERNAL] + [table.column(f) for f in fields],
                         names=list(BASE) + [f"c{i}" for i in range(len(fields))])
        cols = [f"c{i}" for i in range(len(fields))]
        con = self.con
        con.register("_b", table)
        try:
            collist = ", ".join(_q(c) for c in cols)
            cells = f"""
                SELECT _src, _rec, lower(val) AS v
                FROM (UNPIVOT (SELECT _src, _rec, {collist} FROM _b)
                      ON {collist} INTO NAME col VALUE val)
                WHERE strlen(val) BETWEEN 2 AND {MAX_CELL}"""
            parts = []
            if "x" in self.needed:
                parts.append("SELECT _src, _rec, 'x' AS kk, v AS key FROM cells")
            if "h" in self.needed:
                parts.append("SELECT _src, _rec, 'h', unnest(regexp_extract_all(v, '[0-9a-f]{32,128}')) "
                             f"FROM cells WHERE strlen(v) BETWEEN 32 AND {MAX_HASH_LIST}")
            if "b" in self.needed:
                parts.append(r"SELECT _src, _rec, 'b', regexp_extract(v, '[^\\/]+$') FROM cells "
                             r"WHERE contains(v, '\') OR contains(v, '/')")
            if "u" in self.needed:
                parts.append("SELECT _src, _rec, 'u', regexp_extract(v, "
                             "'^[a-z][a-z0-9+.-]*://(?:[^/@]*@)?([^/:?#]+)', 1) FROM cells WHERE contains(v, '://')")
            if "r" in self.needed:
                parts.append("SELECT _src, _rec, 'r', rtrim(regexp_replace(regexp_replace(regexp_replace("
                             "regexp_replace(regexp_replace(v, '^hkey_local_machine', 'hklm'), '^hkey_current_user', "
                             "'hkcu'), '^hkey_users', 'hku'), '^hkey_classes_root', 'hkcr'), '^hkey_current_config', "
                             "'hkcc'), '\\') FROM cells WHERE v LIKE 'hk%'")
            if not parts:
                return
            self._run(f"INSERT INTO keys WITH cells AS ({cells}) " + " UNION ALL ".join(parts))
            self._run("INSERT INTO events SELECT _src, _rec, _time, _host FROM _b")
            self.buffered += table.num_rows * len(cols)
        finally:
            con.unregister("_b")
        if self.buffered > FLUSH_CELLS:
            self.flush()

    def flush(self) -> None:
        """Join the buffered keys with the terms (one hash join for many batches), then empty the buffer."""
        if not self.buffered:
            return
        hits = []
        if self.has["t_eq"]:
            hits.append("SELECT e.comp, k._src, k._rec FROM keys k "
                        "JOIN t_eq e ON e.kk = k.kk AND e.key = k.key")
        if self.has["t_cidr2"]:
            hits.append(r"""SELECT c.comp, k._src, k._rec FROM
                (SELECT *, (split_part(key, '.', 1)::BIGINT << 24) + (split_part(key, '.', 2)::BIGINT << 16)
                         + (split_part(key, '.', 3)::BIGINT << 8) + split_part(key, '.', 4)::BIGINT AS ip
                 FROM keys WHERE kk = 'x' AND regexp_full_match(key,
                    '(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}')) k
                JOIN t_cidr2 c ON k.ip BETWEEN c.lo AND c.hi""")
        if self.has["t_like"]:
            hits.append("SELECT l.comp, k._src, k._rec FROM keys k JOIN t_like l "
                        "ON k.kk = 'x' AND k.key LIKE l.value")
        if self.has["t_regex"]:
            hits.append("SELECT r.comp, k._src, k._rec FROM keys k JOIN t_regex r "
                        "ON k.kk = 'x' AND regexp_matches(k.key, r.value)")
        if self.has["t_regprefix"] and "r" in self.needed:
            hits.append("SELECT p.comp, k._src, k._rec FROM keys k JOIN t_regprefix p "
                        "ON k.kk = 'r' AND starts_with(k.key, p.prefix)")
        if hits:
            self._run(f"""INSERT INTO acc
                WITH hits AS ({' UNION ALL '.join(hits)}),
                sat AS (SELECT DISTINCT c.feed, c.indicator_id, h._src, h._rec
                        FROM hits h JOIN comps c USING (comp)
                        GROUP BY c.feed, c.indicator_id, c.conj, h._src, h._rec
                        HAVING count(DISTINCT h.comp) = any_value(c.conj_size))
                -- time and host only for the events that matched, not for every cell
                SELECT s.feed, s.indicator_id, s._src, b._host, min(b._time), max(b._time), count(*)
                FROM sat s JOIN events b ON b._src = s._src AND b._rec = s._rec
                GROUP BY s.feed, s.indicator_id, s._src, b._host""")
        self._run("DELETE FROM keys")
        self._run("DELETE FROM events")
        self.buffered = 0

    def result(self) -> list[Sighting]:
        self.flush()
        rows = self._run("""
            SELECT a.feed, a.indicator_id, a._src, a._host, min(a.first_seen), max(a.last_seen), sum(a.n)::BIGINT,
                   (SELECT value FROM comps c WHERE c.feed = a.feed AND c.indicator_id = a.indicator_id
                    ORDER BY comp LIMIT 1)
            FROM acc a GROUP BY a.feed, a.indicator_id, a._src, a._host""")
        out = [Sighting(r[1], r[0], self.sources[r[2]] if r[2] is not None and 0 <= r[2] < len(self.sources) else None,
                        r[3], r[4], r[5], int(r[6]), r[7]) for r in rows]
        out.sort(key=lambda s: (-s.count, s.feed, s.indicator_id, s.source or "", s.host or ""))
        return out

    def close(self) -> None:
        self.con.close()


def feeding(batches: Iterable[Any], matcher: IndicatorMatcher) -> Iterator[Any]:
    """Pass event batches on unchanged, matching each on the way (the detection engine's single pass)."""
    for batch in batches:
        matcher.add(batch.table, batch.sources)
        yield batch


def match_indicators(batches: Iterable[Any], terms: pa.Table, threads: int | None = None) -> MatchResult:
    """Match current indicators (``terms``) on event batches (``EventBatch`` objects, or (table, sources)
    pairs). Returns the sightings and how many events were scanned."""
    t0 = time.perf_counter()
    matcher = IndicatorMatcher(terms, threads)
    try:
        for batch in batches:
            if isinstance(batch, tuple):
                table, sources = batch
            else:
                table, sources = batch.table, batch.sources
            matcher.add(table, sources)
        sightings = matcher.result()
    finally:
        matcher.close()
    res = MatchResult(sightings, matcher.events, matcher.batches, matcher.indicators, time.perf_counter() - t0)
    if not matcher.indicators:
        res.notes.append("no current indicator to match")
    return res


def match_files(paths: str | Path | Iterable[str | Path], terms: pa.Table, threads: int | None = None
                ) -> tuple[MatchResult, dict[str, int]]:
    """Read event files (any format the ingest reads) and match the indicators on them; also returns the
    ingest's read / accepted / rejected totals."""
    from ttpscope.ingest import EventReader

    reader = EventReader(paths)
    res = match_indicators(reader.batches(), terms, threads)
    return res, reader.totals()
