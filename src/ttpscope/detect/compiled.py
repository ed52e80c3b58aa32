"""What a compiled rule is (:class:`CompiledRule`), apart from the compiler: a run that finds its rules in
the rule index (:mod:`ttpscope.detect.ruleindex`) needs this and the IR, not pySigma."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COMPILER_VERSION = "6"  # bump when the IR or its semantics change: compiled-rule caches key on it


@dataclass
class CompiledRule:
    """One rule compiled: per variant, its IR condition. ``error`` says why a rule could not compile."""

    index: int  # position in the RuleSet
    rule_id: str
    variants: dict[str, Any] = field(default_factory=dict)  # variant name → IR
    error: str | None = None
    note: str | None = None
    logsource: dict = field(default_factory=dict)  # the rule's {product, category, service}
    # per variant, what the planner derives from its IR ((class constraints, lower-cased fields)), when the
    # rule index kept it; None: the planner derives it (a class default, so older pickles read None too)
    shapes: dict | None = field(default=None, repr=False, compare=False)
