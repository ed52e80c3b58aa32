"""The one disk-cache helper (``paths.load_cache`` / ``save_cache``) and the caches that use it: an unreadable
or wrong-typed cache is rebuilt with one warning naming it; writes are atomic under unique temporary names,
so processes compiling rules at the same time never crash."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ttpscope.paths import load_cache, save_cache

SRC = str(Path(__file__).resolve().parents[1] / "src")

BAD_CACHES = {
    "random bytes": os.urandom(4096),
    "unsupported pickle protocol": b"\x80\x09" + os.urandom(64),
    "truncated pickle": pickle.dumps({"a": list(range(1000))})[:50],
    "pickle of a list": pickle.dumps([1, 2, 3]),
    "pickle of a dict": pickle.dumps({"not": "a cache"}),
}


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ttpscope.cache" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("what", sorted(BAD_CACHES))
def test_unusable_cache_is_refused_with_one_warning_naming_it(tmp_path, caplog, what):
    path = tmp_path / "thing.pickle"
    path.write_bytes(BAD_CACHES[what])
    with caplog.at_level(logging.WARNING, logger="ttpscope.cache"):
        assert load_cache(path, set, "test cache") is None
    lines = _warnings(caplog)
    assert len(lines) == 1 and str(path) in lines[0] and "test cache" in lines[0] and "\n" not in lines[0]


def test_missing_cache_is_silent_and_a_good_one_loads(tmp_path, caplog):
    path = tmp_path / "thing.pickle"
    with caplog.at_level(logging.WARNING, logger="ttpscope.cache"):
        assert load_cache(path, set, "test cache") is None
        assert save_cache(path, {1, 2}, "test cache")
        assert load_cache(path, set, "test cache") == {1, 2}
        assert load_cache(path, lambda v: isinstance(v, set) and 3 in v, "test cache") is None  # predicate check
    assert len(_warnings(caplog)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["thing.pickle"]  # no temporary file left behind


def test_a_failed_write_leaves_no_half_file_and_says_so(tmp_path, caplog):
    path = tmp_path / "thing.pickle"
    save_cache(path, {"old": 1}, "test cache")
    with caplog.at_level(logging.WARNING, logger="ttpscope.cache"):
        assert save_cache(path, {"bad": lambda: None}, "test cache") is False  # lambdas do not pickle
    assert load_cache(path, dict, "test cache") == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["thing.pickle"]
    assert len(_warnings(caplog)) == 1


def _run(code: str, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TTPSCOPE_HOME=str(home), PYTHONPATH=SRC)
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600)


def _fill(folder: Path, content: bytes) -> list[Path]:
    files = sorted(folder.glob("*.pickle")) if folder.is_dir() else []
    for f in files:
        f.write_bytes(content)
    return files


@pytest.mark.parametrize("what", ["random bytes", "unsupported pickle protocol", "pickle of a list"])
def test_corrupt_rule_caches_are_rebuilt_by_the_cli(shared_data, tmp_path, what):
    """A corrupt compiled-rule or parsed-rule cache no longer breaks every later command."""
    home = tmp_path / "home"
    rules = tmp_path / "rules"
    src = shared_data / "sigma" / "rules" / "windows" / "process_creation"
    keep = set(sorted(p.name for p in src.iterdir())[:40])
    shutil.copytree(src, rules, ignore=lambda d, names: [n for n in names if n not in keep])
    code = ("import sys\nfrom ttpscope.detect.rules import load_rules\nfrom ttpscope.detect.runner import "
            "compile_ruleset\nrs = load_rules(sys.argv[1])\nc = compile_ruleset(rs)\nprint(len(rs.rules), "
            "sum(1 for r in c if r.error is None))")
    first = _run(code, home, str(rules))
    assert first.returncode == 0, first.stderr
    corrupted = _fill(home / "cache" / "rules", BAD_CACHES[what])
    # the compiled rules, the parsed rules and pySigma's Windows tables (kept so a warm run needs no pySigma)
    assert {p.name.split("-")[0] for p in corrupted} == {"compiled", "parsed", "pysigma"}
    again = _run(code, home, str(rules))
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout  # the same rules, compiled the same
    lines = [ln for ln in again.stderr.splitlines() if ln.strip()]
    assert len(lines) == 3 and all("rebuilding it" in ln for ln in lines), again.stderr
    assert {ln.split(" cache ")[0] for ln in lines} == {"compiled-rule", "parsed-rule", "pySigma table"}, lines
    third = _run(code, home, str(rules))  # healed: silent again
    assert third.returncode == 0 and third.stdout == first.stdout and third.stderr.strip() == ""


@pytest.mark.parametrize("what", ["pickle of a list", "pickle of a dict", "random bytes"])
def test_kb_cache_holding_the_wrong_thing_is_rebuilt_by_kb_info(tmp_path, what):
    home = tmp_path / "home"
    cli = [sys.executable, "-m", "ttpscope", "kb", "info", "--bundle", "embedded"]
    env = dict(os.environ, TTPSCOPE_HOME=str(home), PYTHONPATH=SRC, COLUMNS="200")
    first = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert _fill(home / "cache" / "kb", BAD_CACHES[what])
    again = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    lines = [ln for ln in again.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "knowledge-base cache" in lines[0] and "rebuilding it" in lines[0]


def test_four_processes_compiling_new_rules_at_once(shared_data, tmp_path):
    """The old fixed ``compiled-3.tmp`` name made concurrent writers crash on each other's rename."""
    home = tmp_path / "home"
    src = shared_data / "sigma" / "rules" / "windows" / "process_creation"
    folders = []
    for i in range(4):  # each process brings rules the cache has not seen, so all four write it
        folder = tmp_path / f"rules{i}"
        keep = set(sorted(p.name for p in src.iterdir())[i * 30:(i + 1) * 30])
        shutil.copytree(src, folder, ignore=lambda d, names, keep=keep: [n for n in names if n not in keep])
        folders.append(folder)
    code = ("import sys\nfrom ttpscope.detect.rules import load_rules\nfrom ttpscope.detect.runner import "
            "compile_ruleset\nrs = load_rules(sys.argv[1])\nfor _ in range(3):\n    c = compile_ruleset(rs)\n"
            "print(len(c))")
    _run("from ttpscope.kb import load_kb; load_kb()", home)  # the KB cache exists before the race starts
    env = dict(os.environ, TTPSCOPE_HOME=str(home), PYTHONPATH=SRC)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(f)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for f in folders]
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [r[0] for r in results] == [0, 0, 0, 0], [r[2][-2000:] for r in results]
    assert all(int(r[1]) > 0 for r in results)
    cache = home / "cache" / "rules"
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]  # every temporary file renamed
    from ttpscope.detect.runner import _compiled_store

    for f in cache.glob("*.pickle"):  # what is left is a whole, loadable cache
        assert pickle.loads(f.read_bytes()) is not None
    assert _compiled_store(pickle.loads(next(cache.glob("compiled-*.pickle")).read_bytes()))
