"""Run Sigma rules over event logs end to end: ingest → compile → engine → detections → observations.

    from ttpscope.detect import detect
    result = detect(["logs/"], rules="sigma/rules/windows", level="medium+")
    result.detections          # [Detection], time-ordered
    result.observations()      # [Observation] for a Case
    result.ingest              # [IngestStats] per source: read / accepted / rejected with reasons
    result.compile_errors      # [(rule id, path, reason)] rules that did not compile
"""

from __future__ import annotations

import functools
import gc
import hashlib
import itertools
import multiprocessing
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ttpscope.detect.compiled import COMPILER_VERSION, CompiledRule
from ttpscope.detect.ir import fields_of
from ttpscope.detect.results import Detection, event_user, observations_of
from ttpscope.detect.rules import RuleSet, load_rules
from ttpscope.ingest.base import (ACCOUNT, DST_IP, HOST, LOGSOURCE, REC, REGION, SRC, SRC_IP, TIME, USER,
                                  Batcher, EventReader, IngestStats, _is_pair, _path_of, expand_sources,
                                  is_internal)
from ttpscope.ingest.links import EntityLinks, entity_key
from ttpscope.ingest.logsource import LogSource, parse_logsource

from ttpscope.detect.engines import ENGINES, make_engine
from ttpscope.detect.engines.spark import dataset_format, is_dataset_uri
from ttpscope.procs import die_with_parent

PARALLEL_MIN_BYTES = 8 << 20  # below this, starting worker processes costs more than it saves


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
    workers: int = 1  # processes that scanned the input
    not_analysed: dict[str, int] = field(default_factory=dict)  # source → events of an unknown log source
    with_data: set[int] = field(default_factory=set)  # rule indexes whose log source the input has
    links: EntityLinks = field(default_factory=EntityLinks)  # entity pairs seen together in any event
    by_logsource: dict[str, int] = field(default_factory=dict)  # events read per log-source label
    sightings: list[Any] | None = None  # feed indicators matched in the same pass (``indicators=``), else None

    def entity_links(self, limit: int | None = None) -> dict[str, Any]:
        """The bounded entity co-occurrence of the input for a case (:meth:`EntityLinks.select`), the
        neighbourhood of the entities the detections name first."""
        seeds = {key[0] for d in self.detections
                 for kind, value in (("host", d.host), ("user", d.user), ("ip", d.src_ip), ("ip", d.dst_ip),
                                     ("account", d.account)) if (key := entity_key(kind, value))}
        return self.links.select(seeds, **({"limit": limit} if limit is not None else {}))

    def visibility(self) -> dict[str, Any]:
        """Per rule set (and per product the rules name): how many rules had data of their log source in
        the input, and how many had none — what coverage can count as seen or blind."""
        def tally(indexes):
            with_data = sum(1 for i in indexes if i in self.with_data)
            return {"rules": len(indexes), "with_data": with_data, "without_data": len(indexes) - with_data}

        by_product: dict[str, list[int]] = {}
        by_set: dict[str, list[int]] = {}
        for c in self.compiled:
            if c.error:
                continue
            info = self.rules.rules[c.index]
            by_product.setdefault(c.logsource.get("product") or "-", []).append(c.index)
            by_set.setdefault(_rule_set_of(info.path), []).append(c.index)
        return {"all": tally([c.index for c in self.compiled if not c.error]),
                "by_rule_set": {k: tally(v) for k, v in sorted(by_set.items())},
                "by_product": {k: tally(v) for k, v in sorted(by_product.items(), key=lambda kv: -len(kv[1]))}}

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
            "not_analysed": {"events": sum(self.not_analysed.values()), "by_source": dict(self.not_analysed)},
            "visibility": self.visibility(),
            "by_technique": dict(sorted(by_tech.items(), key=lambda kv: (-kv[1], kv[0]))),
            "by_level": dict(sorted(by_level.items(), key=lambda kv: (-kv[1], kv[0]))),
            "by_rule": sorted(by_rule.values(), key=lambda r: (-r["count"], r["rule_id"])),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "kb": self.kb.provenance() if self.kb is not None else None,
        }


