"""Per-class planning shared by the engines: which rules can fire on an event class, folded for it.

An event class is a batch whose Channel, provider, EventID and log source are constant and whose columns
are known. A rule variant is a candidate for a class only where its log source applies
(:func:`~ttpscope.detect.variants.runs_on`): a class of unknown log source gets no rules at all, and is
counted as not analysed. For each class, every candidate variant whose class constraints admit it is
partially evaluated
(:func:`~ttpscope.detect.ir.fold`): predicates on the constant fields and on columns the class
lacks fold away, and rules folding to false are dropped — a Sysmon rule never runs on Security events,
and a process-creation rule runs on Sysmon 1 and on Security 4688 through its two variants.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import pyarrow.compute as pc

from ttpscope.detect.compiled import CompiledRule
from ttpscope.detect.ir import (CLASS_FIELDS, FALSE, Pred, RegexBudgetExceeded, class_constraints, fields_of, fold,
                                fold_case, make_or, walk)
from ttpscope.detect.variants import CHANNEL_VARIANTS, runs_on
from ttpscope.detect.sql import DUCKDB, KEYWORD, ColumnMap, sql_ident
from ttpscope.ingest.base import ROW, SRC, class_order, is_internal
from ttpscope.ingest.logsource import UNKNOWN


PLANNER_VERSION = 1  # part of the plan store's name: plans of another planner are never read
MAX_STORED_PLANS = 20_000


def variant_shape(condition) -> tuple[dict[str, set[str]], frozenset]:
    """What planning reads of a variant's IR besides the IR: its class constraints and the lower-cased
    fields it reads (the rule index keeps them with the compiled rules: deriving them for the SigmaHQ set
    costs about a second per engine)."""
    return class_constraints(condition) or {}, frozenset(f.lower() for f in fields_of(condition) if f)


@dataclass
class _Variant:
    rule: int
    condition: Any
    constraints: dict[str, set[str]]
    name: str = "plain"
    logsource: dict = field(default_factory=dict)
    channel_variants: bool = False  # the rule also has channel variants
    fields: frozenset = frozenset()  # lower-cased fields the condition reads


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


class Planner:
    """Rule variants indexed by EventID, and the plans built from them per class and column set."""

    def __init__(self, compiled: Iterable[CompiledRule]):
        self.variants_by_eid: dict[str | None, list[_Variant]] = {}
        for cr in compiled:
            channel_variants = any(name in CHANNEL_VARIANTS for name in cr.variants)
            shapes = cr.shapes or {}
            for name, cond in cr.variants.items():
                constraints, fields = shapes.get(name) or variant_shape(cond)
                v = _Variant(cr.index, cond, constraints, name, cr.logsource, channel_variants, fields)
                for eid in v.constraints.get("EventID", {None}):
                    self.variants_by_eid.setdefault(eid, []).append(v)
        self.keys: dict[tuple, tuple] = {}  # lower-cased class key → the key as seen
        self.plans: dict[tuple, Plan] = {}
        self.errors: list[tuple[int, str]] = []
        self.disabled: set[int] = set()
        self.stats: dict[str, int] = {"rules_planned": 0, "classes": 0}
        self.with_data: set[int] = set()  # rules whose log source some class has (visibility)
        self.not_analysed: Counter = Counter()  # source name → events of an unknown log source
        # plans of earlier runs of the same compiled rules (:meth:`use_plan_store`), and those made in this one
        self.plan_store: Path | None = None
        self._stored: dict[tuple, tuple[Plan, frozenset]] = {}
        self._made: dict[tuple, tuple[Plan, frozenset]] = {}

    def _count_unknown(self, batch) -> None:
        """Count the events of a class no rule can run on (unknown log source), per source."""
        if batch.logsource.known:
            return
        for item in pc.value_counts(batch.table.column(SRC)).to_pylist():
            self.not_analysed[batch.sources[item["values"]]] += item["counts"]

    def _class_of(self, batch) -> tuple[tuple, bool]:
        """The batch's class signature (key lower-cased) and whether this class is new (then registered)."""
        sig = tuple(v.lower() if isinstance(v, str) else v for v in batch.key)
        if sig in self.keys:
            return sig, False
        self.keys[sig] = batch.key
        self.stats["classes"] += 1
        return sig, True

    @staticmethod
    def _in_order(sigs) -> list[tuple]:
        """Class signatures in a deterministic order (None sorts first)."""
        return sorted(sigs, key=class_order)

    def _plan(self, sig: tuple, columns: list[str]) -> Plan:
        fields: dict[str, str] = {}
        for c in columns:
            if not is_internal(c):
                fields.setdefault(c.lower(), c)
        psig = (sig, frozenset(fields))
        plan = self.plans.get(psig)
        if plan is None:
            skey = (self.keys[sig], tuple(sorted(fields.items())))  # as seen: the store spans inputs
            stored = self._stored.get(skey)
            if stored is not None and not self.disabled.intersection(stored[0].rules):
                plan = replace(stored[0], conditions=list(stored[0].conditions))  # its SQL rendered afresh
                self.with_data.update(stored[1])
                self.stats["rules_planned"] += len(plan.rules)
            else:
                seen: set[int] = set()
                plan = self._build_plan(self.keys[sig], fields, seen if self.plan_store else None)
                if self.plan_store is not None and not self.disabled:
                    self._made[skey] = (replace(plan, conditions=list(plan.conditions)), frozenset(seen))
            self.plans[psig] = plan
        return plan

    def use_plan_store(self, path: str | Path) -> None:
        """Reuse the per-class plans of earlier runs kept in ``path`` (a file named by the fingerprint of
        the compiled rules: other rules never read it); :meth:`save_plans` adds this run's."""
        from ttpscope.paths import load_cache

        self.plan_store = Path(path)
        self._stored = load_cache(self.plan_store, dict, "per-class plan cache") or {}

    def save_plans(self) -> None:
        """Add the plans made in this run to the plan store (merged with what other processes wrote)."""
        if self.plan_store is None or not self._made:
            return
        from ttpscope.paths import load_cache, save_cache

        merged = load_cache(self.plan_store, dict, "per-class plan cache") or {}
        merged.update(self._made)
        if len(merged) > MAX_STORED_PLANS:  # many inputs of many shapes: keep the newest
            merged = dict(list(merged.items())[-MAX_STORED_PLANS:])
        save_cache(self.plan_store, merged, "per-class plan cache")
        self._made = {}

    def _build_plan(self, key: tuple, by_lower: dict[str, str], seen: set[int] | None = None) -> Plan:
        """The plan of one class; ``seen``, when given, receives every rule of the class's log source (what
        the plan store keeps for visibility), not only those new to :attr:`with_data`."""
        source = key[3] if len(key) > 3 else UNKNOWN
        if not source.known:
            return Plan([])
        has_channel = key[0] is not None
        constants: dict[str, str | None] = {}
        for name, value in zip(CLASS_FIELDS, key):
            if value is not None or name.lower() not in by_lower:
                constants[name.lower()] = value
        rest = frozenset(k for k in by_lower if k not in constants)
        lowered_key = {f: (fold_case(v) if isinstance(v, str) else None) for f, v in zip(CLASS_FIELDS, key)}
        per_rule: dict[int, list] = {}
        eid = lowered_key["EventID"] if "eventid" in constants else None
        candidates = self.variants_by_eid.get(None, []) + (self.variants_by_eid.get(eid, []) if eid else [])
        if "eventid" not in constants:  # EventID is a column here: every variant is a candidate
            candidates = [v for vs in self.variants_by_eid.values() for v in vs]
        for v in candidates:
            if v.rule in self.disabled or not runs_on(v.name, v.logsource, v.channel_variants, source, has_channel):
                continue
            if any(f.lower() in constants and lowered_key[f] not in allowed for f, allowed in v.constraints.items()):
                continue
            try:  # folding evaluates predicates on the class's constants: a backtracking regex is bounded
                if (v.rule not in self.with_data or (seen is not None and v.rule not in seen)) \
                        and fold(v.condition, constants, rest | v.fields) != FALSE:
                    self.with_data.add(v.rule)  # the class is of the rule's log source, whatever its columns
                    if seen is not None:
                        seen.add(v.rule)
                cond = fold(v.condition, constants, rest)
            except RegexBudgetExceeded as exc:
                self._disable(v.rule, str(exc))
                continue
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

    def _disable(self, rule: int, message: str) -> None:
        if rule not in self.disabled:
            self.disabled.add(rule)
            self.errors.append((rule, message))



def lowering(plan: Plan, ident=sql_ident, fold=DUCKDB.fold) -> tuple[list[str], ColumnMap]:
    """The SELECT list that lowers each field the plan reads once (``l<i>``), keeps those read as stored
    (``o<i>``) and every field for keyword searches (``t<j>``); and the column map to render against it."""
    cmap = ColumnMap()
    select = [ident(ROW)]
    for i, k in enumerate(sorted((plan.need_lower | plan.need_orig) - {KEYWORD})):
        src = ident(plan.fields[k])
        if k in plan.need_orig:
            select.append(f"{src} AS o{i}")
            cmap.orig[k] = f"o{i}"
        if k in plan.need_lower:
            select.append(f"{fold(src)} AS l{i}")
            cmap.lower[k] = f"l{i}"
    if plan.keyword:  # keyword searches read every field as stored
        for j, col in enumerate(plan.all_columns):
            k = col.lower()
            if k not in cmap.orig:
                select.append(f"{ident(col)} AS t{j}")
                cmap.orig[k] = f"t{j}"
            cmap.text.append(cmap.orig[k])
    return select, cmap
