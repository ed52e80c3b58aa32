"""The run summary of `investigate` and `detect` (ttpscope.cli.summary): levels, --min-level, noisy rules, top
hosts and hours, the per-file table only with --files, plain progress lines when stderr is not a terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from ttpscope.cli.summary import PlainProgress, RunSummary, print_summary

ROOT = Path(__file__).resolve().parents[1]


def det(rule: str, level: str, host: str, time: str, source: str = "a.evtx", techniques=("T1059.001",),
        channel: str = "Security") -> dict:
    return {"rule_id": rule, "title": f"Rule {rule}", "level": level, "techniques": list(techniques), "host": host,
            "time": time, "source": source, "event": {"Channel": channel}}


def render(summary: RunSummary, width: int = 120) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"), color_system=None)
    print_summary(summary, console)
    return console.export_text()


def sample() -> list[dict]:
    dets = [det("loud", "low", "WS1", f"2024-03-05T08:{i % 60:02d}:00Z", source="big.evtx") for i in range(80)]
    dets += [det("lsass", "critical", "DC1", "2024-03-05T09:30:00Z", techniques=("T1003.001",))]
    dets += [det("share", "medium", "DC1", f"2024-03-05T10:0{i}:00Z", source="dc.evtx") for i in range(3)]
    dets += [det("info", "informational", "WS2", "2024-03-06T01:00:00Z", source="dc.evtx") for _ in range(4)]
    return dets


def test_levels_noisy_rules_hosts_and_hours():
    text = render(RunSummary(detections=sample(), events={"big.evtx": 100, "dc.evtx": 5000}, files=2, logs=2,
                             read=5100, accepted=5100))
    assert "Detections  88: critical 1 · high" not in text  # no level without detections is printed
    assert "Detections  88: critical 1 · medium 3 · low 80 · informational 4" in text
    assert "4 below low not in the lists below" in text
    # 80 hits on 100 events: noisy, named once and out of the top lists; 3 of 5,000 is not
    assert re.search(r"Noisy rules 1 .*\n\s+low\s+Rule loud \(80 hits; 80% of big\.evtx\)", text)
    top_rules = text.split("Top rules")[1].split("Top hosts")[0]
    assert "Rule loud" not in top_rules and top_rules.index("Rule lsass") < top_rules.index("Rule share")
    hosts = text.split("Top hosts")[1].split("Busiest hours")[0]
    assert "DC1" in hosts and "WS1" not in hosts and "WS2" not in hosts  # WS1 only noisy, WS2 only informational
    assert "2024-03-05 10:00        3  DC1" in text


def test_min_level_and_noisy_threshold():
    dets = sample()
    high = render(RunSummary(detections=dets, events={"big.evtx": 100}, min_level="high"))
    assert "87 below high not in the lists below" in high and "Rule share" not in high and "Rule lsass" in high
    assert "Noisy rules 1" in high and "Rule loud" not in high  # named only at or above the floor
    lenient = render(RunSummary(detections=dets, events={"big.evtx": 100}, noisy_share=0.9))
    assert "Noisy rules" not in lenient and "Rule loud" in lenient.split("Top rules")[1]


def test_lines_are_cropped_never_wrapped():
    long = [det("x" * 300, "high", "H" * 200, "2024-01-01T00:00:00Z")]
    text = render(RunSummary(detections=long, files=1, logs=1, where="/very/" + "long/" * 40 + "path"), width=60)
    assert all(len(line) <= 60 for line in text.splitlines())
    assert len(text.splitlines()) == len(RunSummary(detections=long, files=1, logs=1, where="/x").lines())


def test_plain_progress_prints_one_line_per_stage(tmp_path):
    out = tmp_path / "log.txt"
    with out.open("w") as stream:
        p = PlainProgress({"logs": "Event logs"}, stream=stream)
        for i in range(100):
            p.update("logs", i, 100, f"{i} events")
        p.update("save", 1, 1, "workspace")
        p.close()
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("ttpscope: Event logs: 99/100 99 events (")
    assert lines[1].startswith("ttpscope: save: 1/1 workspace (")


def run(*args: str, home: Path) -> subprocess.CompletedProcess:
    """The session's TTPSCOPE_HOME (its report classifier is trained once for all tests), in ``home``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "ttpscope", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=home)


