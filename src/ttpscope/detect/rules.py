"""Sigma rules: load a file, folder or SigmaHQ release with pySigma, map ATT&CK tags through the KB, filter.

The stable entry point is :func:`load_rules`::

    from ttpscope.detect.rules import load_rules
    rs = load_rules(["rules/windows"], level="medium+", technique=["T1059"])
    for info in rs.rules:            # RuleInfo, sorted by path then id
        info.id, info.title, info.level, info.logsource, info.techniques, info.tactics, info.rule
    for path, message in rs.errors:  # one bad rule never stops the load
        ...

Tag mapping (``attack.*`` namespace):

- ``attack.tNNNN[.NNN]`` → ``techniques``: the current id in the KB; revoked ids follow revoked-by (the
  change is noted in ``remapped_tags``); ids the KB does not know go to ``unknown_tags`` with a note such
  as "T9999 is not in enterprise ATT&CK v15.1".
- tactic tags (``attack.credential-access``, v19 names like ``attack.stealth``) → ``tactics`` as the KB's
  shortnames via ``kb.resolve_tactic`` (``stealth`` → ``defense-evasion`` on a v15.1 KB, noted in
  ``remapped_tags``). A rule with technique tags but no tactic tag gets the tactics of its techniques.
- ``attack.gNNNN`` / ``attack.sNNNN`` → ``groups`` / ``software`` when the KB knows them.
- other namespaces (``car.``, ``cve.``, ``detection.``...) are kept in ``tags`` and not judged.

Parsing 2,400 rules with pySigma takes ~10 s, so each file's parse result is cached on disk (keyed by path,
size, mtime and the pySigma version) under the ``rules`` cache: a warm load takes about a second. A detect
run does not even need that: :mod:`ttpscope.detect.ruleindex` keeps what it needs (these RuleInfo without
their pySigma objects, the compiled rules) in one file per rule set.
"""

from __future__ import annotations

import copy
import hashlib
import pickle
import re
from dataclasses import dataclass, field
from importlib.metadata import version as _pkg_version
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ttpscope.errors import InputError, NotFoundError

LEVELS = ("informational", "low", "medium", "high", "critical")
STATUSES = ("stable", "test", "experimental", "deprecated", "unsupported")
RULE_SUFFIXES = (".yml", ".yaml")
_TECHNIQUE_TAG = re.compile(r"^t\d{4}(\.\d{3})?$", re.I)
_GROUP_TAG = re.compile(r"^g\d{4}$", re.I)
_SOFTWARE_TAG = re.compile(r"^s\d{4}$", re.I)
_DATA_SOURCE_TAG = re.compile(r"^ds\d{4}$", re.I)


@dataclass
class RuleInfo:
    """One Sigma rule with its ATT&CK mapping resolved against a knowledge base.

    ``rule`` is the parsed pySigma object (``SigmaRule``, or ``SigmaCorrelationRule`` when ``kind`` is
    "correlation"). pySigma pipelines and backends modify rules in place: convert :meth:`fresh_rule`, a
    private deep copy, never ``rule`` itself.
    """

    id: str
    title: str
    description: str
    level: str | None
    status: str | None
    logsource: dict[str, str | None]  # {"product", "category", "service"}
    techniques: list[str]  # current technique ids in the KB, tag order, no duplicates
    tactics: list[str]  # KB tactic shortnames, matrix order
    unknown_tags: list[tuple[str, str]]  # (tag, why it could not be mapped)
    path: str | None
    rule: Any = field(repr=False)
    kind: str = "rule"  # "rule" | "correlation"
    tags: list[str] = field(default_factory=list)  # every tag as written
    remapped_tags: list[tuple[str, str]] = field(default_factory=list)  # (tag, note): revoked/renamed ids
    groups: list[str] = field(default_factory=list)
    software: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    falsepositives: list[str] = field(default_factory=list)
    author: str | None = None

    def __getattr__(self, name: str) -> Any:
        # a RuleInfo read from the rule index (ttpscope.detect.ruleindex) carries no pySigma rule: the
        # first look at ``rule`` loads its rule set through pySigma
        deferred = self.__dict__.get("_deferred") if name == "rule" else None
        if deferred is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        deferred.load()
        return self.__dict__["rule"]

    def fresh_rule(self) -> Any:
        """A deep copy of the pySigma rule, safe to hand to a processing pipeline or backend."""
        return copy.deepcopy(self.rule)

    def level_rank(self) -> int:
        """0 (informational) .. 4 (critical); -1 when the rule has no level."""
        return LEVELS.index(self.level) if self.level in LEVELS else -1

    def to_dict(self) -> dict[str, Any]:
        """JSON view (without the pySigma object)."""
        return {
            "id": self.id, "title": self.title, "kind": self.kind, "level": self.level, "status": self.status,
            "description": self.description, "logsource": dict(self.logsource),
            "techniques": list(self.techniques), "tactics": list(self.tactics),
            "groups": list(self.groups), "software": list(self.software), "tags": list(self.tags),
            "unknown_tags": [{"tag": t, "note": n} for t, n in self.unknown_tags],
            "remapped_tags": [{"tag": t, "note": n} for t, n in self.remapped_tags],
            "references": list(self.references), "falsepositives": list(self.falsepositives),
            "author": self.author, "path": self.path,
        }


