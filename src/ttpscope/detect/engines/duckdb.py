"""The DuckDB engine: compiled rules × event classes → (rule, event) hits.

How it runs, and why (every choice below was measured on the SigmaHQ Windows set and the OTRF data):

1. **Batches wait per event class.** Ingest batches (one class each: Channel, provider and EventID
   constant, only the columns the class carries) are queued per class as Arrow tables. A class is scanned
   when it holds ``max(scan_rows, rows_per_rule × its rules)`` rows, when the queue exceeds
   ``max_pending_bytes`` (the largest class goes first), and at the end. DuckDB spends ~0.1 ms planning
   each expression and the SigmaHQ Windows set has ~35,000: planned per small batch, planning would cost
   more than matching; the threshold keeps it to a few µs a row while memory stays bounded.
2. **One plan per class** (:mod:`ttpscope.detect.planner`): only the rules that can fire on the class,
   folded for it.
3. **Big classes run on DuckDB**: the fields the rules read are lowered once into a narrow temporary
   table, then each chunk of ``chunk_rules`` rules is one SELECT computing per row the list of rules it
   matches (the planner is superlinear in expressions per statement; chunks of ~100 plan fastest). Only
   rows with hits come back. The optimizer is off for these scan-project-filter statements: it tripled
   planning time and changed nothing in execution.
4. **Classes under ``python_rows`` rows run on Arrow compute kernels** (:mod:`ttpscope.detect.engines.arrow`):
   no planning at all, the same semantics. On the 10k-event EVTX set (257 classes, most under 100 events)
   this halved the engine's CPU time; on classes of tens of thousands of rows DuckDB is faster.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterable

import duckdb
import pyarrow as pa

from ttpscope.detect.compiled import CompiledRule
from ttpscope.detect.engines.arrow import evaluate_table
from ttpscope.detect.engines.base import ClassQueue
from ttpscope.detect.ir import RegexBudget, python_regex, regex_search
from ttpscope.detect.planner import ROW, Plan, lowering
from ttpscope.detect.sql import render, sql_ident, sql_string
from ttpscope.ingest.base import is_internal

QROW = sql_ident(ROW)


class DuckDBEngine(ClassQueue):
    """Runs compiled Sigma rules over event batches on an embedded DuckDB.

    Use ``add(batch)`` for each ingest batch (returns hits when a class got scanned to free memory) and
    ``finish()`` at the end; or ``run(batches)`` to do both. ``errors`` lists (rule index, message) for
    rules that could not be rendered or failed at run time: each is disabled, the others go on.
    """

    def __init__(self, compiled: Iterable[CompiledRule], threads: int | None = None,
                 memory_limit: str = "512MB", scan_rows: int = 50_000, rows_per_rule: int = 200,
                 max_pending_bytes: int = 256 << 20,
                 chunk_rules: int = 100, python_rows: int = 5000, temp_directory: str | None = None):
        self._tmp = tempfile.TemporaryDirectory(prefix="ttpscope-duckdb-") if temp_directory is None else None
        config = {"threads": threads or min(2, os.cpu_count() or 1), "memory_limit": memory_limit,
                  "temp_directory": temp_directory or self._tmp.name, "preserve_insertion_order": False}
        self.con = duckdb.connect(config=config)
        self.con.execute("PRAGMA disable_optimizer")
        ClassQueue.__init__(self, compiled, scan_rows, rows_per_rule, max_pending_bytes)
        self.chunk_rules = chunk_rules
        self.python_rows = python_rows  # classes smaller than this are evaluated with Arrow kernels
        self._re2: dict[str, bool] = {}
        self._udf = False
        self._re_budgets: dict[tuple[str, str], RegexBudget] = {}  # per pattern, for the batch being scanned

    def _render_sql(self, plan: Plan) -> None:
        """The SQL of a plan, rendered on first use by the DuckDB path (the Python path never needs it)."""
        select, cmap = lowering(plan)
        cmap.python_regex, cmap.native_regex_ok = self._python_regex_sql, self._re2_ok
        plan.sql_rules, plan.exprs = [], []
        for rule, cond in zip(plan.rules, plan.conditions):
            try:
                plan.exprs.append(render(cond, cmap))
                plan.sql_rules.append(rule)
            except Exception as exc:  # an unsupported construct: this rule is disabled, with its reason
                self._disable(rule, f"cannot render: {' '.join(str(exc).split())}")
        plan.lowering = ", ".join(select)

    # ------------------------------------------------------------------ regex support
    def _re2_ok(self, pattern: str) -> bool:
        """Does DuckDB's RE2 accept the pattern? (Lookarounds and backreferences it does not.)"""
        ok = self._re2.get(pattern)
        if ok is None:
            try:
                self.con.execute("SELECT regexp_matches('', ?)", [pattern]).fetchall()
                ok = True
            except duckdb.Error:
                ok = False
            self._re2[pattern] = ok
        return ok

    def _python_regex_sql(self, col: str, pattern: str, flags: str) -> str:
        """SQL calling Python's ``re`` (a registered UDF) for the patterns RE2 cannot run."""
        python_regex(pattern, flags)  # fails early on a bad pattern
        if not self._udf:
            def sigma_re(values: pa.Array, patterns: pa.Array, flag_sets: pa.Array) -> pa.Array:
                if not len(values):
                    return pa.array([], type=pa.bool_())
                # one pattern per call site: the vector's rows share it (DuckDB passes the constant per row)
                p, f = patterns[0].as_py(), flag_sets[0].as_py() or ""
                budget = self._re_budgets.setdefault((p, f), RegexBudget())
                return pa.array(regex_search(p, f, values.to_pylist(), budget), type=pa.bool_())

            self.con.create_function("sigma_re", sigma_re, ["VARCHAR"] * 3, "BOOLEAN",
                                     type="arrow", null_handling="special")
            self._udf = True
        return f"sigma_re({col}, {sql_string(pattern)}, {sql_string(flags)})"

    # ------------------------------------------------------------------ scanning
    def _match(self, table: pa.Table, plan: Plan) -> tuple[dict[int, list[int]], str]:
        if table.num_rows < self.python_rows:
            return self._scan_python(table, plan), "arrow"
        return self._scan_duckdb(table, plan), "duckdb"

    def _scan_python(self, table: pa.Table, plan: Plan) -> dict[int, list[int]]:
        """Small and medium classes: Arrow compute kernels (planning SQL would cost more than it saves)."""
        self.stats["python_scans"] += 1
        rules = [r for r in plan.rules if r not in self.disabled]
        conds = [c for r, c in zip(plan.rules, plan.conditions) if r not in self.disabled]
        return evaluate_table(table, rules, conds, plan.fields, plan.keyword, self._disable)

    def _scan_duckdb(self, table: pa.Table, plan: Plan) -> dict[int, list[int]]:
        if plan.lowering is None:
            self._render_sql(plan)
        matched: dict[int, list[int]] = {}  # row → rule indexes
        self._re_budgets.clear()  # each batch gives each backtracking pattern its time budget anew
        data = table.select([c for c in table.column_names if not is_internal(c)]).append_column(
            ROW, pa.array(range(table.num_rows), pa.int64()))
        self.con.register("batch", data)
        try:
            if table.num_rows >= 8192:  # lower once for all chunks
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE lowered AS SELECT {plan.lowering} FROM batch")
                source = "lowered"
            else:  # small: not worth a table
                source = f"(SELECT {plan.lowering} FROM batch) AS lowered"
            items = [(r, e) for r, e in zip(plan.sql_rules, plan.exprs) if r not in self.disabled]
            for start in range(0, len(items), self.chunk_rules):
                for row, rules in self._run_chunk(items[start:start + self.chunk_rules], source):
                    matched.setdefault(row, []).extend(rules)
            if source == "lowered":
                self.con.execute("DROP TABLE lowered")
        finally:
            self.con.unregister("batch")
        return matched

    def _run_chunk(self, items: list[tuple[int, str]], source: str) -> list[tuple[int, list[int]]]:
        cases = ", ".join(f"CASE WHEN {expr} THEN {rule} END" for rule, expr in items)
        sql = (f"SELECT {QROW}, hits FROM (SELECT {QROW}, list_filter([{cases}], lambda x: x IS NOT NULL) AS hits "
               f"FROM {source}) WHERE len(hits) > 0")
        try:
            return self.con.execute(sql).fetchall()
        except duckdb.Error:
            if len(items) == 1:
                rule = items[0][0]
                try:
                    self.con.execute(f"SELECT count(*) FROM {source} WHERE {items[0][1]}").fetchall()
                except duckdb.Error as exc:
                    text = " ".join(str(exc).split())
                    budget = text.find("regular expression over its time budget")
                    self._disable(rule, text[budget:] if budget >= 0 else f"query failed: {text[:300]}")
                    return []
                raise
            # bisect to the culprit(s): disable them, keep the others
            mid = len(items) // 2
            return self._run_chunk(items[:mid], source) + self._run_chunk(items[mid:], source)

    def close(self) -> None:
        self.con.close()
        if self._tmp is not None:
            self._tmp.cleanup()
