"""The rule index: a warm run of real SigmaHQ rules over real EVTX gives what a cold run and the uncached
path give, without going through pySigma; a changed, added or removed rule file is picked up."""

from __future__ import annotations

import gc
import shutil

import pytest

from ttpscope.detect.ruleindex import INDEX_STATS
from ttpscope.detect.rules import PYSIGMA_LOADS
from ttpscope.detect.runner import detect

BAD_YAML = "title: broken\ndetection: [unclosed\n"
UNCOMPILABLE = """title: needs a placeholder list
id: 7f1c2d3e-0000-4000-8000-000000000001
status: test
level: high
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        CommandLine|expand: '%AdminTools%'
    condition: selection
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh home: its caches (parse, compile, plans, index) start empty."""
    monkeypatch.setenv("TTPSCOPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def rules(shared_data, tmp_path):
    windows = shared_data / "sigma" / "rules" / "windows"
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "broken.yml").write_text(BAD_YAML, encoding="utf-8")
    (extra / "placeholder.yml").write_text(UNCOMPILABLE, encoding="utf-8")
    return [windows / "builtin", windows / "process_access", windows / "create_remote_thread", extra]


@pytest.fixture
def logs(shared_data):
    root = shared_data / "evtx" / "evtx-to-mitre-attack"
    return [root / "TA0006-Credential Access", root / "TA0008-Lateral Movement"]


def outcome(result) -> dict:
    """Everything a run reports, but its timings."""
    summary = result.summary()
    summary.pop("timings")
    return {
        "detections": [d.to_dict() for d in result.detections],
        "summary": summary,
        "rule_errors": list(result.rules.errors),
        "compile_errors": list(result.compile_errors),
        "engine_errors": list(result.engine_errors),
        "notes": list(result.notes),
        "ingest": [(s.source, s.read, s.accepted, s.rejected) for s in result.ingest],
        "rules": [(r.id, r.path, r.level, r.techniques, r.tactics) for r in result.rules.rules],
        "compiled": [(c.index, c.rule_id, c.variants, c.error, c.note) for c in result.compiled],
    }


def test_a_warm_run_gives_the_cold_result_without_pysigma(home, rules, logs, kb):
    uncached = outcome(detect(logs, rules, kb=kb, workers=1, cache=False))
    assert uncached["detections"], "the data set should fire some of these rules"
    assert any("broken.yml" in path for path, _ in uncached["rule_errors"])
    assert any("placeholder" in (err or "") for _, _, err in uncached["compile_errors"])

    misses, hits, loads = INDEX_STATS["misses"], INDEX_STATS["hits"], PYSIGMA_LOADS["load_rules"]
    cold = outcome(detect(logs, rules, kb=kb, workers=1))
    assert INDEX_STATS["misses"] == misses + 1 and PYSIGMA_LOADS["load_rules"] == loads + 1
    assert list((home / "cache" / "rules" / "index").glob("index-*.pickle"))

    warm_result = detect(logs, rules, kb=kb, workers=1)
    assert INDEX_STATS["hits"] == hits + 1
    assert PYSIGMA_LOADS["load_rules"] == loads + 1, "the warm run went through pySigma"
    warm = outcome(warm_result)
    assert warm == cold == uncached

    # a rule of the warm set loads its pySigma object when asked, the same rule as a load gives
    info = warm_result.rules.rules[0]
    assert str(info.rule.id) == info.id and info.fresh_rule() is not info.rule
    assert PYSIGMA_LOADS["load_rules"] == loads + 2


def test_filters_on_a_warm_run_match_the_uncached_filtered_run(home, rules, logs, kb):
    thresholds = gc.get_threshold()
    misses = INDEX_STATS["misses"]
    cold = detect(logs, rules, kb=kb, workers=1, level="high+", technique=["T1003"])  # no index yet: none written
    assert INDEX_STATS["misses"] == misses + 1
    assert not list((home / "cache" / "rules" / "index").glob("index-*.pickle"))
    detect(logs, rules, kb=kb, workers=1)  # writes the index
    assert gc.get_threshold() == thresholds, "a run leaves the collector as it found it"
    hits = INDEX_STATS["hits"]
    warm = detect(logs, rules, kb=kb, workers=1, level="high+", technique=["T1003"])
    assert INDEX_STATS["hits"] == hits + 1
    uncached = detect(logs, rules, kb=kb, workers=1, cache=False, level="high+", technique=["T1003"])
    assert outcome(warm) == outcome(uncached) == outcome(cold)
    assert warm.rules.filtered_out == uncached.rules.filtered_out > 0
    assert [c.index for c in warm.compiled] == list(range(len(warm.rules.rules)))