def _rule_set_of(path: str | None) -> str:
    """The rule set a rule file belongs to: the SigmaHQ top folder (``rules``, ``rules-emerging-threats``,
    ...) when the path has one, else the rule's folder."""
    if not path:
        return "-"
    parts = Path(path).parts
    for part in reversed(parts[:-1]):
        if part == "rules" or part.startswith("rules-"):
            return part
    return parts[-2] if len(parts) > 1 else "-"


# ---------------------------------------------------------------------------------------------- compile cache
def _rule_key(info) -> str:
    st = Path(info.path).stat() if info.path and Path(info.path).exists() else None
    det = sorted(info.rule.detection.detections) if hasattr(info.rule, "detection") else []
    raw = f"{COMPILER_VERSION}|{info.path}|{st.st_size if st else ''}|{st.st_mtime_ns if st else ''}|{info.id}|{det}"
    return hashlib.sha1(raw.encode()).hexdigest()


def _compiled_store(value) -> bool:
    return isinstance(value, dict) and all(isinstance(v, CompiledRule) for v in value.values())


def compile_ruleset(rs: RuleSet, cache: bool = True, progress: Callable[[int, int], None] | None = None,
                    keys: list[str] | None = None) -> list[CompiledRule]:
    """Compile every rule of a RuleSet, with a per-rule disk cache (pySigma conversion costs ~4 ms a rule).
    ``keys``, when given, receives each rule's cache key (what :func:`plan_store` names its file by)."""
    from ttpscope.paths import cache_dir, load_cache, save_cache

    store: dict[str, CompiledRule] = {}
    file = cache_dir("rules") / f"compiled-{COMPILER_VERSION}.pickle"
    if cache:
        store = load_cache(file, _compiled_store, "compiled-rule cache") or {}
    out: list[CompiledRule] = []
    bset = None
    dirty = False
    for i, info in enumerate(rs.rules):
        key = _rule_key(info)
        if keys is not None:
            keys.append(key)
        hit = store.get(key)
        if hit is not None:
            out.append(CompiledRule(i, info.id, hit.variants, hit.error, hit.note, hit.logsource))
        else:
            from ttpscope.detect.compiler import backends, compile_rule

            bset = bset or backends()
            cr = compile_rule(info, i, bset)
            store[key] = cr
            dirty = True
            out.append(cr)
        if progress:
            progress(i + 1, len(rs.rules))
    if cache and dirty:
        save_cache(file, store, "compiled-rule cache")
    return out


def plan_store(keys: list[str]) -> Path:
    """The file of per-class plans for one compiled rule list (named by its rules' cache keys, in order):
    the planning of a class (which rules can fire on it, folded) is done once across files and runs."""
    from ttpscope.detect.planner import PLANNER_VERSION
    from ttpscope.paths import cache_dir

    digest = hashlib.sha1(f"{PLANNER_VERSION}|{COMPILER_VERSION}|{'|'.join(keys)}".encode()).hexdigest()[:24]
    return cache_dir("rules") / "plans" / f"plans-{digest}.pickle"


# ---------------------------------------------------------------------------------------------- run
_GC_LOCK = threading.Lock()
# runs under way in this process; the collector's thresholds before the first; whether objects were frozen
# then by someone else (a server before it forks): those are left frozen at the end
_GC_RUNS: list = [0, None, False]


def _collector_tuned(run: Callable) -> Callable:
    """A run makes hundreds of thousands of objects that live until its end (events, rows, hits) beside the
    long-lived KB and rules: at the collector's default thresholds a sixth of a warm run went to scanning
    them again and again. While runs are under way, what exists when one starts (the KB) and its rules once
    loaded are frozen (never scanned; the workers fork with them so), and young collections run less often;
    the last run to end restores both."""
    @functools.wraps(run)
    def tuned(*args, **kwargs):
        with _GC_LOCK:
            if _GC_RUNS[0] == 0:
                _GC_RUNS[1], _GC_RUNS[2] = gc.get_threshold(), gc.get_freeze_count() > 0
                gc.set_threshold(max(_GC_RUNS[1][0], 50_000), *_GC_RUNS[1][1:])
            _GC_RUNS[0] += 1
            gc.freeze()
        try:
            return run(*args, **kwargs)
        finally:
            with _GC_LOCK:
                _GC_RUNS[0] -= 1
                if _GC_RUNS[0] == 0:
                    gc.set_threshold(*_GC_RUNS[1])
                    if not _GC_RUNS[2]:
                        gc.unfreeze()
    return tuned


