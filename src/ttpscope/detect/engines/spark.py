"""The Spark engine (``--engine spark``): the same compiled rules, run by Apache Spark.

Ingest batches are staged one folder of Parquet per event class; at the end each class is read back by
Spark, planned exactly as for DuckDB (:mod:`ttpscope.detect.planner`) and rendered in Spark SQL (the
``SPARK`` dialect of :mod:`ttpscope.detect.sql`: ``RLIKE`` with Java regexes, ``contains``/``startswith``,
string literals spelled with ``chr()`` for quotes). The rules run as SQL only (no Python UDF), so the
executors of a cluster need no Python.

Regexes never run unbounded: Java's backtracking only gets the patterns and values it finishes in bounded
time, RE2/J (linear, in Spark's Hadoop client) the rest (see :data:`~ttpscope.detect.sql.RE2J_PATTERN`). A
pattern RE2 cannot run (lookaround, backreference) — or, on a cluster without RE2/J, one Java could not
finish — is searched on the driver by the bounded search every engine shares
(:func:`~ttpscope.detect.ir.regex_search`, a time budget per pattern and class): the matching row numbers
go back into the SQL as a list, and a pattern over its budget disables its rule with the reason.

Where Spark runs (``master``): ``local[N]`` (default ``local[2]``), a standalone cluster
``spark://HOST:PORT``, or a Spark Connect server ``sc://HOST:PORT``; or pass ``spark=`` an existing session.
Where the events go (``stage``): ``"files"`` writes the Parquet to ``work_dir`` (a path or a URI that the
executors read too; default a local temporary folder), ``"upload"`` sends each class's Arrow table
through the session (``createDataFrame``), which works with any cluster and any Connect server but holds
each class in the driver's memory until its scan. The default is ``files`` with ``local[N]`` or a given
``work_dir``, else ``upload``. Needs the ``[spark]`` extra (pyspark) and a Java runtime (not for Connect).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from ttpscope.detect.compiled import CompiledRule
from ttpscope.detect.engines.base import RawHit
from ttpscope.detect.ir import RegexBudget, RegexBudgetExceeded, python_regex, regex_search
from ttpscope.detect.planner import ROW, Planner, lowering
from ttpscope.detect.sql import RE2J_PATTERN, SPARK, SPARK_WITHOUT_RE2J, java_regex_bounded, re2_accepts, render
from ttpscope.errors import TtpscopeError
from ttpscope.ingest.base import EventBatch

QROW = SPARK.ident(ROW)
MASTER_PREFIXES = ("local", "spark://", "sc://", "yarn", "k8s://", "mesos://")


def _reachable(master: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when no master of ``spark://H:P[,H:P]`` or ``sc://H:P`` answers (Spark
    itself retries for minutes before it gives up)."""
    scheme, rest = master.split("://", 1)
    hosts = rest.split("/", 1)[0].split(";", 1)[0].split(",")
    default = 15002 if scheme == "sc" else 7077
    problems = []
    for hp in hosts:
        parts = urlsplit(f"//{hp}")
        try:
            host, port = parts.hostname, parts.port or default
        except ValueError as exc:
            raise TtpscopeError(f"Spark master {master}: {exc}") from None
        if not host:
            raise TtpscopeError(f"Spark master {master}: no host (use {scheme}://HOST:PORT)")
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return
        except OSError as exc:
            problems.append(f"{host}:{port}: {exc.strerror or exc}")
    raise TtpscopeError(f"Spark master {master} does not answer ({'; '.join(problems)})")