def test_a_changed_added_or_removed_rule_file_is_picked_up(home, shared_data, logs, kb, tmp_path):
    src = shared_data / "sigma" / "rules" / "windows" / "builtin" / "security"
    folder = tmp_path / "rules"
    shutil.copytree(src, folder)
    files = sorted(folder.rglob("*.yml"))
    detect(logs, [folder], kb=kb, workers=1)
    first = detect(logs, [folder], kb=kb, workers=1)
    fired = {d.rule_id for d in first.detections}
    changed = next(f for f in files if any(r.path == str(f) and r.id in fired for r in first.rules.rules))
    changed_id = next(r.id for r in first.rules.rules if r.path == str(changed))

    text = changed.read_text(encoding="utf-8")
    changed.write_text(text.replace("title: ", "title: Changed - ", 1), encoding="utf-8")
    removed = next(f for f in files if f != changed)
    removed_ids = {r.id for r in first.rules.rules if r.path == str(removed)}
    removed.unlink()
    (folder / "placeholder.yml").write_text(UNCOMPILABLE, encoding="utf-8")

    misses = INDEX_STATS["misses"]
    after = detect(logs, [folder], kb=kb, workers=1)
    assert INDEX_STATS["misses"] == misses + 1
    assert outcome(after) == outcome(detect(logs, [folder], kb=kb, workers=1, cache=False))
    titles = {d.rule_id: d.title for d in after.detections}
    assert titles[changed_id].startswith("Changed - ")
    assert not removed_ids & {r.id for r in after.rules.rules}
    assert any(r.path == str(folder / "placeholder.yml") for r in after.rules.rules)

    hits = INDEX_STATS["hits"]
    assert outcome(detect(logs, [folder], kb=kb, workers=1)) == outcome(after)
    assert INDEX_STATS["hits"] == hits + 1


def test_old_indexes_are_pruned_to_the_most_recently_used(home, tmp_path):
    """Each new index (another rule folder, KB or release) is kept beside the others only up to INDEX_KEEP
    files, the most recently used first: a hit counts as a use."""
    import os

    from ttpscope.detect.ruleindex import INDEX_KEEP, indexed_rules
    from ttpscope.kb import load_kb
    from ttpscope.paths import cache_dir

    kb = load_kb()
    folders = []
    for i in range(INDEX_KEEP + 3):
        folder = tmp_path / f"rules{i}"
        folder.mkdir()
        (folder / "r.yml").write_text(UNCOMPILABLE.replace("0001", f"{i:04d}"), encoding="utf-8")
        folders.append(folder)
    index = cache_dir("rules") / "index"
    indexed_rules(folders[0], kb)
    for n, folder in enumerate(folders[1:], start=1):
        for f in index.glob("index-*.pickle"):  # every earlier index older than the next write
            st = f.stat()
            os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
        indexed_rules(folders[0], kb)  # a hit: the first folder's index is the most recently used again
        hits = INDEX_STATS["hits"]
        indexed_rules(folder, kb)
        assert INDEX_STATS["hits"] == hits  # a new folder: a miss, a new index written
        assert len(list(index.glob("index-*.pickle"))) == min(n + 1, INDEX_KEEP)
    hits = INDEX_STATS["hits"]
    indexed_rules(folders[0], kb)
    assert INDEX_STATS["hits"] == hits + 1  # used all along: never pruned
    misses = INDEX_STATS["misses"]
    indexed_rules(folders[1], kb)
    assert INDEX_STATS["misses"] == misses + 1  # the oldest unused one was pruned: built again
