"""Render the predicate IR of :mod:`ttpscope.detect.compiler` as SQL (DuckDB and Spark dialects).

Every value reaches SQL as a quoted literal produced by :func:`sql_string` (single quotes doubled,
control characters spelled with ``chr()``), every field name as a quoted identifier from
:func:`sql_ident`: a rule cannot inject SQL, and a ``%``, ``_`` or backslash in a Sigma value matches
itself (LIKE patterns escape them).

The renderer works on a *column map*: lower-cased field name → the SQL expression of the column, lowered
(``lower``) or as stored (``orig``). The engine computes the lowered columns once per batch.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field, replace
from re import _constants as sre_constants, _parser as sre_parse  # the stdlib's regex parser: a pattern's shape
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from ttpscope.detect.ir import ANY, ONE, And, Const, Not, Or, Pred


def _sigma_error(message: str) -> Exception:
    """pySigma's SigmaError (what callers catch), imported only when a rule cannot be rendered: a run
    whose rules come from the rule index does not load pySigma."""
    from sigma.exceptions import SigmaError

    return SigmaError(message)


KEYWORD = "\x00kw"  # stands for "any field" (keyword searches) in the column maps of the engine


def sql_string(value: str) -> str:
    """A SQL string literal for any text (works in DuckDB and Spark SQL with ANSI string escapes off)."""
    out: list[str] = []
    buf: list[str] = []
    for ch in value:
        if ch == "\x00" or (ord(ch) < 32 and ch not in "\t\n\r"):
            if buf:
                out.append("'" + "".join(buf).replace("'", "''") + "'")
                buf = []
            out.append(f"chr({ord(ch)})")
        else:
            buf.append(ch)
    if buf or not out:
        out.append("'" + "".join(buf).replace("'", "''") + "'")
    return out[0] if len(out) == 1 else "(" + " || ".join(out) + ")"


def spark_string(value: str) -> str:
    """A Spark SQL string literal: quotes, backslashes and control characters are spelled with ``chr()``,
    as Spark has no quote doubling and Spark 4 treats a backslash as an escape whatever
    ``spark.sql.parser.escapedStringLiterals`` says (``'a\\'`` is a syntax error there)."""
    out: list[str] = []
    buf: list[str] = []
    for ch in value:
        if ch in "'\\" or ord(ch) < 32:
            if buf:
                out.append("'" + "".join(buf) + "'")
                buf = []
            out.append(f"chr({ord(ch)})")
        else:
            buf.append(ch)
    if buf or not out:
        out.append("'" + "".join(buf) + "'")
    return out[0] if len(out) == 1 else "concat(" + ", ".join(out) + ")"


def sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def like_pattern(parts: tuple) -> str:
    """IR like-parts → a LIKE pattern with '\\' as escape character."""
    out = []
    for p in parts:
        if p is ANY:
            out.append("%")
        elif p is ONE:
            out.append("_")
        else:
            out.append(p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))
    return "".join(out)


@dataclass
class Dialect:
    name: str
    contains: Callable[[str, str], str]
    startswith: Callable[[str, str], str]
    endswith: Callable[[str, str], str]
    regex: Callable[[str, str], str]  # (column, pattern) → boolean search
    to_double: Callable[[str], str]
    ident: Callable[[str], str] = sql_ident
    string: Callable[[str], str] = sql_string
    like_escape: str = " ESCAPE '\\'"  # "" where backslash is the default LIKE escape (Spark)
    in_max: int = 10_000
    # a column folded as ttpscope.detect.ir.fold_case folds rule values
    fold: Callable[[str], str] = lambda c: f"replace(lower({c}), '\u03c2', '\u03c3')"


DUCKDB = Dialect(
    name="duckdb",
    contains=lambda c, v: f"contains({c}, {v})",
    startswith=lambda c, v: f"starts_with({c}, {v})",
    endswith=lambda c, v: f"suffix({c}, {v})",
    regex=lambda c, p: f"regexp_matches({c}, {sql_string(p)})",
    to_double=lambda c: f"TRY_CAST({c} AS DOUBLE)",
)

# Java's regexes backtrack, and a Spark task cannot be stopped inside one: `.*a.*a$` takes > 30 s on one
# 5,000-character value, `.*a$` 5.8 s on 32,000, `(a+)+\1$` does not finish in 20 s (Java 17). RE2/J, the
# linear-time RE2 port every Spark distribution carries in its Hadoop client, runs the patterns Java could not
# finish and every value longer than JAVA_REGEX_MAX_LENGTH; Java, ~8× faster per row (RE2/J compiles the
# pattern per call through java_method), keeps the short values of patterns it runs in bounded time
# (≤ 0.2 s per value).
RE2J_PATTERN = "org.apache.hadoop.shaded.com.google.re2j.Pattern"
JAVA_REGEX_MAX_LENGTH = 1024


def java_regex_bounded(pattern: str) -> bool:
    """Whether Java's backtracking runs a pattern in bounded time on a short value: at most one unbounded
    repetition, no variable repetition inside an unbounded one (``(a{1,3})+``), no backreference. Heuristic
    (overlapping alternatives such as ``(a|aa)+`` are let through: Java's loop memo keeps them fast). A
    pattern Python's parser does not read is judged unbounded."""
    try:
        tree = sre_parse.parse(pattern)
    except (re.error, OverflowError, RecursionError, ValueError):
        return False
    shape = {"unbounded": 0, "bad": False}
    _shape(tree, False, shape)
    return not shape["bad"] and shape["unbounded"] <= 1


def _shape(items, inside_unbounded: bool, shape: dict) -> None:
    for op, arg in items:
        if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, body = arg
            unbounded = high == sre_constants.MAXREPEAT or high > 10
            shape["unbounded"] += unbounded
            shape["bad"] |= inside_unbounded and high != low
            _shape(body, inside_unbounded or unbounded, shape)
        elif op == sre_constants.SUBPATTERN:
            _shape(arg[-1], inside_unbounded, shape)
        elif op == sre_constants.BRANCH:
            for branch in arg[1]:
                _shape(branch, inside_unbounded, shape)
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            _shape(arg[1], inside_unbounded, shape)
        elif op in (sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS):
            shape["bad"] = True


def _spark_regex(c: str, pattern: str) -> str:
    re2j = (f"java_method('{RE2J_PATTERN}', 'matches', {spark_string('(?s:.*)(?:' + pattern + ')(?s:.*)')}, "
            f"CAST({c} AS STRING)) = 'true'")
    if not java_regex_bounded(pattern):
        return f"(CASE WHEN {c} IS NULL THEN NULL ELSE {re2j} END)"
    return (f"(CASE WHEN {c} IS NULL THEN NULL WHEN length({c}) <= {JAVA_REGEX_MAX_LENGTH} "
            f"THEN {c} RLIKE {spark_string(pattern)} ELSE {re2j} END)")


def re2_accepts(pattern: str) -> bool:
    """Does RE2 run the pattern? (Lookarounds and backreferences it does not.) Arrow's RE2 answers."""
    ok = _RE2_ACCEPTS.get(pattern)
    if ok is None:
        try:
            pc.match_substring_regex(pa.array([""], pa.string()), pattern)
            ok = True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            ok = False
        _RE2_ACCEPTS[pattern] = ok
    return ok


_RE2_ACCEPTS: dict[str, bool] = {}

SPARK = Dialect(
    name="spark",
    contains=lambda c, v: f"contains({c}, {v})",
    startswith=lambda c, v: f"startswith({c}, {v})",
    endswith=lambda c, v: f"endswith({c}, {v})",
    regex=_spark_regex,
    to_double=lambda c: f"TRY_CAST({c} AS DOUBLE)",
    ident=lambda name: "`" + name.replace("`", "``") + "`",
    string=spark_string,
    like_escape="",
    # Java lowers with the full mapping and the final-sigma rule: the two characters concerned are
    # mapped first, so that lower() is left with simple mappings only
    fold=lambda c: f"replace(lower(replace(replace({c}, '\u03a3', '\u03c3'), '\u0130', 'i')), '\u03c2', '\u03c3')",
)

# a cluster without RE2/J (no Hadoop client): Java only; the engine sends every pattern java_regex_bounded
# refuses to its driver-side bounded search instead
SPARK_WITHOUT_RE2J = replace(SPARK, regex=lambda c, p: f"({c} RLIKE {spark_string(p)})")


@dataclass
class ColumnMap:
    """How the renderer reaches each field: lowered and original column expressions."""

    lower: dict[str, str] = field(default_factory=dict)
    orig: dict[str, str] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)  # every field column, as stored: keyword searches
    # (column, pattern, flags) → SQL: the engine's bounded search, for the patterns its own regexes should not run
    python_regex: Callable[[str, str, str], str] | None = None
    native_regex_ok: Callable[[str], bool] | None = None  # (pattern literal) → may the dialect's regex run it?


