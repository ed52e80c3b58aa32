"""`ttpscope lifecycle | attribute | overlap | anticipate` end to end (real KB, real files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from ttpscope.cli.main import app
from ttpscope.export.layers import make_layer
from ttpscope.model import Case, Observation

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def run(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def case_file(tmp_path, kb):
    obs = [Observation(t, "manual", "analyst", time=f"2024-05-01T0{i}:00:00Z", host="h1")
           for i, t in enumerate(sorted(kb.campaign_techniques("C0025"))[:8])]
    path = tmp_path / "case.json"
    path.write_bytes(Case("ukraine-like", obs).to_json())
    return path


def test_attribute_json_shape(kb):
    out = orjson.loads(run("attribute", *sorted(kb.campaign_techniques("C0024")), "--json", "--top", "3").stdout)
    assert isinstance(out, list) and len(out) == 3
    first = out[0]
    assert {"group_id", "name", "score", "confidence", "explained", "missing"} <= set(first)
    assert first["group_id"] == "G0016" and all(isinstance(x, str) for x in first["explained"])
    assert [o["score"] for o in out] == sorted((o["score"] for o in out), reverse=True)


def test_attribute_from_layer_and_text_file(tmp_path, kb):
    ids = sorted(kb.campaign_techniques("C0024"))
    layer = tmp_path / "layer.json"
    layer.write_bytes(orjson.dumps(make_layer("x", kb, [{"id": t, "score": 1} for t in ids])))
    text = tmp_path / "ids.txt"
    text.write_text("\n".join(ids) + "\n")
    a = orjson.loads(run("attribute", "--layer", str(layer), "--json").stdout)
    b = orjson.loads(run("attribute", "--file", str(text), "--json").stdout)
    assert a == b and a[0]["group_id"] == "G0016"
    full = orjson.loads(run("attribute", "--file", str(text), "--json", "--full").stdout)
    assert full["campaigns"][0]["campaign_id"] == "C0024" and "verdict" in full
    camps = orjson.loads(run("attribute", "--file", str(text), "--json", "--campaigns").stdout)
    assert camps[0]["campaign_id"] == "C0024"


def test_attribute_table_says_insufficient_evidence():
    out = run("attribute", "T1059.001", "T1105").stdout
    assert "insufficient evidence" in out


def test_lifecycle_and_anticipate_from_case_file(case_file):
    lc = orjson.loads(run("lifecycle", str(case_file), "--json").stdout)
    assert lc["case"]["name"] == "ukraine-like" and lc["timelines"]["h1"]
    an = orjson.loads(run("anticipate", "--case", str(case_file), "--json", "--top", "5").stdout)
    assert len(an["predictions"]) == 5 and an["predictions"][0]["watch"]
    assert "Lifecycle" in run("lifecycle", str(case_file)).stdout
    assert "Likely next" in run("anticipate", "T1003.001", "--top", "3").stdout


def test_overlap_cli(case_file):
    out = orjson.loads(run("overlap", str(case_file), "C0025", "Sandworm", "C0024", "--json").stdout)
    assert [i["kind"] for i in out["items"]] == ["case", "campaign", "group", "campaign"]
    assert len(out["matrix"]) == 4 and out["clustering"]["dendrogram"]["leaves"]
    assert "Pairs" in run("overlap", "C0025", "C0028").stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("T1059.001\nnot-an-id\n")
    env_cmd = [sys.executable, "-m", "ttpscope", "attribute", "--file", str(bad)]
    proc = subprocess.run(env_cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 2
    assert "bad.txt" in proc.stderr and "line 2" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "ttpscope", "anticipate"], capture_output=True, text=True,
                          cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 2 and "no techniques" in proc.stderr


def test_cases_from_the_workspace(kb):
    from ttpscope.store import Workspace

    ids = sorted(kb.campaign_techniques("C0024"))
    case = Case("analyze-cli-ws-case", [Observation(t, "manual", "analyst", host="h2") for t in ids])
    Workspace().save_case(case)
    att = orjson.loads(run("attribute", "--case", "analyze-cli-ws-case", "--json", "--top", "5").stdout)
    assert att and set(att[0]["explained"]) <= set(ids)
    lc = orjson.loads(run("lifecycle", "analyze-cli-ws-case", "--json").stdout)
    assert lc["case"]["id"] == case.id and lc["case"]["techniques"] == len(ids)
    ov = orjson.loads(run("overlap", "analyze-cli-ws-case", "C0024", "C0025", "--json").stdout)
    assert [i["kind"] for i in ov["items"]] == ["case", "campaign", "campaign"]
    assert ov["pairs"][0]["a"] == "analyze-cli-ws-case" and ov["pairs"][0]["b"] == "C0024"
    missing = runner.invoke(app, ["overlap", "no-such-thing-anywhere", "C0024"])
    assert missing.exit_code != 0
