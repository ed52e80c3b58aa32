"""The job runner with detection worker processes: a job stopped over its time budget takes the worker
processes it forked with it (real JobManager, real child process, real multiprocessing pool)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ttpscope.api.jobs import Budget, JobManager

RULE = """title: Whoami
id: 5e4f4a1c-0d4e-4f57-9a55-6a1f5c2b7f10
status: test
logsource: {product: windows, category: process_creation}
detection:
  sel: {Image|endswith: '\\\\whoami.exe'}
  condition: sel
level: low
tags: [attack.discovery, attack.t1033]
"""


def _stuck_workers(progress, *, logs, rules, pids):
    """In the job's process: detection with two workers whose scan never ends (each worker writes its pid)."""
    from ttpscope.detect import runner

    def stuck(*args, **kwargs):
        Path(pids, str(os.getpid())).write_text("")
        time.sleep(3600)

    runner.PARALLEL_MIN_BYTES = 0
    runner._scan = stuck  # inherited by the forked workers
    progress("detecting")
    runner.detect(logs, rules, workers=2, cache=False)
    return {}


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _until(check, limit_s: float) -> bool:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_a_job_over_its_time_budget_takes_its_detection_workers_with_it(tmp_path):
    logs = []
    for i in range(2):
        logs.append(tmp_path / f"{i}.jsonl")
        logs[-1].write_text('{"EventID": 1, "Image": "C:\\\\Windows\\\\whoami.exe"}\n')
    (tmp_path / "rule.yml").write_text(RULE)
    pids = tmp_path / "pids"
    pids.mkdir()
    jobs = JobManager(budget=Budget(seconds=40, memory_mib=None))
    try:
        job = jobs.submit_child("t", "stuck", _stuck_workers,
                                {"logs": [str(p) for p in logs], "rules": str(tmp_path / "rule.yml"),
                                 "pids": str(pids)})
        assert _until(lambda: len(list(pids.iterdir())) == 2, 40), (job.state, job.error, job.log)
        workers = [int(p.name) for p in pids.iterdir()]
        assert not any(_gone(p) for p in workers)
        assert _until(lambda: job.state == "failed", 60), job.state
        assert "time budget" in job.error
        assert _until(lambda: all(_gone(p) for p in workers), 30), [p for p in workers if not _gone(p)]
    finally:
        jobs.shutdown()