@dataclass
class RuleSet:
    """Loaded rules (detection rules in ``rules``, correlation meta-rules in ``correlations``) and the
    per-file/per-rule problems met on the way (``errors``: (path, message))."""

    rules: list[RuleInfo] = field(default_factory=list)
    correlations: list[RuleInfo] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    files: int = 0  # rule files read
    kb_label: str | None = None
    filtered_out: int = 0  # rules dropped by the filters given to load_rules

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[RuleInfo]:
        return iter(self.rules)

    def get(self, rule_id: str) -> RuleInfo:
        """A rule (or correlation) by id, id prefix (≥ 8 characters) or exact title."""
        key = rule_id.strip().lower()
        for info in [*self.rules, *self.correlations]:
            if info.id.lower() == key or info.title.lower() == key:
                return info
        if len(key) >= 8:
            hits = [i for i in [*self.rules, *self.correlations] if i.id.lower().startswith(key)]
            if len(hits) == 1:
                return hits[0]
        raise NotFoundError(f"no rule {rule_id!r} among {len(self.rules)} loaded rules")

    def filter(self, **filters: Any) -> RuleSet:
        """A new RuleSet keeping the rules that pass :func:`rule_matches` (same keywords as load_rules)."""
        kept = [r for r in self.rules if rule_matches(r, **filters)]
        kept_ids = {r.id for r in kept}
        # a correlation survives when every rule it references survived
        corr = [c for c in self.correlations if _correlation_refs(c) <= kept_ids and rule_matches(
            c, **{k: v for k, v in filters.items() if k not in ("product", "category", "service")})]
        return RuleSet(kept, corr, list(self.errors), self.files, self.kb_label,
                       self.filtered_out + len(self.rules) - len(kept))

    def summary(self) -> dict[str, Any]:
        """Counts by level, status, logsource and how many rules carry ATT&CK techniques."""
        def count(key) -> dict[str, int]:
            out: dict[str, int] = {}
            for r in self.rules:
                k = key(r) or "-"
                out[k] = out.get(k, 0) + 1
            return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

        return {
            "rules": len(self.rules), "correlations": len(self.correlations), "files": self.files,
            "errors": len(self.errors), "filtered_out": self.filtered_out, "kb": self.kb_label,
            "with_techniques": sum(1 for r in self.rules if r.techniques),
            "techniques": len({t for r in self.rules for t in r.techniques}),
            "by_level": count(lambda r: r.level),
            "by_status": count(lambda r: r.status),
            "by_logsource": count(lambda r: "/".join(v or "*" for v in r.logsource.values())),
        }


# ---------------------------------------------------------------------------------------------- filters
def parse_levels(spec: str | Sequence[str] | None) -> set[str] | None:
    """'medium+' → {medium, high, critical}; 'high' → {high}; 'low,high' or a list → those levels."""
    if spec is None or spec == "" or spec == []:
        return None
    items = [s.strip().lower() for part in ([spec] if isinstance(spec, str) else spec) for s in part.split(",")]
    out: set[str] = set()
    for item in items:
        base = item.rstrip("+")
        if base not in LEVELS:
            raise InputError("--level", item, f"unknown level; use one of {', '.join(LEVELS)} (e.g. 'medium+')")
        out.update(LEVELS[LEVELS.index(base):] if item.endswith("+") else [base])
    return out


