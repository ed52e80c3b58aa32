"""Review before sharing and growing cases through the command line (issue 16): `ttpscope case review`,
`--reviewed-only` exports, the STIX bundle's review marks, `investigate --case/--replace`, on the example
evidence investigated into a real DuckDB workspace."""

from __future__ import annotations

import copy
import csv
import io
import json
import sys
from pathlib import Path

import pytest
from stix2validator import ValidationOptions, validate_instance

from ttpscope.investigate import investigate
from ttpscope.model import Observation, Review
from ttpscope.store import Workspace

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CASE = "review-case"


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def run(monkeypatch, capfd):
    """`ttpscope ARGS` through ttpscope.cli.main.main() with TTPSCOPE_HOME=home."""
    from ttpscope.cli.main import main

    def _run(home: Path, *args: str) -> Result:
        monkeypatch.setenv("TTPSCOPE_HOME", str(home))
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.chdir(home)
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
    """A home whose workspace holds the example evidence (logs and the report) as one case."""
    home = tmp_path_factory.mktemp("review-home")
    investigate([EXAMPLES / "evidence"], rules=EXAMPLES / "rules", name=CASE,
                workspace=Workspace(home / "workspace.duckdb"), formats=[])
    return home


def valid(bundle: dict) -> None:
    res = validate_instance(copy.deepcopy(bundle), ValidationOptions(version="2.1"))
    assert res.is_valid, [str(e) for e in res.errors]


def technique_of(bundle: dict) -> dict[str, dict]:
    """attack-pattern external id -> the campaign's `uses` relationship to it."""
    ids = {o["id"]: r["external_id"] for o in bundle["objects"] if o["type"] == "attack-pattern"
           for r in o["external_references"] if r["source_name"] == "mitre-attack"}
    return {ids[o["target_ref"]]: o for o in bundle["objects"]
            if o["type"] == "relationship" and o["relationship_type"] == "uses" and o["target_ref"] in ids
            and o["source_ref"].startswith("campaign--")}


def indicators(bundle: dict) -> dict[str, dict]:
    return {o["name"]: o for o in bundle["objects"] if o["type"] == "indicator"}


def test_review_record_round_trips_and_validates():
    obs = Observation("T1003.001", "sigma", "rule-1", host="WS01",
                      review=Review("x", "confirmed", by="alice", note="seen in EDR", confidence=80))
    again = Observation.from_dict(json.loads(json.dumps(obs.to_dict())))
    assert again.review == obs.review and again.fingerprint() == obs.fingerprint()
    old = {k: v for k, v in obs.to_dict().items() if k != "review"}  # JSON from before reviews existed
    assert Observation.from_dict(old).review is None
    for bad in ({"state": "maybe", "by": "a"}, {"state": "rejected"}, {"state": "confirmed", "by": "a",
                                                                        "confidence": 101}):
        with pytest.raises(ValueError):
            Review("x", **bad)


