"""The main job end to end on real components: the bundled Ashen Lantern evidence and rules (README command 1),
mixed good and bad evidence, logs without rules, re-runs, and real EVTX with the SigmaHQ rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import stix2
from lxml import html as lxml_html

from browser import SHOTS, chromium
from helpers_investigate import check_report, colours

from ttpscope.export.layers import validate_layer
from ttpscope.investigate import investigate
from ttpscope.store import Workspace

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
# what the bundled intrusion does, step by step (examples/evidence/report-ashen-lantern.md)
STORY = {"T1566.001", "T1204.002", "T1059.001", "T1027", "T1105", "T1071.001", "T1053.005", "T1547.001",
         "T1033", "T1087.002", "T1482", "T1018", "T1003.001", "T1021.002", "T1569.002", "T1047", "T1003.003",
         "T1560.001", "T1567.002", "T1562.001", "T1070.001", "T1490"}
CASE = "ashen-lantern-readme"
OUTPUTS = {"report.html", "layer.json", "bundle.json", "case.json", "observations.csv", "report.md"}


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """README command 1, as the installed command runs it (a subprocess). It shares the test session's
    TTPSCOPE_HOME so that the report model trained on first use is trained once per run of the suite; the
    case gets a name of its own."""
    home = Path(os.environ["TTPSCOPE_HOME"])
    out = tmp_path_factory.mktemp("example-out")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), COLUMNS="200")
    res = subprocess.run([sys.executable, "-m", "ttpscope", "investigate", str(EXAMPLES / "evidence"), "--rules",
                          str(EXAMPLES / "rules"), "--name", CASE, "--out", str(out), "--json"],
                         capture_output=True, text=True, env=env, cwd=out, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    return home, out, json.loads(res.stdout)


def test_examples_produce_every_output(example_run, kb):
    home, out, result = example_run
    assert {p.name for p in out.iterdir()} == OUTPUTS
    assert validate_layer(json.loads((out / "layer.json").read_text()), kb) == []
    assert stix2.parse((out / "bundle.json").read_text(), allow_custom=False).type == "bundle"
    doc = lxml_html.fromstring((out / "report.html").read_text(encoding="utf-8"))
    figures = json.loads(doc.get_element_by_id("figures-data").text)
    assert {"matrix", "timeline"} <= set(figures)
    case = orjson.loads((out / "case.json").read_bytes())
    assert case["case"]["name"] == CASE
    assert {s["path"].rsplit("/", 1)[-1]: s["used"] for s in case["sources"]} == {
        "dc01.jsonl": True, "fs01.jsonl": True, "report-ashen-lantern.md": True, "ws-fin-07.jsonl": True,
        "ws-hr-03.jsonl": True, "bkp01-audit.log": True, "cloudtrail-111122223333.json": True,
        "zeek-sensor.jsonl": True}


def test_examples_case_crosses_environments(example_run):
    """One case over Windows hosts, a Linux server, an AWS account and a Zeek sensor, linked by the entities
    they share; every raw hit is in the detection timeline, the observations aggregate them."""
    from ttpscope.store.hits import hits_table

    home, out, result = example_run
    case = orjson.loads((out / "case.json").read_bytes())
    sec = case["sections"]["entities"]
    assert sec["status"] == "ok", sec["message"]
    data = sec["data"]
    assert set(data["products"]) == {"aws", "linux", "windows", "zeek"}
    assert data["components"][0]["products"] == ["aws", "linux", "windows", "zeek"]
    linked = set(data["components"][0]["entities"])
    assert {"ip:198.51.100.23", "host:ws-fin-07", "host:fs01", "host:bkp01", "user:svc_backup",
            "account:111122223333"} <= linked
    c2 = next(n for n in data["nodes"] if n["id"] == "ip:198.51.100.23")
    assert c2["products"] == ["aws", "windows", "zeek"]
    assert {r["product"] for r in data["timeline"]} == {"aws", "linux", "windows", "zeek"}
    doc = lxml_html.fromstring((out / "report.html").read_text(encoding="utf-8"))
    section = doc.get_element_by_id("entities")
    envs = [td.text_content() for td in section.xpath('.//table[@class="environments"]//td[@class="mono"]')]
    assert {"aws/cloudtrail", "zeek/http", "linux/auditd/process_creation"} <= set(envs)
    links = section.xpath('.//table[@class="cross-links"]//td')
    assert links and "aws + linux + windows + zeek" in links[0].text_content()
    assert "ip:198.51.100.23" in section.xpath('.//table[@class="entity-links"]')[0].text_content()
    assert "## Entities across environments" in (out / "report.md").read_text(encoding="utf-8")
    ws = Workspace(home / "workspace.duckdb")
    hits = hits_table(ws, CASE)
    assert hits.num_rows == case["summary"]["detections"] == case["detections_total"]
    sigma = [o for o in case["observations"] if o["source_kind"] == "sigma"]
    assert len(sigma) < hits.num_rows and sum(o["count"] for o in sigma) >= hits.num_rows


@pytest.mark.slow
def test_example_report_renders_in_chromium(example_run):
    """The report of README command 1, opened offline in headless Chromium: heatmap, timeline, attribution
    and overlap charts drawn (screenshots in ci-artifacts/screenshots/report-examples*.png)."""
    home, out, result = example_run
    with chromium() as browser:
        drawn = check_report(browser, out / "report.html", "report-examples")
    assert {"matrix", "timeline", "attribution", "overlap"} <= set(drawn)
    # one point per aggregated observation (a rule's hits on a host within an hour), no longer per raw hit, and
    # (issue 16) the beacon's repeated observations on WS-FIN-07 one span with a count, not a lane of dots
    assert drawn["timeline"]["points"] > 30 and drawn["attribution"]["bars"] >= 3
    page = (out / "report.html").read_text(encoding="utf-8")
    figures = json.loads(page.split('<script id="figures-data" type="application/json">')[1].split("</script>")[0])
    spans = [t for t in figures["timeline"]["data"] if t.get("meta") == "span"]
    counts = [int(x[1:]) for t in spans for x in t["text"] if x]
    assert spans and max(counts) >= 10 and "WS-FIN-07.nwl.local" in spans[0]["y"]
    assert colours(SHOTS / "report-examples-matrix.png") > 20


def test_examples_case_holds_logs_and_report_together(example_run):
    home, out, result = example_run
    ws = Workspace(home / "workspace.duckdb")
    case = ws.get_case(CASE)
    kinds = {o.source_kind for o in case.observations}
    assert kinds == {"sigma", "text"}
    sigma_techniques = {o.technique_id for o in case.observations if o.source_kind == "sigma"}
    assert STORY <= sigma_techniques, STORY - sigma_techniques  # every step of the story was detected
    rules = {d.rule_id for d in ws.get_detections(CASE)}
    assert len(rules) == len(list((EXAMPLES / "rules").glob("*.yml")))  # every example rule fired
    hosts = {o.host.split(".")[0] for o in case.observations if o.host}
    assert hosts == {"WS-FIN-07", "FS01", "DC01", "bkp01"}  # WS-HR-03 only has benign activity
    text_techniques = {o.technique_id for o in case.observations if o.source_kind == "text"}
    assert len(text_techniques & STORY) >= 5  # the report tells the same story
    docs = ws.get_documents(CASE)
    assert [Path(d.name).name for d in docs] == ["report-ashen-lantern.md"]
    iocs = {(i["type"], i["value"]) for i in docs[0].iocs}
    assert ("ipv4", "198.51.100.23") in iocs and [c["id"] for c in docs[0].cves] == ["CVE-2017-11882"]
    sources = {Path(s["path"]).name: s for s in result["sources"]}
    assert sources["ws-fin-07.jsonl"]["read"] == sources["ws-fin-07.jsonl"]["accepted"] > 500


def test_mixed_good_and_bad_evidence(tmp_path, kb):
    ev = tmp_path / "evidence"
    ev.mkdir()
    shutil.copy(EXAMPLES / "evidence" / "fs01.jsonl", ev / "fs01.jsonl")
    lines = (EXAMPLES / "evidence" / "dc01.jsonl").read_text().splitlines()
    lines[5] = '{"EventID": 1, "Image": "broken'  # a cut line
    lines[9] = "not json at all"
    (ev / "dc01-damaged.jsonl").write_text("\n".join(lines) + "\n")
    (ev / "garbage.bin").write_bytes(bytes(range(256)) * 20)
    (ev / "empty.txt").write_text("")
    shutil.copy(EXAMPLES / "evidence" / "report-ashen-lantern.md", ev / "report.md")
    ws = Workspace(tmp_path / "ws.duckdb")
    result = investigate([ev], rules=EXAMPLES / "rules", name="mixed", out=tmp_path / "out", workspace=ws)
    src = {Path(s.path).name: s for s in result.sources}
    assert src["dc01-damaged.jsonl"].rejected == 2 and src["dc01-damaged.jsonl"].accepted == len(lines) - 2
    assert src["dc01-damaged.jsonl"].reasons and src["dc01-damaged.jsonl"].used
    assert src["garbage.bin"].kind == "unknown" and "binary" in src["garbage.bin"].note
    assert src["empty.txt"].kind == "unknown" and "empty" in src["empty.txt"].note
    assert src["fs01.jsonl"].used and src["report.md"].used
    case = ws.get_case("mixed")
    assert {"T1003.003", "T1490"} <= set(case.technique_ids())  # DC01's and FS01's good events still count
    assert {p.name for p in (tmp_path / "out").iterdir()} == OUTPUTS


def test_logs_are_read_by_content_whatever_their_names(tmp_path):
    """A Sysmon JSON export saved as .log and a Parquet file saved as .bin are still read as what they are."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ev = tmp_path / "evidence"
    ev.mkdir()
    shutil.copy(EXAMPLES / "evidence" / "fs01.jsonl", ev / "fs01-export.log")
    records = [json.loads(line) for line in (EXAMPLES / "evidence" / "dc01.jsonl").read_text().splitlines()]
    keys = sorted({k for r in records for k in r})  # from_pylist would take the first record's keys only
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in records]), ev / "dc01.bin")
    ws = Workspace(tmp_path / "ws.duckdb")
    result = investigate([ev], rules=EXAMPLES / "rules", name="renamed", workspace=ws, formats=[])
    src = {Path(s.path).name: s for s in result.sources}
    assert (src["fs01-export.log"].format, src["dc01.bin"].format) == ("jsonl", "parquet")
    assert src["fs01-export.log"].accepted == 257 and src["dc01.bin"].accepted == len(records)
    assert {"T1490", "T1003.003"} <= set(ws.get_case("renamed").technique_ids())
    sources = {Path(d.source).name for d in ws.get_detections("renamed")}
    assert sources == {"fs01-export.log", "dc01.bin"}  # the evidence's own names, not the links read