def regex_literal(pattern: str, flags: str) -> str:
    """Sigma regex flags as inline RE2/Java flags (``(?i)``, ``(?m)``, ``(?s)``)."""
    return f"(?{flags}){pattern}" if flags else pattern


_RE_META = set("\\.+*?()|[]{}^$")
_RE_ESCAPES = str.maketrans({ch: "\\" + ch for ch in _RE_META})


def regex_escape(text: str) -> str:
    """Escape a literal for RE2 and Java regexes (only punctuation with a meaning is escaped)."""
    return text.translate(_RE_ESCAPES)


# An OR of substring/prefix/suffix/equality tests on one lowered column becomes one regular expression
# alternation: one expression to plan instead of dozens (DuckDB's planner costs ~0.1 ms per expression,
# which dominated the run time), and RE2 scans the text once for all alternatives.
ALTERNATIVES = {"contains": lambda v: regex_escape(v), "startswith": lambda v: "^" + regex_escape(v),
        "endswith": lambda v: regex_escape(v) + "$", "eq": lambda v: "^" + regex_escape(v) + "$"}
MIN_ALTERNATION = 3


def keyword_regex(p: Pred) -> str:
    """A keyword search (a value without a field) as a regular expression searched in each field: the
    event matches when some field matches (SQL and Arrow paths alike; no copy of the event's text)."""
    if p.op == "re":
        return regex_literal(*p.value)
    if p.op in ("contains", "eq"):
        body = regex_escape(p.value)
    elif p.op == "like":
        parts = list(p.value)
        while parts and parts[0] is ANY:
            parts.pop(0)
        while parts and parts[-1] is ANY:
            parts.pop()
        body = "".join(".*" if x is ANY else "." if x is ONE else regex_escape(x) for x in parts)
    else:
        raise _sigma_error(f"unsupported keyword search {p.op}")
    return body if p.cased else f"(?is){body}" if p.op == "like" else f"(?i){body}"


