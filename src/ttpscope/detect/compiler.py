"""Sigma rules → IR conditions (:mod:`ttpscope.detect.ir`), one per log-source variant
(:mod:`ttpscope.detect.variants`), through a pySigma backend whose "queries" are IR trees.

    compiled = compile_rule(info)      # CompiledRule: variants {name: IR}, error, note, logsource
"""

from __future__ import annotations

from typing import Any

from sigma.conditions import ConditionAND, ConditionNOT, ConditionOR
from sigma.conversion.base import Backend
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaError
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

from ttpscope.detect.compiled import COMPILER_VERSION, CompiledRule  # noqa: F401 (re-exported)
from ttpscope.detect.ir import ANY, ONE, TRUE, Pred, _Wild, fold_case, make_and, make_not, make_or
from ttpscope.detect.variants import variant_pipelines, variants_for



# ---------------------------------------------------------------------------------------------- backend
def _string_pred(fld: str | None, s: SigmaString, cased: bool) -> Any:
    """A SigmaString (with wildcards) → the cheapest equivalent predicate."""
    parts: list[str] = []
    for p in s.s:
        if isinstance(p, str):
            parts.append(p if cased else fold_case(p))
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


NO_SELECTION = "the condition refers to no selection of the rule (e.g. '1 of foo*' without a selection named foo…)"


def _named(cond) -> list:
    """The operands of an and/or; none means the condition named selections the rule does not have
    (``1 of foo*`` without a ``foo…`` selection): an error, not a rule that silently never fires."""
    if not cond.args:
        raise SigmaError(NO_SELECTION)
    return cond.args


class IRBackend(Backend):
    """A pySigma backend whose 'queries' are IR trees (see :class:`Pred`), one per rule condition."""

    name = "ttpscope IR"
    formats = {"default": "predicate IR"}
    requires_pipeline = False

    def convert_condition(self, cond, state):
        if cond is None:  # what pySigma leaves of an "of" selector that matches no selection
            raise SigmaError(NO_SELECTION)
        return super().convert_condition(cond, state)

    def convert_condition_as_in_expression(self, cond, state):  # never chosen (convert_or_as_in is False)
        return make_or(self.convert_condition(a, state) for a in cond.args)

    def convert_condition_or(self, cond: ConditionOR, state: ConversionState):
        return make_or(self.convert_condition(a, state) for a in _named(cond))

    def convert_condition_and(self, cond: ConditionAND, state: ConversionState):
        return make_and(self.convert_condition(a, state) for a in _named(cond))

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
