"""Report → Observations end to end: library, `ttpscope extract` CLI (JSON, highlight, errors), a 20 MB
report in bounded memory with progress, `extract train --labelled`.

A small classifier (eleven technique families of the real KB, ~5 s to train) stands in for the full
default model so the suite stays fast; it is saved as this test home's model, so the CLI uses it too.
The full default model is trained once in the slow test at the end.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from ttpscope.extract import document_from_text, extract_document
from ttpscope.extract.classifier import (
    TechniqueClassifier, custom_model_path, get_classifier, kb_training_set, save_model)
from ttpscope.model import Case, Observation

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ["T1059", "T1053", "T1003", "T1105", "T1486", "T1566", "T1547", "T1070", "T1021", "T1047", "T1218"]
REPORT = """# Operation Example: a short report

APT29, also known as Cozy Bear, targeted ministries in 2024. The attackers sent spearphishing emails with a
malicious Word attachment. Once opened, a macro launched PowerShell to download a second-stage loader
from hxxp://update-check[.]com/l.bin (198.51.100[.]23).

The loader created a scheduled task named OneDriveSync to run every hour. It then dumped LSASS memory
with Mimikatz to collect credentials. The group also used technique T1086 in older campaigns.

- Lateral movement over RDP to the file server
- Files encrypted and a ransom note dropped