@_collector_tuned
def detect(logs: str | Path | Iterable[str | Path], rules: RuleSet | str | Path | Iterable | None = None, *,
           kb=None, engine: str = "duckdb", progress: Callable[[str, int, int], None] | None = None,
           engine_options: dict[str, Any] | None = None, cache: bool = True,
           compiled: list[CompiledRule] | None = None, workers: int = 1,
           logsource: LogSource | str | dict | None = None, formats: dict | None = None,
           indicators: Any = None, **filters) -> DetectResult:
    """Run Sigma rules (a RuleSet, or paths loaded with ``filters``) over event logs.

    ``compiled`` reuses :func:`compile_ruleset` output for the same RuleSet (several runs, one compile).
    ``progress(stage, done, total)`` is called with stage "compile" (rules) and "events" (events read,
    files done / total in ``done``/``total`` as (events, files)). Bad input never stops the run: it is
    counted per source in ``result.ingest``.

    ``workers`` > 1 (or 0: one per CPU) splits the input files between that many processes, each with its
    own DuckDB engine (same rules, same results; used when there are several files and at least 8 MiB).

    With ``cache`` (the default), the per-class plans are kept across runs in a plan store named by the
    compiled rules (:func:`plan_store`); ``cache=False`` plans every class afresh and keeps nothing.

    ``formats`` ({path: format}, or ``(path, format)`` items in ``logs``): the formats a caller sniffed
    already (``investigate`` routes files by content), so the ingest does not sniff them again.

    With ``engine="spark"``, items of ``logs`` that are URIs (``file://``, ``hdfs://``, ``s3a://``, ...; not
    local paths) are datasets Spark reads itself: Parquet (Hive-partitioned folders too) or JSON lines
    (``*.jsonl``, or ``json:URI``); each is one source, its records numbered from 1.

    ``logsource`` declares the log source (a LogSource, ``"product=…,service=…"`` or a dict) of events no
    log-source family recognises; without it such events are not analysed (``result.not_analysed``).
    Rules run only on events of their own log source.

    ``indicators``: the comparisons of current feed indicators (``FeedStore.current_terms()``), matched on
    the same batches the rules read (``ttpscope.detect.indicators``); the sightings are ``result.sightings``.
    """
    if engine not in ENGINES:
        from ttpscope.errors import InputError

        raise InputError("--engine", engine, f"unknown engine; use one of {', '.join(ENGINES)}")
    declared = _declared(logsource)
    if kb is None:
        from ttpscope.kb import load_kb

        kb = load_kb("enterprise")
    t0 = time.perf_counter()
    keys: list[str] = []
    if cache and compiled is None and not isinstance(rules, RuleSet):  # the rule index: no pySigma when warm
        from ttpscope.detect.ruleindex import indexed_rules

        rs, compiled, keys = indexed_rules(rules, kb, filters=filters,
                                           progress=(lambda d, n: progress("compile", d, n)) if progress else None)
    else:
        rs = rules if isinstance(rules, RuleSet) else load_rules(rules, kb=kb, cache=cache, **filters)
        if isinstance(rules, RuleSet) and filters:
            rs = rs.filter(**filters)
        if compiled is None or len(compiled) != len(rs.rules):
            compiled = compile_ruleset(rs, cache=cache, keys=keys,
                                       progress=(lambda d, n: progress("compile", d, n)) if progress else None)
        elif cache:
            keys = [_rule_key(rs.rules[c.index]) for c in compiled]
    if _GC_RUNS[0]:
        gc.freeze()  # the rules and their compiled form live as long as the run
    t1 = time.perf_counter()
    plans = plan_store(keys) if cache and engine != "spark" else None
    t2 = time.perf_counter()
    compile_errors = [(rs.rules[c.index].id, rs.rules[c.index].path, c.error) for c in compiled if c.error]
    notes = sorted({c.note for c in compiled if c.note})

    items = [logs] if isinstance(logs, (str, Path)) else list(logs)
    datasets = [str(i) for i in items if engine == "spark" and is_dataset_uri(i)]  # read by Spark itself
    files = expand_sources([i for i in items if str(i) not in datasets]) if len(datasets) < len(items) else []
    known = {_path_of(k): v for k, v in (formats or {}).items() if v}
    known.update({_path_of(i): i[1] for i in items if _is_pair(i) and i[1]})
    known = {f: known[f] for f in files if f in known}
    workers = workers or os.cpu_count() or 1
    sizes = {f: _work_size(f) for f in files} if engine == "duckdb" and workers > 1 and len(files) > 1 else {}
    if sizes and sum(sizes.values()) >= PARALLEL_MIN_BYTES:
        workers = min(workers, len(files))
        hits, ingest, errors, seen = _scan_parallel(files, sizes, compiled, engine_options or {}, workers, progress,
                                                    declared, known, plans)
    else:
        workers = 1
        hits, ingest, errors, seen = _scan(files, compiled, engine, engine_options or {}, progress,
                                           declared=declared, datasets=datasets, formats=known, plans=plans,
                                           indicators=indicators)
    if indicators is not None and "sightings" not in seen:  # worker processes: one more pass, for the IOCs
        from ttpscope.detect.indicators import match_files

        seen["sightings"] = match_files(files, indicators)[0].sightings
    t3 = time.perf_counter()

    rule_fields: dict[int, list[str]] = {}  # of the rules that fired (the fields they read, as written)
    by_index = {c.index: c for c in compiled}
    detections: dict[tuple, Detection] = {}
    for rule, src, event in hits:
        info = rs.rules[rule]
        key = (info.id, src, event.get(REC))
        if key in detections:  # the same rule on the same event (e.g. two variants): once
            continue
        if rule not in rule_fields:
            c = by_index.get(rule)
            rule_fields[rule] = sorted({f for v in c.variants.values() for f in fields_of(v) if f}) if c else []
        ev = {k: v for k, v in event.items() if not is_internal(k)}
        record, when, host = event.get(REC), event.get(TIME), event.get(HOST)
        lower = {k.lower(): k for k in ev}
        matched = {lower[f.lower()]: ev[lower[f.lower()]] for f in rule_fields[rule] if f.lower() in lower}
        detections[key] = Detection(info.id, info.title, info.level, list(info.techniques), list(info.tactics),
                                    when, host, event_user(ev) or event.get(USER), src, record, ev, matched,
                                    logsource=event.get(LOGSOURCE), src_ip=event.get(SRC_IP),
                                    dst_ip=event.get(DST_IP), account=event.get(ACCOUNT),
                                    region=event.get(REGION))
    ordered = sorted(detections.values(), key=Detection.sort_key)
    correlations = 0
    if rs.correlations:
        from ttpscope.detect.correlate import correlate, spec_from_rule

        specs = []
        for info in rs.correlations:
            try:
                specs.append(spec_from_rule(info))
            except (ValueError, AttributeError, OverflowError) as exc:
                compile_errors.append((info.id, info.path, str(exc)))
        found = correlate(ordered, specs)
        correlations = len(found)
        ordered = sorted(ordered + found, key=Detection.sort_key)
    t4 = time.perf_counter()
    engine_errors = [(rs.rules[i].id, msg) for i, msg in errors]
    notes.extend([f"{correlations} correlation match(es) from {len(rs.correlations)} correlation rule(s)"]
                 if rs.correlations else [])
    return DetectResult(
        detections=ordered, ingest=ingest, rules=rs, compiled=compiled, compile_errors=compile_errors,
        engine_errors=engine_errors, notes=notes, engine=engine, kb=kb, workers=workers,
        not_analysed=dict(seen["not_analysed"]), with_data=set(seen["with_data"]), links=seen["links"],
        by_logsource=dict(seen["by_logsource"]), sightings=seen.get("sightings"),
        timings={"load_rules": t1 - t0, "compile": t2 - t1, "scan": t3 - t2, "results": t4 - t3,
                 "total": t4 - t0, "events_per_s": (sum(s.read for s in ingest) / (t3 - t2)) if t3 > t2 else 0},
    )