def _as_set(value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    out = {s.strip().lower() for item in items for s in str(item).split(",") if s.strip()}
    return out or None


def rule_matches(info: RuleInfo, level=None, status=None, product=None, category=None, service=None,
                 technique=None, tactic=None, ids=None, exclude_status=None) -> bool:
    """Does a rule pass the filters? Each filter takes one value, a comma list or a list; None = any.

    ``level`` accepts 'medium+'; ``technique`` matches the id and its sub-techniques (``T1059`` keeps a
    ``T1059.001`` rule); ``technique``/``tactic`` values must already be resolved ids/shortnames (load_rules
    resolves them through the KB); ``ids`` keeps rules by id.
    """
    levels = parse_levels(level)
    if levels is not None and info.level not in levels:
        return False
    for wanted, have in ((status, info.status), (product, info.logsource.get("product")),
                         (category, info.logsource.get("category")), (service, info.logsource.get("service"))):
        allowed = _as_set(wanted)
        if allowed is not None and (have or "").lower() not in allowed:
            return False
    excluded = _as_set(exclude_status)
    if excluded and (info.status or "").lower() in excluded:
        return False
    techs = _as_set(technique)
    if techs is not None and not any(t.lower() in techs or t.split(".")[0].lower() in techs
                                     for t in info.techniques):
        return False
    tactics = _as_set(tactic)
    if tactics is not None and not any(t.lower() in tactics for t in info.tactics):
        return False
    wanted_ids = _as_set(ids)
    if wanted_ids is not None and info.id.lower() not in wanted_ids:
        return False
    return True


def _correlation_refs(info: RuleInfo) -> set[str]:
    refs = set()
    for ref in getattr(info.rule, "rules", []) or []:
        target = getattr(ref, "rule", None)
        if target is not None and getattr(target, "id", None) is not None:
            refs.add(str(target.id))
    return refs


# ---------------------------------------------------------------------------------------------- tags
def map_tags(tags: Iterable[str], kb) -> dict[str, list]:
    """ATT&CK tags → {techniques, tactics, groups, software, unknown_tags, remapped_tags} through the KB."""
    techniques: list[str] = []
    tactics: list[str] = []
    groups: list[str] = []
    software: list[str] = []
    unknown: list[tuple[str, str]] = []
    remapped: list[tuple[str, str]] = []
    for tag in tags:
        ns, _, name = tag.partition(".")
        if ns.lower() != "attack" or not name:
            continue
        if _TECHNIQUE_TAG.match(name):
            res = kb.resolve_technique(name.upper())
            if res.id is None:
                unknown.append((tag, res.note or f"{name.upper()} is not in {kb.label}"))
                continue
            if res.note:
                remapped.append((tag, res.note))
            if res.id not in techniques:
                techniques.append(res.id)
        elif _DATA_SOURCE_TAG.match(name):  # a data source (kept in tags; not a technique nor tactic)
            if name.upper() not in kb.data_sources:
                unknown.append((tag, f"{name.upper()} is not a data source in {kb.label}"))
        elif _GROUP_TAG.match(name) or _SOFTWARE_TAG.match(name):
            gid = name.upper()
            pool, out = (kb.groups, groups) if gid.startswith("G") else (kb.software, software)
            if gid in pool:
                if gid not in out:
                    out.append(gid)
            else:
                unknown.append((tag, f"{gid} is not in {kb.label}"))
        else:
            res = kb.resolve_tactic(name)
            if res.id is None:
                unknown.append((tag, res.note or f"'{name}' is not an ATT&CK tactic in {kb.label}"))
                continue
            if res.note:
                remapped.append((tag, res.note))
            short = kb.tactics[res.id].shortname
            if short not in tactics:
                tactics.append(short)
    if not tactics:  # no tactic tag: the techniques' own tactics
        for tid in techniques:
            for short in kb.techniques[tid].tactics:
                if short not in tactics:
                    tactics.append(short)
    order = {s: i for i, s in enumerate(kb.tactic_order())}
    tactics.sort(key=lambda s: order.get(s, len(order)))
    return {"techniques": techniques, "tactics": tactics, "groups": groups, "software": software,
            "unknown_tags": unknown, "remapped_tags": remapped}


def rule_info(rule: Any, kb, path: str | None) -> RuleInfo:
    """A RuleInfo for one parsed pySigma rule (detection or correlation)."""
    from sigma.correlations import SigmaCorrelationRule

    tags = [str(t) for t in rule.tags]
    mapped = map_tags(tags, kb)
    ls = getattr(rule, "logsource", None)
    logsource = {"product": getattr(ls, "product", None), "category": getattr(ls, "category", None),
                 "service": getattr(ls, "service", None)}
    level = getattr(rule.level, "name", None)
    status = getattr(rule.status, "name", None)
    rid = str(rule.id) if rule.id is not None else (rule.name or _synthetic_id(path, rule.title))
    return RuleInfo(
        id=rid, title=rule.title or "", description=(rule.description or "").strip(),
        level=level.lower() if level else None, status=status.lower() if status else None,
        logsource=logsource, techniques=mapped["techniques"], tactics=mapped["tactics"],
        unknown_tags=mapped["unknown_tags"], path=path, rule=rule,
        kind="correlation" if isinstance(rule, SigmaCorrelationRule) else "rule",
        tags=tags, remapped_tags=mapped["remapped_tags"], groups=mapped["groups"], software=mapped["software"],
        references=list(rule.references or []), falsepositives=list(rule.falsepositives or []),
        author=rule.author,
    )


def _synthetic_id(path: str | None, title: str) -> str:
    return "noid-" + hashlib.sha1(f"{path}|{title}".encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- loading
def rule_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursively, *.yml/*.yaml) into a sorted list of rule files."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            files.extend(f for f in p.rglob("*") if f.suffix.lower() in RULE_SUFFIXES and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(str(item), None, "no such rule file or folder")
    return sorted(set(files))


def _parse_file(path: Path):
    """Parse one rule file into a pySigma collection (errors collected, filters not yet applied)."""
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaRuleLocation

    text = path.read_text(encoding="utf-8")
    return SigmaCollection.from_yaml(text, collect_errors=True, source=SigmaRuleLocation(path),
                                     collect_filters=True, resolve_references=False)


def _parse_entries(value) -> bool:
    """The parsed-rule cache's shape: {path: ((size, mtime_ns), pickled collection)}."""
    return isinstance(value, dict) and all(
        isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], tuple) and isinstance(v[1], bytes)
        for v in value.values())


class _ParseCache:
    """Per-file pickle of parse results, keyed by (path, size, mtime_ns) and the pySigma version."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.entries: dict[str, tuple[tuple, bytes]] = {}
        self.dirty = False
        self.file: Path | None = None
        if not enabled:
            return
        from ttpscope.paths import cache_dir, load_cache

        self.file = cache_dir("rules") / f"parsed-pysigma-{_pkg_version('pysigma')}.pickle"
        self.entries = load_cache(self.file, _parse_entries, "parsed-rule cache") or {}

    @staticmethod
    def key(path: Path) -> tuple:
        st = path.stat()
        return (st.st_size, st.st_mtime_ns)

    def get(self, path: Path):
        if not self.enabled:
            return None
        hit = self.entries.get(str(path))
        if hit is None or hit[0] != self.key(path):
            return None
        from sigma.collection import SigmaCollection

        try:
            coll = pickle.loads(hit[1])
        except Exception:  # a stale or foreign entry: parse again
            return None
        return coll if isinstance(coll, SigmaCollection) else None

    def put(self, path: Path, collection) -> None:
        if not self.enabled:
            return
        try:
            self.entries[str(path)] = (self.key(path), pickle.dumps(collection, protocol=pickle.HIGHEST_PROTOCOL))
            self.dirty = True
        except Exception:  # unpicklable custom attributes: simply not cached
            pass

    def save(self) -> None:
        if not (self.enabled and self.dirty and self.file):
            return
        from ttpscope.paths import save_cache

        save_cache(self.file, self.entries, "parsed-rule cache")


def default_rules_dir() -> Path | None:
    """The newest SigmaHQ release fetched by ``ttpscope rules update``, or None when none is cached."""
    from ttpscope.paths import cache_dir

    current = cache_dir("rules") / "sigmahq" / "current"
    if current.is_file():
        target = Path(current.read_text(encoding="utf-8").strip())
        if target.is_dir():
            return target
    return None


# How often rule files went through pySigma in this process (parsed, or their parsed form unpickled from
# the parse cache): what a run served by the rule index must not add to
PYSIGMA_LOADS = {"load_rules": 0, "files": 0}


def load_rules(paths: str | Path | Iterable[str | Path] | None = None, kb=None, *, cache: bool = True,
               **filters: Any) -> RuleSet:
    """Load Sigma rules from files/folders (default: the cached SigmaHQ release) and map their ATT&CK tags.

    ``kb`` defaults to ``load_kb("enterprise")``. ``filters`` are those of :func:`rule_matches`: ``level``
    ('medium+', 'high', a list), ``status``, ``exclude_status``, ``product``, ``category``, ``service``,
    ``technique`` (ids or names, resolved through the KB incl. revoked ids; sub-techniques included),
    ``tactic`` (ids, shortnames, v19 names), ``ids``. A YAML or Sigma error in one file or rule is recorded
    in ``RuleSet.errors`` as (path, message) and never stops the load. Sigma filter documents
    (``filter:``) found among the files are applied to the rules they name. Output order: by path, then
    rule order in the file.
    """
    from sigma.collection import SigmaCollection

    if kb is None:
        from ttpscope.kb import load_kb

        kb = load_kb("enterprise")
    if paths is None:
        paths = default_rules_dir()
        if paths is None:
            raise NotFoundError("no rules given and no SigmaHQ release cached: pass --rules DIR or run "
                                "'ttpscope rules update'")
    files = rule_files(paths)
    PYSIGMA_LOADS["load_rules"] += 1
    PYSIGMA_LOADS["files"] += len(files)
    pcache = _ParseCache(cache)
    errors: list[tuple[str, str]] = []
    collections = []
    for path in files:
        coll = pcache.get(path)
        if coll is None:
            try:
                coll = _parse_file(path)
            except Exception as exc:  # YAML syntax, bad encoding, pySigma refusing a document
                errors.append((str(path), _one_line(exc)))
                continue
            pcache.put(path, coll)
        rule_errors = {id(e) for r in coll.rules for e in r.errors}  # reported below, with the rule's id
        for err in coll.errors:
            if id(err) not in rule_errors:
                errors.append((str(path), _one_line(err)))
        collections.append(coll)
    pcache.save()

    try:
        merged = SigmaCollection.merge(collections, resolve_references=False)
    except Exception as exc:  # a filter document that cannot be applied
        errors.append(("<filters>", _one_line(exc)))
        merged = SigmaCollection.merge([SigmaCollection(c.rules) for c in collections], resolve_references=False)

    out = RuleSet(files=len(files), kb_label=kb.label)
    from sigma.correlations import SigmaCorrelationRule

    for rule in merged.rules:
        path = str(rule.source.path) if rule.source is not None and rule.source.path else None
        if rule.errors:
            for err in rule.errors:
                errors.append((path or "<rule>", f"rule {rule.id or rule.title!s}: {_one_line(err)}"))
            continue
        if isinstance(rule, SigmaCorrelationRule):
            try:
                rule.resolve_rule_references(merged)
            except Exception as exc:
                errors.append((path or "<rule>", f"correlation {rule.id or rule.title}: {_one_line(exc)}"))
                continue
        info = rule_info(rule, kb, path)
        (out.correlations if info.kind == "correlation" else out.rules).append(info)
    out.errors = list(dict.fromkeys(errors))  # a rule's error is reported by file and by rule

    filters = _resolve_filters(filters, kb)
    if any(v is not None for v in filters.values()):
        return out.filter(**filters)
    return out


def _resolve_filters(filters: dict[str, Any], kb) -> dict[str, Any]:
    known = {"level", "status", "exclude_status", "product", "category", "service", "technique", "tactic", "ids"}
    unknown = set(filters) - known
    if unknown:
        raise TypeError(f"unknown rule filter(s): {', '.join(sorted(unknown))}")
    out = dict(filters)
    if filters.get("technique"):
        ids = []
        for t in _as_list(filters["technique"]):
            res = kb.resolve_technique(t)
            if res.id is None:
                raise NotFoundError(res.note or f"no technique {t!r}")
            ids.append(res.id)
        out["technique"] = ids
    if filters.get("tactic"):
        shorts = []
        for t in _as_list(filters["tactic"]):
            res = kb.resolve_tactic(t)
            if res.id is None:
                raise NotFoundError(res.note or f"no tactic {t!r}")
            shorts.append(kb.tactics[res.id].shortname)
        out["tactic"] = shorts
    if filters.get("level"):
        parse_levels(filters["level"])  # validate early, with a clear message
    return out


def _as_list(value) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    return [s.strip() for item in items for s in str(item).split(",") if s.strip()]


def _one_line(exc: BaseException | object) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())
