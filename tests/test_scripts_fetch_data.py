"""scripts/fetch-data against a loopback mirror, and how tests find (or skip for) the public data sets."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

import conftest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def project(tmp_path) -> Path:
    """A copy of the script in a folder with no ../shared beside it, as a fresh clone has."""
    proj = tmp_path / "clone"
    (proj / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "fetch-data", proj / "scripts" / "fetch-data")
    return proj


def fetch(project: Path, cache: Path, *names: str, mirror: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TTPSCOPE_DATA": str(cache), "TTPSCOPE_FETCH_MIRROR": mirror}
    return subprocess.run([sys.executable, str(project / "scripts" / "fetch-data"), *names], capture_output=True,
                          text=True, env=env, timeout=120)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_offline_prints_one_line_per_data_set_and_exits_0(project, tmp_path):
    proc = fetch(project, tmp_path / "cache", mirror=f"http://127.0.0.1:{closed_port()}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    listed = subprocess.run([sys.executable, str(project / "scripts" / "fetch-data"), "--list"],
                            capture_output=True, text=True).stdout.splitlines()
    assert len(lines) == len(listed) >= 10
    assert all("not fetched" in line and "tests that need it skip" in line for line in lines)
    assert not any((tmp_path / "cache").glob("*/.complete"))


def tarball(top: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if not name.startswith("/") else name[1:])
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture()
def mirror(tmp_path):
    """A loopback HTTP server laid out as MIRROR/HOST/PATH, holding a few small synthetic repositories."""
    root = tmp_path / "mirror"

    def put(rel: str, data: bytes):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)

    put("github.com/mdecrevoisier/EVTX-to-MITRE-Attack/archive/HEAD.tar.gz", tarball("EVTX-main", {
        "TA0006-Credential Access/T1003-x/a.evtx": b"ElfFile\0",
        "LICENSE.md": b"CC0",
    }))
    sigma_ref = "8eaafff1f2845a696050e05e72ba1140ee190698"
    put(f"github.com/SigmaHQ/sigma/archive/{sigma_ref}.tar.gz", tarball("sigma-x", {
        "rules/windows/a.yml": b"title: a",
        "rules/../../escape.yml": b"must not leave the cache",  # a hostile member
    }))
    raw = "raw.githubusercontent.com/center-for-threat-informed-defense"
    put(f"{raw}/top-attack-techniques/HEAD/src/data/Techniques.json", b"[]")
    put(f"{raw}/top-attack-techniques/HEAD/LICENSE", b"Apache")
    tree = [{"path": "data/tram2-data/mjson_files/One report.mjson", "type": "blob"},
            {"path": "data/training/tram2_data/mjson_files/One report.mjson", "type": "blob"},  # same file twice
            {"path": "data/tram2-data/single_label.json", "type": "blob"},
            {"path": "data/other.json", "type": "blob"},
            {"path": "LICENSE.txt", "type": "blob"}]
    put("api.github.com/repos/center-for-threat-informed-defense/tram/git/trees/HEAD",
        json.dumps({"tree": tree, "truncated": False}).encode())
    put(f"{raw}/tram/HEAD/data/tram2-data/mjson_files/One%20report.mjson".replace("%20", " "), b'{"signal": ""}')
    put(f"{raw}/tram/HEAD/data/tram2-data/single_label.json", b"[]")
    put(f"{raw}/tram/HEAD/LICENSE.txt", b"Apache")
    for split in ("train", "test", "train_aggregated", "test_aggregated"):
        put(f"raw.githubusercontent.com/xinjianluo/SoK_TTP_CTI/HEAD/classification/datasets/tram_{split}.json", b"{}")

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetches_archives_files_and_trees_into_the_cache_layout(project, tmp_path, mirror):
    cache = tmp_path / "cache"
    proc = fetch(project, cache, "evtx", "ctid-top-attack-techniques", "tram", mirror=mirror)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (cache / "evtx" / "evtx-to-mitre-attack" / "TA0006-Credential Access" / "T1003-x" / "a.evtx").is_file()
    assert (cache / "ctid-top-attack-techniques" / "Techniques.json").read_bytes() == b"[]"
    assert sorted(p.name for p in (cache / "tram" / "mjson_files").iterdir()) == ["One report.mjson"]
    assert (cache / "tram" / "sok_splits" / "tram_test.json").is_file()
    assert not (cache / "tram" / "other.json").exists()
    stamp = json.loads((cache / "tram" / ".complete").read_text())
    assert stamp["repo"] == "center-for-threat-informed-defense/tram" and stamp["files"] == 7
    again = fetch(project, cache, "tram", mirror=mirror)
    assert again.returncode == 0 and "already in" in again.stdout


def test_a_hostile_archive_member_refuses_the_data_set(project, tmp_path, mirror):
    cache = tmp_path / "cache"
    proc = fetch(project, cache, "sigma", mirror=mirror)
    assert proc.returncode == 1 and "sigma: failed: refusing the path 'rules/../../escape.yml'" in proc.stderr
    assert not any(tmp_path.rglob("escape.yml")) and not (cache / "sigma").exists()


def test_a_missing_file_fails_the_data_set_and_leaves_nothing_half_done(project, tmp_path, mirror):
    cache = tmp_path / "cache"
    proc = fetch(project, cache, "atomic-red-team", "ctid-top-attack-techniques", mirror=mirror)
    assert proc.returncode == 1
    assert "fetch-data: atomic-red-team: failed: HTTP Error 404" in proc.stderr
    assert "ctid-top-attack-techniques: fetched" in proc.stdout  # the others still come
    assert sorted(p.name for p in cache.iterdir()) == ["ctid-top-attack-techniques"]


@pytest.fixture()
def no_shared(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "SHARED", tmp_path / "shared")
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "shared" / "data")
    monkeypatch.setenv("TTPSCOPE_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("CI", raising=False)
    return tmp_path


def test_missing_data_set_skips_naming_it_and_how_to_fetch_it(no_shared):
    with pytest.raises(pytest.skip.Exception) as info:
        conftest.DataSets() / "sigma" / "rules"
    msg = str(info.value)
    assert "'sigma' (SigmaHQ rules and regression data)" in msg and "scripts/fetch-data sigma" in msg


def test_in_ci_with_shared_present_a_missing_data_set_fails(no_shared, monkeypatch):
    (no_shared / "shared" / "data").mkdir(parents=True)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="needs the public data set 'tram'"):
        conftest.DataSets() / "tram"
    shutil.rmtree(no_shared / "shared")  # a fresh clone in CI: no ../shared, so a skip is allowed
    with pytest.raises(pytest.skip.Exception):
        conftest.DataSets() / "tram"


def test_shared_first_then_a_complete_cache(no_shared):
    cache = no_shared / "cache"
    (cache / "evtx" / "evtx-to-mitre-attack").mkdir(parents=True)
    with pytest.raises(pytest.skip.Exception):  # half-fetched: no stamp
        conftest.DataSets() / "evtx"
    (cache / "evtx" / ".complete").write_text("{}")
    assert conftest.DataSets() / "evtx" / "evtx-to-mitre-attack" == cache / "evtx" / "evtx-to-mitre-attack"
    (no_shared / "shared" / "data" / "evtx").mkdir(parents=True)
    assert conftest.DataSets() / "evtx" == no_shared / "shared" / "data" / "evtx"