# ---------------------------------------------------------------------------------------------- scanning
Hit = tuple  # (rule index, source name, event with ingest's internal columns)


def _declared(logsource) -> LogSource | None:
    if logsource is None or isinstance(logsource, LogSource):
        return logsource
    from ttpscope.errors import InputError

    try:
        if isinstance(logsource, dict):
            return LogSource(**{k: (str(v).lower() if v else None) for k, v in logsource.items()})
        return parse_logsource(str(logsource))
    except (ValueError, TypeError) as exc:
        raise InputError("--logsource", str(logsource), str(exc)) from None


def _scan(files: list[Path], compiled, engine: str, options: dict, progress=None, on_events=None,
          declared: LogSource | None = None, datasets: list[str] | None = None, formats: dict | None = None,
          plans: Path | None = None, indicators: Any = None
          ) -> tuple[list[Hit], list[IngestStats], list[tuple[int, str]], dict]:
    """One process: read the files (and the Spark engine's datasets), run the engine; hits name their
    source. The last item says which rules had data of their log source and how many events of each
    source were of none."""
    if on_events is None and progress:
        def on_events(e, f, n):
            progress("events", e, f)
    reader = EventReader(files, on_progress=on_events, logsource=declared, formats=formats)
    eng = make_engine(engine, compiled, **options)
    links, by_logsource = EntityLinks(), {}
    if plans is not None and hasattr(eng, "use_plan_store"):
        eng.use_plan_store(plans)
    matcher = None
    if indicators is not None:
        from ttpscope.detect.indicators import IndicatorMatcher, feeding

        matcher = IndicatorMatcher(indicators)
    try:
        batches = reader.batches()
        if datasets:
            batches = itertools.chain(batches, _dataset_batches(eng, datasets, reader, declared))
        raw = list(eng.run(_counted(links.tap(feeding(batches, matcher) if matcher is not None else batches),
                                    by_logsource)))
        if plans is not None and hasattr(eng, "save_plans"):
            eng.save_plans()
        sightings = matcher.result() if matcher is not None else None
    finally:
        eng.close()
        if matcher is not None:
            matcher.close()
    seen = {"with_data": set(eng.with_data), "not_analysed": dict(eng.not_analysed), "links": links,
            "by_logsource": by_logsource}
    if sightings is not None:
        seen["sightings"] = sightings
    return ([(h.rule, reader.sources[h.event[SRC]], h.event) for h in raw], reader.stats, list(eng.errors),
            seen)


