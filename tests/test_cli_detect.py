"""`ttpscope detect` and `ttpscope rules ...` end to end (real files, a real loopback HTTP server)."""

from __future__ import annotations

import http.server
import io
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from ttpscope.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
RULE = """\
title: Whoami run
id: 30000000-0000-0000-0000-000000000001
level: medium
tags: [attack.discovery, attack.t1033]
logsource: {category: process_creation, product: windows}
detection:
    sel:
        Image|endswith: '\\\\whoami.exe'
    condition: sel
"""


@pytest.fixture()
def case_dir(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "whoami.yml").write_text(RULE, encoding="utf-8")
    events = [{"@timestamp": "2024-01-01T00:00:0%dZ" % i, "Channel": "Microsoft-Windows-Sysmon/Operational",
               "EventID": 1, "Computer": "WS1", "User": "CORP\\bob", "Image": img}
              for i, img in enumerate(["C:\\Windows\\System32\\whoami.exe", "C:\\x\\notepad.exe"])]
    (tmp_path / "logs.jsonl").write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\nnot json\n")
    return tmp_path


def test_detect_json_and_jsonl(case_dir):
    runner = CliRunner()
    out = runner.invoke(app, ["detect", str(case_dir / "logs.jsonl"), "--rules", str(case_dir / "rules"), "--json",
                              "--jsonl", str(case_dir / "hits.jsonl")])
    assert out.exit_code == 0, out.output
    data = orjson.loads(out.stdout)
    assert len(data) == 1
    det = data[0]
    assert set(det) >= {"rule_id", "title", "level", "techniques", "tactics", "time", "host", "source", "record",
                        "event"}
    assert det["techniques"] == ["T1033"] and det["tactics"] == ["discovery"] and det["record"] == 1
    assert det["host"] == "WS1" and det["time"] == "2024-01-01T00:00:00Z" and det["user"] == "CORP\\bob"
    lines = (case_dir / "hits.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x)["rule_id"] for x in lines] == [det["rule_id"]]


def test_detect_table_reports_rejects_and_chains(case_dir):
    out = CliRunner().invoke(app, ["detect", str(case_dir / "logs.jsonl"), "--rules", str(case_dir / "rules"),
                                   "--chains", "--gap", "5m"])
    assert out.exit_code == 0, out.output
    assert "3 events read" in out.output and "1 rejected" in out.output and "not valid JSON" in out.output
    assert "T1033" in out.output and "Activity chains" in out.output


def test_detect_into_a_case(case_dir):
    out = CliRunner().invoke(app, ["detect", str(case_dir / "logs.jsonl"), "--rules", str(case_dir / "rules"),
                                   "--case", "cli-test-case"])
    assert out.exit_code == 0, out.output
    from ttpscope.store import Workspace

    case = Workspace().get_case("cli-test-case")
    assert [o.technique_id for o in case.observations] == ["T1033"]
    assert case.observations[0].source_kind == "sigma" and case.observations[0].host == "WS1"


def test_rules_list_check_show(case_dir):
    runner = CliRunner()
    out = runner.invoke(app, ["rules", "list", str(case_dir / "rules"), "--json"])
    assert out.exit_code == 0, out.output
    assert orjson.loads(out.stdout)["rules"][0]["techniques"] == ["T1033"]
    out = runner.invoke(app, ["rules", "check", str(case_dir / "rules"), "--json"])
    data = orjson.loads(out.stdout)
    assert data["compiled"] == 1 and data["compiled_share"] == 1.0 and data["compile_failures"] == []
    out = runner.invoke(app, ["rules", "show", "30000000", "--rules", str(case_dir / "rules"), "--json"])
    variants = orjson.loads(out.stdout)["compiled"]["variants"]
    # "plain": the rule's own fields, for Windows sources without an event log channel (Defender XDR)
    assert set(variants) == {"sysmon", "security", "plain"}
    assert "newprocessname" in variants["security"].lower() and "'4688'" in variants["security"]


def _serve(directory: Path):
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_rules_update_from_a_server_and_offline(tmp_path, case_dir, monkeypatch):
    # its own home: the downloaded release becomes the default rule set, which other tests must not inherit
    monkeypatch.setenv("TTPSCOPE_HOME", str(tmp_path / "home"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("rules/windows/whoami.yml", RULE)
        zf.writestr("../escape.yml", RULE)  # a path leaving the folder is not extracted
        zf.writestr("README.md", "not a rule")
    (tmp_path / "sigma_all_rules.zip").write_bytes(buf.getvalue())
    server = _serve(tmp_path)
    try:
        url = f"http://127.0.0.1:{server.server_port}/sigma_all_rules.zip"
        out = CliRunner().invoke(app, ["rules", "update", "--url", url, "--json"])
        assert out.exit_code == 0, out.output
        info = orjson.loads(out.stdout)
        assert info["rules"] == 1 and Path(info["path"]).is_dir()
        assert not (Path(info["path"]).parent / "escape.yml").exists()
        # the cached release is now the default rule set
        out = CliRunner().invoke(app, ["detect", str(case_dir / "logs.jsonl"), "--json"])
        assert len(orjson.loads(out.stdout)) == 1
    finally:
        server.shutdown()
        server.server_close()
    # unreachable server: one line on stderr, exit code 2, no traceback
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, "-m", "ttpscope", "rules", "update", "--url",
                           f"http://127.0.0.1:{server.server_port}/gone.zip"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "cannot download the Sigma rules" in proc.stderr
    assert "Traceback" not in proc.stderr