def spark_session(master: str = "local[2]", app: str = "ttpscope", conf: dict | None = None):
    """A Spark session for the rendered SQL: ``local[N]``, ``spark://HOST:PORT`` (standalone cluster) or
    ``sc://HOST:PORT`` (Spark Connect). No UI, few shuffle partitions (the scans are narrow), no whole-stage
    codegen (the rule lists are too big for it). ``conf``:
    more Spark settings (``spark.executor.memory``, ...)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise TtpscopeError("the Spark engine needs pyspark: pip install 'ttpscope[spark]'") from exc
    if not master.startswith(MASTER_PREFIXES):
        raise TtpscopeError(f"Spark master {master!r}: use local[N], spark://HOST:PORT or sc://HOST:PORT")
    if master.startswith(("spark://", "sc://")):
        _reachable(master)
    # whole-stage codegen of a 200-rule CASE list overflows Java's 64 KB method limit: Janino fails after
    # seconds of work per query and Spark falls back anyway (one EVTX file, 350 rules: 59 s with it, 14 s without)
    settings = {"spark.sql.shuffle.partitions": "4", "spark.sql.codegen.wholeStage": "false", **(conf or {})}
    if master.startswith("sc://"):
        try:
            builder = SparkSession.builder.remote(master)
        except (ImportError, RuntimeError) as exc:
            raise TtpscopeError(f"Spark Connect needs pyspark's connect client: pip install 'pyspark[connect]' "
                                f"({exc})") from None
    else:
        # a Connect session made earlier in this process leaves pyspark in "connect mode" (an environment
        # flag) and every later builder would ask for a remote URL
        if "SPARK_REMOTE" not in os.environ:
            os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
        builder = SparkSession.builder.master(master).appName(app)
        settings = {"spark.ui.enabled": "false", **settings}
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def local_session(master: str = "local[2]", app: str = "ttpscope"):
    """A local Spark session (the name of :func:`spark_session` for ``local[N]``)."""
    return spark_session(master, app)


def is_remote(spark) -> bool:
    """Whether a session is a Spark Connect client."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


