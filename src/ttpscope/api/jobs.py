"""Background jobs (long investigations) so that the server keeps answering while they run.

A job is a function ``fn(progress) -> dict`` run on a small thread pool; ``progress(stage, fraction)`` lets it
report where it is, and pages poll ``GET /api/jobs/{id}``. Jobs live in memory: a restart forgets them, but
what they produced (cases) is in the workspace.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from ttpscope.errors import TtpscopeError

Progress = Callable[[str, float | None], None]


@dataclass
class Job:
    id: str
    kind: str
    title: str
    state: str = "queued"  # queued | running | done | failed
    stage: str = "waiting for a worker"
    fraction: float | None = None
    log: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state, "stage": self.stage,
                "fraction": self.fraction, "log": self.log[-50:], "result": self.result, "error": self.error,
                "elapsed_s": round(end - (self.started or end), 2)}


class QueueFullError(TtpscopeError):
    """Too many investigations are waiting; the caller should try again later."""


class JobManager:
    """A bounded pool of background workers with in-memory job records."""

    def __init__(self, workers: int = 1, max_pending: int = 8, keep: int = 200):
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ttpscope-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.max_pending = max_pending
        self.keep = keep

    def submit(self, kind: str, title: str, fn: Callable[[Progress], dict[str, Any]],
               cleanup: Callable[[], None] | None = None) -> Job:
        """Queue ``fn``; ``cleanup`` runs after it whatever happens (e.g. removing the upload's temp folder)."""
        with self._lock:
            pending = sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))
            if pending >= self.max_pending:
                if cleanup:
                    cleanup()
                raise QueueFullError(f"{pending} jobs are already waiting or running; try again when one ends")
            job = Job(id=uuid.uuid4().hex[:16], kind=kind, title=title)
            self._jobs[job.id] = job
            self._forget_old()
        self._pool.submit(self._run, job, fn, cleanup)
        return job

    def _run(self, job: Job, fn: Callable[[Progress], dict[str, Any]], cleanup) -> None:
        def progress(stage: str, fraction: float | None = None) -> None:
            job.stage, job.fraction = stage, fraction
            job.log.append(f"{time.time() - (job.started or time.time()):6.1f}s  {stage}")

        job.state, job.started, job.stage = "running", time.time(), "starting"
        try:
            job.result = fn(progress)
            job.state, job.stage, job.fraction = "done", "finished", 1.0
        except TtpscopeError as exc:  # the user's input: say what was wrong
            job.state, job.error = "failed", str(exc)
        except Exception as exc:  # a bug: keep the server up, record the trace for the log
            job.state, job.error = "failed", f"internal error: {type(exc).__name__}: {exc}"
            job.log.append(traceback.format_exc(limit=5))
        finally:
            job.finished = time.time()
            if cleanup:
                try:
                    cleanup()
                except OSError:
                    pass

    def _forget_old(self) -> None:
        done = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        for job in sorted(done, key=lambda j: j.created)[:max(0, len(self._jobs) - self.keep)]:
            del self._jobs[job.id]

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: -j.created)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
