"""The workspace: every case with its observations, detections (and their events) and documents, kept in
one DuckDB file under ``ttpscope.paths.home()``.

Each write is one DuckDB transaction, so a process killed in the middle of a save leaves the workspace as
it was before that save (DuckDB's write-ahead log drops the uncommitted transaction on the next open).
Connections are opened per operation and closed at once: DuckDB lets only one process hold a file open for
writing, and the CLI, the web server and tests may all reach for the same workspace.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import duckdb
import orjson
import pyarrow as pa

from ttpscope.errors import InputError, NotFoundError, TtpscopeError, WriteError
from ttpscope.model import Case, Detection, Observation, ReportDocument, Review, parse_time
from ttpscope.paths import home

SCHEMA_VERSION = "1"
WORKSPACE_FILE = "workspace.duckdb"
LOCK_WAIT_SECONDS = 15.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS cases (
    id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, created TIMESTAMP, updated TIMESTAMP, meta JSON);
CREATE TABLE IF NOT EXISTS observations (
    case_id VARCHAR NOT NULL, ord INTEGER NOT NULL, id VARCHAR NOT NULL, technique_id VARCHAR NOT NULL,
    tactic_ids VARCHAR[], source_kind VARCHAR NOT NULL, source_ref VARCHAR, evidence JSON, time TIMESTAMP,
    host VARCHAR, "user" VARCHAR, document VARCHAR, confidence DOUBLE, count INTEGER, first_seen TIMESTAMP,
    last_seen TIMESTAMP);
CREATE TABLE IF NOT EXISTS detections (
    case_id VARCHAR NOT NULL, ord INTEGER NOT NULL, id VARCHAR NOT NULL, rule_id VARCHAR, title VARCHAR,
    level VARCHAR, techniques VARCHAR[], time TIMESTAMP, host VARCHAR, source VARCHAR, record VARCHAR,
    data JSON);
CREATE TABLE IF NOT EXISTS documents (
    case_id VARCHAR NOT NULL, ord INTEGER NOT NULL, id VARCHAR NOT NULL, name VARCHAR, kind VARCHAR,
    sha256 VARCHAR, data JSON);
"""
# workspaces made before observations were aggregated get the aggregate's columns (empty: one hit each)
_UPGRADE = """
ALTER TABLE observations ADD COLUMN IF NOT EXISTS count INTEGER;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS first_seen TIMESTAMP;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS last_seen TIMESTAMP;
"""
# Analysts' decisions live apart from what the evidence produced, so replacing a case's observations (a
# re-run, a re-investigation) keeps them. Created on every open: older workspaces gain the table.
_REVIEWS = """
CREATE TABLE IF NOT EXISTS reviews (
    case_id VARCHAR NOT NULL, target VARCHAR NOT NULL, state VARCHAR NOT NULL, "by" VARCHAR, note VARCHAR,
    time TIMESTAMP, confidence INTEGER, fingerprint VARCHAR, PRIMARY KEY (case_id, target));
"""


def default_path() -> Path:
    """The workspace file of this user: ``<TTPSCOPE_HOME>/workspace.duckdb``."""
    return home() / WORKSPACE_FILE


def as_record(item: Detection | ReportDocument, kind: type) -> dict[str, Any]:
    """The stored form of a Detection or a ReportDocument (``to_dict``); anything else is refused."""
    if not isinstance(item, kind):
        raise TypeError(f"cannot store {type(item).__name__} as a {kind.__name__}")
    return item.to_dict()


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _naive_utc(value: Any) -> datetime | None:
    """Times are stored as naive UTC so that no session time zone ever shifts them."""
    try:
        dt = parse_time(value) if not isinstance(value, datetime) else value
    except ValueError:
        return None
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt


def _aware(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=timezone.utc) if dt is not None else None


def _record_id(prefix: str, record: dict[str, Any], keys: Iterable[str]) -> str:
    """A stable id for a record that brings none, from the fields that identify it."""
    ident = _json([record.get(k) for k in keys])
    return prefix + hashlib.sha256(ident.encode()).hexdigest()[:20]