def test_logs_without_rules_continue_with_the_report(tmp_path, monkeypatch):
    # a home where no SigmaHQ release was ever fetched, sharing the session's trained models and KB cache
    session = Path(os.environ["TTPSCOPE_HOME"])
    home = tmp_path / "home"
    (home / "cache").mkdir(parents=True)
    for kind in ("models", "kb"):
        (session / "cache" / kind).mkdir(parents=True, exist_ok=True)
        (home / "cache" / kind).symlink_to(session / "cache" / kind, target_is_directory=True)
    monkeypatch.setenv("TTPSCOPE_HOME", str(home))
    ev = tmp_path / "evidence"
    ev.mkdir()
    shutil.copy(EXAMPLES / "evidence" / "fs01.jsonl", ev / "fs01.jsonl")
    shutil.copy(EXAMPLES / "evidence" / "report-ashen-lantern.md", ev / "report.md")
    ws = Workspace(tmp_path / "ws.duckdb")
    result = investigate([ev], name="no-rules", out=tmp_path / "out", workspace=ws, formats=["json"])
    assert any("not analysed" in w and "--rules" in w and "Continuing with the reports" in w
               for w in result.warnings)
    src = {Path(s.path).name: s for s in result.sources}
    assert not src["fs01.jsonl"].used and "no Sigma rules" in src["fs01.jsonl"].note
    assert {o.source_kind for o in ws.get_case("no-rules").observations} == {"text"}