def _render_keyword(pattern: str, cols: ColumnMap, d: Dialect) -> str:
    if not cols.text:
        return "false"
    return "(" + " OR ".join(d.regex(c, pattern) for c in cols.text) + ")"


def _render_or(node: Or, cols: ColumnMap, d: Dialect) -> str:
    groups: dict[str, list[str]] = {}
    rest = []
    keywords = [a for a in node.args if isinstance(a, Pred) and a.field is None and not a.cased
                and a.op in ("contains", "eq")]
    if len(keywords) >= 2:  # several keywords: one alternation searched in each field
        rest.append(_render_keyword("(?i)" + "|".join(regex_escape(k.value) for k in keywords), cols, d))
    for a in node.args:
        if len(keywords) >= 2 and a in keywords:
            continue
        if isinstance(a, Pred) and not a.cased and a.op in ALTERNATIVES and a.field is not None:
            groups.setdefault(a.field.lower(), []).append(ALTERNATIVES[a.op](a.value))
        elif isinstance(a, Pred) and not a.cased and a.op == "in" and a.field is not None:
            groups.setdefault(a.field.lower(), []).extend(ALTERNATIVES["eq"](v) for v in a.value)
        else:
            rest.append(render(a, cols, d))
    parts = []
    for key, alts in groups.items():
        if len(alts) >= MIN_ALTERNATION:
            parts.append(d.regex(cols.lower[key], "|".join(alts)))
        else:
            parts.extend(render(a, cols, d) for a in node.args
                         if isinstance(a, Pred) and a.field is not None and a.field.lower() == key
                         and not a.cased and a.op in (*ALTERNATIVES, "in"))
    parts.extend(rest)
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def render(node: Any, cols: ColumnMap, d: Dialect = DUCKDB) -> str:
    """IR → SQL boolean expression. NULL never escapes a NOT: ``NOT x`` is rendered
    ``NOT coalesce(x, false)``, so a test on a missing value is false and its negation true."""
    if isinstance(node, Const):
        return "true" if node.value else "false"
    if isinstance(node, And):
        return "(" + " AND ".join(render(a, cols, d) for a in node.args) + ")"
    if isinstance(node, Or):
        return _render_or(node, cols, d)
    if isinstance(node, Not):
        return f"(NOT coalesce({render(node.arg, cols, d)}, false))"
    if isinstance(node, Pred):
        return _render_pred(node, cols, d)
    raise TypeError(f"not an IR node: {node!r}")


