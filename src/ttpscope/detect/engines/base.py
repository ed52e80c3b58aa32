"""What every engine is (:class:`Engine`), and the per-class queue the in-process engines share.

An engine takes compiled rules at construction and event batches (one event class each, see
:class:`~ttpscope.ingest.base.EventBatch`) through ``add``; it returns hits as it goes or at ``finish``.
Every engine plans per class with :class:`~ttpscope.detect.planner.Planner`, so all report the same
``errors`` (rules disabled, with the reason), ``with_data`` (rules whose log source some class had) and
``not_analysed`` (events of an unknown log source, per source).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol, runtime_checkable

import pyarrow as pa

from ttpscope.detect.compiled import CompiledRule
from ttpscope.detect.planner import Plan, Planner
from ttpscope.ingest.base import EventBatch


@dataclass
class RawHit:
    """A rule index and the event (its non-null fields, with ingest's internal columns)."""

    rule: int
    event: dict[str, Any]


@runtime_checkable
class Engine(Protocol):
    """The interface of an engine, in the order a caller meets it."""

    errors: list[tuple[int, str]]  # (rule index, why it was disabled)
    with_data: set[int]  # rule indexes whose log source some class had
    not_analysed: Counter  # source name → events of an unknown log source

    def add(self, batch: EventBatch) -> list[RawHit]:
        """Implement: take one batch; return the hits of any class scanned now (may be none)."""

    def finish(self) -> list[RawHit]:
        """Implement: scan everything still held; return those hits."""

    def run(self, batches: Iterable[EventBatch]) -> Iterator[RawHit]:
        """Implement: ``add`` every batch, then ``finish``, yielding all hits."""

    def close(self) -> None:
        """Implement: release connections, sessions and temporary files."""


def hits_of(table: pa.Table, matched: dict[int, list[int]]) -> list[RawHit]:
    """Hits from row → rule indexes: each matched row's non-null fields, per rule once, in row order."""
    if not matched:
        return []
    rows = sorted(matched)
    hits: list[RawHit] = []
    for row, record in zip(rows, table.take(pa.array(rows, pa.int64())).to_pylist()):
        event = {k: v for k, v in record.items() if v is not None}
        for rule in sorted(set(matched[row])):
            hits.append(RawHit(rule, event))
    return hits


class ClassQueue(Planner):
    """Batches wait per event class and are scanned a class at a time by :meth:`_match`.

    A class is scanned when it holds ``max(scan_rows, rows_per_rule × its rules)`` rows, when the queue
    exceeds ``max_pending_bytes`` (the largest class goes first), and at the end."""

    path = "arrow"

    def __init__(self, compiled: Iterable[CompiledRule], scan_rows: int = 50_000, rows_per_rule: int = 200,
                 max_pending_bytes: int = 256 << 20):
        Planner.__init__(self, compiled)
        self.scan_rows = scan_rows
        self.rows_per_rule = rows_per_rule
        self.max_pending_bytes = max_pending_bytes
        self.thresholds: dict[tuple, int] = {}  # per class: rows to gather before a scan
        self.pending: dict[tuple, list[pa.Table]] = {}
        self.pending_rows: dict[tuple, int] = {}
        self.pending_bytes = 0
        self.scan_log: list[tuple] = []  # (class, rows, rules, path, cpu seconds) per scan
        self.stats.update({"events": 0, "scans": 0, "python_scans": 0, "rule_evaluations": 0})

    def add(self, batch: EventBatch) -> list[RawHit]:
        """Queue a batch under its class; scan a class when it is big or when queued memory is too high."""
        if batch.num_rows == 0:
            return []
        self._count_unknown(batch)
        sig, new = self._class_of(batch)
        if new:
            rules = len(self._plan(sig, batch.table.column_names).rules)
            self.thresholds[sig] = max(self.scan_rows, rules * self.rows_per_rule)
        self.pending.setdefault(sig, []).append(batch.table)
        self.pending_rows[sig] = self.pending_rows.get(sig, 0) + batch.num_rows
        self.pending_bytes += batch.table.nbytes
        self.stats["events"] += batch.num_rows
        if self.pending_rows[sig] >= self.thresholds[sig]:
            return self._scan(sig)
        if self.pending_bytes > self.max_pending_bytes:
            return self._scan(max(self.pending_rows, key=self.pending_rows.__getitem__))
        return []

    def finish(self) -> list[RawHit]:
        """Scan every class still holding events."""
        hits: list[RawHit] = []
        for sig in self._in_order(self.pending):
            hits.extend(self._scan(sig))
        return hits

    def run(self, batches: Iterable[EventBatch]) -> Iterator[RawHit]:
        """All hits of all batches (each class scanned when full and at the end)."""
        for batch in batches:
            yield from self.add(batch)
        yield from self.finish()

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
        matched, path = self._match(table, plan)
        self.scan_log.append((self.keys[sig], table.num_rows, len(plan.rules), path, time.process_time() - started))
        return hits_of(table, matched)

    def _match(self, table: pa.Table, plan: Plan) -> tuple[dict[int, list[int]], str]:
        """Implement: row → indexes of the rules matching it, and the name of the path that ran."""
        raise NotImplementedError

    def close(self) -> None:
        pass