def detection_id(det: dict[str, Any]) -> str:
    """A detection is one rule on one event of one source."""
    return str(det.get("id") or _record_id("d", det, ("rule_id", "source", "record", "time", "host")))


def document_id(doc: dict[str, Any]) -> str:
    """A document is its content (sha256) when known, else its name."""
    return str(doc.get("id") or doc.get("sha256") or _record_id("doc", doc, ("name", "path")))


class Workspace:
    """Cases and everything found for them, in one DuckDB file.

    ``Workspace()`` uses ``<TTPSCOPE_HOME>/workspace.duckdb``; ``Workspace(path)`` any other file. Case
    names are unique in a workspace, so a case can be referred to by id or by name. When another process
    holds the file, an operation waits up to ``lock_wait`` seconds before giving up with a clear error.
    """

    def __init__(self, path: str | Path | None = None, lock_wait: float = LOCK_WAIT_SECONDS):
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.lock_wait = lock_wait
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            current = None
            try:
                row = _one(con, "SELECT value FROM meta WHERE key = 'schema'")
                current = row[0] if row else None
            except duckdb.CatalogException:
                pass
            if current is None:
                _run(con, "BEGIN TRANSACTION")
                _run(con, _SCHEMA)
                _run(con, "INSERT OR REPLACE INTO meta VALUES ('schema', ?)", [SCHEMA_VERSION])
                _run(con, "COMMIT")
            elif current != SCHEMA_VERSION:
                raise InputError(str(self.path), None, f"workspace schema {current} is not the supported "
                                 f"{SCHEMA_VERSION}; use a new TTPSCOPE_HOME or export and re-import the cases")
            else:
                _run(con, _UPGRADE)
            _run(con, _REVIEWS)

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"

    # ------------------------------------------------------------------ connections
    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline = time.monotonic() + self.lock_wait
        while True:
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise InputError(str(self.path), None, f"cannot open the workspace: {exc}") from exc
                if time.monotonic() > deadline:
                    raise TtpscopeError(f"{self.path}: the workspace is held by another process "
                                        f"(waited {self.lock_wait:.0f} s)") from exc
                time.sleep(0.2)
            except duckdb.Error as exc:
                raise InputError(str(self.path), None, f"not a readable workspace: {exc}") from exc
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connect() as con:
            _run(con, "BEGIN TRANSACTION")
            try:
                yield con
                _run(con, "COMMIT")
            except duckdb.Error as exc:
                _rollback(con)
                if _write_failure(exc):  # e.g. a full disk at commit: DuckDB keeps none of the transaction
                    raise WriteError(f"{self.path}: cannot write the workspace ({_reason(exc)}); nothing of "
                                     "this change was saved") from exc
                raise
            except BaseException:
                _rollback(con)
                raise

    # ------------------------------------------------------------------ lookups
    def _case_row(self, con, ref: str) -> tuple | None:
        row = _one(con, "SELECT id, name, created, updated, meta FROM cases WHERE id = ?", [ref])
        if row is None:
            row = _one(con, "SELECT id, name, created, updated, meta FROM cases WHERE name = ?",
                              [ref])
        if row is None:  # names are matched case-insensitively as a last resort
            rows = _run(con, "SELECT id, name, created, updated, meta FROM cases WHERE lower(name) = lower(?)",
                               [ref])
            row = rows[0] if len(rows) == 1 else None
        return row

    def _require(self, con, ref: str) -> tuple:
        row = self._case_row(con, str(ref))
        if row is None:
            known = [r[0] for r in _run(con, "SELECT name FROM cases ORDER BY name")]
            hint = f"; cases: {', '.join(known[:10])}" if known else "; the workspace has no cases"
            raise NotFoundError(f"no case {ref!r} in {self.path}{hint}")
        return row

    def has_case(self, ref: str) -> bool:
        with self._connect() as con:
            return self._case_row(con, str(ref)) is not None

    def get_case(self, ref: str) -> Case:
        """The case with this id or name, with all its observations in their saved order."""
        with self._connect() as con:
            cid, name, created, updated, meta = self._require(con, ref)
            rows = _run(con, 
                'SELECT id, technique_id, tactic_ids, source_kind, source_ref, evidence, time, host, "user", '
                "document, confidence, count, first_seen, last_seen FROM observations WHERE case_id = ? "
                "ORDER BY ord", [cid])
        observations = [
            Observation(id=r[0], technique_id=r[1], tactic_ids=list(r[2] or []), source_kind=r[3],
                        source_ref=r[4] or "", evidence=orjson.loads(r[5]) if r[5] else {}, time=_aware(r[6]),
                        host=r[7], user=r[8], document=r[9], confidence=r[10] if r[10] is not None else 1.0,
                        count=r[11] or 1, first_seen=_aware(r[12]), last_seen=_aware(r[13]))
            for r in rows]
        return Case(name=name, observations=observations, id=cid, created=_aware(created) or datetime.now(timezone.utc),
                    updated=_aware(updated) or datetime.now(timezone.utc), meta=orjson.loads(meta) if meta else {})

    def get_detections(self, ref: str) -> list[Detection]:
        """The detections stored with a case (rule hits with their event), in saved order."""
        with self._connect() as con:
            cid = self._require(con, ref)[0]
            rows = _run(con, "SELECT data FROM detections WHERE case_id = ? ORDER BY ord", [cid])
        return [Detection.from_dict(orjson.loads(r[0])) for r in rows]

    def get_documents(self, ref: str) -> list[ReportDocument]:
        """The documents (reports) stored with a case, in saved order."""
        with self._connect() as con:
            cid = self._require(con, ref)[0]
            rows = _run(con, "SELECT data FROM documents WHERE case_id = ? ORDER BY ord", [cid])
        return [ReportDocument.from_dict(orjson.loads(r[0])) for r in rows]

    def get_reviews(self, ref: str) -> list[Review]:
        """The review decisions of a case (observations, IOCs, techniques), oldest first."""
        with self._connect() as con:
            cid = self._require(con, ref)[0]
            rows = _run(con, 'SELECT target, state, "by", note, time, confidence, fingerprint FROM reviews '
                             "WHERE case_id = ? ORDER BY time, target", [cid])
        return [Review(target=r[0], state=r[1], by=r[2], note=r[3] or "", time=_aware(r[4]), confidence=r[5],
                       fingerprint=r[6]) for r in rows]

    def save_reviews(self, ref: str, reviews: Iterable[Review]) -> list[Review]:
        """Record decisions (one per target; a later one replaces the earlier). A decision back to
        ``unreviewed`` removes the target's row. The case's ``updated`` time moves, so cached analyses of
        it are recomputed."""
        items = list(reviews)
        for item in items:
            if not isinstance(item, Review):
                raise TypeError(f"cannot store {type(item).__name__} as a Review")
        with self._transaction() as con:
            cid = self._require(con, ref)[0]
            for r in items:
                _run(con, "DELETE FROM reviews WHERE case_id = ? AND target = ?", [cid, r.target])
                if r.state != "unreviewed":
                    _run(con, "INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         [cid, r.target, r.state, r.by, r.note, _naive_utc(r.time) or _naive_utc(_now()),
                          r.confidence, r.fingerprint])
            _run(con, "UPDATE cases SET updated = ? WHERE id = ?", [_naive_utc(_now()), cid])
        return items

    def list_cases(self) -> list[dict[str, Any]]:
        """A summary per case, most recently updated first: id, name, created, updated and counts."""
        with self._connect() as con:
            rows = _run(con, """
                SELECT c.id, c.name, c.created, c.updated,
                       (SELECT count(*) FROM observations o WHERE o.case_id = c.id),
                       (SELECT count(DISTINCT technique_id) FROM observations o WHERE o.case_id = c.id),
                       (SELECT count(*) FROM detections d WHERE d.case_id = c.id),
                       (SELECT count(*) FROM documents d WHERE d.case_id = c.id)
                FROM cases c ORDER BY c.updated DESC, c.id""")
        return [{"id": r[0], "name": r[1], "created": _iso(r[2]), "updated": _iso(r[3]), "observations": r[4],
                 "techniques": r[5], "detections": r[6], "documents": r[7]} for r in rows]

    # ------------------------------------------------------------------ writes
    def save_case(self, case: Case, detections: Iterable[Detection] = (), documents: Iterable[ReportDocument] = (),
                  replace: bool = False) -> Case:
        """Write a case atomically: its row and all its observations (the Case object is the truth).

        ``detections`` (rule hits) and ``documents`` (reports read for the case) are added to those already stored, deduplicated by id; with
        ``replace=True`` they replace them. A name already used by another case is refused.
        """
        for obs in case.observations:
            obs.validate()
        dets = [as_record(d, Detection) for d in detections]
        docs = [as_record(d, ReportDocument) for d in documents]
        for det in dets:
            det["id"] = detection_id(det)
        for doc in docs:
            doc["id"] = document_id(doc)
        with self._transaction() as con:
            clash = _one(con, "SELECT id FROM cases WHERE name = ? AND id <> ?", [case.name, case.id])
            if clash:
                raise InputError("workspace", case.name, f"a case of this name already exists (id {clash[0]}); "
                                 "choose another name or delete it first")
            _run(con, "DELETE FROM cases WHERE id = ?", [case.id])
            _run(con, "INSERT INTO cases VALUES (?, ?, ?, ?, ?)",
                        [case.id, case.name, _naive_utc(case.created), _naive_utc(case.updated), _json(case.meta)])
            _run(con, "DELETE FROM observations WHERE case_id = ?", [case.id])
            self._insert_observations(con, case)
            if replace:
                _run(con, "DELETE FROM detections WHERE case_id = ?", [case.id])
                _run(con, "DELETE FROM documents WHERE case_id = ?", [case.id])
            self._append_detections(con, case.id, dets)
            self._append_documents(con, case.id, docs)
        return case

    def add_to_case(self, name: str, observations: Iterable[Observation] = (), detections: Iterable[Detection] = (),
                    documents: Iterable[ReportDocument] = (), meta: dict[str, Any] | None = None) -> Case:
        """Add to the case called ``name`` (or with that id), creating it if it does not exist yet.

        This is what ``--case NAME`` options of the other commands call.
        """
        try:
            case = self.get_case(name)
        except NotFoundError:
            case = Case(name=name)
        case.add(list(observations))
        if meta:
            case.meta.update(meta)
        return self.save_case(case, detections, documents)

    def delete_case(self, ref: str) -> dict[str, Any]:
        """Remove a case and everything stored with it; returns what was removed (id, name)."""
        with self._transaction() as con:
            cid, name = self._require(con, ref)[:2]
            for table in ("observations", "detections", "documents", "reviews"):
                _run(con, f"DELETE FROM {table} WHERE case_id = ?", [cid])  # table names are our constants
            _run(con, "DELETE FROM cases WHERE id = ?", [cid])
        return {"id": cid, "name": name}

    # ------------------------------------------------------------------ bulk inserts (Arrow, not row by row)
    @staticmethod
    def _insert_observations(con, case: Case) -> None:
        obs = case.observations
        if not obs:
            return
        table = pa.table({
            "case_id": pa.array([case.id] * len(obs), pa.string()),
            "ord": pa.array(range(len(obs)), pa.int32()),
            "id": pa.array([o.id for o in obs], pa.string()),
            "technique_id": pa.array([o.technique_id for o in obs], pa.string()),
            "tactic_ids": pa.array([list(o.tactic_ids) for o in obs], pa.list_(pa.string())),
            "source_kind": pa.array([o.source_kind for o in obs], pa.string()),
            "source_ref": pa.array([o.source_ref for o in obs], pa.string()),
            "evidence": pa.array([_json(o.evidence) for o in obs], pa.string()),
            "time": pa.array([_naive_utc(o.time) for o in obs], pa.timestamp("us")),
            "host": pa.array([o.host for o in obs], pa.string()),
            "user": pa.array([o.user for o in obs], pa.string()),
            "document": pa.array([o.document for o in obs], pa.string()),
            "confidence": pa.array([o.confidence for o in obs], pa.float64()),
            "count": pa.array([o.count for o in obs], pa.int32()),
            "first_seen": pa.array([_naive_utc(o.first_seen) for o in obs], pa.timestamp("us")),
            "last_seen": pa.array([_naive_utc(o.last_seen) for o in obs], pa.timestamp("us")),
        })
        con.register("_obs_in", table)
        try:
            _run(con, "INSERT INTO observations BY NAME SELECT * FROM _obs_in")
        finally:
            con.unregister("_obs_in")

    @staticmethod
    def _append_detections(con, case_id: str, dets: list[dict[str, Any]]) -> None:
        if not dets:
            return
        have = {r[0] for r in _run(con, "SELECT id FROM detections WHERE case_id = ?", [case_id])}
        start = _one(con, "SELECT coalesce(max(ord) + 1, 0) FROM detections WHERE case_id = ?", [case_id])[0]
        fresh, seen = [], set(have)
        for det in dets:
            if det["id"] not in seen:
                seen.add(det["id"])
                fresh.append(det)
        if not fresh:
            return
        table = pa.table({
            "case_id": pa.array([case_id] * len(fresh), pa.string()),
            "ord": pa.array(range(start, start + len(fresh)), pa.int32()),
            "id": pa.array([d["id"] for d in fresh], pa.string()),
            "rule_id": pa.array([_str(d.get("rule_id")) for d in fresh], pa.string()),
            "title": pa.array([_str(d.get("title")) for d in fresh], pa.string()),
            "level": pa.array([_str(d.get("level")) for d in fresh], pa.string()),
            "techniques": pa.array([[str(t) for t in d.get("techniques") or []] for d in fresh],
                                   pa.list_(pa.string())),
            "time": pa.array([_naive_utc(d.get("time")) for d in fresh], pa.timestamp("us")),
            "host": pa.array([_str(d.get("host")) for d in fresh], pa.string()),
            "source": pa.array([_str(d.get("source")) for d in fresh], pa.string()),
            "record": pa.array([_str(d.get("record")) for d in fresh], pa.string()),
            "data": pa.array([_json(d) for d in fresh], pa.string()),
        })
        con.register("_det_in", table)
        try:
            _run(con, "INSERT INTO detections SELECT * FROM _det_in")
        finally:
            con.unregister("_det_in")

    @staticmethod
    def _append_documents(con, case_id: str, docs: list[dict[str, Any]]) -> None:
        if not docs:
            return
        have = {r[0] for r in _run(con, "SELECT id FROM documents WHERE case_id = ?", [case_id])}
        start = _one(con, "SELECT coalesce(max(ord) + 1, 0) FROM documents WHERE case_id = ?", [case_id])[0]
        for doc in docs:
            if doc["id"] in have:
                _run(con, "DELETE FROM documents WHERE case_id = ? AND id = ?", [case_id, doc["id"]])
            have.add(doc["id"])
            _run(con, "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [case_id, start, doc["id"], _str(doc.get("name")), _str(doc.get("kind")),
                         _str(doc.get("sha256")), _json(doc)])
            start += 1


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _rollback(con) -> None:
    try:
        _run(con, "ROLLBACK")
    except duckdb.Error:  # the failed commit already ended the transaction
        pass


def _write_failure(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, duckdb.IOException) or "failed to commit" in text or "could not write" in text or \
        "no space left" in text


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    for known in ("No space left on device", "Permission denied", "Read-only file system", "Disk quota exceeded"):
        if known.lower() in text.lower():
            return known
    return text[:160]


def _run(con, sql: str, params: list | None = None) -> list[tuple]:
    """Execute and drain the result: DuckDB wants each result consumed before the next statement."""
    return con.execute(sql, params or []).fetchall()


def _one(con, sql: str, params: list | None = None) -> tuple | None:
    rows = _run(con, sql, params)
    return rows[0] if rows else None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _iso(dt: datetime | None) -> str | None:
    return dt.replace(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z") if dt else None
