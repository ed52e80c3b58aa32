"""Adversary emulation plans: a group's techniques ordered by tactic, with its procedure text and the Atomic
Red Team tests that exercise each technique. ttpscope plans; it never executes anything.

Atomic indexes are read from a path given by the user (``load_atomics``): the ``Indexes-CSV`` files
(``index.csv``, ``windows-index.csv``... — the platform comes from the file name) and the YAML indexes
(``linux-index.yaml``: full test definitions with ``supported_platforms``), or a folder holding them.

Atomic Red Team follows the newest ATT&CK release while the knowledge base may be older. An Atomic technique
id the knowledge base lacks (a technique added or moved later, e.g. v19's T1685 "Disable or Modify Tools")
is mapped with ``crosswalk.resolve_any_release`` (v19's moves), else to the knowledge base's live technique of
the same name when exactly one has it; each such bridge is reported in ``AtomicIndex.bridged``. Tests of a
newer sub-technique are not credited to the parent: a plan step needs a test of that very behaviour.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ttpscope.errors import InputError
from ttpscope.kb import KnowledgeBase, plain
from ttpscope.kb.aliases import normalize
from ttpscope.paths import cache_dir, load_cache, save_cache

from ttpscope.analyze.crosswalk import resolve_any_release
from ttpscope.analyze.profile import DEFAULT_VIA

_CSV_COLUMNS = ("Tactic", "Technique #", "Technique Name", "Test #", "Test Name", "Test GUID", "Executor Name")
_TECH = re.compile(r"^T\d{4}(\.\d{3})?$")


@dataclass
class AtomicTest:
    technique_id: str  # as Atomic Red Team files it
    technique_name: str
    name: str
    guid: str
    number: int | None = None
    platforms: list[str] = field(default_factory=list)  # windows, linux, macos, iaas, ...
    executor: str = ""
    tactics: list[str] = field(default_factory=list)
    elevation_required: bool | None = None
    description: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "guid": self.guid, "platform": ", ".join(self.platforms) or "unknown",
                "platforms": self.platforms, "executor": self.executor, "technique": self.technique_id,
                "test_number": self.number, "elevation_required": self.elevation_required}


@dataclass
class AtomicIndex:
    tests: dict[str, AtomicTest] = field(default_factory=dict)  # by GUID
    by_technique: dict[str, list[str]] = field(default_factory=dict)  # atomic technique id -> GUIDs
    sources: list[dict] = field(default_factory=list)  # {source, format, read, accepted, rejected}
    errors: list[str] = field(default_factory=list)
    bridged: dict[str, str] = field(default_factory=dict)  # atomic id -> KB id (filled by for_kb)

    def _add(self, test: AtomicTest) -> None:
        old = self.tests.get(test.guid)
        if old is None:
            self.tests[test.guid] = test
            self.by_technique.setdefault(test.technique_id, []).append(test.guid)
            return
        for p in test.platforms:
            if p not in old.platforms:
                old.platforms.append(p)
        for t in test.tactics:
            if t not in old.tactics:
                old.tactics.append(t)
        old.executor = old.executor or test.executor
        old.description = old.description or test.description
        if old.elevation_required is None:
            old.elevation_required = test.elevation_required
        if old.number is None:
            old.number = test.number

    def tests_for(self, technique_id: str, platforms: Iterable[str] | None = None) -> list[AtomicTest]:
        """Tests filed under an Atomic technique id, by test number; optionally only some platforms."""
        wanted = {p.lower() for p in platforms} if platforms else None
        tests = [self.tests[g] for g in self.by_technique.get(technique_id, ())]
        if wanted:
            tests = [t for t in tests if wanted & set(t.platforms)]
        return sorted(tests, key=lambda t: (t.number if t.number is not None else 10**6, t.guid))

    def for_kb(self, kb: KnowledgeBase) -> dict[str, list[str]]:
        """Atomic technique ids filed under each KB technique id (itself, and name-bridged newer ids)."""
        out: dict[str, list[str]] = {}
        by_name: dict[str, list[str]] = {}
        for t in kb.live_techniques():
            by_name.setdefault(normalize(t.name), []).append(t.id)
        self.bridged = {}
        for aid in sorted(self.by_technique):
            if aid in kb.techniques and not kb.techniques[aid].deprecated:
                out.setdefault(aid, []).append(aid)
                continue
            res = resolve_any_release(kb, aid)
            if res.id is not None and "parent" not in (res.note or ""):  # revoked or moved: follow it
                out.setdefault(res.id, []).append(aid)
                self.bridged[aid] = res.id
                continue
            tname = self.tests[self.by_technique[aid][0]].technique_name
            leaf = tname.split(":")[-1].strip()
            hits = by_name.get(normalize(leaf), [])
            if len(hits) == 1:
                out.setdefault(hits[0], []).append(aid)
                self.bridged[aid] = hits[0]
        return out


def _platform_of(path: Path) -> str | None:
    stem = path.stem.lower()
    if stem.endswith("-index"):
        return stem[: -len("-index")]
    return None


def _read_csv(path: Path, label: str, index: AtomicIndex) -> None:
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    if [c.strip() for c in reader.fieldnames or []][: len(_CSV_COLUMNS)] != list(_CSV_COLUMNS):
        raise InputError(label, "line 1", f"not an Atomic Red Team CSV index: expected columns "
                                          f"{', '.join(_CSV_COLUMNS)}")
    platform = _platform_of(path)
    read = accepted = 0
    for row in reader:
        read += 1
        tid = (row.get("Technique #") or "").strip()
        guid = (row.get("Test GUID") or "").strip()
        if not _TECH.match(tid) or not guid:
            index.errors.append(f"{label} [line {reader.line_num}]: technique {tid!r} / GUID {guid!r} invalid")
            continue
        num = (row.get("Test #") or "").strip()
        index._add(AtomicTest(tid, (row.get("Technique Name") or "").strip(), (row.get("Test Name") or "").strip(),
                              guid, int(num) if num.isdigit() else None, [platform] if platform else [],
                              (row.get("Executor Name") or "").strip(), [(row.get("Tactic") or "").strip()]))
        accepted += 1
    index.sources.append({"source": label, "format": "atomic csv index", "platform": platform, "read": read,
                          "accepted": accepted, "rejected": read - accepted})


def _read_yaml(path: Path, label: str, index: AtomicIndex) -> None:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(path.read_bytes(), Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise InputError(label, None, f"not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise InputError(label, None, "not an Atomic Red Team YAML index (tactic -> technique -> atomic_tests)")
    read = accepted = 0
    for tactic, techniques in doc.items():
        for tid, entry in techniques.items():
            if not isinstance(entry, dict):
                continue
            tname = str(((entry.get("technique") or {}).get("name")) or "")
            for i, test in enumerate(entry.get("atomic_tests") or [], 1):
                read += 1
                guid = str(test.get("auto_generated_guid") or "") if isinstance(test, dict) else ""
                if not _TECH.match(str(tid)) or not guid:
                    index.errors.append(f"{label} [{tactic}/{tid} test {i}]: no technique id or GUID")
                    continue
                executor = test.get("executor") if isinstance(test.get("executor"), dict) else {}
                index._add(AtomicTest(str(tid), tname, str(test.get("name") or ""), guid, i,
                                      [str(p).lower() for p in test.get("supported_platforms") or []],
                                      str(executor.get("name") or ""), [str(tactic)],
                                      executor.get("elevation_required"), str(test.get("description") or "").strip()))
                accepted += 1
    index.sources.append({"source": label, "format": "atomic yaml index", "platform": None, "read": read,
                          "accepted": accepted, "rejected": read - accepted})


_memo: dict[tuple, AtomicIndex] = {}


def load_atomics(paths: Iterable[str | Path]) -> AtomicIndex:
    """Read Atomic Red Team indexes (CSV and/or YAML files, or folders searched recursively).

    Raises InputError for a missing path, a folder without indexes, or a file that is not an index.
    """
    files: list[Path] = []
    for p in paths:
        path = Path(p).expanduser()
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in (".csv", ".yaml", ".yml")
                           and f.stem.lower().endswith("index"))
            if not found:
                raise InputError(str(path), None, "no Atomic Red Team index (*index.csv, *index.yaml) in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(str(path), None, "no such file or folder")
    key = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key in _memo:
        return _memo[key]
    # the YAML indexes take seconds to parse: keep the parsed index on disk, keyed by the files' identity
    cache_file = cache_dir("atomics") / (hashlib.sha256(repr(key).encode()).hexdigest()[:24] + ".pickle")
    cached = load_cache(cache_file, AtomicIndex, "Atomic Red Team index cache")
    if cached is not None:
        _memo[key] = cached
        return cached
    index = AtomicIndex()
    for f in files:
        try:
            if f.suffix.lower() == ".csv":
                _read_csv(f, str(f), index)
            else:
                _read_yaml(f, str(f), index)
        except OSError as exc:
            raise InputError(str(f), None, f"cannot read: {exc.strerror}") from exc
    _memo[key] = index
    save_cache(cache_file, index, "Atomic Red Team index cache")
    return index


def emulation_plan(kb: KnowledgeBase, group: str, atomics: AtomicIndex | None = None,
                   via: Iterable[str] = DEFAULT_VIA, platforms: Iterable[str] | None = None) -> dict:
    """An ordered emulation plan for a group: one step per technique, in matrix order of its first tactic.

    Each step: ``{tactic, tactics, technique, name, procedure, procedures: [{source, text}], atomics:
    [{name, guid, platform, executor, technique}]}``. ``platforms`` keeps only Atomic tests for those
    platforms (windows, linux, macos...). Raises NotFoundError for an unknown group.
    """
    g = kb.group(group)
    res = kb.resolve_group(group)
    order = {short: i for i, short in enumerate(kb.tactic_order())}
    filed = atomics.for_kb(kb) if atomics is not None else {}
    plats = [p.lower() for p in platforms] if platforms else None
    campaign_ids = {c.id for c in kb.campaigns_of_group(g.id)}
    steps = []
    for tid in sorted(kb.group_techniques(g.id, via=via)):
        tech = kb.techniques[tid]
        tactics = sorted(tech.tactics, key=lambda s: order.get(s, 99))
        procs = []
        for p in kb.procedures_for(technique_id=tid):
            if p.source_id == g.id or p.source_id in campaign_ids or (
                    "software" in via and p.source_id in kb.group_software.get(g.id, ())):
                procs.append({"source": {"id": p.source_id, "name": kb.name_of(p.source_id)},
                              "source_type": p.source_type, "text": plain(p.description)})
        procs.sort(key=lambda p: ({"group": 0, "campaign": 1}.get(p["source_type"], 2), p["source"]["id"]))
        tests = []
        if atomics is not None:
            for aid in filed.get(tid, ()):
                tests.extend(t.to_dict() for t in atomics.tests_for(aid, plats))
        steps.append({"tactic": tactics[0] if tactics else "", "tactics": tactics, "technique": tid,
                      "name": tech.name, "procedure": procs[0]["text"] if procs else "", "procedures": procs,
                      "atomics": tests})
    steps.sort(key=lambda s: (order.get(s["tactic"], 99), s["technique"]))
    with_tests = sum(1 for s in steps if s["atomics"])
    return {
        "group": {"id": g.id, "name": g.name, "aliases": g.aliases},
        "note": res.note,
        "via": sorted(via),
        "platforms": plats,
        "steps": steps,
        "summary": {"steps": len(steps), "with_atomics": with_tests,
                    "atomic_tests": sum(len(s["atomics"]) for s in steps),
                    "tactics": [t for t in kb.tactic_order() if any(s["tactic"] == t for s in steps)]},
        "atomics_sources": atomics.sources if atomics is not None else [],
        "atomics_bridged": {a: k for a, k in sorted((atomics.bridged if atomics else {}).items())
                            if any(k == s["technique"] for s in steps)},
        **kb.provenance(),
    }


def plan_markdown(plan: dict, max_tests: int = 5) -> str:
    """The plan as a Markdown document (one section per tactic, one numbered step per technique)."""
    g = plan["group"]
    lines = [f"# Emulation plan: {g['name']} ({g['id']})", "",
             f"Knowledge base: {plan['domain']} ATT&CK v{plan['attack_version']} ({plan['source']}). "
             f"Techniques via: {', '.join(plan['via'])}. "
             f"{plan['summary']['steps']} steps, {plan['summary']['with_atomics']} with Atomic Red Team tests "
             f"({plan['summary']['atomic_tests']} tests)" +
             (f", platforms: {', '.join(plan['platforms'])}" if plan["platforms"] else "") + ".", "",
             "> A plan to review and schedule with the system owners; ttpscope executes nothing.", ""]
    n = 0
    current = None
    for step in plan["steps"]:
        if step["tactic"] != current:
            current = step["tactic"]
            lines += [f"## {current.replace('-', ' ').title()}", ""]
        n += 1
        lines.append(f"### {n}. {step['technique']} {step['name']}")
        lines.append("")
        if len(step["tactics"]) > 1:
            lines += [f"Also: {', '.join(step['tactics'][1:])}.", ""]
        if step["procedure"]:
            src = step["procedures"][0]["source"]
            lines += [f"Procedure ({src['name']}): {step['procedure']}", ""]
        if step["atomics"]:
            lines.append("| Atomic test | GUID | platform | executor |")
            lines.append("|---|---|---|---|")
            for t in step["atomics"][:max_tests]:
                name = t["name"].replace("|", "\\|")
                lines.append(f"| {name} | `{t['guid']}` | {t['platform']} | {t['executor']} |")
            if len(step["atomics"]) > max_tests:
                lines.append(f"| … {len(step['atomics']) - max_tests} more | | | |")
        else:
            lines.append("No Atomic Red Team test: emulate manually or with another framework.")
        lines.append("")
    if plan["atomics_bridged"]:
        lines += ["## Notes", ""]
        for aid, kid in plan["atomics_bridged"].items():
            lines.append(f"- Atomic {aid} matched by name to {kid} of this knowledge base.")
        lines.append("")
    return "\n".join(lines)


def plan_layer(plan: dict, kb: KnowledgeBase) -> dict:
    """The plan as a Navigator layer: score = number of Atomic tests, comment = the procedure."""
    from ttpscope.export.navigator import make_layer

    entries = [{"id": s["technique"], "score": len(s["atomics"]), "comment": s["procedure"][:500],
                "color": "" if s["atomics"] else "#fdae61",
                "metadata": {"step tactic": s["tactic"], "atomic tests": len(s["atomics"])}}
               for s in plan["steps"]]
    g = plan["group"]
    return make_layer(f"Emulation plan: {g['name']}", kb, entries,
                      description=f"{g['id']} techniques; score = Atomic Red Team tests available",
                      gradient=("#ffffffff", "#66b1ffff"),
                      legend=[("no Atomic test", "#fdae61")],
                      metadata={"group": g["id"], "steps": plan["summary"]["steps"]})
