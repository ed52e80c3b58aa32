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
