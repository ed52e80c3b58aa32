"""Feeds in the workspace: the feeds themselves, every STIX object they brought (once per id and
``modified``), their indicators with lifetimes and parsed comparisons, and indicator sightings.

The tables live in the same DuckDB file as the cases (``store/workspace.py``), so the store stays the only
owner of that file; they are created on first use and never touch the case tables. Writes are one
transaction per feed page, so an interrupted sync keeps every page it committed and its cursor.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson
import pyarrow as pa

from ttpscope.errors import InputError, NotFoundError
from ttpscope.store.workspace import Workspace, _iso, _json, _naive_utc, _one, _run

_FEED_SCHEMA = """
CREATE TABLE IF NOT EXISTS feeds (
    name VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, url VARCHAR NOT NULL, options JSON, created TIMESTAMP,
    last_sync TIMESTAMP, cursor JSON, last_report JSON);
CREATE TABLE IF NOT EXISTS feed_objects (
    feed VARCHAR NOT NULL, id VARCHAR NOT NULL, modified VARCHAR NOT NULL, type VARCHAR NOT NULL,
    revoked BOOLEAN, added TIMESTAMP, data JSON, PRIMARY KEY (feed, id, modified));
CREATE TABLE IF NOT EXISTS indicators (
    feed VARCHAR NOT NULL, id VARCHAR NOT NULL, modified VARCHAR NOT NULL, name VARCHAR, pattern VARCHAR,
    kinds VARCHAR[], valid_from TIMESTAMP, valid_until TIMESTAMP, lifetime_source VARCHAR, revoked BOOLEAN,
    to_ids BOOLEAN, supported BOOLEAN, problem VARCHAR, PRIMARY KEY (feed, id));
CREATE TABLE IF NOT EXISTS indicator_terms (
    feed VARCHAR NOT NULL, indicator_id VARCHAR NOT NULL, conj INTEGER, comp INTEGER, conj_size INTEGER,
    kind VARCHAR, op VARCHAR, value VARCHAR);
CREATE TABLE IF NOT EXISTS sightings (
    feed VARCHAR NOT NULL, indicator_id VARCHAR NOT NULL, case_id VARCHAR, source VARCHAR, host VARCHAR,
    value VARCHAR, first_seen TIMESTAMP, last_seen TIMESTAMP, count BIGINT, matched_at TIMESTAMP);
