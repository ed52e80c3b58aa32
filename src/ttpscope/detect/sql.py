"""Render the predicate IR of :mod:`ttpscope.detect.compiler` as SQL (DuckDB and Spark dialects).

Every value reaches SQL as a quoted literal produced by :func:`sql_string` (single quotes doubled,
control characters spelled with ``chr()``), every field name as a quoted identifier from
:func:`sql_ident`: a rule cannot inject SQL, and a ``%``, ``_`` or backslash in a Sigma value matches
itself (LIKE patterns escape them).

The renderer works on a *column map*: lower-cased field name → the SQL expression of the column, lowered
(``lower``) or as stored (``orig``). The engine computes the lowered columns once per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

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
    regex: Callable[[str, str], str]  # (column, pattern literal) → boolean search
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
    regex=lambda c, v: f"regexp_matches({c}, {v})",
    to_double=lambda c: f"TRY_CAST({c} AS DOUBLE)",
)

SPARK = Dialect(
    name="spark",
    contains=lambda c, v: f"contains({c}, {v})",
    startswith=lambda c, v: f"startswith({c}, {v})",
    endswith=lambda c, v: f"endswith({c}, {v})",
    regex=lambda c, v: f"({c} RLIKE {v})",
    to_double=lambda c: f"TRY_CAST({c} AS DOUBLE)",
    ident=lambda name: "`" + name.replace("`", "``") + "`",
    string=spark_string,
    like_escape="",
    # Java lowers with the full mapping and the final-sigma rule: the two characters concerned are
    # mapped first, so that lower() is left with simple mappings only
    fold=lambda c: f"replace(lower(replace(replace({c}, '\u03a3', '\u03c3'), '\u0130', 'i')), '\u03c2', '\u03c3')",
)


@dataclass
class ColumnMap:
    """How the renderer reaches each field: lowered and original column expressions."""

    lower: dict[str, str] = field(default_factory=dict)
    orig: dict[str, str] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)  # every field column, as stored: keyword searches
    python_regex: Callable[[str, str, str], str] | None = None  # (column, pattern, flags) → SQL, for RE2 misfits
    re2_ok: Callable[[str], bool] | None = None


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
_ALT = {"contains": lambda v: regex_escape(v), "startswith": lambda v: "^" + regex_escape(v),
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
    lit = d.string(pattern)
    return "(" + " OR ".join(d.regex(c, lit) for c in cols.text) + ")"


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
        if isinstance(a, Pred) and not a.cased and a.op in _ALT and a.field is not None:
            groups.setdefault(a.field.lower(), []).append(_ALT[a.op](a.value))
        elif isinstance(a, Pred) and not a.cased and a.op == "in" and a.field is not None:
            groups.setdefault(a.field.lower(), []).extend(_ALT["eq"](v) for v in a.value)
        else:
            rest.append(render(a, cols, d))
    parts = []
    for key, alts in groups.items():
        if len(alts) >= MIN_ALTERNATION:
            parts.append(d.regex(cols.lower[key], d.string("|".join(alts))))
        else:
            parts.extend(render(a, cols, d) for a in node.args
                         if isinstance(a, Pred) and a.field is not None and a.field.lower() == key
                         and not a.cased and a.op in (*_ALT, "in"))
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
        if (p.op == "re" and cols.text and cols.python_regex is not None and cols.re2_ok is not None
                and not cols.re2_ok(keyword_regex(p))):  # lookaround / backreference: the engine's bounded search
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
        if cols.re2_ok is not None and not cols.re2_ok(regex_literal(pattern, flags)):
            if cols.python_regex is None:
                raise _sigma_error(f"regular expression not supported by the engine: {pattern}")
            return cols.python_regex(col, pattern, flags)
        return d.regex(col, d.string(regex_literal(pattern, flags)))
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
