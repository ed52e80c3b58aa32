"""The Spark engine (``--engine spark``): the same compiled rules, run by Apache Spark over Parquet.

Ingest batches are written as Parquet, one folder per event class; at the end each class is read back by
Spark, planned exactly as for DuckDB (:mod:`ttpscope.detect.planner`) and rendered in Spark SQL (the
``SPARK`` dialect of :mod:`ttpscope.detect.sql`: ``RLIKE`` with Java regexes, ``contains``/``startswith``,
string literals spelled with ``chr()`` for quotes). Spark runs in local mode by default
(``master="local[2]"``); pass ``spark=`` an existing session to run on a cluster. Needs the ``[spark]``
extra (pyspark) and a Java runtime.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ttpscope.detect.compiler import CompiledRule
from ttpscope.detect.engines.base import RawHit
from ttpscope.detect.planner import ROW, Planner, lowering
from ttpscope.detect.sql import SPARK, render
from ttpscope.errors import TtpscopeError
from ttpscope.ingest.base import EventBatch

QROW = SPARK.ident(ROW)


def local_session(master: str = "local[2]", app: str = "ttpscope"):
    """A local Spark session for the rendered SQL (no UI, few shuffle partitions: the scans are narrow)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise TtpscopeError("the Spark engine needs pyspark: pip install 'ttpscope[spark]'") from exc
    return (SparkSession.builder.master(master).appName(app)
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .getOrCreate())


class SparkEngine(Planner):
    """``add(batch)`` writes Parquet; ``finish()`` runs every class on Spark. Same interface and results
    as :class:`~ttpscope.detect.engines.duckdb.DuckDBEngine`."""

    def __init__(self, compiled: Iterable[CompiledRule], spark=None, master: str = "local[2]",
                 chunk_rules: int = 200, work_dir: str | None = None):
        Planner.__init__(self, compiled)
        self._own = spark is None
        self.spark = spark or local_session(master)
        self._tmp = tempfile.TemporaryDirectory(prefix="ttpscope-spark-") if work_dir is None else None
        self.root = Path(work_dir or self._tmp.name)
        self.chunk_rules = chunk_rules
        self.dirs: dict[tuple, Path] = {}
        self.parts: dict[tuple, int] = {}
        self._next_row = 0
        self.stats.update({"events": 0, "scans": 0})

    def add(self, batch: EventBatch) -> list[RawHit]:
        if batch.num_rows == 0:
            return []
        self._count_unknown(batch)
        sig, new = self._class_of(batch)
        if new:
            self.dirs[sig] = self.root / f"c{len(self.dirs)}"
            self.dirs[sig].mkdir(parents=True)
        table = batch.table.append_column(
            ROW, pa.array(range(self._next_row, self._next_row + batch.num_rows), pa.int64()))
        self._next_row += batch.num_rows
        # the parts' schemas merge: the reader gives a field one spelling across all batches
        n = self.parts.get(sig, 0)
        pq.write_table(table, self.dirs[sig] / f"part-{n:05d}.parquet")
        self.parts[sig] = n + 1
        self.stats["events"] += batch.num_rows
        return []

    def finish(self) -> list[RawHit]:
        hits: list[RawHit] = []
        for sig in self._in_order(self.dirs):
            hits.extend(self._scan(sig))
        return hits

    def run(self, batches: Iterable[EventBatch]) -> Iterator[RawHit]:
        for batch in batches:
            self.add(batch)
        yield from self.finish()

    def _scan(self, sig: tuple) -> list[RawHit]:
        df = self.spark.read.option("mergeSchema", "true").parquet(str(self.dirs[sig]))
        plan = self._plan(sig, df.columns)
        self.stats["scans"] += 1
        if not plan.rules:
            return []
        df.createOrReplaceTempView("batch")
        select, cmap = lowering(plan, SPARK.ident, SPARK.fold)
        lowered = self.spark.sql(f"SELECT {', '.join(select)} FROM batch").cache()
        lowered.createOrReplaceTempView("lowered")
        items = []
        for rule, cond in zip(plan.rules, plan.conditions):
            try:
                items.append((rule, render(cond, cmap, SPARK)))
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

    def close(self) -> None:
        if self._own:
            self.spark.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
