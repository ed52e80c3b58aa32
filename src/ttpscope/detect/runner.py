"""Run Sigma rules over event logs end to end: ingest → compile → engine → detections → observations.

    from ttpscope.detect import detect
    result = detect(["logs/"], rules="sigma/rules/windows", level="medium+")
    result.detections          # [Detection], time-ordered
    result.observations()      # [Observation] for a Case
    result.ingest              # [IngestStats] per source: read / accepted / rejected with reasons
    result.compile_errors      # [(rule id, path, reason)] rules that did not compile
"""

from __future__ import annotations

import hashlib
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ttpscope.detect.compiler import COMPILER_VERSION, CompiledRule, backends, compile_rule, fields_of
from ttpscope.detect.results import Detection, event_user, observations_of
from ttpscope.detect.rules import RuleSet, load_rules
from ttpscope.ingest.base import EventReader, IngestStats

ENGINES = ("duckdb", "spark")


@dataclass
class DetectResult:
    detections: list[Detection]
    ingest: list[IngestStats]
    rules: RuleSet
    compiled: list[CompiledRule]
    compile_errors: list[tuple[str, str | None, str]]
    engine_errors: list[tuple[str, str]]
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    engine: str = "duckdb"
    kb: Any = None

    def observations(self):
        return observations_of(self.detections, self.kb)

    def totals(self) -> dict[str, int]:
        return {"read": sum(s.read for s in self.ingest), "accepted": sum(s.accepted for s in self.ingest),
                "rejected": sum(s.rejected for s in self.ingest),
                "sources": sum(1 for s in self.ingest if s.read or s.rejected)}

    def summary(self) -> dict[str, Any]:
        by_tech: dict[str, int] = {}
        by_level: dict[str, int] = {}
        by_rule: dict[str, dict] = {}
        for d in self.detections:
            for t in d.techniques or ["-"]:
                by_tech[t] = by_tech.get(t, 0) + 1
            by_level[d.level or "-"] = by_level.get(d.level or "-", 0) + 1
            r = by_rule.setdefault(d.rule_id, {"rule_id": d.rule_id, "title": d.title, "level": d.level,
                                               "techniques": d.techniques, "count": 0})
            r["count"] += 1
        compiled_ok = sum(1 for c in self.compiled if not c.error)
        return {
            "engine": self.engine,
            "ingest": self.totals(),
            "rules": {"loaded": len(self.rules.rules), "load_errors": len(self.rules.errors),
                      "compiled": compiled_ok, "failed": len(self.compile_errors) + len(self.engine_errors),
                      "compiled_share": round(compiled_ok / len(self.compiled), 4) if self.compiled else None},
            "detections": len(self.detections),
            "by_technique": dict(sorted(by_tech.items(), key=lambda kv: (-kv[1], kv[0]))),
            "by_level": dict(sorted(by_level.items(), key=lambda kv: (-kv[1], kv[0]))),
            "by_rule": sorted(by_rule.values(), key=lambda r: (-r["count"], r["rule_id"])),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "kb": self.kb.provenance() if self.kb is not None else None,
        }


# ---------------------------------------------------------------------------------------------- compile cache
def _rule_key(info) -> str:
    st = Path(info.path).stat() if info.path and Path(info.path).exists() else None
    det = sorted(info.rule.detection.detections) if hasattr(info.rule, "detection") else []
    raw = f"{COMPILER_VERSION}|{info.path}|{st.st_size if st else ''}|{st.st_mtime_ns if st else ''}|{info.id}|{det}"
    return hashlib.sha1(raw.encode()).hexdigest()