"""

FEED_KINDS = ("taxii", "bundle", "misp", "folder")


class FeedStore:
    """Feeds, their objects, indicators and sightings in the workspace file (``Workspace(path).path``)."""

    def __init__(self, path: str | Path | None = None, workspace: Workspace | None = None):
        self.workspace = workspace or Workspace(path)
        self.path = self.workspace.path
        with self._transaction() as con:
            _run(con, _FEED_SCHEMA)

    def __repr__(self) -> str:
        return f"FeedStore({str(self.path)!r})"

    # ------------------------------------------------------------------ connections
    _held = None  # a connection kept open by held(), else one per operation

    @contextmanager
    def held(self) -> Iterator[FeedStore]:
        """Keep one connection open for a run of operations (a sync: opening the file costs ~0.1 s each
        time); every operation inside still commits on its own."""
        if self._held is not None:
            yield self
            return
        self._stack = ExitStack()
        self._held = self._stack.enter_context(self.workspace._connect())
        self._held_since = time.monotonic()
        try:
            yield self
        finally:
            self._held = None
            self._stack.close()

    def breathe(self, every: float = 5.0) -> None:
        """Inside held(): after ``every`` seconds, close and reopen the file so that other processes (the
        web server, another command) get their turn at it."""
        if self._held is not None and time.monotonic() - self._held_since > every:
            self._held = None
            self._stack.close()
            self._stack = ExitStack()
            self._held = self._stack.enter_context(self.workspace._connect())
            self._held_since = time.monotonic()

    @contextmanager
    def _connect(self):
        if self._held is not None:
            yield self._held
        else:
            with self.workspace._connect() as con:
                yield con

    @contextmanager
    def _transaction(self):
        with self._connect() as con:
            _run(con, "BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                _run(con, "ROLLBACK")
                raise
            _run(con, "COMMIT")

    # ------------------------------------------------------------------ feeds
    def add_feed(self, name: str, kind: str, url: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Register a feed; a name already taken is refused."""
        if kind not in FEED_KINDS:
            raise InputError("feeds", name, f"unknown feed kind {kind!r}; one of {', '.join(FEED_KINDS)}")
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise InputError("feeds", name, "a feed name is letters, digits, '-', '_' or '.'")
        with self._transaction() as con:
            if _one(con, "SELECT name FROM feeds WHERE name = ?", [name]):
                raise InputError("feeds", name, "a feed of this name already exists; remove it first")
            _run(con, "INSERT INTO feeds VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL)",
                 [name, kind, url, _json(options or {}), _naive_utc(datetime.now(timezone.utc))])
        return self.get_feed(name)

    def get_feed(self, name: str) -> dict[str, Any]:
        with self._connect() as con:
            row = _one(con, "SELECT name, kind, url, options, created, last_sync, cursor, last_report "
                            "FROM feeds WHERE name = ?", [name])
            if row is None:
                known = [r[0] for r in _run(con, "SELECT name FROM feeds ORDER BY name")]
                raise NotFoundError(f"no feed {name!r}" + (f"; feeds: {', '.join(known)}" if known
                                                           else "; no feed yet: 'ttpscope feeds add'"))
            counts = _one(con, "SELECT count(*), count(DISTINCT id) FROM feed_objects WHERE feed = ?", [name])
        return _feed_dict(row, counts)

    def list_feeds(self) -> list[dict[str, Any]]:
        with self._connect() as con:
            rows = _run(con, "SELECT name, kind, url, options, created, last_sync, cursor, last_report "
                             "FROM feeds ORDER BY name")
            counts = {r[0]: (r[1], r[2]) for r in _run(
                con, "SELECT feed, count(*), count(DISTINCT id) FROM feed_objects GROUP BY feed")}
        return [_feed_dict(r, counts.get(r[0], (0, 0))) for r in rows]

    def remove_feed(self, name: str) -> dict[str, Any]:
        """Remove a feed and everything it brought (objects, indicators, sightings)."""
        feed = self.get_feed(name)
        with self._transaction() as con:
            for table in ("feed_objects", "indicators", "indicator_terms", "sightings"):
                _run(con, f"DELETE FROM {table} WHERE feed = ?", [name])  # table names are our constants
            _run(con, "DELETE FROM feeds WHERE name = ?", [name])
        return {"name": name, "objects": feed["objects"]}

    def save_sync_state(self, name: str, cursor: dict[str, Any] | None, report: dict[str, Any] | None) -> None:
        with self._transaction() as con:
            _run(con, "UPDATE feeds SET cursor = ?, last_report = coalesce(?, last_report), last_sync = ? "
                      "WHERE name = ?", [_json(cursor or {}), None if report is None else _json(report),
                                         _naive_utc(datetime.now(timezone.utc)), name])

    # ------------------------------------------------------------------ objects
    def store_page(self, feed: str, objects: list[dict[str, Any]], indicators: list[dict[str, Any]],
                   terms: list[dict[str, Any]], cursor: dict[str, Any] | None) -> dict[str, int]:
        """Write one page of validated objects and the feed's cursor after it, in one transaction.

        ``objects``: dicts with id, modified, type, revoked, data (the STIX object). Returns how many were
        new (id never seen from this feed), updated (a new ``modified`` of a known id) and unchanged (that
        exact version already stored). ``indicators``/``terms``: rows for the latest version of each
        indicator (replacing older ones).
        """
        out = {"new": 0, "updated": 0, "unchanged": 0}
        if not objects:
            if cursor is not None:
                with self._transaction() as con:
                    _run(con, "UPDATE feeds SET cursor = ? WHERE name = ?", [_json(cursor), feed])
            return out
        # one version per (id, modified) within the page too
        unique: dict[tuple[str, str], dict[str, Any]] = {}
        for o in objects:
            unique[(o["id"], o["modified"])] = o
        objs = list(unique.values())
        now = _naive_utc(datetime.now(timezone.utc))
        incoming = pa.table({
            "feed": pa.array([feed] * len(objs), pa.string()),
            "id": pa.array([o["id"] for o in objs], pa.string()),
            "modified": pa.array([o["modified"] for o in objs], pa.string()),
            "type": pa.array([o["type"] for o in objs], pa.string()),
            "revoked": pa.array([bool(o.get("revoked")) for o in objs], pa.bool_()),
            "added": pa.array([now] * len(objs), pa.timestamp("us")),
            "data": pa.array([o["json"] for o in objs], pa.string()),
        })
        with self._transaction() as con:
            con.register("_fo_in", incoming)
            try:
                row = _one(con, """
                    SELECT count(*) FILTER (WHERE k.id IS NULL),
                           count(*) FILTER (WHERE k.id IS NOT NULL AND v.id IS NULL),
                           count(*) FILTER (WHERE v.id IS NOT NULL)
                    FROM _fo_in i
                    LEFT JOIN (SELECT DISTINCT id FROM feed_objects WHERE feed = ?) k ON k.id = i.id
                    LEFT JOIN (SELECT id, modified FROM feed_objects WHERE feed = ?) v
                           ON v.id = i.id AND v.modified = i.modified""", [feed, feed])
                out = {"new": row[0], "updated": row[1], "unchanged": row[2]}
                _run(con, """INSERT INTO feed_objects SELECT i.* FROM _fo_in i
                             ANTI JOIN (SELECT id, modified FROM feed_objects WHERE feed = ?) v
                             ON v.id = i.id AND v.modified = i.modified""", [feed])
            finally:
                con.unregister("_fo_in")
            if indicators:
                self._upsert_indicators(con, feed, indicators, terms)
            if cursor is not None:
                _run(con, "UPDATE feeds SET cursor = ? WHERE name = ?", [_json(cursor), feed])
        return out

    @staticmethod
    def _upsert_indicators(con, feed: str, indicators: list[dict[str, Any]], terms: list[dict[str, Any]]) -> None:
        latest: dict[str, dict[str, Any]] = {}
        for ind in indicators:
            have = latest.get(ind["id"])
            if have is None or ind["modified"] >= have["modified"]:
                latest[ind["id"]] = ind
        inds = list(latest.values())
        table = pa.table({
            "feed": pa.array([feed] * len(inds), pa.string()),
            "id": pa.array([i["id"] for i in inds], pa.string()),
            "modified": pa.array([i["modified"] for i in inds], pa.string()),
            "name": pa.array([i.get("name") for i in inds], pa.string()),
            "pattern": pa.array([i.get("pattern") for i in inds], pa.string()),
            "kinds": pa.array([list(i.get("kinds") or []) for i in inds], pa.list_(pa.string())),
            "valid_from": pa.array([_naive_utc(i.get("valid_from")) for i in inds], pa.timestamp("us")),
            "valid_until": pa.array([_naive_utc(i.get("valid_until")) for i in inds], pa.timestamp("us")),
            "lifetime_source": pa.array([i.get("lifetime_source") for i in inds], pa.string()),
            "revoked": pa.array([bool(i.get("revoked")) for i in inds], pa.bool_()),
            "to_ids": pa.array([i.get("to_ids", True) is not False for i in inds], pa.bool_()),
            "supported": pa.array([bool(i.get("supported")) for i in inds], pa.bool_()),
            "problem": pa.array([i.get("problem") for i in inds], pa.string()),
        })
        keep_terms = [t for t in terms if latest.get(t["indicator_id"], {}).get("modified") == t["modified"]]
        term_table = pa.table({
            "feed": pa.array([feed] * len(keep_terms), pa.string()),
            "indicator_id": pa.array([t["indicator_id"] for t in keep_terms], pa.string()),
            "conj": pa.array([t["conj"] for t in keep_terms], pa.int32()),
            "comp": pa.array([t["comp"] for t in keep_terms], pa.int32()),
            "conj_size": pa.array([t["conj_size"] for t in keep_terms], pa.int32()),
            "kind": pa.array([t["kind"] for t in keep_terms], pa.string()),
            "op": pa.array([t["op"] for t in keep_terms], pa.string()),
            "value": pa.array([t["value"] for t in keep_terms], pa.string()),
        })
        con.register("_ind_in", table)
        con.register("_term_in", term_table)
        try:
            # an older version arriving after a newer one never replaces it
            _run(con, """CREATE OR REPLACE TEMP TABLE _ind_new AS
                         SELECT i.* FROM _ind_in i LEFT JOIN indicators s ON s.feed = i.feed AND s.id = i.id
                         WHERE s.id IS NULL OR s.modified <= i.modified""")
            _run(con, "DELETE FROM indicators WHERE feed = ? AND id IN (SELECT id FROM _ind_new)", [feed])
            _run(con, "DELETE FROM indicator_terms WHERE feed = ? AND indicator_id IN (SELECT id FROM _ind_new)",
                 [feed])
            _run(con, "INSERT INTO indicators SELECT * FROM _ind_new")
            _run(con, "INSERT INTO indicator_terms SELECT t.* FROM _term_in t SEMI JOIN _ind_new n "
                      "ON n.id = t.indicator_id")
            _run(con, "DROP TABLE _ind_new")
        finally:
            con.unregister("_ind_in")
            con.unregister("_term_in")

    def mark_revoked(self, feed: str, ids: Iterable[str]) -> None:
        """Indicators whose newest object says ``revoked`` are never matched again."""
        ids = list(ids)
        if not ids:
            return
        with self._transaction() as con:
            _run(con, "UPDATE indicators SET revoked = true WHERE feed = ? AND list_contains(?, id)", [feed, ids])

    def objects(self, feed: str | None = None, types: Iterable[str] | None = None, latest: bool = True,
                include_revoked: bool = True) -> list[dict[str, Any]]:
        """Stored STIX objects (the newest version of each id by default), optionally of some types."""
        where, params = ["1=1"], []
        if feed:
            where.append("feed = ?")
            params.append(feed)
        if types:
            where.append("list_contains(?, type)")
            params.append(list(types))
        sql = f"SELECT feed, data, revoked FROM feed_objects WHERE {' AND '.join(where)}"
        if latest:
            sql = (f"SELECT feed, data, revoked FROM (SELECT *, row_number() OVER (PARTITION BY feed, id ORDER BY "
                   f"modified DESC) AS rn FROM feed_objects WHERE {' AND '.join(where)}) WHERE rn = 1")
        sql += " ORDER BY feed, id"
        with self._connect() as con:
            rows = _run(con, sql, params)
        out = []
        for feed_name, data, revoked in rows:
            if revoked and not include_revoked:
                continue
            obj = orjson.loads(data)
            obj["x_ttpscope_feed"] = feed_name
            out.append(obj)
        return out

    def indicator_objects(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The newest stored STIX object of each (feed, indicator id) asked for (the sighted ones only, so a
        case with three sightings does not read a feed of a million indicators)."""
        keys = sorted(set(keys))
        if not keys:
            return {}
        wanted = pa.table({"feed": pa.array([k[0] for k in keys], pa.string()),
                           "id": pa.array([k[1] for k in keys], pa.string())})
        with self._connect() as con:
            con.register("_want", wanted)
            try:
                rows = _run(con, """SELECT o.feed, o.id, arg_max(o.data, o.modified) FROM feed_objects o
                                    SEMI JOIN _want w ON w.feed = o.feed AND w.id = o.id GROUP BY o.feed, o.id""")
            finally:
                con.unregister("_want")
        return {(r[0], r[1]): orjson.loads(r[2]) for r in rows}

    def object_versions(self, feed: str, object_id: str) -> list[dict[str, Any]]:
        with self._connect() as con:
            rows = _run(con, "SELECT modified, revoked FROM feed_objects WHERE feed = ? AND id = ? ORDER BY modified",
                        [feed, object_id])
        return [{"modified": r[0], "revoked": bool(r[1])} for r in rows]

    # ------------------------------------------------------------------ indicators
    def indicators(self, feed: str | None = None, state: str | None = None,
                   at: datetime | None = None) -> list[dict[str, Any]]:
        """Indicators with their state at ``at`` (now): current, expired, not-yet-valid, revoked,
        not-for-detection (MISP ``to_ids`` false) or unsupported (pattern not matchable). ``state`` filters."""
        at = _naive_utc(at or datetime.now(timezone.utc))
        params: list[Any] = [at, at]
        where = ""
        if feed:
            where = "WHERE feed = ?"
            params.append(feed)
        with self._connect() as con:
            rows = _run(con, f"""
                SELECT feed, id, modified, name, pattern, kinds, valid_from, valid_until, lifetime_source, revoked,
                       to_ids, supported, problem,
                       CASE WHEN revoked THEN 'revoked'
                            WHEN NOT to_ids THEN 'not-for-detection'
                            WHEN NOT supported THEN 'unsupported'
                            WHEN valid_until IS NOT NULL AND valid_until <= ? THEN 'expired'
                            WHEN valid_from IS NOT NULL AND valid_from > ? THEN 'not-yet-valid'
                            ELSE 'current' END AS state
                FROM indicators {where} ORDER BY feed, id""", params)
        out = [{"feed": r[0], "id": r[1], "modified": r[2], "name": r[3], "pattern": r[4], "kinds": list(r[5] or []),
                "valid_from": _iso(r[6]), "valid_until": _iso(r[7]), "lifetime_source": r[8], "revoked": bool(r[9]),
                "to_ids": bool(r[10]), "supported": bool(r[11]), "problem": r[12], "state": r[13]} for r in rows]
        return [i for i in out if state is None or i["state"] == state]

    def current_terms(self, at: datetime | None = None, feeds: Iterable[str] | None = None) -> pa.Table:
        """The comparisons of every current indicator, as an Arrow table for the matcher:
        feed, indicator_id, conj, comp, conj_size, kind, op, value."""
        at = _naive_utc(at or datetime.now(timezone.utc))
        params: list[Any] = [at, at]
        extra = ""
        if feeds is not None:
            extra = "AND list_contains(?, i.feed)"
            params.append(list(feeds))
        with self._connect() as con:
            return con.sql(f"""
                SELECT t.feed, t.indicator_id, t.conj, t.comp, t.conj_size, t.kind, t.op, t.value
                FROM indicator_terms t JOIN indicators i ON i.feed = t.feed AND i.id = t.indicator_id
                WHERE NOT i.revoked AND i.to_ids AND i.supported
                  AND (i.valid_until IS NULL OR i.valid_until > ?) AND (i.valid_from IS NULL OR i.valid_from <= ?)
                  {extra}
                ORDER BY t.feed, t.indicator_id, t.conj, t.comp""", params=params).to_arrow_table()

    # ------------------------------------------------------------------ sightings
    def save_sightings(self, sightings: Iterable[Any], case_id: str | None = None, replace: bool = True) -> int:
        """Store sightings (``Sighting`` records or their dicts) for a case (or none); with ``replace`` the
        case's earlier sightings go first, so re-running a match does not double the counts."""
        rows = [s.to_dict() if hasattr(s, "to_dict") else dict(s) for s in sightings]
        now = _naive_utc(datetime.now(timezone.utc))
        with self._transaction() as con:
            if replace:
                _run(con, "DELETE FROM sightings WHERE case_id IS NOT DISTINCT FROM ?", [case_id])
            for r in rows:
                _run(con, "INSERT INTO sightings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     [r["feed"], r["indicator_id"], case_id, r.get("source"), r.get("host"), r.get("value"),
                      _naive_utc(r.get("first_seen")), _naive_utc(r.get("last_seen")), int(r.get("count") or 0), now])
        return len(rows)

    def sightings(self, case_id: str | None = None, all_cases: bool = False) -> list[dict[str, Any]]:
        sql = ("SELECT feed, indicator_id, case_id, source, host, value, first_seen, last_seen, count FROM sightings")
        params: list[Any] = []
        if not all_cases:
            sql += " WHERE case_id IS NOT DISTINCT FROM ?"
            params.append(case_id)
        sql += " ORDER BY count DESC, feed, indicator_id, source, host"
        with self._connect() as con:
            rows = _run(con, sql, params)
        return [{"feed": r[0], "indicator_id": r[1], "case_id": r[2], "source": r[3], "host": r[4], "value": r[5],
                 "first_seen": _iso(r[6]), "last_seen": _iso(r[7]), "count": r[8]} for r in rows]


def _feed_dict(row: tuple, counts: tuple) -> dict[str, Any]:
    name, kind, url, options, created, last_sync, cursor, last_report = row
    return {"name": name, "kind": kind, "url": url, "options": orjson.loads(options) if options else {},
            "created": _iso(created), "last_sync": _iso(last_sync), "cursor": orjson.loads(cursor) if cursor else {},
            "last_report": orjson.loads(last_report) if last_report else None,
            "objects": counts[0] if counts else 0, "ids": counts[1] if counts else 0}