def test_rerun_replaces_the_case_and_keeps_its_id(tmp_path):
    ws = Workspace(tmp_path / "ws.duckdb")
    evidence = [EXAMPLES / "evidence" / "fs01.jsonl"]
    first = investigate(evidence, rules=EXAMPLES / "rules", name="again", workspace=ws, formats=[])
    detections = len(ws.get_detections("again"))
    assert detections > 0 and first.analysis is None  # no output asked: no analysis run
    # issue 16: replacing needs mode="replace" (--replace); without it the name is refused
    second = investigate(evidence, rules=EXAMPLES / "rules", name="again", workspace=ws, formats=[], mode="replace")
    assert first.case.id == second.case.id
    assert len(ws.get_case("again").observations) == len(first.case.observations)  # replaced, not doubled
    assert len(ws.get_detections("again")) == detections
    assert [c["name"] for c in ws.list_cases()] == ["again"]


def test_identical_files_of_one_run_are_read_once_and_said_so(tmp_path):
    """Two copies of one log in a fresh case: the second is skipped as a duplicate of the first, not as
    'already in the case' (the case has nothing yet)."""
    ev = tmp_path / "evidence"
    ev.mkdir()
    shutil.copy(EXAMPLES / "evidence" / "fs01.jsonl", ev / "a.jsonl")
    shutil.copy(EXAMPLES / "evidence" / "fs01.jsonl", ev / "b.jsonl")
    ws = Workspace(tmp_path / "ws.duckdb")
    result = investigate([ev], rules=EXAMPLES / "rules", name="twice", workspace=ws, formats=[])
    src = {Path(s.path).name: s for s in result.sources}
    assert src["a.jsonl"].used and src["a.jsonl"].accepted == 257
    assert src["b.jsonl"].note == "skipped: same content as another file of this run (same SHA-256 as a.jsonl)"
    assert not any("already in case" in w for w in result.warnings)
    assert any(w.startswith("1 file(s) skipped: same content as another file of this run") for w in result.warnings)
    assert {Path(d.source).name for d in ws.get_detections("twice")} == {"a.jsonl"}