def _counted(batches, counts: dict[str, int]):
    """Pass the batches on, counting their events per log-source label."""
    for batch in batches:
        label = batch.logsource.label()
        counts[label] = counts.get(label, 0) + batch.num_rows
        yield batch


def _dataset_batches(eng, datasets: list[str], reader: EventReader, declared: LogSource | None):
    """Batches of the datasets the Spark engine reads itself, numbered as sources after the files."""
    batcher = Batcher(reader.sources, declared=declared)
    for uri in datasets:
        src = len(reader.sources)
        reader.sources.append(uri)
        stats = IngestStats(uri, "spark-" + dataset_format(uri)[0])
        reader.stats.append(stats)
        for rec, fields in eng.dataset_records(uri, stats):
            yield from batcher.add(src, rec, fields)
    yield from batcher.flush_all()


# Set in the parent just before the workers fork, so they inherit the compiled rules instead of
# unpickling them; the counters carry progress (events read, files done) back to the parent.
_SHARED: dict[str, Any] = {}


def _scan_share(args) -> tuple[list[Hit], list[IngestStats], list[tuple[int, str]], dict]:
    files, options, declared, formats, plans = args
    events, done = _SHARED["events"], _SHARED["files"]
    last = [0, 0]

    def on_events(e, f, n):
        with events.get_lock():
            events.value += e - last[0]
        with done.get_lock():
            done.value += f - last[1]
        last[:] = [e, f]
    return _scan(files, _SHARED["compiled"], "duckdb", options, on_events=on_events, declared=declared,
                 formats=formats, plans=plans)