The attackers exploited CVE-2021-44228 on an exposed server.
The weather in the capital was mild that week.
"""


@pytest.fixture(scope="module")
def model(kb):
    m = TechniqueClassifier.train(kb, kb_training_set(kb, techniques=FAMILIES))
    save_model(m, custom_model_path(kb))  # the CLI in this test home uses it
    return m


def _cli(*args, stdin: bytes | None = None, timeout: int = 600):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "ttpscope", "extract", *args], input=stdin,
                          capture_output=True, env=env, timeout=timeout, cwd=ROOT)


def test_extract_document_claims_with_evidence(kb, model):
    doc = document_from_text(REPORT, name="op-example.md", kind="md")
    res = extract_document(doc, kb, classifier=model)
    ids = {t.id for t in res.techniques}
    assert {"T1059.001", "T1053.005", "T1003.001", "T1566.001"} <= ids
    assert "T1059.001" in ids  # also from the revoked id T1086
    t1086 = [o for o in res.observations if o.evidence.get("method") == "id"]
    assert t1086 and t1086[0].technique_id == "T1059.001" and "revoked" in t1086[0].evidence["detail"]
    weather = REPORT.index("The weather")
    assert not any(o.evidence["start"] == weather for o in res.observations)  # no claim on a plain sentence
    for o in res.observations:
        assert isinstance(o, Observation) and o.source_kind == "text" and o.document == "op-example.md"
        s, e = o.evidence["start"], o.evidence["end"]
        assert o.source_ref == f"op-example.md#{s}-{e}"
        assert REPORT[s:e] == o.evidence["sentence"]
        assert o.evidence["method"] in ("classifier", "id", "name", "classifier+name", "classifier+id")
        assert 0 < o.confidence <= 1 and o.tactic_ids
    lsass = next(t for t in res.techniques if t.id == "T1003.001")
    assert "LSASS" in lsass.evidence[0].sentence
    # observations make a Case that round-trips
    case = Case("op", res.observations)
    assert Case.from_json(case.to_json()).technique_ids() == case.technique_ids()
    # entities, IOCs and CVEs, apart from the techniques
    assert [g["id"] for g in res.groups] == ["G0016"]
    assert res.groups[0]["count"] == 2 and set(res.groups[0]["aliases_matched"]) == {"APT29", "Cozy Bear"}
    assert res.groups[0]["known_techniques"] > 10 and set(res.groups[0]["also_observed"]) <= ids
    assert "S0002" in [s["id"] for s in res.software]
    assert res.iocs["url"] == ["http://update-check.com/l.bin"] and res.iocs["ipv4"] == ["198.51.100.23"]
    assert [c["id"] for c in res.cves] == ["CVE-2021-44228"]


def test_min_confidence_and_determinism(kb, model):
    doc = document_from_text(REPORT, name="r.txt")
    a = extract_document(doc, kb, classifier=model, min_confidence=0.05)
    b = extract_document(doc, kb, classifier=model, min_confidence=0.05)
    strict = extract_document(doc, kb, classifier=model, min_confidence=0.97)
    assert [t.id for t in a.techniques] == [t.id for t in b.techniques]
    assert len(strict.observations) < len(a.observations)
    assert all(o.confidence >= 0.97 for o in strict.observations)
    scores = [t.score for t in a.techniques]  # ranked by document-level score (several sentences beat one)
    assert scores == sorted(scores, reverse=True)
    assert all(t.score >= t.confidence * 0.4 - 1e-9 for t in a.techniques)


def test_subtechnique_implies_parent(kb, model):
    cands = model.predict(["The macro launched PowerShell scripts to download the payload."])[0]
    ids = [c.technique_id for c in cands]
    assert "T1059.001" in ids and "T1059" not in ids  # the parent is implied, not claimed twice


def test_cve_links_through_ctid_mappings(kb, model, shared_data):
    from ttpscope.kb.vulns import load_mappings

    maps = load_mappings([shared_data / "ctid-attack_to_cve" / "AttackToCveMappings.csv"])
    doc = document_from_text("The actor exploited CVE-2017-0199 in Office. Then it ran PowerShell.", "c.txt")
    res = extract_document(doc, kb, classifier=model, cve_mappings=maps)
    cve = res.cves[0]
    assert cve["id"] == "CVE-2017-0199" and cve["mapped"]
    assert cve["techniques"] and all(t["mapping_type"] for t in cve["techniques"])
    # CVE-linked techniques are context: they are not turned into observations
    linked = {t["id"] for t in cve["techniques"]}
    observed = {o.technique_id for o in res.observations}
    assert all(o.evidence["method"] != "cve" for o in res.observations) and linked - observed


def test_cli_json_and_highlight(kb, model, tmp_path):
    report = tmp_path / "op.md"
    report.write_text(REPORT, encoding="utf-8")
    out = tmp_path / "op.html"
    proc = _cli(str(report), "--json", "--highlight", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr.decode()
    data = json.loads(proc.stdout)
    assert set(data) >= {"techniques", "groups", "software", "iocs", "cves"}
    tech = {t["id"]: t for t in data["techniques"]}
    assert "T1053.005" in tech
    ev = tech["T1053.005"]["evidence"][0]
    assert set(ev) >= {"sentence", "start", "end", "method"} and REPORT[ev["start"]:ev["end"]] == ev["sentence"]
    assert data["groups"][0]["id"] == "G0016" and data["kb"]["attack_version"] == "15.1"
    html = out.read_text(encoding="utf-8")
    assert "<mark" in html and "T1053.005" in html and "OneDriveSync" in html
    assert "<script" not in html.lower()


def test_cli_adds_observations_to_a_workspace_case(kb, model, tmp_path):
    from ttpscope.store.workspace import Workspace

    report = tmp_path / "op.txt"
    report.write_text(REPORT, encoding="utf-8")
    proc = _cli(str(report), "--case", "op-example-extract", "--quiet")
    assert proc.returncode == 0, proc.stderr.decode()
    case = Workspace().get_case("op-example-extract")
    assert "T1053.005" in case.technique_ids()
    assert all(o.source_kind == "text" and o.document == str(report) for o in case.observations)
    docs = Workspace().get_documents("op-example-extract")
    assert docs and docs[0].name == str(report) and docs[0].sentences > 5


def test_cli_table_and_stdin(model):
    proc = _cli("-", stdin=b"The implant uses rundll32.exe to load its DLL and creates a scheduled task.")
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert "T1218.011" in out and "<stdin>" in out


def test_cli_bad_inputs_are_one_line_errors(model, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x00\x01\x02" * 1000)
    for path, word in ((empty, "empty"), (binary, "binary"), (tmp_path / "missing.pdf", "no such file")):
        proc = _cli(str(path))
        err = proc.stderr.decode()
        assert proc.returncode == 2 and word in err and str(path) in err and "Traceback" not in err
    good = tmp_path / "good.txt"
    good.write_text("The actor used PowerShell to run commands.")
    proc = _cli(str(empty), str(good), "--json", "--quiet")  # one bad file never loses the others
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["read"] == 2 and data["accepted"] == 1 and data["rejected"] == 1
    assert "empty" in proc.stderr.decode()


@pytest.mark.slow
def test_cli_train_labelled(kb, model, tmp_path):
    labelled = tmp_path / "mine.jsonl"
    lines = [{"text": f"The zorblat implant variant {i} beacons home through the frobnicator relay.",
              "labels": ["T1090"]} for i in range(30)]
    lines += [{"text": f"Our team reviewed finding number {i} in the quarterly meeting.", "labels": []}
              for i in range(30)]
    lines.append({"text": "bad label here", "labels": ["X9999"]})
    labelled.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    env_home = os.environ["TTPSCOPE_HOME"]
    path = custom_model_path(kb)
    before = path.read_bytes()
    try:
        proc = _cli("train", "--labelled", str(labelled), "--json", "--quiet", timeout=1200)
        assert proc.returncode == 0, proc.stderr.decode()
        data = json.loads(proc.stdout)
        assert data["inputs"][0]["read"] == 62 and data["inputs"][0]["accepted"] == 60
        assert data["inputs"][0]["rejected"] == 2
        assert data["model"]["labelled_sentences"] == 60 and data["model"]["techniques"] > 600
        assert Path(env_home) in path.parents
        trained = pickle.loads(path.read_bytes())  # the user's model is now the default of this KB
        top = trained.predict(["A zorblat implant beacons home through the frobnicator relay."])[0]
        assert top and top[0].technique_id == "T1090"
    finally:
        path.write_bytes(before)  # the small model again for the other tests


# Inputs that made extraction run for minutes (issue 15 item 8), each beside a real indicator or claim
PATHOLOGICAL = {
    # a 200 KB URL-like line (ioc_finder's time grows faster than linearly with a line's length), and
    # \S*mark\S* over it was quadratic
    "url.txt": lambda: "See https://example.com/" + "/".join(f"a{i}.b" for i in range(40_000))[:200_000]
                       + "\nThe loader beaconed to hxxp://evil-update[.]net/gate.php every hour.\n",
    "brackets.txt": lambda: "[" * 200_000 + "\nThe loader beaconed to hxxp://evil-update[.]net/gate.php every hour.\n",
    # 240 KB of unclosed <title> tags: <title>(.*?)</title> from each was quadratic
    "titles.html": lambda: "<html><head>" + "<title>x" * 30_000 + "</head><body><p>The loader beaconed to "
                           "hxxp://evil-update[.]net/gate.php every hour.</p></body></html>",
    # 1.9 MB of HTML, 200,000 attributes on one tag: the parser checks each against those before it
    "attributes.html": lambda: "<html><body><div " + " ".join(f'a{i}="v"' for i in range(200_000))
                               + "><p>The loader beaconed to hxxp://evil-update[.]net/gate.php every hour.</p>"
                               "</div></body></html>",
}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_pathological_report_is_read_in_bounded_time(model, tmp_path, name):
    """Each input runs through the CLI under a hard timeout and ends: a result with the real indicator
    beside the damage, or (the unclosed titles swallow the page, as in a browser) a one-line error."""
    path = tmp_path / name
    path.write_text(PATHOLOGICAL[name](), encoding="utf-8")
    proc = _cli(str(path), "--json", "--quiet", timeout=400)  # raises TimeoutExpired on a hang
    err = proc.stderr.decode()
    if name == "titles.html" and proc.returncode != 0:  # the CLI's exit code for bad input, one error line
        errors = [ln for ln in err.splitlines() if ln.startswith("ttpscope: error:")]
        assert proc.returncode == 2 and "Traceback" not in err, err[-2000:]
        assert errors == [f"ttpscope: error: {path}: the HTML page has no visible text"], err
        return
    assert proc.returncode == 0, err[-2000:]
    data = json.loads(proc.stdout)
    assert "evil-update.net" in (data["iocs"].get("domain", []) + [u.split("/")[2] for u in data["iocs"].get("url", [])])


@pytest.mark.timeout(900)
def test_extraction_time_budget_keeps_what_was_read(model, tmp_path):
    """A 15 MB plain report with a 10 s budget per stage: the run ends with one warning line per stage hit,
    naming the file, and keeps the claims and indicators read before the budget ran out."""
    big = tmp_path / "big15.txt"
    with open(big, "w", encoding="utf-8") as fh:
        written = 0
        while written < 15 * 1024 * 1024:
            fh.write(REPORT)
            written += len(REPORT)
    proc = _cli(str(big), "--json", "--quiet", "--time-budget", "10", timeout=800)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err[-2000:]
    data = json.loads(proc.stdout)
    warned = [ln for ln in err.splitlines() if ln.startswith("ttpscope: warning:")]
    assert warned and all(str(big) in ln and "time budget of 10 s ran out" in ln for ln in warned), err[-2000:]
    assert data["warnings"] and len(data["warnings"]) == len(warned)
    assert data["document"]["sentences"] > 0 and "T1053.005" in {t["id"] for t in data["techniques"]}


def test_document_size_budget(kb, model, monkeypatch):
    """Text beyond the size budget is not read; the warning names the document."""
    from ttpscope.extract import pipeline

    monkeypatch.setattr(pipeline, "MAX_TEXT_CHARS", len(REPORT))
    ex = extract_document(document_from_text(REPORT * 3, name="three.txt"), kb, classifier=model)
    assert ex.warnings == [f"three.txt: {3 * len(REPORT):,} characters; only the first {len(REPORT):,} were read "
                           "(the size budget of one document)"]
    assert ex.observations  # the claims of the part read
    assert all(int(o.source_ref.rsplit("#", 1)[1].split("-")[1]) <= len(REPORT) for o in ex.observations)


@pytest.mark.slow
def test_twenty_megabyte_report_bounded_memory_with_progress(kb, model, tmp_path):
    """20 MB of report text through the CLI: progress lines on stderr, peak memory bounded (under 1.5 GB: the
    structure-aware reader keeps typed blocks). The peak is the child's own VmHWM: its ru_maxrss carries the
    peak of the process it was forked from across exec, which is why inside the full suite (pytest itself
    at 1.3-1.6 GB) it read 1.31-1.36 GB and then failed, while alone the run peaks under 1 GB."""
    paragraph = REPORT.replace("# Operation", "Operation")
    big = tmp_path / "big.txt"
    with open(big, "w", encoding="utf-8") as fh:
        written, i = 0, 0
        while written < 20 * 1024 * 1024:
            chunk = paragraph.replace("2024", str(1990 + i % 35)).replace("23)", f"{i % 250})")
            fh.write(chunk)
            written += len(chunk)
            i += 1
    code = ("import resource, runpy, sys; sys.argv = ['ttpscope', 'extract', sys.argv[1], '--json'];\n"
            "from ttpscope.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "import re\nhwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "print('MAXRSS', hwm, file=sys.stderr)\n")
    # a home of its own holding only the small model: what earlier tests left in the session's home (caches,
    # other models) is not this measurement's business
    home = tmp_path / "home"
    own_model = home / custom_model_path(kb).relative_to(os.environ["TTPSCOPE_HOME"])
    own_model.parent.mkdir(parents=True)
    save_model(model, own_model)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), TTPSCOPE_HOME=str(home))
    proc = subprocess.run([sys.executable, "-c", code, str(big)], capture_output=True, env=env, timeout=1800)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err[-2000:]
    assert "reading: 50%" in err and "reading: 100%" in err and "indicators: 100%" in err, err[-3000:]
    maxrss_mb = int(err.split("MAXRSS")[1].split()[0]) / 1024
    assert maxrss_mb < 1536, f"peak memory {maxrss_mb:.0f} MB"
    data = json.loads(proc.stdout)
    assert data["document"]["characters"] >= 20 * 1024 * 1024
    assert data["document"]["sentences"] > 100_000
    assert "T1053.005" in {t["id"] for t in data["techniques"]}


@pytest.mark.slow
def test_default_model_on_a_tram_test_report(kb, shared_data):
    """The real default model (ATT&CK text only, trained here on first use) on a TRAM test-split report."""
    model = get_classifier(kb, use_custom=False)
    assert len(model.labels) > 600 and model.info["report_sentences"] == 0
    mjson = next((shared_data / "tram" / "mjson_files").glob("NotPetya*.mjson"))
    text = json.loads(mjson.read_bytes())["signal"]
    res = extract_document(document_from_text(text, mjson.name), kb, classifier=model)
    ids = {t.id for t in res.techniques}
    # techniques the annotators marked in this report, each supported by a sentence that says so
    assert {"T1070.001", "T1053.005", "T1218.011", "T1047"} <= ids
    evidence = {t.id: t.evidence[0].sentence.lower() for t in res.techniques}
    assert "wevtutil" in evidence["T1070.001"]
    assert "schtasks" in evidence["T1053.005"] or "scheduled task" in evidence["T1053.005"]
    assert "rundll32" in evidence["T1218.011"]


def test_calibration_on_held_out_labelled_reports(kb):
    """With labelled reports, a fifth of them (whole documents) is held out to fit the score→probability
    curve and the threshold; the result says so."""
    from ttpscope.extract.classifier import add_labelled
    from ttpscope.extract.labelled import LabelledSentence

    ts = kb_training_set(kb, techniques=["T1053", "T1059"])
    sents = []
    for d in range(12):
        sents += [LabelledSentence(f"Report {d}: the implant registers a scheduled task via schtasks.", ["T1053.005"], f"r{d}"),
                  LabelledSentence(f"Report {d}: a PowerShell one-liner fetched the loader.", ["T1059.001"], f"r{d}"),
                  LabelledSentence(f"Report {d}: the vendor published this analysis on a Tuesday.", [], f"r{d}"),
                  LabelledSentence(f"Report {d}: thanks to our partners for their help.", [], f"r{d}")]
    add_labelled(ts, sents, kb)
    m = TechniqueClassifier.train(kb, ts)
    cal = m.info["calibration"]
    assert "held out" in cal["on"] and cal["held_out_sentences"] > 0
    assert 0 < m.threshold < 1 and cal["platt"][0] > 0 and 0 < cal["held_out_f1"] <= 1
    out = m.predict(["The vendor published this analysis on a Tuesday.",
                     "The implant registers a scheduled task via schtasks."])
    assert out[0] == [] and out[1][0].technique_id == "T1053.005"


def test_document_step_adds_up_several_weak_sentences(kb):
    """The document step: sentences at or above the floor add up (noisy-or) to the document threshold; a
    single weak one does not; without a fitted step a document states what one sentence passes."""
    from ttpscope.extract.classifier import Candidate, add_labelled
    from ttpscope.extract.labelled import LabelledSentence

    ts = kb_training_set(kb, techniques=["T1053", "T1059"])
    sents = []
    for d in range(12):
        sents += [LabelledSentence(f"Report {d}: the implant registers a scheduled task via schtasks.", ["T1053.005"], f"r{d}"),
                  LabelledSentence(f"Report {d}: a PowerShell one-liner fetched the loader.", ["T1059.001"], f"r{d}"),
                  LabelledSentence(f"Report {d}: the vendor published this analysis on a Tuesday.", [], f"r{d}")]
    add_labelled(ts, sents, kb)
    m = TechniqueClassifier.train(kb, ts)
    step = m.info["calibration"]["document_step"]  # fitted on the held-out reports, and said so
    assert step["held_out_documents"] > 0 and 0 <= step["union_mean_f1"] <= 1
    assert (m.document is None) == (step["mean_f1"] <= step["union_mean_f1"])

    def c(t, p):
        return {t: Candidate(t, p, "classifier")}

    m.document = {"floor": 0.2, "threshold": 0.45}
    twice = m.document_techniques([c("T1021.001", 0.3), c("T1021.001", 0.3), c("T1105", 0.3), c("T1105", 0.1)])
    assert set(twice) == {"T1021.001"} and abs(twice["T1021.001"] - 0.51) < 1e-9
    m.document, m.threshold = None, 0.25
    assert set(m.document_techniques([c("T1021.001", 0.3), c("T1105", 0.2), c("T1105", 0.2)])) == {"T1021.001"}