def compile_ruleset(rs: RuleSet, cache: bool = True, progress: Callable[[int, int], None] | None = None
                    ) -> list[CompiledRule]:
    """Compile every rule of a RuleSet, with a per-rule disk cache (pySigma conversion costs ~4 ms a rule)."""
    from ttpscope.paths import cache_dir

    store: dict[str, CompiledRule] = {}
    file = cache_dir("rules") / f"compiled-{COMPILER_VERSION}.pickle"
    if cache:
        try:
            with file.open("rb") as fh:
                store = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
            store = {}
    out: list[CompiledRule] = []
    bset = None
    dirty = False
    for i, info in enumerate(rs.rules):
        key = _rule_key(info)
        hit = store.get(key)
        if hit is not None:
            out.append(CompiledRule(i, info.id, hit.variants, hit.error, hit.note))
        else:
            bset = bset or backends()
            cr = compile_rule(info, i, bset)
            store[key] = cr
            dirty = True
            out.append(cr)
        if progress:
            progress(i + 1, len(rs.rules))
    if cache and dirty:
        tmp = file.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(store, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(file)
    return out


# ---------------------------------------------------------------------------------------------- run
def detect(logs: str | Path | Iterable[str | Path], rules: RuleSet | str | Path | Iterable | None = None, *,
           kb=None, engine: str = "duckdb", progress: Callable[[str, int, int], None] | None = None,
           engine_options: dict[str, Any] | None = None, cache: bool = True,
           compiled: list[CompiledRule] | None = None, **filters) -> DetectResult:
    """Run Sigma rules (a RuleSet, or paths loaded with ``filters``) over event logs.

    ``compiled`` reuses :func:`compile_ruleset` output for the same RuleSet (several runs, one compile).
    ``progress(stage, done, total)`` is called with stage "compile" (rules) and "events" (events read,
    files done / total in ``done``/``total`` as (events, files)). Bad input never stops the run: it is
    counted per source in ``result.ingest``.
    """
    if engine not in ENGINES:
        from ttpscope.errors import InputError

        raise InputError("--engine", engine, f"unknown engine; use one of {', '.join(ENGINES)}")
    if kb is None:
        from ttpscope.kb import load_kb

        kb = load_kb("enterprise")
    t0 = time.perf_counter()
    rs = rules if isinstance(rules, RuleSet) else load_rules(rules, kb=kb, cache=cache, **filters)
    if isinstance(rules, RuleSet) and filters:
        rs = rs.filter(**filters)
    t1 = time.perf_counter()
    if compiled is None or len(compiled) != len(rs.rules):
        compiled = compile_ruleset(rs, cache=cache,
                                   progress=(lambda d, n: progress("compile", d, n)) if progress else None)
    t2 = time.perf_counter()
    compile_errors = [(rs.rules[c.index].id, rs.rules[c.index].path, c.error) for c in compiled if c.error]
    notes = sorted({c.note for c in compiled if c.note})

    reader = EventReader(logs, on_progress=(lambda e, f, n: progress("events", e, f)) if progress else None)
    if engine == "spark":
        from ttpscope.detect.spark import SparkEngine

        eng = SparkEngine(compiled, **(engine_options or {}))
    else:
        from ttpscope.detect.engine import DuckDBEngine

        eng = DuckDBEngine(compiled, **(engine_options or {}))
    try:
        raw = list(eng.run(reader.batches()))
    finally:
        eng.close()
    t3 = time.perf_counter()

    rule_fields = {c.index: sorted({f for v in c.variants.values() for f in fields_of(v) if f})
                   for c in compiled}
    detections: dict[tuple, Detection] = {}
    for hit in raw:
        info = rs.rules[hit.rule]
        ev = dict(hit.event)
        src = reader.sources[ev.pop("_src")]
        record = ev.pop("_rec", None)
        when = ev.pop("_time", None)
        host = ev.pop("_host", None)
        key = (info.id, src, record)
        if key in detections:  # the same rule on the same event (e.g. two variants): once
            continue
        lower = {k.lower(): k for k in ev}
        matched = {lower[f.lower()]: ev[lower[f.lower()]] for f in rule_fields.get(hit.rule, []) if f.lower() in lower}
        detections[key] = Detection(info.id, info.title, info.level, list(info.techniques), list(info.tactics),
                                    when, host, event_user(ev), src, record, ev, matched)
    ordered = sorted(detections.values(), key=Detection.sort_key)
    correlations = 0
    if rs.correlations:
        from ttpscope.detect.correlate import correlate, spec_from_rule

        specs = []
        for info in rs.correlations:
            try:
                specs.append(spec_from_rule(info))
            except (ValueError, AttributeError) as exc:
                compile_errors.append((info.id, info.path, str(exc)))
        found = correlate(ordered, specs)
        correlations = len(found)
        ordered = sorted(ordered + found, key=Detection.sort_key)
    t4 = time.perf_counter()
    engine_errors = [(rs.rules[i].id, msg) for i, msg in eng.errors]
    notes.extend([f"{correlations} correlation match(es) from {len(rs.correlations)} correlation rule(s)"]
                 if rs.correlations else [])
    return DetectResult(
        detections=ordered, ingest=reader.stats, rules=rs, compiled=compiled, compile_errors=compile_errors,
        engine_errors=engine_errors, notes=notes, engine=engine, kb=kb,
        timings={"load_rules": t1 - t0, "compile": t2 - t1, "scan": t3 - t2, "results": t4 - t3,
                 "total": t4 - t0, "events_per_s": (sum(s.read for s in reader.stats) / (t3 - t2)) if t3 > t2 else 0},
    )
