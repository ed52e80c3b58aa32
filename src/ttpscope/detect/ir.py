"""The predicate IR Sigma rules compile to, and its partial evaluation per event class.

Why an IR and not SQL text straight away: the engines partially evaluate every rule against each event
class they see (a batch whose Channel, provider, EventID and log source are constant, and whose columns are
known, see :func:`fold`), so that a Sysmon rule vanishes from a Security batch before any SQL is written, a
predicate on a field the class never carries folds to false, and the SQL that remains is small. The same
IR renders to DuckDB SQL and Spark SQL (:mod:`ttpscope.detect.sql`) and runs on Arrow kernels
(:mod:`ttpscope.detect.engines.arrow`).

Matching semantics (the Sigma specification's, made explicit):

- strings compare case-insensitively unless ``cased``: literals are folded here (:func:`fold_case`),
  columns are folded once per batch by the engine with the same rule (``Dialect.fold`` in SQL, Arrow's
  ``utf8_lower`` plus the same final-sigma step); ``*`` and ``?`` are wildcards (``contains``/``startswith``/``endswith`` become
  wildcards at the ends, as pySigma's modifiers produce them);
- ``re`` is a search (unanchored), case-sensitive unless the ``i`` flag is given; ``m`` and ``s`` flags too;
  engines run it with RE2 (linear time; Spark partly with Java, see :mod:`ttpscope.detect.sql`); a pattern
  RE2 cannot run (lookaround, backreference) is run by
  :func:`regex_search` within a time budget per pattern and batch (:data:`REGEX_BUDGET_SECONDS`): a
  pattern over it raises :class:`RegexBudgetExceeded`, and the engine disables that rule with the reason;
- ``cidr`` expands to address prefixes; ``lt``/``lte``/``gt``/``gte`` compare numerically; ``exists`` tests
  presence; ``null`` matches a missing value; ``fieldref`` compares two fields (case-insensitively);
- a value without a field (keyword) is searched in the text of all fields of the event;
- a predicate on a missing value is false, and so ``not`` of it is true (SQL's NULL logic is neutralised).
"""

from __future__ import annotations

import re
import time
from typing import Any, Iterable, NamedTuple

import regex  # `re`'s syntax (its VERSION0), plus a timeout on every match: backtracking stays bounded

# Nodes are named tuples: hashable (so shared conditions dedupe), and the compiled-rule cache of the
# SigmaHQ set unpickles in a fraction of the time dataclasses take. The trailing ``kind`` keeps nodes
# of different types unequal even when their fields are.
def fold_case(text: str) -> str:
    """The one case-folding rule of every engine: Unicode's *simple* lowercase mapping, character by
    character, then final sigma ``ς`` → ``σ``.

    Python's ``str.lower`` applies the full mapping (``İ`` → ``i̇``, two characters) and the final-sigma
    context rule (``ΟΔΟΣ`` → ``οδος``); DuckDB and Arrow (utf8proc) map each character alone
    (``istanbul``, ``οδοσ``); Java, for Spark, does as Python. Folded this way on both sides, a rule's
    ``İstanbul`` matches the event's ``İstanbul`` and ``ΟΔΟΣ`` matches ``οδος`` on every engine.
    """
    if text.isascii():
        return text.lower()
    return "".join("i" if ch == "\u0130" else ch.lower() for ch in text).replace("\u03c2", "\u03c3")


class Pred(NamedTuple):
    """One test on one field (``field`` None: any field, i.e. a keyword search).

    ops and values: ``eq``/``contains``/``startswith``/``endswith`` (str), ``in`` (tuple of str),
    ``like`` (tuple of parts: str, or the markers ``*`` / ``?`` as :data:`ANY` / :data:`ONE`),
    ``re`` ((pattern, flags "ims" subset)), ``cmp`` ((operator, number)), ``null``, ``exists``,
    ``fieldref`` ((other field, "eq" | "startswith" | "endswith")). ``cased`` False means the value is
    lowered and compared with the lowered column.
    """

    field: str | None
    op: str
    value: Any = None
    cased: bool = False
    kind: str = "pred"


class And(NamedTuple):
    args: tuple
    kind: str = "and"


class Or(NamedTuple):
    args: tuple
    kind: str = "or"


class Not(NamedTuple):
    arg: Any
    kind: str = "not"


class Const(NamedTuple):
    value: bool
    kind: str = "const"


