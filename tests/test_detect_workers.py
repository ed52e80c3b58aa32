"""Worker processes (``detect(workers=N)``, ``--workers``): the same detections and ingest counts as one
process, on real EVTX files with a corrupt one among them."""

from __future__ import annotations

import shutil

from ttpscope.detect import runner
from ttpscope.detect.rules import load_rules
from ttpscope.detect.runner import compile_ruleset, detect


def test_workers_give_the_same_result(shared_data, kb, tmp_path, monkeypatch):
    src = shared_data / "evtx" / "evtx-to-mitre-attack"
    files = sorted(src.rglob("*.evtx"))[:40]
    logs = tmp_path / "logs"
    logs.mkdir()
    for i, f in enumerate(files):
        shutil.copy(f, logs / f"{i:02d}-{f.name}")
    (logs / "99-broken.evtx").write_bytes(files[0].read_bytes()[:5000] + b"\x00garbage" * 200)
    rs = load_rules(shared_data / "sigma" / "rules" / "windows" / "process_creation", kb=kb)
    compiled = compile_ruleset(rs)
    monkeypatch.setattr(runner, "PARALLEL_MIN_BYTES", 0)  # these few MiB would run in one process

    one = detect(logs, rs, kb=kb, compiled=compiled, workers=1)
    two = detect(logs, rs, kb=kb, compiled=compiled, workers=2)

    assert (one.workers, two.workers) == (1, 2)
    assert one.detections, "the process_creation rules fire on these files"
    key = [(d.rule_id, d.source, d.record, d.time, d.host, d.event) for d in one.detections]
    assert key == [(d.rule_id, d.source, d.record, d.time, d.host, d.event) for d in two.detections]
    stats = [(s.source, s.read, s.accepted, s.rejected, dict(s.reasons)) for s in one.ingest]
    assert stats == [(s.source, s.read, s.accepted, s.rejected, dict(s.reasons)) for s in two.ingest]
    assert stats[-1][0].endswith("99-broken.evtx") and stats[-1][3] > 0  # counted, in input order
    assert one.totals() == two.totals() and one.engine_errors == two.engine_errors


def test_a_small_zip_of_many_events_counts_by_its_unpacked_size(kb, tmp_path):
    """The worker split judges a zip archive by its members' size: a few hundred KB of zip holding 9 MiB of
    JSON lines is worth a worker (the bound stays 8 MiB), with the same detections as one process."""
    import json
    import zipfile

    rule = tmp_path / "whoami.yml"
    rule.write_text("title: Whoami\nid: 1b0e4a4c-9d8e-4c6b-8f4f-0a3b2c1d5e6f\nstatus: test\n"
                    "logsource: {product: windows, category: process_creation}\n"
                    "detection:\n  sel: {Image|endswith: '\\\\whoami.exe'}\n  condition: sel\nlevel: low\n"
                    "tags: [attack.discovery, attack.t1033]\n")
    line = {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "Computer": "ws1",
            "Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd /c dir " + "x" * 200}
    rows = [json.dumps({**line, "Image": "C:\\Windows\\System32\\whoami.exe"} if i % 5000 == 0 else line)
            for i in range(34_000)]
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("sysmon.jsonl", "\n".join(rows) + "\n")
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps({**line, "Image": "C:\\Windows\\System32\\whoami.exe"}) + "\n")
    assert archive.stat().st_size < runner.PARALLEL_MIN_BYTES <= sum(len(r) + 1 for r in rows)

    one = detect([archive, small], rule, kb=kb, workers=1)
    two = detect([archive, small], rule, kb=kb, workers=2)
    assert (one.workers, two.workers) == (1, 2)
    assert len(one.detections) == 8
    assert [(d.source, d.record) for d in one.detections] == [(d.source, d.record) for d in two.detections]
