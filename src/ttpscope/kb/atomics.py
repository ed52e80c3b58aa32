"""Atomic Red Team indexes: the tests that exercise each technique, read from the user's copy.

``load_atomics`` reads the ``Indexes-CSV`` files (``index.csv``, ``windows-index.csv``... — the platform comes
from the file name) and the YAML indexes (``linux-index.yaml``: full test definitions with
``supported_platforms``), or a folder holding them. The emulation plans (:mod:`ttpscope.analyze.emulation`)
use the index.
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
from ttpscope.paths import cache_dir, load_cache, save_cache

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


