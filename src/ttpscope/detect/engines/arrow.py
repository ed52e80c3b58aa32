"""The Arrow engine: the IR evaluated with Arrow compute kernels, no SQL at all — an engine of its own
(``--engine arrow``) and the DuckDB engine's path for small and medium event classes.

Why a second path: DuckDB plans every expression of a statement (~0.1 ms each, superlinear beyond a few
hundred), so 1,100 process-creation rules cost seconds of planning whether the class holds 14 events or
a million. Arrow's kernels (``pyarrow.compute``) run vectorised with no planning at all, so below
``python_rows`` rows a class is evaluated here: each distinct predicate once per batch (rules share
many, e.g. ``Image|endswith: \\powershell.exe``), conjunctions stop as soon as no row can match, and an OR
of substring/prefix/suffix tests on one field is one RE2 alternation. Semantics are those of
:mod:`ttpscope.detect.sql`: a test on a missing value is false, and ``not`` of it true. Patterns RE2
cannot run (lookarounds, backreferences) go through Python's ``re``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ttpscope.detect.engines.base import ClassQueue
from ttpscope.detect.ir import And, Const, Not, Or, Pred, RegexBudget, RegexBudgetExceeded, regex_search
from ttpscope.detect.planner import Plan
from ttpscope.ingest.base import is_internal
from ttpscope.detect.sql import (ALTERNATIVES, MIN_ALTERNATION, keyword_regex, like_pattern, re2_accepts, regex_escape,
                                 regex_literal)


class ArrowEvaluator:
    """Evaluates folded rule conditions over one Arrow table (one event class)."""

    def __init__(self, table: pa.Table, fields: dict[str, str], keyword: bool):
        self.n = table.num_rows
        self.orig: dict[str, pa.Array] = {}
        for key, col in fields.items():
            self.orig[key] = table.column(col).combine_chunks() if col in table.column_names \
                else pa.nulls(self.n, pa.string())
        self.text = [table.column(c).combine_chunks() for c in table.column_names
                     if not is_internal(c)] if keyword else []
        self.all_text: pa.Array | None = None
        self.low: dict[str, pa.Array] = {}
        self.memo: dict[Any, pa.Array] = {}
        self.none = pa.array([False] * self.n, pa.bool_())
        self.all = pa.array([True] * self.n, pa.bool_())

    def lowered(self, key: str) -> pa.Array:
        arr = self.low.get(key)
        if arr is None:
            # utf8_lower maps each character alone (simple mapping), as fold_case does; then final sigma
            arr = self.low[key] = pc.replace_substring(pc.utf8_lower(self.orig[key]), "\u03c2", "\u03c3")
        return arr

    def matches(self, node: Any) -> pa.Array:
        """A boolean array, null-free: rows where the condition holds."""
        return _no_nulls(self.eval(node))

    def eval(self, node: Any) -> pa.Array:
        if isinstance(node, Pred):
            out = self.memo.get(node)
            if out is None:
                out = self.memo[node] = self._pred(node)
            return out
        if isinstance(node, Const):
            return self.all if node.value else self.none
        if isinstance(node, Not):
            return pc.invert(_no_nulls(self.eval(node.arg)))
        if isinstance(node, And):
            acc = None
            for arg in node.args:
                part = self.eval(arg)
                acc = part if acc is None else pc.and_kleene(acc, part)
                if not acc.true_count:
                    return self.none  # no row can match: the other conjuncts are not evaluated
            return acc
        if isinstance(node, Or):
            return self._or(node)
        raise TypeError(f"not an IR node: {node!r}")

    def keyword(self, pattern: str) -> pa.Array:
        """Rows where some field matches the pattern (a keyword search). The fields joined by a separator
        are searched first, with one kernel call: a row no field of which matches is ruled out at once
        (the usual case); only when some row matches are the fields searched one by one."""
        arr = self.memo.get(("kw", pattern))
        if arr is None:
            if self.all_text is None:
                self.all_text = pc.binary_join_element_wise(*self.text, "\x1f", null_handling="skip") \
                    if self.text else pa.array([""] * self.n, pa.string())
            arr = self.none
            if pc.match_substring_regex(self.all_text, pattern).true_count:
                for col in self.text:
                    arr = pc.or_kleene(arr, pc.match_substring_regex(col, pattern))
            self.memo[("kw", pattern)] = arr
        return arr

    def _or(self, node: Or) -> pa.Array:
        groups: dict[str, list[str]] = {}
        rest = []
        keywords = [a for a in node.args if isinstance(a, Pred) and a.field is None and not a.cased
                    and a.op in ("contains", "eq")]
        parts = []
        if len(keywords) >= 2:
            parts.append(self.keyword("(?i)" + "|".join(regex_escape(k.value) for k in keywords)))
        for a in node.args:
            if len(keywords) >= 2 and a in keywords:
                continue
            if isinstance(a, Pred) and not a.cased and a.field is not None and a.op in (*ALTERNATIVES, "in"):
                groups.setdefault(a.field.lower(), []).extend(
                    [ALTERNATIVES["eq"](v) for v in a.value] if a.op == "in" else [ALTERNATIVES[a.op](a.value)])
            rest.append(a)
        merged = {k for k, alts in groups.items() if len(alts) >= MIN_ALTERNATION}
        for key in merged:
            pattern = "|".join(groups[key])
            memo_key = ("alt", key, pattern)
            arr = self.memo.get(memo_key)
            if arr is None:
                arr = self.memo[memo_key] = pc.match_substring_regex(self.lowered(key), pattern)
            parts.append(arr)
        for a in rest:
            if isinstance(a, Pred) and a.field is not None and a.field.lower() in merged and not a.cased \
                    and a.op in (*ALTERNATIVES, "in"):
                continue
            parts.append(self.eval(a))
        acc = parts[0]
        for part in parts[1:]:
            acc = pc.or_kleene(acc, part)
        return acc

    def _pred(self, p: Pred) -> pa.Array:
        if p.field is None:
            if p.op == "re" and not re2_accepts(keyword_regex(p)):  # lookaround / backreference: bounded
                budget, arr = RegexBudget(), self.none
                for col in self.text:
                    arr = pc.or_kleene(arr, pa.array(regex_search(*p.value, col.to_pylist(), budget), pa.bool_()))
                return arr
            return self.keyword(keyword_regex(p))
        key = p.field.lower()
        op, val = p.op, p.value
        if key not in self.orig:
            self.orig[key] = pa.nulls(self.n, pa.string())
        if op == "null":
            return pc.is_null(self.orig[key])
        if op == "exists":
            return pc.is_valid(self.orig[key])
        if op == "fieldref":
            other, mode = val[0].lower(), val[1]
            a = self.lowered(key)
            b = self.lowered(other) if other in self.orig else pa.nulls(self.n, pa.string())
            if mode == "eq":
                return pc.equal(a, b)
            return pa.array([None if x is None or y is None else (x.startswith(y) if mode == "startswith"
                                                                   else x.endswith(y))
                             for x, y in zip(a.to_pylist(), b.to_pylist())], pa.bool_())
        if op == "cmp":
            operator, bound = val
            nums = []
            for v in self.orig[key].to_pylist():
                try:
                    nums.append(float(v))
                except (TypeError, ValueError):
                    nums.append(None)
            arr = pa.array(nums, pa.float64())
            fn = {"<": pc.less, "<=": pc.less_equal, ">": pc.greater, ">=": pc.greater_equal}[operator]
            return fn(arr, bound)
        if op == "re":
            pattern, flags = val
            full = regex_literal(pattern, flags)
            if re2_accepts(full):
                return pc.match_substring_regex(self.orig[key], full)
            return pa.array(regex_search(pattern, flags, self.orig[key].to_pylist()), pa.bool_())
        col = self.orig[key] if p.cased else self.lowered(key)
        if op == "eq":
            return pc.equal(col, val)
        if op == "in":
            return pc.is_in(col, value_set=pa.array(list(val), pa.string()))
        if op == "contains":
            return pc.match_substring(col, val)
        if op == "startswith":
            return pc.starts_with(col, val)
        if op == "endswith":
            return pc.ends_with(col, val)
        if op == "like":
            return pc.match_like(col, like_pattern(val))
        raise ValueError(f"unsupported predicate {op}")


def _no_nulls(arr: pa.Array) -> pa.Array:
    return arr if arr.null_count == 0 else pc.fill_null(arr, False)


def evaluate_table(table: pa.Table, rules: list[int], conditions: list, fields: dict[str, str],
                   keyword: bool, on_error=None) -> dict[int, list[int]]:
    """Row index → rule indexes matched, for the rules' folded conditions over one class table.
    ``on_error(rule, message)``: a rule whose regex ran over its time budget (else that error is raised)."""
    ev = ArrowEvaluator(table, fields, keyword)
    out: dict[int, list[int]] = {}
    for rule, cond in zip(rules, conditions):
        try:
            mask = ev.matches(cond)
        except RegexBudgetExceeded as exc:
            if on_error is None:
                raise
            on_error(rule, str(exc))
            continue
        if mask.true_count:
            for row in pc.indices_nonzero(mask).to_pylist():
                out.setdefault(row, []).append(rule)
    return out


class ArrowEngine(ClassQueue):
    """Runs compiled rules over event batches with Arrow compute kernels only (no SQL planning, no
    database): fastest where classes are small; same results as the DuckDB and Spark engines."""

    def __init__(self, compiled, scan_rows: int = 50_000, rows_per_rule: int = 0,
                 max_pending_bytes: int = 256 << 20):
        super().__init__(compiled, scan_rows, rows_per_rule, max_pending_bytes)

    def _match(self, table: pa.Table, plan: Plan) -> tuple[dict[int, list[int]], str]:
        self.stats["python_scans"] += 1
        rules = [r for r in plan.rules if r not in self.disabled]
        conds = [c for r, c in zip(plan.rules, plan.conditions) if r not in self.disabled]
        return evaluate_table(table, rules, conds, plan.fields, plan.keyword, self._disable), "arrow"
