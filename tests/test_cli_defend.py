"""The defender commands end to end (`python -m ttpscope ...`): JSON shapes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "ttpscope", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)


def ok_json(*args: str):
    proc = run(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return orjson.loads(proc.stdout)


def test_kb_cve_json(shared_data):
    data = ok_json("kb", "cve", "CVE-2021-44228", "--mappings", str(shared_data / "ctid-mappings-explorer"),
                   "--bundle", "embedded")
    assert data["cve"] == "CVE-2021-44228"
    assert {"id": "T1190", "mapping_type": "exploitation_technique"}.items() <= data["techniques"][0].items()


def test_kb_cve_offline_is_one_clear_line(tmp_path):
    """No --mappings: the official KEV file is downloaded; an unreachable server is exit 2 with what to do."""
    import socket

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TTPSCOPE_HOME": str(tmp_path),
           "TTPSCOPE_CVE_MAPPINGS": f"http://127.0.0.1:{port}/kev.json"}
    proc = subprocess.run([sys.executable, "-m", "ttpscope", "kb", "cve", "CVE-2021-44228", "--bundle", "embedded"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"127.0.0.1:{port}/kev.json: cannot reach the server" in proc.stderr
    assert "--mappings PATH" in proc.stderr


def test_emulate_json_markdown_layer(shared_data, tmp_path):
    md, layer = tmp_path / "plan.md", tmp_path / "plan.json"
    data = ok_json("emulate", "FIN7", "--atomics", str(shared_data / "atomic-red-team" / "Indexes-CSV"),
                   "--out", str(md), "--layer-out", str(layer), "--bundle", "embedded")
    assert data["group"]["id"] == "G0046"
    step = next(s for s in data["steps"] if s["atomics"])
    assert {"tactic", "technique", "procedure", "atomics"} <= set(step)
    assert {"name", "guid", "platform"} <= set(step["atomics"][0])
    assert md.read_text().startswith("# Emulation plan: FIN7")
    assert orjson.loads(layer.read_bytes())["techniques"]


def test_mitigate_json_from_layer_file(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("T1003.001, T1059.001\n# comment\nT1566.001\n")
    data = ok_json("mitigate", "--layer", str(ids), "--bundle", "embedded")
    assert [t["id"] for t in data["techniques"]] == ["T1003.001", "T1059.001", "T1566.001"]
    assert data["mitigations"][0]["in_cover"]


def test_vulns_rank_json(shared_data, tmp_path):
    scan = tmp_path / "scan.csv"
    scan.write_text("host,finding\nweb1,CVE-2021-44228\nmail,CVE-2020-0688\nold,CVE-1999-0001\n")
    data = ok_json("vulns", "rank", str(scan), "--mappings", str(shared_data / "ctid-mappings-explorer"),
                   "--profile", "APT29", "--bundle", "embedded")
    assert data["counts"] == {"cves": 3, "mapped": 2, "unmapped": 1}
    assert data["unmapped"] == ["CVE-1999-0001"]
    assert data["ranked"][0]["score"] >= data["ranked"][1]["score"]


@pytest.mark.parametrize("args,expected", [
    (("emulate", "NoSuchGroupAtAll", "--bundle", "embedded"), "no group named 'NoSuchGroupAtAll'"),
    (("kb", "cve", "CVE-2021-44228", "--mappings", "/nonexistent/map.json"), "/nonexistent/map.json: no such file"),
    (("coverage", "--rules", ".", "--profile", "APT29", "--inventory", "{bad}", "--bundle", "embedded"),
     "{bad}: an inventory needs a 'platforms' mapping"),
    (("vulns", "rank", "{empty}", "--mappings", "{maps}", "--bundle", "embedded"), "no CVE ids"),
    (("kb", "cve", "CVE-2021-44228", "--mappings", "{badmap}"), "not valid JSON"),
])
def test_bad_inputs_one_line_errors(tmp_path, request, args, expected):
    bad_inv = tmp_path / "inv.yml"
    bad_inv.write_text("just: text\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("nothing here\n")
    badmap = tmp_path / "map.json"
    badmap.write_text("{oops")
    subs = {"{bad}": str(bad_inv), "{empty}": str(empty), "{badmap}": str(badmap)}
    if "{maps}" in args:  # only this case reads a public data set
        subs["{maps}"] = str(request.getfixturevalue("shared_data") / "ctid-mappings-explorer")
    args = tuple(subs.get(a, a) for a in args)
    expected = expected.replace("{bad}", str(bad_inv))
    proc = run(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("ttpscope: error:") and expected in proc.stderr


GOOD_RULE = """title: Handmade tasklist
id: 7d1c2d9e-1111-4222-8333-000000000001
status: test
level: medium
tags: [attack.discovery, attack.t1057]
logsource: {product: windows, category: process_creation}
detection:
  sel: {Image|endswith: '\\\\tasklist.exe'}
  condition: sel