def test_investigate_prints_a_compact_summary_and_plain_progress(tmp_path):
    """stderr is a pipe here: no progress bar debris, one line per stage; the file table only with --files."""
    proc = run("investigate", str(ROOT / "examples" / "evidence"), "--rules", str(ROOT / "examples" / "rules"),
               "--out", str(tmp_path / "out"), "--no-save", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "━" not in proc.stderr and "\r" not in proc.stderr and "\x1b[" not in proc.stderr
    stages = [x for x in proc.stderr.splitlines() if x.startswith("ttpscope: ")]
    assert [x.split(":")[1].strip() for x in stages] == ["Sorting evidence", "Event logs (Sigma)",
                                                         "Reports (extraction)", "Analysing", "Writing outputs"]
    out = proc.stdout
    assert "Evidence    8 file(s) (7 event logs, 1 reports)" in out and "Top hosts" in out
    assert "dc01.jsonl" not in out  # no per-file table by default
    assert len(out.splitlines()) + len(proc.stderr.splitlines()) <= 40
    # README command 1's case is one intrusion: its judgement, and no warning anywhere
    assert "Judgement   Furthest stage reached: Impact" in out and "Attribution " in out
    assert "more than one intrusion" not in out
    assert "more than one intrusion" not in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    case = orjson.loads((tmp_path / "out" / "case.json").read_bytes())
    one = case["sections"]["intrusions"]
    assert one["status"] == "ok" and not one["data"]["separate"] and len(one["data"]["clusters"]) == 1
    listed = run("investigate", str(ROOT / "examples" / "evidence"), "--rules", str(ROOT / "examples" / "rules"),
                 "--out", str(tmp_path / "out"), "--no-save", "--files", "--min-level", "high", home=tmp_path)
    assert listed.returncode == 0 and "dc01.jsonl" in listed.stdout and "below high" in listed.stdout


def test_skipped_files_share_one_line_and_problems_group():
    problems = ["README.md: skipped: documentation, not a report (documentation file name (README))",
                "LICENSE.md: skipped: documentation, not a report (documentation file name (LICENSE))",
                "b.evtx: skipped: already in the case (same SHA-256 as a.evtx)",
                "c.evtx: 3 of 10 records rejected (record 4: bad chunk)",
                "d.evtx: 1 of 10 records rejected (record 2: bad chunk)"]
    text = render(RunSummary(detections=[], files=5, logs=3, problems=problems))
    lines = [x for x in text.splitlines() if x.strip().startswith("!")]
    assert lines[0].strip() == "! 3 files skipped: documentation, not a report (2) · already in the case (1)"
    assert "c.evtx: 3 of 10 records rejected" in lines[1] and "d.evtx: 1 of 10 records rejected" in lines[2]
    assert len(lines) == 3


@pytest.mark.slow
def test_investigate_evtx_collection_warns_of_several_intrusions(shared_data, tmp_path):
    """The EVTX sample collection (many labs, hosts and years in one folder): a summary of at most 40 lines that
    warns it is more than one intrusion, and the same note with the clusters in report.html, report.md and the
    case data."""
    out_dir = tmp_path / "out"
    proc = run("investigate", str(shared_data / "evtx"), "--rules", str(shared_data / "sigma" / "rules" / "windows"),
               "--out", str(out_dir), "--no-save", home=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert len(out.splitlines()) <= 40, out
    assert "! This looks like more than one intrusion:" in out
    listed = [x.split()[0] for x in out.splitlines() if re.match(r"\s+C\d+\s+\d{4}-\d\d-\d\d", x)]
    assert listed == ["C1", "C2", "C3"]
    case = orjson.loads((out_dir / "case.json").read_bytes())
    sec = case["sections"]["intrusions"]["data"]
    assert sec["separate"] and len(sec["clusters"]) >= 5
    years = {c["first"][:4] for c in sec["clusters"]}
    assert len(years) >= 4  # the collection spans years: clusters in several of them
    assert all(c["attribution"] for c in sec["clusters"][:3])  # the largest each have their own attribution
    assert "separate intrusions" in case["sections"]["attribution"]["data"]["caveat"]
    md = (out_dir / "report.md").read_text(encoding="utf-8")
    assert "> **This looks like more than one intrusion" in md and "| C1 |" in md
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    assert 'id="intrusions-note"' in html and "attribution of this cluster" in html.lower()


def test_detect_summary_keeps_every_detection_in_json(tmp_path):
    rules = ROOT / "examples" / "rules"
    logs = ROOT / "examples" / "evidence"
    data = orjson.loads(run("detect", str(logs), "--rules", str(rules), "--json", "--min-level", "critical",
                            home=tmp_path).stdout)
    levels = {d["level"] for d in data}
    assert len(levels) > 1  # --min-level chooses what the summary lists, never what the run keeps
    text = run("detect", str(logs), "--rules", str(rules), "--min-level", "critical", home=tmp_path)
    assert text.returncode == 0 and "Top rules" in text.stdout
    assert f"{sum(1 for d in data if d['level'] != 'critical'):,} below critical" in text.stdout


def test_min_level_refuses_an_unknown_level(tmp_path):
    proc = run("detect", str(ROOT / "examples" / "evidence"), "--min-level", "severe", home=tmp_path)
    assert proc.returncode == 2 and "'severe' is not a rule level" in proc.stderr
