"""``investigate(workers=N)``: the Sigma detection of several event log files shared between worker
processes gives the same case (observations, detections, per-file counts) as one process, on real EVTX
files with a damaged one among them and a report beside them."""

from __future__ import annotations

import shutil

from ttpscope.detect import runner
from ttpscope.investigate import investigate


def _case_key(result):
    obs = sorted((o.fingerprint(), o.technique_id, o.source_ref, o.host, o.user, str(o.time), o.count,
                  str(o.first_seen), str(o.last_seen), repr(sorted(o.evidence.items())))
                 for o in result.case.observations)
    sources = [(s.path, s.kind, s.format, s.read, s.accepted, s.rejected, s.observations, s.reasons, s.used)
               for s in result.sources]
    return obs, sources


def test_two_workers_give_the_same_case_as_one(shared_data, kb, tmp_path, monkeypatch):
    src = shared_data / "evtx" / "evtx-to-mitre-attack"
    files = sorted(src.rglob("*.evtx"))[:24]
    logs = tmp_path / "evidence"
    logs.mkdir()
    for i, f in enumerate(files):
        shutil.copy(f, logs / f"{i:02d}-{f.name}")
    (logs / "99-broken.evtx").write_bytes(files[0].read_bytes()[:5000] + b"\x00garbage" * 200)
    (logs / "note.md").write_text("The intruder used PowerShell to download a payload and dumped LSASS memory "
                                  "with procdump before moving laterally over SMB.\n", encoding="utf-8")
    rules = shared_data / "sigma" / "rules" / "windows" / "process_creation"
    monkeypatch.setattr(runner, "PARALLEL_MIN_BYTES", 0)  # these few MiB would otherwise run in one process

    one = investigate([logs], rules=rules, name="one", save=False, formats=(), workers=1, out=tmp_path / "o1")
    two = investigate([logs], rules=rules, name="two", save=False, formats=(), workers=2, out=tmp_path / "o2")

    assert (one.timings["detect_workers"], two.timings["detect_workers"]) == (1, 2)
    assert any(o.source_kind == "sigma" for o in one.case.observations), "the rules fire on these files"
    assert any(o.source_kind != "sigma" for o in one.case.observations), "the report gives claims too"
    assert _case_key(one) == _case_key(two)
    broken = [s for s in two.sources if s.path.endswith("99-broken.evtx")]
    assert broken and broken[0].rejected, "the damaged file is counted in the workers' run too"
    assert one.warnings == two.warnings


def test_formats_given_are_not_sniffed_again(shared_data, kb, monkeypatch):
    """investigate routes files by content; detect() takes those formats instead of sniffing each file again."""
    from ttpscope.ingest import readers

    files = sorted((shared_data / "evtx" / "evtx-to-mitre-attack").rglob("*.evtx"))[:3]
    rules = shared_data / "sigma" / "rules" / "windows" / "process_creation"
    calls = []
    real = readers.sniff
    monkeypatch.setattr(readers, "sniff", lambda path, *a, **k: calls.append(path) or real(path, *a, **k))

    given = runner.detect([(f, "evtx") for f in files], rules, kb=kb, workers=1)
    assert calls == []
    again = runner.detect(files, rules, kb=kb, workers=1)
    assert sorted(calls) == sorted(files)  # without formats, each file is sniffed once
    assert [(d.rule_id, d.source, d.record) for d in given.detections] == \
        [(d.rule_id, d.source, d.record) for d in again.detections]
    assert given.totals() == again.totals() and given.totals()["accepted"] > 0