"""


@pytest.fixture()
def rule_dir(tmp_path):
    d = tmp_path / "rules"
    d.mkdir()
    (d / "good.yml").write_text(GOOD_RULE)
    (d / "broken.yml").write_text("title: [unclosed\n  detection: {")
    return d


def test_coverage_json_shape_with_broken_rule(rule_dir, tmp_path):
    layer = tmp_path / "cov.json"
    data = ok_json("coverage", "--rules", str(rule_dir), "--profile", "APT29", "--layer-out", str(layer),
                   "--bundle", "embedded")
    assert 0 < data["coverage"] < 0.1  # one rule: T1057 (Process Discovery) is all it detects
    row = next(t for t in data["techniques"] if t["id"] == "T1057")
    assert {"id", "rules", "visible", "score"} <= set(row) and row["rules"] == 1
    assert data["gaps"] and {"id", "name", "actors", "tactics"} <= set(data["gaps"][0])
    assert data["gaps"][0]["actors"] == ["G0016"]
    assert any("broken.yml" in e for e in data["rule_errors"])  # the bad file is reported, the good one used
    assert layer.exists() and (tmp_path / "cov-gaps.json").exists() and (tmp_path / "cov-profile.json").exists()


def test_hunt_json(rule_dir):
    data = ok_json("hunt", "T1057", "--rules", str(rule_dir), "--target", "kusto", "--bundle", "embedded")
    rule = data["techniques"][0]["rules"][0]
    assert rule["queries"][0].startswith("DeviceProcessEvents") and rule["error"] is None


def test_rules_convert_command(rule_dir):
    import typer
    from typer.testing import CliRunner

    from ttpscope.cli.rules import convert

    app = typer.Typer()
    app.command()(convert)
    app.command("noop")(lambda: None)  # two commands: Typer keeps 'convert' as a sub-command
    res = CliRunner().invoke(app, ["convert", str(rule_dir), "--target", "splunk", "--json"])
    assert res.exit_code == 0, res.output
    data = orjson.loads(res.stdout)
    assert data["converted"] == 1 and data["rate"] == 1.0 and 'tasklist.exe"' in data["queries"][0]["queries"][0]
    assert any("broken.yml" in e for e in data["load_errors"])


def test_coverage_unknown_group_is_clear(rule_dir):
    proc = run("coverage", "--rules", str(rule_dir), "--profile", "Nobody Group", "--bundle", "embedded")
    assert proc.returncode == 2 and "no group named 'Nobody Group'" in proc.stderr


def test_case_options_use_the_workspace(tmp_path):
    from ttpscope.model import Case, Observation
    from ttpscope.store.workspace import Workspace

    ws_home = tmp_path / "home"
    techniques = ["T1566.001", "T1059.001", "T1027.006", "T1003.002", "T1021.006", "T1550.004"]
    env_home = os.environ["TTPSCOPE_HOME"]
    os.environ["TTPSCOPE_HOME"] = str(ws_home)
    try:
        Workspace().save_case(Case("defend-case", [Observation(t, "manual", "test") for t in techniques]))
        mit = ok_json("mitigate", "--case", "defend-case", "--bundle", "embedded")
        plan = ok_json("emulate", "--case", "defend-case", "--bundle", "embedded")
        missing = run("mitigate", "--case", "no-such-case", "--bundle", "embedded")
    finally:
        os.environ["TTPSCOPE_HOME"] = env_home
    assert sorted(t["id"] for t in mit["techniques"]) == sorted(techniques)
    assert plan["group"]["id"].startswith("G") and plan["steps"]  # the case's top attributed group
    assert missing.returncode == 2 and "no-such-case" in missing.stderr