TRUE = Const(True)
FALSE = Const(False)


class _Wild(str):
    """A wildcard marker inside a ``like`` value (distinct from a literal '*' or '?'); compared by
    identity, so unpickling returns the same two singletons."""

    def __reduce__(self):
        return (_wildcard, (str(self),))


def _wildcard(symbol: str) -> _Wild:
    return ANY if symbol == "*" else ONE


ANY = _Wild("*")
ONE = _Wild("?")
STRING_OPS = ("eq", "in", "contains", "startswith", "endswith", "like")


def make_and(args: Iterable) -> Any:
    flat: list = []
    for a in args:
        if a == TRUE:
            continue
        if a == FALSE:
            return FALSE
        flat.extend(a.args if isinstance(a, And) else [a])
    flat = list(dict.fromkeys(flat))
    if not flat:
        return TRUE
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def make_or(args: Iterable) -> Any:
    flat: list = []
    for a in args:
        if a == FALSE:
            continue
        if a == TRUE:
            return TRUE
        flat.extend(a.args if isinstance(a, Or) else [a])
    flat = list(dict.fromkeys(flat))
    if not flat:
        return FALSE
    if len(flat) == 1:
        return flat[0]
    return Or(tuple(_merge_in(flat)))


def _merge_in(args: list) -> list:
    """OR of equalities on one field → one ``in`` predicate (one hash lookup instead of N compares)."""
    groups: dict[tuple, list[str]] = {}
    rest = []
    for a in args:
        if isinstance(a, Pred) and a.op in ("eq", "in") and a.field is not None:
            groups.setdefault((a.field, a.cased), []).extend([a.value] if a.op == "eq" else a.value)
        else:
            rest.append(a)
    merged = []
    for (fld, cased), values in groups.items():
        values = list(dict.fromkeys(values))
        merged.append(Pred(fld, "eq", values[0], cased) if len(values) == 1 else Pred(fld, "in", tuple(values), cased))
    return merged + rest


def make_not(arg: Any) -> Any:
    if isinstance(arg, Const):
        return Const(not arg.value)
    if isinstance(arg, Not):
        return arg.arg
    return Not(arg)


def fields_of(node: Any) -> set[str | None]:
    """Every field a condition reads (None stands for 'all fields', a keyword search)."""
    if isinstance(node, Pred):
        out = {node.field}
        if node.op == "fieldref":
            out.add(node.value[0])
        return out
    if isinstance(node, (And, Or)):
        return set().union(*(fields_of(a) for a in node.args))
    if isinstance(node, Not):
        return fields_of(node.arg)
    return set()


def walk(node: Any):
    yield node
    if isinstance(node, (And, Or)):
        for a in node.args:
            yield from walk(a)
    elif isinstance(node, Not):
        yield from walk(node.arg)



# ---------------------------------------------------------------------------------------------- folding
CLASS_FIELDS = ("Channel", "Provider_Name", "EventID")


def _eval_const(pred: Pred, value: str | None) -> bool:
    """A predicate on a value known for the whole batch (or known missing)."""
    op = pred.op
    if op == "null":
        return value is None
    if op == "exists":
        return value is not None
    if value is None:
        return False
    v = value if pred.cased else fold_case(value)
    if op == "eq":
        return v == pred.value
    if op == "in":
        return v in pred.value
    if op == "contains":
        return pred.value in v
    if op == "startswith":
        return v.startswith(pred.value)
    if op == "endswith":
        return v.endswith(pred.value)
    if op == "like":
        return like_regex(pred.value).fullmatch(v) is not None
    if op == "re":
        pattern, flags = pred.value
        return regex_search(pattern, flags, [value])[0]
    if op == "cmp":
        try:
            num = float(value)
        except ValueError:
            return False
        operator, bound = pred.value
        return {"<": num < bound, "<=": num <= bound, ">": num > bound, ">=": num >= bound}[operator]
    raise ValueError(op)