def _render_pred(p: Pred, cols: ColumnMap, d: Dialect) -> str:
    if p.field is None:
        if (p.op == "re" and cols.text and cols.python_regex is not None and cols.native_regex_ok is not None
                and not cols.native_regex_ok(keyword_regex(p))):  # e.g. a lookaround for RE2: the bounded search
            return "(" + " OR ".join(cols.python_regex(c, *p.value) for c in cols.text) + ")"
        return _render_keyword(keyword_regex(p), cols, d)
    key = p.field.lower()
    op = p.op
    if op == "null":
        return f"({cols.orig[key]} IS NULL)"
    if op == "exists":
        return f"({cols.orig[key]} IS NOT NULL)"
    if op == "fieldref":
        other, mode = p.value
        a, b = cols.lower[key], cols.lower[other.lower()]
        if mode == "eq":
            return f"({a} = {b})"
        return d.startswith(a, b) if mode == "startswith" else d.endswith(a, b)
    if op == "cmp":
        operator, bound = p.value
        return f"({d.to_double(cols.orig[key])} {operator} {bound!r})"
    if op == "re":
        pattern, flags = p.value
        col = cols.orig[key]
        if cols.native_regex_ok is not None and not cols.native_regex_ok(regex_literal(pattern, flags)):
            if cols.python_regex is None:
                raise _sigma_error(f"regular expression not supported by the engine: {pattern}")
            return cols.python_regex(col, pattern, flags)
        return d.regex(col, regex_literal(pattern, flags))
    col = cols.orig[key] if p.cased else cols.lower[key]
    if op == "eq":
        return f"({col} = {d.string(p.value)})"
    if op == "in":
        return f"({col} IN ({', '.join(d.string(v) for v in p.value)}))"
    if op == "contains":
        return d.contains(col, d.string(p.value))
    if op == "startswith":
        return d.startswith(col, d.string(p.value))
    if op == "endswith":
        return d.endswith(col, d.string(p.value))
    if op == "like":
        return f"({col} LIKE {d.string(like_pattern(p.value))}{d.like_escape})"
    raise _sigma_error(f"unsupported predicate {op}")
