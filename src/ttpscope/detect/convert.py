"""Sigma rules to the query languages analysts run, through the published pySigma backends.

    from ttpscope.detect.convert import convert_rules
    result = convert_rules(rules, "splunk")        # rules: RuleInfo records or pySigma SigmaRule objects
    result.queries   # [ConvertedRule(rule_id, title, query...)]
    result.failures  # [ConvertedRule(..., error='SigmaTransformationError: ...')]: one per rule, with why

Targets and their default processing pipelines (field names and log sources of the platform):

============  ===========================================  =========================================
target        backend (package)                            default pipeline
============  ===========================================  =========================================
splunk        SplunkBackend (pysigma-backend-splunk)       splunk_windows (Windows event sources)
elasticsearch LuceneBackend (pysigma-backend-elasticsearch) ecs_windows (Elastic Common Schema)
esql          ESQLBackend (pysigma-backend-elasticsearch)   ecs_windows
kusto         KustoBackend (pysigma-backend-kusto)          microsoft_xdr (Defender XDR tables)
============  ===========================================  =========================================

``pipeline`` may name another installed pySigma pipeline (e.g. ``sentinel_asim``, ``splunk_cim``), a
pipeline YAML file, or ``none``. Conversions never modify the caller's rule objects (each target gets a
copy, because pySigma pipelines rewrite the rule they process). A rule that cannot be converted becomes a
failure with the exception's type and message; it never stops the others.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ttpscope.errors import InputError

# target -> (backend "module:Class", default pipeline "module:function", output format)
TARGETS: dict[str, tuple[str, str, str]] = {
    "splunk": ("sigma.backends.splunk:SplunkBackend", "sigma.pipelines.splunk:splunk_windows_pipeline", "default"),
    "elasticsearch": ("sigma.backends.elasticsearch:LuceneBackend",
                      "sigma.pipelines.elasticsearch.windows:ecs_windows", "default"),
    "esql": ("sigma.backends.elasticsearch:ESQLBackend", "sigma.pipelines.elasticsearch.windows:ecs_windows",
             "default"),
    "kusto": ("sigma.backends.kusto:KustoBackend", "sigma.pipelines.microsoftxdr:microsoft_xdr_pipeline", "default"),
}
ALIASES = {"spl": "splunk", "lucene": "elasticsearch", "elastic": "elasticsearch", "es": "elasticsearch",
           "es|ql": "esql", "kql": "kusto", "sentinel": "kusto", "defender": "kusto"}
_PACKAGES = {"splunk": "pysigma-backend-splunk", "elasticsearch": "pysigma-backend-elasticsearch",
             "esql": "pysigma-backend-elasticsearch", "kusto": "pysigma-backend-kusto"}


@dataclass
class ConvertedRule:
    rule_id: str
    title: str
    path: str | None
    target: str
    queries: list[str] = field(default_factory=list)
    error: str | None = None  # "ExceptionType: message" when the rule could not be converted

    def to_dict(self) -> dict:
        return {"rule_id": self.rule_id, "title": self.title, "path": self.path, "target": self.target,
                "queries": self.queries, "error": self.error}


@dataclass
class ConversionResult:
    target: str
    pipeline: str
    results: list[ConvertedRule] = field(default_factory=list)

    @property
    def queries(self) -> list[ConvertedRule]:
        return [r for r in self.results if r.error is None]

    @property
    def failures(self) -> list[ConvertedRule]:
        return [r for r in self.results if r.error is not None]

    @property
    def rate(self) -> float:
        return len(self.queries) / len(self.results) if self.results else 0.0

    def to_dict(self) -> dict:
        return {"target": self.target, "pipeline": self.pipeline, "rules": len(self.results),
                "converted": len(self.queries), "failed": len(self.failures), "rate": round(self.rate, 4),
                "queries": [r.to_dict() for r in self.queries], "failures": [r.to_dict() for r in self.failures]}


def normalize_target(target: str) -> str:
    key = target.strip().lower()
    key = ALIASES.get(key, key)
    if key not in TARGETS:
        raise InputError("--target", None, f"unknown target '{target}': choose one of {', '.join(TARGETS)} "
                                           f"(aliases: {', '.join(sorted(ALIASES))})")
    return key


def _load(ref: str, target: str):
    module, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        from ttpscope.errors import TtpscopeError

        raise TtpscopeError(f"target '{target}' needs the pySigma backend package: pip install "
                            f"{_PACKAGES[target]}") from exc


def make_pipeline(target: str, pipeline: str | None = "default"):
    """The processing pipeline for a target: its default, ``none``, an installed pipeline name, or a YAML file."""
    if pipeline in (None, "", "default"):
        return _load(TARGETS[target][1], target)(), TARGETS[target][1].split(":")[1]
    if pipeline == "none":
        from sigma.processing.pipeline import ProcessingPipeline

        return ProcessingPipeline(), "none"
    path = Path(pipeline)
    if path.suffix.lower() in (".yml", ".yaml"):
        from sigma.processing.pipeline import ProcessingPipeline

        try:
            return ProcessingPipeline.from_yaml(path.read_text(encoding="utf-8")), str(path)
        except OSError as exc:
            raise InputError(str(path), None, f"cannot read: {exc.strerror}") from exc
        except Exception as exc:  # pySigma raises several error types for a bad pipeline file
            raise InputError(str(path), None, f"not a pySigma processing pipeline ({exc})") from exc
    from sigma.plugins import InstalledSigmaPlugins

    pipelines = InstalledSigmaPlugins.autodiscover().pipelines
    if pipeline not in pipelines:
        raise InputError("--pipeline", None, f"unknown pipeline '{pipeline}': installed are "
                                             f"{', '.join(sorted(pipelines))}, or give a YAML file")
    return pipelines[pipeline](), pipeline


def _sigma_rule(item: Any):
    """The pySigma rule of a RuleInfo (``.rule``) or the object itself."""
    return getattr(item, "rule", None) or item


def make_backend(target: str, pipeline: str | None = "default"):
    """A configured backend for ``target`` and the label of the pipeline it uses."""
    target = normalize_target(target)
    backend_cls = _load(TARGETS[target][0], target)
    proc, label = make_pipeline(target, pipeline)
    return backend_cls(processing_pipeline=proc), label


def convert_rules(rules: Iterable[Any], target: str, pipeline: str | None = "default",
                  output_format: str | None = None, isolate: bool = True) -> ConversionResult:
    """Convert each rule to ``target``; failures are kept per rule with the reason (see module doc).

    ``isolate=False`` converts the caller's rule objects in place (about twice as fast): only for rules
    that nothing uses afterwards, since the pipeline rewrites them.
    """
    target = normalize_target(target)
    backend, label = make_backend(target, pipeline)
    fmt = output_format or TARGETS[target][2]
    result = ConversionResult(target, label)
    for item in rules:
        rule = _sigma_rule(item)
        rid = str(getattr(item, "id", None) or getattr(rule, "id", "") or "")
        title = str(getattr(item, "title", None) or getattr(rule, "title", "") or "")
        path = getattr(item, "path", None)
        source = getattr(rule, "source", None)
        if path is None and source is not None and getattr(source, "path", None):
            path = source.path
        out = ConvertedRule(rid, title, str(path) if path else None, target)
        try:
            if isolate:
                rule = item.fresh_rule() if hasattr(item, "fresh_rule") else copy.deepcopy(rule)
            queries = backend.convert_rule(rule, fmt)
            out.queries = [q if isinstance(q, str) else _render(q) for q in queries]
            if not out.queries:
                out.error = "no query produced (the backend returned nothing for this rule)"
        except Exception as exc:  # pySigma signals unsupported features with many exception types
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            out.error = f"{type(exc).__name__}: {message}"
        result.results.append(out)
    return result


def _render(query: Any) -> str:
    import orjson

    return orjson.dumps(query, default=str).decode()