class SparkEngine(Planner):
    """``add(batch)`` writes Parquet; ``finish()`` runs every class on Spark. Same interface and results
    as :class:`~ttpscope.detect.engines.duckdb.DuckDBEngine`."""

    def __init__(self, compiled: Iterable[CompiledRule], spark=None, master: str = "local[2]",
                 chunk_rules: int = 200, work_dir: str | None = None, stage: str | None = None,
                 conf: dict | None = None):
        Planner.__init__(self, compiled)
        self._own = spark is None
        self.spark = spark or spark_session(master, conf=conf)
        self.master = master if spark is None else ("connect" if is_remote(spark) else spark.sparkContext.master)
        if stage is None:
            stage = "files" if work_dir is not None or self.master.startswith("local") else "upload"
        if stage not in ("files", "upload"):
            raise TtpscopeError(f"Spark stage {stage!r}: use files or upload")
        self.stage = stage
        self._tmp = tempfile.TemporaryDirectory(prefix="ttpscope-spark-") \
            if work_dir is None and stage == "files" else None
        self.fs, self.root = _filesystem(work_dir or (self._tmp.name if self._tmp else None))
        self.chunk_rules = chunk_rules
        self.dirs: dict[tuple, str] = {}
        self.held: dict[tuple, list[pa.Table]] = {}  # stage "upload": the class's tables until its scan
        self.parts: dict[tuple, int] = {}
        self._next_row = 0
        self.re2j: bool | None = None
        self.stats.update({"events": 0, "scans": 0})

    def add(self, batch: EventBatch) -> list[RawHit]:
        if batch.num_rows == 0:
            return []
        self._count_unknown(batch)
        sig, new = self._class_of(batch)
        table = batch.table.append_column(
            ROW, pa.array(range(self._next_row, self._next_row + batch.num_rows), pa.int64()))
        self._next_row += batch.num_rows
        if self.stage == "upload":
            self.held.setdefault(sig, []).append(table)
        else:
            if new:
                self.dirs[sig] = f"{self.root}/c{len(self.dirs)}"
                self.fs.create_dir(_fs_path(self.dirs[sig]), recursive=True)
            # the parts' schemas merge: the reader gives a field one spelling across all batches
            n = self.parts.get(sig, 0)
            pq.write_table(table, f"{_fs_path(self.dirs[sig])}/part-{n:05d}.parquet", filesystem=self.fs)
            self.parts[sig] = n + 1
        self.stats["events"] += batch.num_rows
        return []

    def finish(self) -> list[RawHit]:
        hits: list[RawHit] = []
        for sig in self._in_order(self.keys):
            if sig in self.dirs or sig in self.held:
                hits.extend(self._scan(sig))
        return hits

    def run(self, batches: Iterable[EventBatch]) -> Iterator[RawHit]:
        for batch in batches:
            self.add(batch)
        yield from self.finish()

    def _scan(self, sig: tuple) -> list[RawHit]:
        if self.stage == "upload":
            tables = self.held.pop(sig)
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
            df = self.spark.createDataFrame(table)
        else:
            df = self.spark.read.option("mergeSchema", "true").parquet(self.dirs[sig])
        plan = self._plan(sig, df.columns)
        self.stats["scans"] += 1
        if not plan.rules:
            return []
        df.createOrReplaceTempView("batch")
        select, cmap = lowering(plan, SPARK.ident, SPARK.fold)
        lowered = self.spark.sql(f"SELECT {', '.join(select)} FROM batch").cache()
        lowered.createOrReplaceTempView("lowered")
        driver_sql: dict[tuple[str, str, str], str] = {}  # (column, pattern, flags) → its driver-side result
        budgets: dict[tuple[str, str], RegexBudget] = {}  # per pattern, for this class
        dialect = SPARK if self._has_re2j() else SPARK_WITHOUT_RE2J
        cmap.native_regex_ok = re2_accepts if dialect is SPARK else java_regex_bounded
        cmap.python_regex = lambda col, pattern, flags: self._driver_regex(col, pattern, flags, driver_sql, budgets)
        items = []
        for rule, cond in zip(plan.rules, plan.conditions):
            try:
                items.append((rule, render(cond, cmap, dialect)))
            except RegexBudgetExceeded as exc:
                self._disable(rule, str(exc))
            except Exception as exc:  # an unsupported construct: this rule is disabled, with its reason
                self._disable(rule, f"cannot render for Spark: {' '.join(str(exc).split())}")
        matched: dict[int, set[int]] = {}
        for start in range(0, len(items), self.chunk_rules):
            for row, rules in self._run_chunk(items[start:start + self.chunk_rules]):
                matched.setdefault(row, set()).update(rules)
        lowered.unpersist()
        if not matched:
            return []
        rows = sorted(matched)
        self.spark.createDataFrame([(r,) for r in rows], f"{QROW} long").createOrReplaceTempView("hit_rows")
        events = self.spark.sql(f"SELECT b.* FROM batch b LEFT SEMI JOIN hit_rows h ON b.{QROW} = h.{QROW}").collect()
        hits = []
        for rec in sorted((r.asDict() for r in events), key=lambda r: r[ROW]):
            row = rec.pop(ROW)
            event = {k: v for k, v in rec.items() if v is not None}
            for rule in sorted(matched[row]):
                hits.append(RawHit(rule, event))
        return hits

    def _has_re2j(self) -> bool:
        """Whether the cluster's JVMs have RE2/J (asked once per engine)."""
        if self.re2j is None:
            try:
                self.spark.sql(f"SELECT java_method('{RE2J_PATTERN}', 'matches', 'a', 'a')").collect()
                self.re2j = True
            except Exception:  # no such class (a Spark without Hadoop's client), reflection refused
                self.re2j = False
        return self.re2j

    def _driver_regex(self, col: str, pattern: str, flags: str, memo: dict, budgets: dict) -> str:
        """SQL true on the rows of ``lowered`` whose ``col`` the pattern matches, searched on the driver within
        the pattern's budget for this class (:class:`RegexBudgetExceeded` when it runs out)."""
        key = (col, pattern, flags)
        if key not in memo:
            python_regex(pattern, flags)  # a bad pattern fails before any row is fetched
            budget = budgets.setdefault((pattern, flags), RegexBudget())
            rows: list[int] = []
            ids: list[int] = []
            values: list[str] = []

            def search() -> None:
                rows.extend(r for r, hit in zip(ids, regex_search(pattern, flags, values, budget)) if hit)
                ids.clear()
                values.clear()

            query = f"SELECT {QROW}, CAST({col} AS STRING) FROM lowered WHERE {col} IS NOT NULL"
            for row in self.spark.sql(query).toLocalIterator():
                ids.append(row[0])
                values.append(row[1])
                if len(ids) >= 10_000:
                    search()
            search()
            memo[key] = f"({QROW} IN ({', '.join(map(str, rows))}))" if rows else "false"
        return memo[key]

    def _run_chunk(self, items: list[tuple[int, str]]) -> list[tuple[int, list[int]]]:
        cases = ", ".join(f"CASE WHEN {expr} THEN {rule} END" for rule, expr in items)
        sql = (f"SELECT {QROW}, hits FROM (SELECT {QROW}, filter(array({cases}), x -> x IS NOT NULL) AS hits "
               f"FROM lowered) WHERE size(hits) > 0")
        try:
            return [(r[0], list(r[1])) for r in self.spark.sql(sql).collect()]
        except Exception as exc:  # Spark analysis errors, Py4J errors: isolate the rule, keep the others
            if len(items) == 1:
                self._disable(items[0][0], f"Spark query failed: {' '.join(str(exc).split())[:300]}")
                return []
            mid = len(items) // 2
            return self._run_chunk(items[:mid]) + self._run_chunk(items[mid:])

    def dataset_records(self, uri: str, stats) -> Iterator[tuple[int, dict]]:
        """Records of a dataset read by Spark itself, by URI (any Hadoop-compatible one: file://, hdfs://,
        s3a://, ...): Parquet (Hive-partitioned folders give their partition columns, e.g. ``date=``,
        ``host=``, as fields) or JSON lines (``.json``/``.jsonl``/``.ndjson``, or ``json:URI``). Rows reach
        the driver a partition at a time, numbered from 1 in Spark's order; nested values follow the JSON
        flattening rule. A JSON line Spark cannot parse is counted as rejected."""
        from ttpscope.ingest.flatten import flatten_json_event

        fmt, target = dataset_format(uri)
        try:
            if fmt == "json":
                df = self.spark.read.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", "::bad") \
                    .json(target)
            else:
                df = self.spark.read.option("mergeSchema", "true").parquet(target)
            columns = df.columns
        except Exception as exc:  # AnalysisException (no such path), Py4J errors: one line, the run goes on
            stats.reject(None, f"Spark cannot read {target}: {' '.join(str(exc).split())[:300]}")
            return
        bad = "::bad" in columns
        for n, row in enumerate(df.toLocalIterator(), start=1):
            obj = row.asDict(recursive=True)
            if bad and obj.pop("::bad", None) is not None:
                stats.reject(n, "JSON line Spark could not parse")
                continue
            try:
                fields = flatten_json_event({k: v for k, v in obj.items() if v is not None})
            except (TypeError, ValueError, RecursionError) as exc:
                stats.reject(n, f"row not flattened: {exc}")
                continue
            stats.accept()
            yield n, fields

    def close(self) -> None:
        self.held.clear()
        if self._own:
            self.spark.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def is_dataset_uri(item) -> bool:
    """Whether an input names a dataset for Spark to read (a URI, not a local path)."""
    text = str(item)
    return "://" in text and not Path(text).exists()


