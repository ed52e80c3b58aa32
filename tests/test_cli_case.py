"""`ttpscope case list|show|export|delete`, `ttpscope export` and `ttpscope investigate` error paths, through
the command's real entry point (in process, so the knowledge base and models load once; one test runs it as
a subprocess) on a workspace seeded in a temporary TTPSCOPE_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import stix2
from helpers_investigate import sample_case

from ttpscope.export.layers import validate_layer
from ttpscope.store import Workspace

ROOT = Path(__file__).resolve().parents[1]


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def run(monkeypatch, capfd):
    """Run `ttpscope ARGS` through ttpscope.cli.main.main() with TTPSCOPE_HOME=home, in cwd."""
    from ttpscope.cli.main import main

    def _run(home: Path, *args: str, cwd: Path | None = None) -> Result:
        monkeypatch.setenv("TTPSCOPE_HOME", str(home))
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.chdir(cwd or home)
        monkeypatch.setattr(sys, "argv", ["ttpscope", *args])
        capfd.readouterr()
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capfd.readouterr()
        return Result(code, out, err)

    return _run


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli-home")
    case, dets, docs = sample_case("cli-case")
    Workspace(home / "workspace.duckdb").save_case(case, dets, docs)
    return home


def test_case_list_and_show(home, run):
    listing = run(home, "case", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    cases = json.loads(listing.stdout)["cases"]
    assert [c["name"] for c in cases] == ["cli-case"] and cases[0]["detections"] == 4
    shown = run(home, "case", "show", "cli-case", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert {t["id"] for t in data["techniques"]} == {"T1059.001", "T1003.001", "T1021.002", "T1566.001", "T1490"}
    assert data["documents"] == ["report.md"] and data["knowledge_base"]["attack_version"]
    table = run(home, "case", "show", "cli-case")
    assert table.returncode == 0 and "T1003.001" in table.stdout and "ws01.jsonl" in table.stdout


def test_case_export_all_and_one(home, kb, tmp_path, run):
    res = run(home, "case", "export", "cli-case", "--json", cwd=tmp_path)  # default: ./ttpscope-out/<case>
    assert res.returncode == 0, res.stderr
    out = tmp_path / "ttpscope-out" / "cli-case"
    assert {Path(p) for p in json.loads(res.stdout)["outputs"].values()} == {
        out / n for n in ("report.html", "layer.json", "bundle.json", "case.json", "observations.csv", "report.md")}
    assert validate_layer(json.loads((out / "layer.json").read_text()), kb) == []
    one = run(home, "export", "cli-case", "--format", "stix", "--out", "-")
    assert one.returncode == 0, one.stderr
    assert stix2.parse(one.stdout, allow_custom=False).type == "bundle"
    md = run(home, "export", "cli-case", "--format", "markdown", "--out", str(tmp_path), "--json")
    assert md.returncode == 0, md.stderr
    assert json.loads(md.stdout) == {"case": json.loads(run(home, "case", "show", "cli-case", "--json").stdout)[
        "case"]["id"], "format": "markdown", "output": str(tmp_path / "report.md")}
    assert (tmp_path / "report.md").read_text().startswith("# Case report: cli-case")


def test_bad_requests_are_one_line_errors(home, run):
    for args, words in ((["export", "cli-case", "--format", "docx"], "not one of"),
                        (["case", "show", "no-such-case"], "no case 'no-such-case'"),
                        (["export", "no-such-case", "--format", "json"], "no case")):
        res = run(home, *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert words in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_case_delete(tmp_path, run):
    case, dets, docs = sample_case("doomed")
    Workspace(tmp_path / "workspace.duckdb").save_case(case, dets, docs)
    res = run(tmp_path, "case", "delete", "doomed", "--yes", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["deleted"]["name"] == "doomed"
    assert Workspace(tmp_path / "workspace.duckdb").list_cases() == []


def test_investigate_nothing_usable_exits_2(tmp_path):
    """The real command in a subprocess: exit code 2 and one clear line when no evidence is usable."""
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "empty.md").write_text("")
    env = dict(os.environ, TTPSCOPE_HOME=str(tmp_path), PYTHONPATH=str(ROOT / "src"))
    res = subprocess.run([sys.executable, "-m", "ttpscope", "investigate", str(tmp_path / "blob.bin"),
                          str(tmp_path / "empty.md"), str(tmp_path / "missing.evtx")], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()[-1]
    assert "nothing usable" in err and "blob.bin: binary" in err and "empty.md: empty file" in err
    assert "missing.evtx: no such file" in err
    assert not (tmp_path / "workspace.duckdb").exists() or Workspace(tmp_path / "workspace.duckdb").list_cases() == []


def test_investigate_missing_rules_folder_exits_2(tmp_path, run):
    (tmp_path / "a.jsonl").write_text('{"EventID": 1}\n')
    res = run(tmp_path, "investigate", str(tmp_path / "a.jsonl"), "--rules", str(tmp_path / "no-rules"))
    assert res.returncode == 2 and "no such Sigma rule file or folder" in res.stderr


def test_case_hits_timeline(home, run, tmp_path):
    import pyarrow.parquet as pq

    res = run(home, "case", "hits", "cli-case", "--csv", "--out", str(tmp_path / "hits.csv"), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["hits"] == 4
    lines = (tmp_path / "hits.csv").read_text().splitlines()
    assert lines[0].startswith("time,host,user") and len(lines) == 5 and "Admin share" in lines[-1]
    out = run(home, "case", "hits", "cli-case", "--out", "-")  # JSON lines by default
    assert out.returncode == 0 and [json.loads(x)["rule_id"] for x in out.stdout.splitlines()] == [
        "r-ps", "r-lsass", "r-smb", "r-smb"]
    pq_res = run(home, "case", "hits", "cli-case", "--parquet", cwd=tmp_path)
    assert pq_res.returncode == 0, pq_res.stderr
    assert pq.read_table(tmp_path / "ttpscope-out" / "cli-case" / "hits.parquet").num_rows == 4
    bad = run(home, "case", "hits", "cli-case", "--csv", "--parquet")
    assert bad.returncode != 0 and "one of" in bad.stderr
