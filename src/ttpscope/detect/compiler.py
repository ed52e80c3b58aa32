"""Sigma rules → a small predicate IR, through a pySigma backend and the Windows/Sysmon pipelines.

Why an IR and not SQL text straight away: the engine partially evaluates every rule against each event
class it sees (a batch whose Channel, provider and EventID are constant, and whose columns are known), so
that a Sysmon rule vanishes from a Security batch before any SQL is written, a predicate on a field the
class never carries folds to false, and the SQL that remains is small. The same IR renders to DuckDB SQL
(:mod:`ttpscope.detect.sql`) and Spark SQL.

Matching semantics (the Sigma specification's, made explicit):

- strings compare case-insensitively unless ``cased``: literals are lowered here, columns are lowered once
  per batch by the engine; ``*`` and ``?`` are wildcards (``contains``/``startswith``/``endswith`` become
  wildcards at the ends, as pySigma's modifiers produce them);
- ``re`` is a search (unanchored), case-sensitive unless the ``i`` flag is given; ``m`` and ``s`` flags too;
- ``cidr`` expands to address prefixes; ``lt``/``lte``/``gt``/``gte`` compare numerically; ``exists`` tests
  presence; ``null`` matches a missing value; ``fieldref`` compares two fields (case-insensitively);
- a value without a field (keyword) is searched in the text of all fields of the event;
- a predicate on a missing value is false, and so ``not`` of it is true (SQL's NULL logic is neutralised).

Log sources: a rule is compiled once per *variant*, i.e. per processing pipeline that can carry it:
``sysmon`` (Sysmon event ids + channel), ``security`` (Security 4688 / 4657 with pySigma's windows-audit
field renames, e.g. ``Image`` → ``NewProcessName``), ``windows`` (channel by service, PowerShell
categories). A process_creation rule thus runs on Sysmon EventID 1 *and* on Security 4688.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

from sigma.conditions import ConditionAND, ConditionNOT, ConditionOR
from sigma.conversion.base import Backend
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaError
from sigma.pipelines.common import windows_logsource_mapping
from sigma.pipelines.sysmon.sysmon import sysmon_generic_logsource_eventid_mapping
from sigma.pipelines.windows import windows_audit_pipeline, windows_logsource_pipeline
from sigma.pipelines.windows.windows import generic_logsource_to_windows_audit_event_mapping
from sigma.processing.conditions import LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import AddConditionTransformation
from sigma.types import (
    CompareOperators,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaFieldReference,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)


COMPILER_VERSION = "4"  # bump when the IR or its semantics change: compiled-rule caches key on it

# ---------------------------------------------------------------------------------------------- IR
# Nodes are named tuples: hashable (so shared conditions dedupe), and the compiled-rule cache of the
# SigmaHQ set unpickles in a fraction of the time dataclasses take. The trailing ``kind`` keeps nodes
# of different types unequal even when their fields are.
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


# ---------------------------------------------------------------------------------------------- backend
def _string_pred(fld: str | None, s: SigmaString, cased: bool) -> Any:
    """A SigmaString (with wildcards) → the cheapest equivalent predicate."""
    parts: list[str] = []
    for p in s.s:
        if isinstance(p, str):
            parts.append(p if cased else p.lower())
        elif p == SpecialChars.WILDCARD_MULTI:
            parts.append(ANY)
        elif p == SpecialChars.WILDCARD_SINGLE:
            parts.append(ONE)
        else:
            raise SigmaError(f"unresolved placeholder %{getattr(p, 'name', p)}% (no value list configured)")
    # merge adjacent literal parts, squeeze runs of '*'
    merged: list[str] = []
    for p in parts:
        if merged and not isinstance(p, _Wild) and not isinstance(merged[-1], _Wild):
            merged[-1] = merged[-1] + p
        elif merged and p is ANY and merged[-1] is ANY:
            continue
        else:
            merged.append(p)
    if fld is None and not (merged and merged[0] is ANY):  # keywords are searched anywhere in the event
        merged = [ANY, *merged]
    if fld is None and not (merged and merged[-1] is ANY):
        merged = [*merged, ANY]
    if not any(isinstance(p, _Wild) for p in merged):
        return Pred(fld, "eq", "".join(merged), cased)
    literal = [p for p in merged if not isinstance(p, _Wild)]
    if ONE not in merged:
        if merged == [ANY]:
            return Pred(fld, "exists") if fld is not None else TRUE
        if len(literal) == 1:
            if merged[0] is ANY and merged[-1] is ANY and len(merged) == 3:
                return Pred(fld, "contains", literal[0], cased)
            if merged[0] is ANY and len(merged) == 2:
                return Pred(fld, "endswith", literal[0], cased)
            if merged[-1] is ANY and len(merged) == 2:
                return Pred(fld, "startswith", literal[0], cased)
    return Pred(fld, "like", tuple(merged), cased)


_RE_FLAGS = {SigmaRegularExpressionFlag.IGNORECASE: "i", SigmaRegularExpressionFlag.MULTILINE: "m",
             SigmaRegularExpressionFlag.DOTALL: "s"}
_CMP = {CompareOperators.LT: "<", CompareOperators.LTE: "<=", CompareOperators.GT: ">",
        CompareOperators.GTE: ">="}


class IRBackend(Backend):
    """A pySigma backend whose 'queries' are IR trees (see :class:`Pred`), one per rule condition."""

    name = "ttpscope IR"
    formats = {"default": "predicate IR"}
    requires_pipeline = False

    def convert_condition_as_in_expression(self, cond, state):  # never chosen (convert_or_as_in is False)
        return make_or(self.convert_condition(a, state) for a in cond.args)

    def convert_condition_or(self, cond: ConditionOR, state: ConversionState):
        return make_or(self.convert_condition(a, state) for a in cond.args)

    def convert_condition_and(self, cond: ConditionAND, state: ConversionState):
        return make_and(self.convert_condition(a, state) for a in cond.args)

    def convert_condition_not(self, cond: ConditionNOT, state: ConversionState):
        return make_not(self.convert_condition(cond.args[0], state))

    def convert_condition_field_eq_val_str(self, cond, state):
        return _string_pred(cond.field, cond.value, cased=False)

    def convert_condition_field_eq_val_str_case_sensitive(self, cond, state):
        return _string_pred(cond.field, cond.value, cased=True)

    def convert_condition_field_eq_val_num(self, cond, state):
        return Pred(cond.field, "eq", str(cond.value.number))

    def convert_condition_field_eq_val_timestamp_part(self, cond, state):
        raise SigmaError("timestamp-part modifiers (minute, hour, day...) are not supported")

    def convert_condition_field_eq_val_bool(self, cond, state):
        return Pred(cond.field, "eq", "true" if cond.value.boolean else "false")

    def convert_condition_field_eq_val_re(self, cond, state):
        value: SigmaRegularExpression = cond.value
        flags = "".join(sorted(_RE_FLAGS[f] for f in value.flags))
        return Pred(cond.field, "re", (str(value.regexp), flags), cased=True)

    def convert_condition_field_eq_val_cidr(self, cond, state):
        value: SigmaCIDRExpression = cond.value
        return make_or(_string_pred(cond.field, SigmaString(p), cased=False) for p in value.expand("*"))

    def convert_condition_field_compare_op_val(self, cond, state):
        value: SigmaCompareExpression = cond.value
        if value.op not in _CMP:  # neq on a number
            return make_not(Pred(cond.field, "eq", str(value.number.number)))
        return Pred(cond.field, "cmp", (_CMP[value.op], float(value.number.number)))

    def convert_condition_field_eq_field(self, cond, state):
        ref: SigmaFieldReference = cond.value
        mode = "startswith" if ref.starts_with else "endswith" if ref.ends_with else "eq"
        return Pred(cond.field, "fieldref", (ref.field, mode))

    def convert_condition_field_eq_val_null(self, cond, state):
        return Pred(cond.field, "null")

    def convert_condition_field_exists(self, cond, state):
        return Pred(cond.field, "exists")

    def convert_condition_field_not_exists(self, cond, state):
        return make_not(Pred(cond.field, "exists"))

    def convert_condition_field_eq_query_expr(self, cond, state):
        raise SigmaError("query expressions (value lists from a pipeline) are not supported")

    def convert_condition_val_str(self, cond, state):
        return _string_pred(None, cond.value, cased=isinstance(cond.value, SigmaCasedString))

    def convert_condition_val_num(self, cond, state):
        return _string_pred(None, SigmaString(str(cond.value.number)), cased=False)

    def convert_condition_val_re(self, cond, state):
        value: SigmaRegularExpression = cond.value
        flags = "".join(sorted(_RE_FLAGS[f] for f in value.flags))
        return Pred(None, "re", (str(value.regexp), flags), cased=True)

    def convert_condition_query_expr(self, cond, state):
        raise SigmaError("query expressions are not supported")


def _no_correlation_query(self, *args, **kwargs):
    raise SigmaError("correlation rules run on detections (ttpscope.detect.correlate), not as queries")


for _name in [n for n in getattr(Backend, "__abstractmethods__", ()) if n.startswith("convert_correlation_")]:
    setattr(IRBackend, _name, _no_correlation_query)
IRBackend.__abstractmethods__ = frozenset()


# ---------------------------------------------------------------------------------------------- pipelines
# Services missing from pySigma's Windows channel table, with the channel Windows writes them to.
EXTRA_SERVICE_CHANNELS = {
    "iis-configuration": "Microsoft-IIS-Configuration/Operational",
    "smbserver-connectivity": "Microsoft-Windows-SmbServer/Connectivity",
    "ldap": "Microsoft-Windows-LDAP-Client/Debug",
}


def _extra_services_pipeline() -> ProcessingPipeline:
    return ProcessingPipeline(
        name="ttpscope: channels of services pySigma does not map",
        priority=10,
        items=[ProcessingItem(identifier=f"ttpscope_{svc}_channel",
                              transformation=AddConditionTransformation({"Channel": channel}),
                              rule_conditions=[LogsourceCondition(product="windows", service=svc)])
               for svc, channel in EXTRA_SERVICE_CHANNELS.items()],
    )


def _defined_function(module_name: str, name: str):
    """The plain function behind a pySigma ``@Pipeline``-decorated pipeline.

    pySigma's ``Pipeline`` decorator is a process-wide singleton: every decorated pipeline shares one
    instance whose ``func`` is the last one decorated, so after plugin autodiscovery (which imports pySigma's
    own test pipelines, e.g. for ``rules convert --pipeline``) ``sysmon_pipeline()`` silently returns another
    pipeline and Sysmon rules lose their channel condition. Re-running the defining module restores the
    decorator long enough to take the function itself.
    """
    import importlib

    module = importlib.import_module(module_name)
    func = getattr(getattr(module, name), "func", None)
    if func is None:  # a plain function: nothing to undo
        return getattr(module, name)
    if func.__module__ != module_name or func.__name__ != name:
        func = getattr(importlib.reload(module), name).func
    return func


_SYSMON_PIPELINE = _defined_function("sigma.pipelines.sysmon.sysmon", "sysmon_pipeline")


def variant_pipelines() -> dict[str, ProcessingPipeline]:
    """The processing pipelines, by variant name (built fresh: pipelines keep state while applied)."""
    return {
        "sysmon": _SYSMON_PIPELINE() + windows_logsource_pipeline(),
        "security": windows_audit_pipeline() + windows_logsource_pipeline(),
        "windows": windows_logsource_pipeline() + _extra_services_pipeline(),
        "plain": ProcessingPipeline(),
    }


SYSMON_CATEGORIES = frozenset(sysmon_generic_logsource_eventid_mapping)
AUDIT_CATEGORIES = frozenset(generic_logsource_to_windows_audit_event_mapping)
MAPPED_SERVICES = frozenset(windows_logsource_mapping) | frozenset(EXTRA_SERVICE_CHANNELS)
WINDOWS_CATEGORIES = frozenset({"ps_module", "ps_script", "ps_classic_start", "ps_classic_provider_start",
                                "ps_classic_script"})
# variants whose pipelines add the Windows channel / EventID conditions: they run on Windows event log
# classes (those with a Channel), where folding those conditions decides what runs where
CHANNEL_VARIANTS = frozenset({"sysmon", "security", "windows"})


def variants_for(logsource: dict[str, str | None]) -> tuple[list[str], str | None]:
    """Which variants a rule compiles to, and a note on where it can run.

    Every rule gets the ``plain`` variant (its fields as written, no added condition), which runs only on
    classes whose log source admits the rule's (:meth:`~ttpscope.ingest.logsource.LogSource.admits`):
    CloudTrail rules on CloudTrail, Defender XDR tables for Windows process rules. A Windows rule whose
    category or service has a Windows event log also gets the channel variants (:data:`CHANNEL_VARIANTS`)."""
    product, category, service = logsource.get("product"), logsource.get("category"), logsource.get("service")
    if product != "windows":
        return ["plain"], None
    if category:
        out = []
        if category in SYSMON_CATEGORIES:
            out.append("sysmon")
        if category in AUDIT_CATEGORIES:
            out.append("security")
        if category in WINDOWS_CATEGORIES:
            out.append("windows")
        if out:
            return out + ["plain"], None
        return ["plain"], (f"log source category '{category}' has no Windows event log mapping: the rule runs "
                           "only on sources declared or recognised as that category")
    if service and service not in MAPPED_SERVICES:
        return ["plain"], (f"log source service '{service}' has no Windows channel mapping: the rule runs only "
                           "on sources declared or recognised as that service")
    return ["windows", "plain"], None


def runs_on(variant: str, rule_logsource: dict, channel_variants: bool, source, has_channel: bool) -> bool:
    """Whether a rule's variant runs on an event class of log source ``source`` (``has_channel``: the
    class's events name their Windows event log). Channel variants run on Windows event log classes; the
    plain variant where the class's log source admits the rule's, and on Windows event logs only for
    rules without a channel variant (else the channel variant, with its field mapping, is the one)."""
    if variant in CHANNEL_VARIANTS:
        return has_channel and source.product == "windows"
    if channel_variants and has_channel:
        return False
    return source.admits(rule_logsource)


@dataclass
class CompiledRule:
    """One rule compiled: per variant, its IR condition. ``error`` says why a rule could not compile."""

    index: int  # position in the RuleSet
    rule_id: str
    variants: dict[str, Any] = field(default_factory=dict)  # variant name → IR
    error: str | None = None
    note: str | None = None
    logsource: dict = field(default_factory=dict)  # the rule's {product, category, service}


def backends() -> dict[str, IRBackend]:
    """One IR backend per variant (a backend can convert many rules, one after the other)."""
    return {name: IRBackend(processing_pipeline=p) for name, p in variant_pipelines().items()}


def compile_rule(info, index: int = 0, backend_set: dict[str, IRBackend] | None = None) -> CompiledRule:
    """Compile one :class:`~ttpscope.detect.rules.RuleInfo` (a detection rule) into IR variants."""
    out = CompiledRule(index, info.id, logsource={k: v for k, v in (info.logsource or {}).items() if v})
    names, out.note = variants_for(info.logsource)
    errors = []
    backend_set = backend_set or backends()
    for name in names:
        backend = backend_set[name]
        try:
            rule = info.fresh_rule()
            backend.convert_rule(rule)
            # the conversion result, also for rules a correlation references (pySigma returns [] for
            # those, as their own output is switched off by the correlation's "generate: false")
            queries = rule.get_conversion_result()
        except SigmaError as exc:
            errors.append(f"{name}: {' '.join(str(exc).split())}")
            continue
        except Exception as exc:  # pySigma raising something unexpected on an odd rule: report, go on
            errors.append(f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())}")
            continue
        out.variants[name] = make_or(queries)
    if not out.variants:
        out.error = "; ".join(errors) or "no condition"
    return out


def compile_rules(infos: list, progress=None) -> list[CompiledRule]:
    """Compile every rule of a RuleSet (``rs.rules``); failures are kept with their reason."""
    backend_set = backends()
    out = []
    for i, info in enumerate(infos):
        out.append(compile_rule(info, i, backend_set))
        if progress:
            progress(i + 1)
    return out


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
    v = value if pred.cased else value.lower()
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
        return python_regex(pattern, flags).search(value) is not None
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
_RE_CACHE: dict[tuple[str, str], re.Pattern] = {}


def like_regex(parts: tuple) -> re.Pattern:
    rx = _LIKE_CACHE.get(parts)
    if rx is None:
        rx = re.compile("".join(".*" if p is ANY else "." if p is ONE else re.escape(p) for p in parts), re.S)
        _LIKE_CACHE[parts] = rx
    return rx


def python_regex(pattern: str, flags: str) -> re.Pattern:
    key = (pattern, flags)
    rx = _RE_CACHE.get(key)
    if rx is None:
        f = (re.I if "i" in flags else 0) | (re.M if "m" in flags else 0) | (re.S if "s" in flags else 0)
        rx = re.compile(pattern, f)
        _RE_CACHE[key] = rx
    return rx


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
