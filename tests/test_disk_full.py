"""A full disk (a real, tiny tmpfs, filled to the last byte) ends in one line, never a traceback, and leaves
nothing half-written: the outputs of ``investigate`` and the workspace's DuckDB commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ttpscope.errors import WriteError
from ttpscope.model import Detection, Case, Observation
from ttpscope.store import Workspace

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs mounted for the test and unmounted after it (needs root, as the test machines have)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); this test needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses another byte; returns it (delete it to free the space)."""
    filler = disk / f"filler-{uuid.uuid4().hex}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def investigate(out: Path, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TTPSCOPE_HOME=str(home), PYTHONPATH=str(ROOT / "src"), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "ttpscope", "investigate", str(EXAMPLES / "evidence" / "dc01.jsonl"),
                           "--rules", str(EXAMPLES / "rules"), "--out", str(out), "--name", "disk test", "--replace"],
                          env=env, capture_output=True, text=True, timeout=600)


def test_outputs_on_a_full_disk_end_in_one_line_and_keep_the_previous_files_whole(small_disk, tmp_path):
    home = tmp_path / "home"
    out = small_disk / "out"
    first = investigate(out, home)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "report.html" in before and "case.json" in before
    fill(small_disk)
    again = investigate(out, home)
    assert again.returncode == 2, again.stderr
    assert "Traceback" not in again.stderr
    errors = [ln for ln in again.stderr.splitlines() if ln.startswith("ttpscope: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "nothing half-written" in errors[0]
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert not [n for n in after if n.endswith(".tmp")]  # no temporary file stays behind
    assert set(after) == set(before)
    for name, body in after.items():  # each file is the previous one or a complete new one, never a part
        if name.endswith(".json"):
            json.loads(body)
        if body != before[name]:
            assert len(body) > 0.5 * len(before[name])


def test_a_workspace_commit_on_a_full_disk_is_one_error_and_keeps_the_old_cases(small_disk):
    ws = Workspace(small_disk / "ws.duckdb")
    ws.save_case(Case("old", [Observation("T1059.001", "manual", "note")]))
    filler = fill(small_disk)
    detections = [Detection(f"r{i}", "t" * 200, record=str(i), event={"x": "y" * 500}) for i in range(5000)]
    with pytest.raises(WriteError) as err:
        ws.save_case(Case("new", [Observation("T1003.001", "manual", "note")]), detections=detections)
    message = str(err.value)
    assert "\n" not in message and "No space left on device" in message and "nothing of this change" in message
    filler.unlink()
    reopened = Workspace(small_disk / "ws.duckdb")
    assert [c["name"] for c in reopened.list_cases()] == ["old"]
    assert [o.technique_id for o in reopened.get_case("old").observations] == ["T1059.001"]
    reopened.save_case(Case("new", [Observation("T1003.001", "manual", "note")]))  # space again: it works
    assert sorted(c["name"] for c in reopened.list_cases()) == ["new", "old"]