def dataset_format(uri: str) -> tuple[str, str]:
    """(``parquet`` or ``json``, the URI Spark reads): ``json:URI``/``parquet:URI`` say it, else the name."""
    for fmt in ("json", "parquet"):
        if uri.startswith(fmt + ":") and "://" in uri[len(fmt) + 1:]:
            return fmt, uri[len(fmt) + 1:]
    low = uri.lower().rstrip("/")
    return ("json" if low.endswith((".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz")) else "parquet"), uri


def _filesystem(where: str | None):
    """(pyarrow filesystem, root URI) of the staging folder: a local path, or a URI (file://, hdfs://,
    s3://, gs://) that pyarrow writes and Spark reads."""
    if where is None:
        return None, None
    from pyarrow import fs

    if "://" not in where:
        path = Path(where).expanduser().resolve()
        return fs.LocalFileSystem(), path.as_uri()
    try:
        filesystem, _ = fs.FileSystem.from_uri(where)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise TtpscopeError(f"Spark work folder {where}: {exc}") from None
    return filesystem, where.rstrip("/")


def _fs_path(uri: str) -> str:
    """The path pyarrow's filesystem takes for a URI of the staging folder."""
    parts = urlsplit(uri)
    return parts.path if parts.scheme == "file" else f"{parts.netloc}{parts.path}" if parts.scheme in ("s3", "gs") \
        else parts.path