@pytest.mark.slow
def test_real_evtx_with_sigmahq_rules(shared_data, tmp_path, kb):
    """A whole intrusion recorded as real EVTX, with the SigmaHQ Windows rules."""
    apt = shared_data / "evtx" / "evtx-to-mitre-attack" / "EVTX_full_APT_attack_steps"
    files = sorted(apt.rglob("*.evtx"))
    assert files, f"no EVTX under {apt}"
    ws = Workspace(tmp_path / "ws.duckdb")
    result = investigate(files, rules=shared_data / "sigma" / "rules" / "windows", name="apt-evtx",
                         out=tmp_path / "out", workspace=ws)
    assert all(s.used for s in result.sources if s.format == "evtx")
    assert len(ws.get_detections("apt-evtx")) > 0
    techniques = set(ws.get_case("apt-evtx").technique_ids())
    # these recordings hold Mimikatz, PsExec-style service execution and SMB admin-share movement
    assert {"T1003.001", "T1569.002", "T1021.002"} <= techniques
    lc = result.analysis.sections["lifecycle"]
    reached = {st["name"] for st in lc.data.stages if st["reached"]}
    assert lc.ok and {"Execution", "Credential Access", "Lateral Movement"} <= reached
    assert validate_layer(json.loads((tmp_path / "out" / "layer.json").read_text()), kb) == []
