"""Background jobs (long investigations) so that the server keeps answering while they run.

A job is a function ``fn(progress, **kwargs) -> dict``; ``progress(stage, fraction)`` lets it report where it
is, and pages poll ``GET /api/jobs/{id}``. Two ways to run one:

- :meth:`JobManager.submit_child` runs it in a child process of its own under the job :class:`Budget`: an
  address-space limit (``RLIMIT_AS``) and a wall-clock limit after which the child is killed. A job over its
  budget fails with a one-line message and the server is untouched. The child dies with the server
  (``PR_SET_PDEATHSIG``). This is how ``serve`` runs investigations.
- :meth:`JobManager.submit` runs it on a worker thread of the server (small in-process tasks).

A job record never holds a traceback or a server path: an internal error is recorded as "internal error
(reference <id>)" and the full trace goes to the server log (logger ``ttpscope.jobs``). Records are kept as
JSON files in a folder of the workspace, so a restarted server still answers for its jobs, and a job that
was running when the server died is marked failed rather than lost.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import tempfile
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

from ttpscope.errors import TtpscopeError
from ttpscope.procs import die_with_parent

Progress = Callable[[str, float | None], None]
log = logging.getLogger("ttpscope.jobs")
MiB = 1024 * 1024


@dataclass(frozen=True)
class Budget:
    """What one job may use: wall-clock seconds and address space in MiB (None = unlimited)."""

    seconds: float | None = 1800.0
    memory_mib: int | None = 4096


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
    owner: int = field(default_factory=os.getpid)  # the server process running it (not shown to clients)
    folder: str | None = None  # its staged uploads, removed when it ends (not shown to clients)

    def to_dict(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state, "stage": self.stage,
                "fraction": self.fraction, "log": self.log[-50:], "result": self.result, "error": self.error,
                "elapsed_s": round(end - (self.started or end), 2)}


class QueueFullError(TtpscopeError):
    """Too many investigations are waiting; the caller should try again later (HTTP 429)."""


class JobFailed(TtpscopeError):
    """A job that could not finish for a reason its user can act on (bad input, over its budget)."""


# absolute POSIX paths of two or more components, not part of a URL
_PATH = re.compile(r"(?<![\w:/.~-])/(?:[\w.@+~-]+/)+([\w.@+~-]*)")


def redact_paths(text: str) -> str:
    """``text`` with every absolute file-system path reduced to its last component: clients never learn
    where the server keeps its workspace, caches or temporary files."""
    return _PATH.sub(lambda m: m.group(1) or "(server folder)", text)


class JobManager:
    """A bounded pool of background workers; job records in memory and, with ``store``, on disk."""

    def __init__(self, workers: int = 1, max_pending: int = 8, keep: int = 200, store: str | Path | None = None,
                 budget: Budget | None = None):
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ttpscope-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.max_pending = max_pending
        self.keep = keep
        self.budget = budget or Budget()
        self.store = Path(store) if store is not None else None
        self._children: dict[str, multiprocessing.process.BaseProcess] = {}
        if self.store is not None:
            self._restore()

    # ------------------------------------------------------------------ records on disk
    def _restore(self) -> None:
        """Load the records a previous server left; its unfinished jobs become failed ones."""
        from ttpscope.api.uploads import remove

        self.store.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.store.glob("*.json")):
            try:
                job = Job(**orjson.loads(path.read_bytes()))
            except Exception as exc:  # a half-written or foreign file: not a job of ours
                log.warning("job record %s unreadable (%s): ignored", path, exc)
                continue
            if job.state in ("queued", "running") and not alive(job.owner):
                job.state, job.finished = "failed", job.finished or time.time()
                job.error = "the server stopped before this job finished; start the investigation again"
                job.stage = "interrupted"
                if job.folder:
                    remove(Path(job.folder))
                self._save(job)
            self._jobs[job.id] = job
        self._forget_old()

    def _save(self, job: Job) -> None:
        if self.store is None:
            return
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{job.id}.", suffix=".tmp", dir=self.store)
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps(asdict(job)))
            os.replace(tmp, self.store / f"{job.id}.json")
        except OSError as exc:  # a full disk costs the record on disk, never the job
            log.warning("job record %s not saved: %s", job.id, exc.strerror or exc)
            if tmp:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    # ------------------------------------------------------------------ submitting
    def _register(self, kind: str, title: str, cleanup: Callable[[], None] | None, folder) -> Job:
        with self._lock:
            pending = sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))
            if pending >= self.max_pending:
                if cleanup:
                    cleanup()
                raise QueueFullError(f"{pending} jobs are already waiting or running; try again when one ends")
            job = Job(id=uuid.uuid4().hex[:16], kind=kind, title=title, folder=str(folder) if folder else None)
            self._jobs[job.id] = job
            self._forget_old()
        self._save(job)
        return job

    def submit(self, kind: str, title: str, fn: Callable[[Progress], dict[str, Any]],
               cleanup: Callable[[], None] | None = None) -> Job:
        """Queue ``fn`` on a worker thread; ``cleanup`` runs after it whatever happens."""
        job = self._register(kind, title, cleanup, None)
        self._pool.submit(self._run, job, lambda progress: fn(progress), cleanup)
        return job

    def submit_child(self, kind: str, title: str, target: Callable[..., dict[str, Any]], kwargs: dict[str, Any],
                     cleanup: Callable[[], None] | None = None, cwd: str | Path | None = None,
                     folder: str | Path | None = None) -> Job:
        """Queue ``target(progress, **kwargs)`` (a module-level function, picklable arguments) to run in a
        child process under the manager's budget, in ``cwd``; ``folder`` (the staged uploads) is removed
        when the job ends, and by the next server if this one is killed."""
        job = self._register(kind, title, cleanup, folder)
        self._pool.submit(self._run, job, lambda progress: self._in_child(job, target, kwargs, cwd, progress),
                          cleanup)
        return job

    # ------------------------------------------------------------------ running
    def _run(self, job: Job, fn: Callable[[Progress], dict[str, Any]], cleanup) -> None:
        def progress(stage: str, fraction: float | None = None) -> None:
            stage = redact_paths(str(stage))
            job.stage, job.fraction = stage, fraction
            job.log.append(f"{time.time() - (job.started or time.time()):6.1f}s  {stage}")

        job.state, job.started, job.stage = "running", time.time(), "starting"
        self._save(job)
        try:
            job.result = fn(progress)
            job.state, job.stage, job.fraction = "done", "finished", 1.0
        except TtpscopeError as exc:  # the user's input or the budget: say what was wrong
            job.state, job.error = "failed", redact_paths(str(exc))
        except Exception:  # a bug: keep the server up; the trace goes to the server log only
            job.state, job.error = "failed", _internal(job)
            log.error("job %s (%s) failed with an internal error:\n%s", job.id, job.title, traceback.format_exc())
        finally:
            job.finished = time.time()
            if cleanup:
                try:
                    cleanup()
                except OSError:
                    pass
            self._save(job)

    def _in_child(self, job: Job, target, kwargs, cwd, progress: Progress) -> dict[str, Any]:
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no locks or threads of the server
        receive, send = ctx.Pipe(duplex=False)
        budget = self.budget
        child = ctx.Process(target=_child_main, args=(send, target, kwargs, str(cwd) if cwd else None,
                                                      budget.memory_mib), daemon=True, name=f"ttpscope-job-{job.id}")
        child.start()
        send.close()
        self._children[job.id] = child
        deadline = time.monotonic() + budget.seconds if budget.seconds else None
        try:
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    child.kill()
                    raise JobFailed(f"the job went over its time budget of {budget.seconds:g} s and was stopped")
                try:
                    ready = receive.poll(0.2)
                    message = receive.recv() if ready else None
                except (EOFError, OSError):  # the child is gone without a word
                    child.join(5)
                    raise JobFailed(_died(child.exitcode, budget)) from None
                if message is None:
                    if not child.is_alive() and not receive.poll(0):
                        raise JobFailed(_died(child.exitcode, budget))
                    continue
                what, payload = message
                if what == "progress":
                    progress(*payload)
                elif what == "done":
                    return payload
                elif what == "input":
                    raise JobFailed(payload)
                elif what == "memory":
                    raise JobFailed(f"the job went over its memory budget of {budget.memory_mib} MiB and was "
                                    "stopped")
                else:  # "internal": the child's traceback, for the server log only
                    log.error("job %s (%s) failed with an internal error:\n%s", job.id, job.title, payload)
                    raise JobFailed(_internal(job))
        finally:
            self._children.pop(job.id, None)
            if child.is_alive():
                child.kill()
            child.join(5)
            receive.close()

    def _forget_old(self) -> None:
        done = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        for job in sorted(done, key=lambda j: j.created)[:max(0, len(self._jobs) - self.keep)]:
            del self._jobs[job.id]
            if self.store is not None:
                try:
                    (self.store / f"{job.id}.json").unlink()
                except OSError:
                    pass

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: -j.created)

    def shutdown(self) -> None:
        """Stop: children killed, queued jobs cancelled; every unfinished job is recorded as failed and its
        staged uploads are removed (a queued job's own cleanup would never run)."""
        from ttpscope.api.uploads import remove

        self._pool.shutdown(wait=False, cancel_futures=True)
        for child in list(self._children.values()):
            if child.is_alive():
                child.kill()
        for job in list(self._jobs.values()):
            if job.state in ("queued", "running") and job.owner == os.getpid():
                job.state, job.stage, job.finished = "failed", "interrupted", time.time()
                job.error = "the server stopped before this job finished; start the investigation again"
                if job.folder:
                    remove(Path(job.folder))
                self._save(job)


def _internal(job: Job) -> str:
    return f"internal error (reference {job.id}); the details are in the server log"


def _died(code: int | None, budget: Budget) -> str:
    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    limit = f", most likely over its memory budget of {budget.memory_mib} MiB" if budget.memory_mib else ""
    return f"the job's process ended without a result ({how}){limit}"


def alive(pid: int) -> bool:
    """Whether a process of this id runs (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_NO_MEMORY = ("not enough memory", "cannot allocate memory", "failed to map segment", "out of memory",
              "std::bad_alloc", "could not allocate")


def _out_of_memory(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, MemoryError) or any(s in str(exc).lower() for s in _NO_MEMORY):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _child_main(send, target, kwargs, cwd, memory_mib) -> None:
    """The child side of :meth:`JobManager._in_child`: limits first, then the job; one message back."""
    die_with_parent()
    # daemonic for the server (killed at its exit), yet this process starts detection workers of its own,
    # which multiprocessing refuses to a daemon; they die with it (PR_SET_PDEATHSIG in the detection runner)
    multiprocessing.current_process().daemon = False
    if memory_mib:
        import resource

        limit = int(memory_mib) * MiB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if cwd:
        if os.environ.get("TTPSCOPE_HOME"):  # a relative home must still name the server's home after chdir
            os.environ["TTPSCOPE_HOME"] = str(Path(os.environ["TTPSCOPE_HOME"]).expanduser().resolve())
        os.chdir(cwd)

    def progress(stage: str, fraction: float | None = None) -> None:
        send.send(("progress", (stage, fraction)))

    try:
        message = ("done", target(progress, **kwargs))
    except BaseException as exc:
        if _out_of_memory(exc):  # however a library words it, this is the budget, not the user's input
            message = ("memory", "")
        elif isinstance(exc, TtpscopeError):
            message = ("input", str(exc))
        else:
            message = ("internal", traceback.format_exc())
    try:
        send.send(message)
    except MemoryError:
        send.send(("memory", ""))
    finally:
        send.close()