def fold(node: Any, constants: dict[str, str | None], columns: frozenset[str]) -> Any:
    """Partially evaluate a condition for one event class.

    ``constants``: lower-cased field name → the value every event of the batch has (None: missing);
    ``columns``: lower-cased names of the batch's other columns. A predicate on a field outside both is a
    predicate on a missing value.
    """
    if isinstance(node, Pred):
        if node.field is None:
            return node
        key = node.field.lower()
        if node.op == "fieldref":
            other = node.value[0].lower()
            if (key not in columns and key not in constants) or (other not in columns and other not in constants):
                return FALSE
            return node
        if key in constants:
            return Const(_eval_const(node, constants[key]))
        if key not in columns:
            return Const(_eval_const(node, None))
        return node
    if isinstance(node, And):
        return make_and(fold(a, constants, columns) for a in node.args)
    if isinstance(node, Or):
        return make_or(fold(a, constants, columns) for a in node.args)
    if isinstance(node, Not):
        return make_not(fold(node.arg, constants, columns))
    return node


_LIKE_CACHE: dict[tuple, re.Pattern] = {}
_RE_CACHE: dict[tuple[str, str], regex.Pattern] = {}
# What one regex pattern RE2 cannot run may spend on one batch (all its rows): a lookaround or
# backreference pattern backtracks, and e.g. (?=a)(a+)+$ on 5,000 characters would run for ages.
REGEX_BUDGET_SECONDS = 2.0


class RegexBudgetExceeded(Exception):
    """A backtracking regular expression ran over its time budget on one batch."""

    def __init__(self, pattern: str, seconds: float):
        shown = pattern if len(pattern) <= 120 else pattern[:117] + "..."
        super().__init__(f"regular expression over its time budget ({seconds:g} s on one batch; searched by "
                         f"backtracking, as the engine's linear-time regexes cannot run it), rule disabled: {shown}")


class RegexBudget:
    """The time one pattern has left on one batch (spent across calls: DuckDB calls a UDF per vector)."""

    def __init__(self, seconds: float = REGEX_BUDGET_SECONDS):
        self.seconds = seconds
        self.spent = 0.0


def like_regex(parts: tuple) -> re.Pattern:
    rx = _LIKE_CACHE.get(parts)
    if rx is None:
        rx = re.compile("".join(".*" if p is ANY else "." if p is ONE else re.escape(p) for p in parts), re.S)
        _LIKE_CACHE[parts] = rx
    return rx


def python_regex(pattern: str, flags: str) -> regex.Pattern:
    """The compiled pattern (the ``regex`` module, ``re``-compatible); match it through :func:`regex_search`,
    which bounds its time."""
    key = (pattern, flags)
    rx = _RE_CACHE.get(key)
    if rx is None:
        f = (regex.I if "i" in flags else 0) | (regex.M if "m" in flags else 0) | (regex.S if "s" in flags else 0)
        rx = regex.compile(pattern, f | regex.VERSION0)
        _RE_CACHE[key] = rx
    return rx


def regex_search(pattern: str, flags: str, values: Iterable[str | None],
                 budget: RegexBudget | None = None) -> list[bool | None]:
    """Search each value (None stays None) within ``budget`` (a fresh one: :data:`REGEX_BUDGET_SECONDS`);
    raises :class:`RegexBudgetExceeded` when it runs out — never runs unbounded."""
    rx = python_regex(pattern, flags)
    budget = budget or RegexBudget()
    out: list[bool | None] = []
    start = time.monotonic()
    try:
        for v in values:
            if v is None:
                out.append(None)
                continue
            left = budget.seconds - budget.spent - (time.monotonic() - start)
            if left <= 0:
                raise RegexBudgetExceeded(pattern, budget.seconds)
            try:
                out.append(rx.search(v, timeout=left) is not None)
            except TimeoutError:
                raise RegexBudgetExceeded(pattern, budget.seconds) from None
    finally:
        budget.spent += time.monotonic() - start
    return out


def class_constraints(node: Any) -> dict[str, set[str]] | None:
    """The values of Channel / Provider_Name / EventID a condition requires (lower-cased), if it does.

    Used to index rules by event class cheaply; :func:`fold` remains the exact test."""
    if isinstance(node, Pred) and node.field in CLASS_FIELDS and node.op in ("eq", "in") and not node.cased:
        return {node.field: {node.value} if node.op == "eq" else set(node.value)}
    if isinstance(node, And):
        out: dict[str, set[str]] = {}
        for a in node.args:
            c = class_constraints(a)
            for k, v in (c or {}).items():
                out[k] = out[k] & v if k in out else set(v)
        return out
    if isinstance(node, Or):
        parts = [class_constraints(a) for a in node.args]
        if any(not p for p in parts):
            return {}
        common = set.intersection(*(set(p) for p in parts))
        return {k: set().union(*(p[k] for p in parts)) for k in common}
    return {}