def test_review_a_case_end_to_end(home, run, tmp_path):
    listed = run(home, "case", "review", "list", CASE, "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    techniques = {t["technique_id"] for t in found["techniques"]}
    assert {"T1490", "T1003.001", "T1071.001"} <= techniques
    assert all(o["state"] == "unreviewed" for o in found["observations"])
    domains = [i for i in found["iocs"] if i["type"] == "domain"]
    assert len(domains) >= 2
    bad_ioc, good_ioc = domains[0]["value"], domains[1]["value"]
    plain = run(home, "case", "review", CASE)  # no sub-command: the listing
    assert plain.returncode == 0 and "T1490" in plain.stdout and "unreviewed" in plain.stdout

    # one observation of T1071.001 confirmed by id prefix: the rest of that technique stays unreviewed
    one = next(o for o in found["observations"] if o["technique_id"] == "T1071.001")
    steps = [("reject", "--ioc", bad_ioc, "--by", "alice", "--note", "CDN of the victim"),
             ("reject", "--technique", "T1490", "--by", "alice", "--note", "the nightly backup job"),
             ("confirm", "T1003.001", "--by", "bob", "--confidence", "90", "--note", "LSASS dump confirmed"),
             ("confirm", one["target"][:10], "--by", "bob"),
             ("confirm", f"ioc:domain:{good_ioc}", "--by", "bob")]
    for step in steps:
        done = run(home, "case", "review", step[0], CASE, *step[1:])
        assert done.returncode == 0, (step, done.stderr)
    added = run(home, "case", "review", "add", CASE, "--technique", "T1021.001", "--evidence",
                "RDP session from WS-FIN-07 seen in the firewall log", "--host", "DC01", "--by", "carol", "--json")
    assert added.returncode == 0, added.stderr
    manual = json.loads(added.stdout)["observation"]
    assert manual["source_kind"] == "manual" and manual["confidence"] == 1.0

    after = json.loads(run(home, "case", "review", "list", CASE, "--json").stdout)
    by_tid = {t["technique_id"]: t for t in after["techniques"]}
    assert by_tid["T1490"]["state"] == "rejected" and by_tid["T1490"]["review"]["by"] == "alice"
    assert by_tid["T1490"]["states"]["rejected"] == by_tid["T1490"]["observations"]
    assert by_tid["T1003.001"]["state"] == "confirmed"
    assert by_tid["T1071.001"]["states"]["confirmed"] == 1 and by_tid["T1071.001"]["states"]["unreviewed"] >= 1
    assert by_tid["T1021.001"]["states"] == {"confirmed": 1, "rejected": 0, "unreviewed": 0}
    iocs = {i["value"]: i["state"] for i in after["iocs"]}
    assert iocs[bad_ioc] == "rejected" and iocs[good_ioc] == "confirmed"

    # everything but the rejected: the unreviewed content is labelled, with the machine's confidence
    full = run(home, "export", CASE, "--format", "stix", "--out", "-")
    assert full.returncode == 0, full.stderr
    bundle = json.loads(full.stdout)
    valid(bundle)
    uses = technique_of(bundle)
    assert "T1490" not in uses and {"T1003.001", "T1071.001", "T1021.001", "T1059.001"} <= set(uses)
    assert uses["T1003.001"]["labels"] == ["ttpscope-review:confirmed"] and uses["T1003.001"]["confidence"] == 90
    assert uses["T1021.001"]["confidence"] == 100
    assert uses["T1059.001"]["labels"] == ["ttpscope-review:unreviewed"]
    ind = indicators(bundle)
    assert bad_ioc not in ind and ind[good_ioc]["labels"] == ["ttpscope-review:confirmed"]
    assert ind[good_ioc]["confidence"] == 100
    unreviewed = [i for i in ind.values() if i["name"] != good_ioc]
    assert unreviewed and all(i["labels"] == ["ttpscope-review:unreviewed"] and i["confidence"] == 50
                              for i in unreviewed)
    assert f"[domain-name:value = '{bad_ioc}']" not in {i["pattern"] for i in ind.values()}

    # confirmed only
    only = run(home, "export", CASE, "--format", "stix", "--out", "-", "--reviewed-only")
    assert only.returncode == 0, only.stderr
    confirmed = json.loads(only.stdout)
    valid(confirmed)
    assert set(technique_of(confirmed)) == {"T1003.001", "T1071.001", "T1021.001"}
    assert all(r["labels"] == ["ttpscope-review:confirmed"] for r in technique_of(confirmed).values())
    assert set(indicators(confirmed)) == {good_ioc}
    out = tmp_path / "confirmed"
    wrote = run(home, "case", "export", CASE, "--reviewed-only", "--format", "json", "--format", "csv",
                "--out", str(out))
    assert wrote.returncode == 0, wrote.stderr
    data = json.loads((out / "case.json").read_text())
    assert {o["technique_id"] for o in data["observations"]} == {"T1003.001", "T1071.001", "T1021.001"}
    assert all(o["review"]["state"] == "confirmed" for o in data["observations"])
    rows = list(csv.DictReader(io.StringIO((out / "observations.csv").read_text())))
    assert rows and {r["technique_id"] for r in rows} <= {"T1003.001", "T1071.001", "T1021.001"}

    # a bad id is one line, exit 2, and nothing is written
    bad = run(home, "case", "review", "reject", CASE, "T1490", "nosuchobservation", "--by", "x")
    assert bad.returncode == 2 and "nosuchobservation" in bad.stderr and "Traceback" not in bad.stderr
    assert len([ln for ln in bad.stderr.splitlines() if ln.strip()]) == 1

    # re-investigating (new observation ids) keeps every decision and the analyst's own observation
    ws = Workspace(home / "workspace.duckdb")
    investigate([EXAMPLES / "evidence"], rules=EXAMPLES / "rules", name=CASE, workspace=ws, formats=[],
                mode="replace")
    again = json.loads(run(home, "case", "review", "list", CASE, "--json").stdout)
    assert one["target"] not in {o["target"] for o in again["observations"]}  # new ids ...
    by_tid = {t["technique_id"]: t for t in again["techniques"]}
    assert by_tid["T1071.001"]["states"]["confirmed"] == 1  # ... the same decision, found by content
    assert by_tid["T1490"]["state"] == "rejected" and by_tid["T1003.001"]["state"] == "confirmed"
    assert by_tid["T1021.001"]["states"]["confirmed"] == 1
    assert {i["value"]: i["state"] for i in again["iocs"]}[bad_ioc] == "rejected"
    history = [h["action"] for h in ws.get_case(CASE).meta["history"]]
    assert history == ["created", "replaced"]


def test_cases_grow_with_new_files_only(tmp_path, run):
    home = tmp_path
    rules = str(EXAMPLES / "rules")
    dc01, fs01 = str(EXAMPLES / "evidence" / "dc01.jsonl"), str(EXAMPLES / "evidence" / "fs01.jsonl")
    first = run(home, "investigate", dc01, "--rules", rules, "--name", "grow", "--out", str(tmp_path / "o"))
    assert first.returncode == 0, first.stderr
    refused = run(home, "investigate", dc01, "--rules", rules, "--name", "grow", "--out", str(tmp_path / "o"))
    errors = [ln for ln in refused.stderr.splitlines() if ln.startswith("ttpscope: error:")]
    assert refused.returncode == 2 and len(errors) == 1
    assert "--case" in errors[0] and "--replace" in errors[0]
    ws = Workspace(home / "workspace.duckdb")
    before = ws.get_case("grow")
    grown = run(home, "investigate", dc01, fs01, "--rules", rules, "--case", "grow", "--out", str(tmp_path / "o"))
    assert grown.returncode == 0, grown.stderr
    assert "skipped" in grown.stderr + grown.stdout and "dc01.jsonl" in grown.stderr + grown.stdout
    after = ws.get_case("grow")
    assert after.id == before.id and len(after.observations) > len(before.observations)
    assert {o.id for o in before.observations} <= {o.id for o in after.observations}  # added, not replaced
    assert [Path(s["path"]).name for s in after.meta["sources"]] == ["dc01.jsonl", "fs01.jsonl"]
    history = after.meta["history"]
    assert [h["action"] for h in history] == ["created", "added"]
    assert [Path(f["path"]).name for f in history[1]["files"]] == ["fs01.jsonl"]
    assert [Path(x["path"]).name for x in history[1]["skipped"]] == ["dc01.jsonl"]
    assert history[1]["skipped"][0]["sha256"] == history[0]["files"][0]["sha256"]
    nothing = run(home, "investigate", fs01, "--rules", rules, "--case", "grow", "--out", str(tmp_path / "o"))
    assert nothing.returncode == 2 and "nothing new" in nothing.stderr
    shown = run(home, "case", "show", "grow")
    assert shown.returncode == 0 and "History" in shown.stdout and "added" in shown.stdout
    replaced = run(home, "investigate", fs01, "--rules", rules, "--name", "grow", "--replace",
                   "--out", str(tmp_path / "o"))
    assert replaced.returncode == 0, replaced.stderr
    final = ws.get_case("grow")
    assert final.id == before.id and [Path(s["path"]).name for s in final.meta["sources"]] == ["fs01.jsonl"]
    assert [h["action"] for h in final.meta["history"]] == ["created", "added", "replaced"]
    both = run(home, "investigate", fs01, "--rules", rules, "--case", "grow", "--replace")
    assert both.returncode == 2 and "one of them" in both.stderr
