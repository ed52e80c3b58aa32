"""The rule index: what a detect run needs of a rule set, kept in one file, so that a warm run neither imports
pySigma nor unpickles its parsed rules nor looks up the compile cache rule by rule.

    rs, compiled, keys = indexed_rules(["rules/windows"], kb, filters={"level": "high+"})

For one list of rule paths, one knowledge base and one version of the code that shapes the result (pySigma
and its pipeline plugins, the loader, compiler, variants, IR and planner sources), the index holds the
RuleSet as :func:`~ttpscope.detect.rules.load_rules` returned it unfiltered (each RuleInfo without its
pySigma object, the load errors, the file count), every rule's compiled IR with what the planner derives
from it (:func:`~ttpscope.detect.planner.variant_shape`), and every rule's compile-cache key (what the plan
store is named by). It holds while each rule file keeps its path, size and mtime; any change (a file edited,
added or removed) falls back to ``load_rules`` and ``compile_ruleset``, whose per-file parse cache and
per-rule compile cache redo only what changed, and the index is written anew. Filters are applied after,
to what either path gives, as ``load_rules`` applies them (a filtered run without a current index takes
the path it took before the index, compiling only its own rules, and writes none).

A RuleInfo read from the index gets its pySigma rule on first access of ``.rule`` (converting, validating,
correlation rules): its rule set is then loaded once through ``load_rules``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from ttpscope.detect.compiled import COMPILER_VERSION, CompiledRule
from ttpscope.detect.rules import RuleInfo, RuleSet, _resolve_filters, default_rules_dir, load_rules, rule_files
from ttpscope.errors import NotFoundError
from ttpscope.ingest.windows import pysigma_release

INDEX_VERSION = 1  # bump when the index's layout changes
# index files kept, the most recently used: a new ttpscope version, KB or rule folder makes a new one
# (~8.5 MB for the SigmaHQ Windows rules), and the old ones would otherwise pile up for ever
INDEX_KEEP = 8
# What this process's calls of indexed_rules found: "hits" (served from an index), "misses" (rules loaded
# and compiled the full way, index written)
INDEX_STATS = {"hits": 0, "misses": 0}
# The sources whose code decides what the index holds: an edit to any of them makes another index
_SOURCES = ("detect/rules.py", "detect/compiler.py", "detect/compiled.py", "detect/variants.py", "detect/ir.py",
            "detect/planner.py", "detect/ruleindex.py", "ingest/windows.py", "ingest/logsource.py")


def indexed_rules(paths: str | Path | Iterable[str | Path] | None, kb, *, filters: dict[str, Any] | None = None,
                  progress: Callable[[int, int], None] | None = None
                  ) -> tuple[RuleSet, list[CompiledRule], list[str]]:
    """The rules of ``paths`` (default: the cached SigmaHQ release) mapped through ``kb`` and filtered as
    :func:`~ttpscope.detect.rules.load_rules` does, their compiled form (one CompiledRule per rule of the
    RuleSet, in order) and their compile-cache keys; from the rule index when it is current."""
    from ttpscope.paths import cache_dir, load_cache, save_cache

    if paths is None:
        paths = default_rules_dir()
        if paths is None:
            raise NotFoundError("no rules given and no SigmaHQ release cached: pass --rules DIR or run "
                                "'ttpscope rules update'")
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files = rule_files(items)
    stamp = []
    for f in files:
        st = f.stat()
        stamp.append((str(f), st.st_size, st.st_mtime_ns))
    file = cache_dir("rules") / "index" / f"index-{_index_name(items, kb)}.pickle"
    entry = load_cache(file, _is_entry, "rule index")
    from ttpscope.detect.runner import compile_ruleset

    if entry is not None and entry["stamp"] == stamp:
        INDEX_STATS["hits"] += 1
        try:
            os.utime(file)  # "recently used" is its mtime (atime is often not kept)
        except OSError:
            pass
        full, compiled, keys = _from_entry(entry, items, kb)
    elif any(v is not None for v in _resolve_filters(filters or {}, kb).values()):
        # a filtered run without a current index compiles only its own rules, as before the index (a cold
        # 'high+' run need not compile every rule); the next unfiltered run writes the index
        INDEX_STATS["misses"] += 1
        rs = load_rules(items, kb=kb, cache=True, **(filters or {}))
        keys = []
        return rs, compile_ruleset(rs, cache=True, keys=keys, progress=progress), keys
    else:
        INDEX_STATS["misses"] += 1
        full = load_rules(items, kb=kb, cache=True)
        keys: list[str] = []
        compiled = compile_ruleset(full, cache=True, keys=keys, progress=progress)
        if save_cache(file, _entry(stamp, full, compiled, keys), "rule index"):
            prune_indexes(file.parent)
    return _filtered(full, compiled, keys, kb, filters or {})


def prune_indexes(folder: Path, keep: int = INDEX_KEEP) -> None:
    """Remove all but the ``keep`` most recently used index files of ``folder``. A file another process
    removes or reads meanwhile is no error (a missing index is rebuilt)."""
    dated = []
    for f in folder.glob("index-*.pickle"):
        try:
            dated.append((f.stat().st_mtime_ns, f))
        except OSError:
            continue
    for _, f in sorted(dated, reverse=True)[keep:]:
        try:
            f.unlink()
        except OSError:
            pass


def _filtered(full: RuleSet, compiled: list[CompiledRule], keys: list[str], kb, filters: dict[str, Any]
              ) -> tuple[RuleSet, list[CompiledRule], list[str]]:
    """The filters of load_rules applied to the unfiltered set, its compiled rules renumbered to match."""
    filters = _resolve_filters(filters, kb)
    if not any(v is not None for v in filters.values()):
        return full, compiled, keys
    rs = full.filter(**filters)
    where = {id(info): i for i, info in enumerate(full.rules)}
    out_compiled, out_keys = [], []
    for j, info in enumerate(rs.rules):
        c = compiled[where[id(info)]]
        out_compiled.append(CompiledRule(j, c.rule_id, c.variants, c.error, c.note, c.logsource, c.shapes))
        out_keys.append(keys[where[id(info)]])
    return rs, out_compiled, out_keys


# ---------------------------------------------------------------------------------------------- the file
def _index_name(items: list, kb) -> str:
    """The index file's name: the rule paths as given, the KB, pySigma's installed distributions and the
    sources of the code that builds what the index holds."""
    here = Path(__file__).resolve().parent.parent
    code = hashlib.sha1()
    for rel in _SOURCES:
        try:
            code.update((here / rel).read_bytes())
        except OSError:
            code.update(f"missing {rel}".encode())
    raw = "|".join([str(INDEX_VERSION), COMPILER_VERSION, code.hexdigest(), pysigma_release(), _kb_id(kb),
                    repr([str(Path(p).expanduser()) for p in items])])
    return hashlib.sha1(raw.encode()).hexdigest()[:24]


def _kb_id(kb) -> str:
    """What of the KB tag mapping reads: its provenance and the ids of what it maps tags to."""
    parts = [repr(sorted(kb.provenance().items())) if hasattr(kb, "provenance") else "", str(kb.label)]
    for name in ("techniques", "tactics", "groups", "software", "data_sources", "revoked"):
        parts.append(",".join(sorted(map(str, getattr(kb, name, None) or ()))))
    return hashlib.sha1("|".join(parts).encode()).hexdigest()


def _is_entry(value) -> bool:
    return (isinstance(value, dict) and value.get("version") == INDEX_VERSION
            and isinstance(value.get("stamp"), list) and isinstance(value.get("rules"), list)
            and isinstance(value.get("compiled"), list) and len(value["compiled"]) == len(value["rules"])
            and isinstance(value.get("keys"), list) and len(value["keys"]) == len(value["rules"]))


def _bare(info: RuleInfo) -> RuleInfo:
    """A copy of a RuleInfo without its pySigma rule (what the index stores)."""
    out = RuleInfo.__new__(RuleInfo)
    out.__dict__.update({k: v for k, v in info.__dict__.items() if k not in ("rule", "_deferred")})
    return out


def _entry(stamp: list, full: RuleSet, compiled: list[CompiledRule], keys: list[str]) -> dict[str, Any]:
    from ttpscope.detect.planner import variant_shape

    shaped = [CompiledRule(c.index, c.rule_id, c.variants, c.error, c.note, c.logsource,
                           {name: variant_shape(cond) for name, cond in c.variants.items()}) for c in compiled]
    return {"version": INDEX_VERSION, "stamp": stamp, "rules": [_bare(i) for i in full.rules],
            "correlations": [_bare(i) for i in full.correlations], "errors": list(full.errors),
            "files": full.files, "kb_label": full.kb_label, "compiled": shaped, "keys": list(keys)}


def _from_entry(entry: dict[str, Any], items: list, kb) -> tuple[RuleSet, list[CompiledRule], list[str]]:
    rules, correlations = entry["rules"], entry["correlations"]
    deferred = _Deferred(items, kb, [*rules, *correlations])
    for info in deferred.infos:
        info.__dict__["_deferred"] = deferred
    rs = RuleSet(rules, correlations, list(entry["errors"]), entry["files"], entry["kb_label"])
    return rs, entry["compiled"], entry["keys"]


class _Deferred:
    """The pySigma rules of a RuleSet read from the index, loaded once, on the first need of any of them."""

    def __init__(self, items: list, kb, infos: list[RuleInfo]):
        self.items, self.kb, self.infos = items, kb, infos

    def load(self) -> None:
        full = load_rules(self.items, kb=self.kb, cache=True)
        found: dict[tuple, list] = {}
        for info in [*full.rules, *full.correlations]:
            found.setdefault((info.kind, info.path, info.id), []).append(info.rule)
        for info in self.infos:
            rules = found.get((info.kind, info.path, info.id))
            if not rules:
                raise NotFoundError(f"rule {info.id} of {info.path} is no longer in its file: load the rules again")
            info.__dict__["rule"] = rules.pop(0)
        for info in self.infos:
            info.__dict__.pop("_deferred", None)
