"""The DuckDB engine: compiled rules × event classes → (rule, event) hits.

How it runs, and why:

1. **One table per event class.** Ingest batches (one class each: Channel, provider and EventID constant)
   are appended to a DuckDB table of their class, holding only the columns that class carries. DuckDB
   owns the memory (``memory_limit``, spilling to ``temp_directory``), so inputs larger than RAM work.
2. **One plan per class.** DuckDB spends ~0.1 ms planning each expression, and the SigmaHQ Windows set
   has ~35,000 of them: planning per batch would dominate. So a class is scanned when its table reaches
   ``scan_rows`` rows, or at the end: typically once. For the scan, each rule variant whose class
   constraints admit the class is partially evaluated (:func:`~ttpscope.detect.compiler.fold`):
   predicates on the constant fields and on columns the class lacks fold away, rules folding to false are
   dropped (a Sysmon rule never runs on Security events; a process-creation rule runs on both Sysmon 1
   and Security 4688 through its two variants).
3. **One pass per chunk of rules.** The referenced columns are lowered once into a narrow temporary
   table; then each chunk of ``chunk_rules`` rules is one SELECT computing, per row, the list of rules it
   matches (DuckDB's planner is superlinear in expression count, so chunks of ~100 plan fastest). Only
   rows with hits come back, and only their events are fetched.

The optimizer is switched off for these statements: they are scan-project-filter, where it only costs
planning time (measured: 3x slower plans, same execution).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import duckdb
import pyarrow as pa

from ttpscope.detect.compiler import (
    CLASS_FIELDS,
    FALSE,
    CompiledRule,
    Pred,
    class_constraints,
    fold,
    make_or,
    python_regex,
    walk,
)
from ttpscope.detect.pyeval import evaluate_table
from ttpscope.detect.sql import DUCKDB, KEYWORD, ColumnMap, render, sql_ident, sql_string
from ttpscope.ingest.base import BASE_COLUMNS, EventBatch

ROW = "__row"


@dataclass
class RawHit:
    """A rule index and the event (its non-null fields, with ``_src``, ``_rec``, ``_time``, ``_host``)."""

    rule: int
    event: dict[str, Any]


@dataclass
class _Variant:
    rule: int
    condition: Any
    constraints: dict[str, set[str]]


@dataclass
class Plan:
    """SQL for one class and column set: the lowering statement and per-rule conditions."""

    rules: list[int]
    conditions: list = field(default_factory=list)  # folded IR, per rule
    fields: dict[str, str] = field(default_factory=dict)  # lower name → column, of the fields read
    keyword: bool = False  # some rule searches all fields
    need_lower: set = field(default_factory=set)
    need_orig: set = field(default_factory=set)
    all_columns: list = field(default_factory=list)
    lowering: str | None = None  # SQL, rendered on first use by the DuckDB path
    sql_rules: list[int] = field(default_factory=list)
    exprs: list[str] = field(default_factory=list)


class DuckDBEngine:
    """Runs compiled Sigma rules over event batches on an embedded DuckDB.

    Use ``add(batch)`` for each ingest batch (returns hits when a class got scanned to free memory) and
    ``finish()`` at the end; or ``run(batches)`` to do both. ``errors`` lists (rule index, message) for
    rules that could not be rendered or failed at run time: each is disabled, the others go on.
    """

    def __init__(self, compiled: Iterable[CompiledRule], threads: int | None = None,
                 memory_limit: str = "512MB", scan_rows: int = 1_000_000, max_pending_bytes: int = 256 << 20,
                 chunk_rules: int = 100, python_rows: int = 1000, temp_directory: str | None = None):
        self._tmp = tempfile.TemporaryDirectory(prefix="ttpscope-duckdb-") if temp_directory is None else None
        config = {"threads": threads or min(2, os.cpu_count() or 1), "memory_limit": memory_limit,
                  "temp_directory": temp_directory or self._tmp.name, "preserve_insertion_order": False}
        self.con = duckdb.connect(config=config)
        self.con.execute("PRAGMA disable_optimizer")
        self.variants_by_eid: dict[str | None, list[_Variant]] = {}
        for cr in compiled:
            for cond in cr.variants.values():
                v = _Variant(cr.index, cond, class_constraints(cond) or {})
                for eid in v.constraints.get("EventID", {None}):
                    self.variants_by_eid.setdefault(eid, []).append(v)
        self.scan_rows = scan_rows
        self.max_pending_bytes = max_pending_bytes
        self.chunk_rules = chunk_rules
        self.python_rows = python_rows  # classes smaller than this are evaluated in Python
        self.pending: dict[tuple, list[pa.Table]] = {}
        self.pending_rows: dict[tuple, int] = {}
        self.pending_bytes = 0
        self.keys: dict[tuple, tuple] = {}
        self.plans: dict[tuple, Plan] = {}
        self.errors: list[tuple[int, str]] = []
        self.disabled: set[int] = set()
        self._re2: dict[str, bool] = {}
        self.scan_log: list[tuple] = []  # (class, rows, rules, path, cpu seconds) per scan
        self._udf = False
        self.stats = {"events": 0, "classes": 0, "scans": 0, "python_scans": 0, "rules_planned": 0,
                      "rule_evaluations": 0}

    # ------------------------------------------------------------------ loading
    def add(self, batch: EventBatch) -> list[RawHit]:
        """Queue a batch under its class; scan a class when it is big or when queued memory is too high."""
        if batch.num_rows == 0:
            return []
        sig = tuple(v.lower() if isinstance(v, str) else v for v in batch.key)
        if sig not in self.keys:
            self.keys[sig] = batch.key
            self.stats["classes"] += 1
        self.pending.setdefault(sig, []).append(batch.table)
        self.pending_rows[sig] = self.pending_rows.get(sig, 0) + batch.num_rows
        self.pending_bytes += batch.table.nbytes
        self.stats["events"] += batch.num_rows
        if self.pending_rows[sig] >= self.scan_rows:
            return self._scan(sig)
        if self.pending_bytes > self.max_pending_bytes:
            return self._scan(max(self.pending_rows, key=self.pending_rows.__getitem__))
        return []

    def finish(self) -> list[RawHit]:
        """Scan every class still holding events."""
        hits: list[RawHit] = []
        for sig in sorted(self.pending, key=lambda k: tuple("" if v is None else v for v in k)):
            hits.extend(self._scan(sig))
        return hits

    def run(self, batches: Iterable[EventBatch]) -> Iterator[RawHit]:
        """All hits of all batches (each class scanned when full and at the end)."""
        for batch in batches:
            yield from self.add(batch)
        yield from self.finish()

    # ------------------------------------------------------------------ planning
    def _plan(self, sig: tuple, columns: list[str]) -> Plan:
        fields: dict[str, str] = {}
        for c in columns:
            if c not in BASE_COLUMNS:
                fields.setdefault(c.lower(), c)
        psig = (sig, frozenset(fields))
        plan = self.plans.get(psig)
        if plan is None:
            plan = self.plans[psig] = self._build_plan(self.keys[sig], fields)
        return plan

    def _build_plan(self, key: tuple, by_lower: dict[str, str]) -> Plan:
        constants: dict[str, str | None] = {}
        for name, value in zip(CLASS_FIELDS, key):
            if value is not None or name.lower() not in by_lower:
                constants[name.lower()] = value
        rest = frozenset(k for k in by_lower if k not in constants)
        lowered_key = {f: (v.lower() if isinstance(v, str) else None) for f, v in zip(CLASS_FIELDS, key)}
        per_rule: dict[int, list] = {}
        eid = lowered_key["EventID"] if "eventid" in constants else None
        candidates = self.variants_by_eid.get(None, []) + (self.variants_by_eid.get(eid, []) if eid else [])
        if "eventid" not in constants:  # EventID is a column here: every variant is a candidate
            candidates = [v for vs in self.variants_by_eid.values() for v in vs]
        for v in candidates:
            if v.rule in self.disabled:
                continue
            if any(f.lower() in constants and lowered_key[f] not in allowed for f, allowed in v.constraints.items()):
                continue
            cond = fold(v.condition, constants, rest)
            if cond != FALSE:
                per_rule.setdefault(v.rule, []).append(cond)
        rules = sorted(per_rule)
        conditions = [make_or(per_rule[r]) for r in rules]
        if not rules:
            return Plan([])

        need_lower: set[str] = set()
        need_orig: set[str] = set()
        for cond in conditions:
            for node in walk(cond):
                if isinstance(node, Pred):
                    k = KEYWORD if node.field is None else node.field.lower()
                    if node.op == "fieldref":
                        need_lower.update({k, node.value[0].lower()})
                    elif node.op in ("null", "exists", "cmp", "re") or node.cased:
                        need_orig.add(k)
                    else:
                        need_lower.add(k)
        self.stats["rules_planned"] += len(rules)
        needed = {k: by_lower[k] for k in (need_lower | need_orig) if k != KEYWORD}
        return Plan(rules, conditions=conditions, fields=needed, keyword=KEYWORD in (need_lower | need_orig),
                    need_lower=need_lower, need_orig=need_orig, all_columns=list(by_lower.values()))

    def _render_sql(self, plan: Plan) -> None:
        """The SQL of a plan, rendered on first use by the DuckDB path (the Python path never needs it)."""
        cmap = ColumnMap(python_regex=self._python_regex_sql, re2_ok=self._re2_ok)
        select = [ROW]
        cols = plan.all_columns
        all_text = ("concat_ws(chr(31), " + ", ".join(sql_ident(c) for c in cols) + ")") if cols else "''"
        for i, k in enumerate(sorted(plan.need_lower | plan.need_orig)):
            src = all_text if k == KEYWORD else sql_ident(plan.fields[k])
            if k in plan.need_orig:
                select.append(f"{src} AS o{i}")
                cmap.orig[k] = f"o{i}"
            if k in plan.need_lower:
                select.append(f"lower({src}) AS l{i}")
                cmap.lower[k] = f"l{i}"
        plan.sql_rules, plan.exprs = [], []
        for rule, cond in zip(plan.rules, plan.conditions):
            try:
                plan.exprs.append(render(cond, cmap))
                plan.sql_rules.append(rule)
            except Exception as exc:  # an unsupported construct: this rule is disabled, with its reason
                self._disable(rule, f"cannot render: {' '.join(str(exc).split())}")
        plan.lowering = ", ".join(select)

    def _disable(self, rule: int, message: str) -> None:
        if rule not in self.disabled:
            self.disabled.add(rule)
            self.errors.append((rule, message))

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
                out = []
                for v, p, f in zip(values.to_pylist(), patterns.to_pylist(), flag_sets.to_pylist()):
                    out.append(None if v is None else python_regex(p, f or "").search(v) is not None)
                return pa.array(out, type=pa.bool_())

            self.con.create_function("sigma_re", sigma_re, ["VARCHAR"] * 3, "BOOLEAN",
                                     type="arrow", null_handling="special")
            self._udf = True
        return f"sigma_re({col}, {sql_string(pattern)}, {sql_string(flags)})"

    # ------------------------------------------------------------------ scanning
    def _scan(self, sig: tuple) -> list[RawHit]:
        tables = self.pending.pop(sig)
        self.pending_rows.pop(sig)
        self.pending_bytes -= sum(t.nbytes for t in tables)
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
        plan = self._plan(sig, table.column_names)
        self.stats["scans"] += 1
        if not plan.rules:
            return []
        self.stats["rule_evaluations"] += table.num_rows * len(plan.rules)
        started = time.process_time()
        if table.num_rows < self.python_rows:
            matched = self._scan_python(table, plan)
        else:
            matched = self._scan_duckdb(table, plan)
        self.scan_log.append((self.keys[sig], table.num_rows, len(plan.rules),
                              "arrow" if table.num_rows < self.python_rows else "duckdb",
                              time.process_time() - started))
        if not matched:
            return []
        rows = sorted(matched)
        hits: list[RawHit] = []
        for row, record in zip(rows, table.take(pa.array(rows, pa.int64())).to_pylist()):
            event = {k: v for k, v in record.items() if v is not None}
            for rule in sorted(set(matched[row])):
                hits.append(RawHit(rule, event))
        return hits

    def _scan_python(self, table: pa.Table, plan: Plan) -> dict[int, list[int]]:
        """Small and medium classes: Arrow compute kernels (planning SQL would cost more than it saves)."""
        self.stats["python_scans"] += 1
        rules = [r for r in plan.rules if r not in self.disabled]
        conds = [c for r, c in zip(plan.rules, plan.conditions) if r not in self.disabled]
        return evaluate_table(table, rules, conds, plan.fields, plan.keyword)

    def _scan_duckdb(self, table: pa.Table, plan: Plan) -> dict[int, list[int]]:
        if plan.lowering is None:
            self._render_sql(plan)
        matched: dict[int, list[int]] = {}  # row → rule indexes
        data = table.select([c for c in table.column_names if c not in BASE_COLUMNS]).append_column(
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
        sql = (f"SELECT {ROW}, hits FROM (SELECT {ROW}, list_filter([{cases}], lambda x: x IS NOT NULL) AS hits "
               f"FROM {source}) WHERE len(hits) > 0")
        try:
            return self.con.execute(sql).fetchall()
        except duckdb.Error:
            if len(items) == 1:
                rule = items[0][0]
                try:
                    self.con.execute(f"SELECT count(*) FROM {source} WHERE {items[0][1]}").fetchall()
                except duckdb.Error as exc:
                    self._disable(rule, f"query failed: {' '.join(str(exc).split())[:300]}")
                    return []
                raise
            # bisect to the culprit(s): disable them, keep the others
            mid = len(items) // 2
            return self._run_chunk(items[:mid], source) + self._run_chunk(items[mid:], source)

    def close(self) -> None:
        self.con.close()
        if self._tmp is not None:
            self._tmp.cleanup()