def _work_size(path: Path) -> int:
    """The bytes a file gives the scan: a zip archive's members unpacked (a 3 MB zip of 100 MB of JSON
    lines is a big share), else its size."""
    import zipfile

    size = path.stat().st_size
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                return max(size, sum(i.file_size for i in zf.infolist()))
        except (zipfile.BadZipFile, OSError, ValueError):
            pass
    return size


def _shares(files: list[Path], sizes: dict[Path, int], n: int) -> list[list[Path]]:
    """Files split in n shares of about equal bytes (largest first onto the lightest share), each kept in
    input order."""
    loads = [[0, i, []] for i in range(n)]
    for f in sorted(files, key=lambda f: -sizes[f]):
        share = min(loads)
        share[0] += sizes[f]
        share[2].append(f)
    order = {f: i for i, f in enumerate(files)}
    return [sorted(share, key=order.__getitem__) for _, _, share in loads if share]


def _preload_for_workers() -> None:
    """Import here, before the workers fork, what each would import on its own: pyarrow's Acero (the entity
    links group by it), pandas (pyarrow imports it on its first array of Python objects), the EVTX parser."""
    import pyarrow as pa
    import pyarrow.acero  # noqa: F401

    pa.array([0])
    try:
        import evtx  # noqa: F401
    except ImportError:  # the EVTX reader reports it per file
        pass


def _scan_parallel(files: list[Path], sizes: dict[Path, int], compiled, options: dict, workers: int,
                   progress=None, declared: LogSource | None = None, formats: dict | None = None,
                   plans: Path | None = None) -> tuple[list[Hit], list[IngestStats], list[tuple[int, str]], dict]:
    """Worker processes, one share of the files each; results merged in the input order of the files.
    DuckDB threads are divided between the workers."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    options = {"threads": max(1, (os.cpu_count() or 1) // workers), **options}
    shares = _shares(files, sizes, workers)
    if ctx.get_start_method() == "fork":  # what every worker would import (~0.5 s): once here, inherited
        _preload_for_workers()
    with tempfile.TemporaryDirectory(prefix="ttpscope-workers-") as tmp:
        args = [(share, {"temp_directory": os.path.join(tmp, str(i)), **options}, declared,
                 {f: (formats or {})[f] for f in share if f in (formats or {})}, plans)
                for i, share in enumerate(shares)]
        _SHARED.update(compiled=compiled, events=ctx.Value("q", 0), files=ctx.Value("q", 0))
        try:
            with ctx.Pool(len(shares), initializer=die_with_parent) as pool:
                pending = pool.map_async(_scan_share, args)
                while not pending.ready():
                    pending.wait(0.25)
                    if progress:
                        progress("events", _SHARED["events"].value, _SHARED["files"].value)
                results = pending.get()
        finally:
            _SHARED.clear()
    order = {str(f): i for i, f in enumerate(files)}
    hits = [h for part in results for h in part[0]]
    stats = sorted((s for part in results for s in part[1]),
                   key=lambda s: order.get(s.source.split("!", 1)[0], len(order)))
    errors = list({rule: (rule, msg) for part in results for rule, msg in part[2]}.values())
    seen = {"with_data": set().union(*(part[3]["with_data"] for part in results)), "not_analysed": {},
            "links": EntityLinks(), "by_logsource": {}}
    for part in results:
        seen["links"].merge(part[3]["links"])
        for label, n in part[3]["by_logsource"].items():
            seen["by_logsource"][label] = seen["by_logsource"].get(label, 0) + n
        for source, n in part[3]["not_analysed"].items():
            seen["not_analysed"][source] = seen["not_analysed"].get(source, 0) + n
    return hits, stats, errors, seen
