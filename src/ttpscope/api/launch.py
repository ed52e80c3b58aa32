"""Start a real ``ttpscope serve`` in a child process on loopback: for the browser tests, the API
property tests and ``bench/api_bench.py``, which must talk to the server over a socket as a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(home: str | Path, token: str, extra_args: tuple[str, ...] = (), timeout: float = 90.0,
           log: str | Path | None = None) -> Iterator[str]:
    """Run ``python -m ttpscope serve`` with ``TTPSCOPE_HOME=home`` until the block ends; yields its base URL.

    The child imports the same ttpscope package as this process. It is stopped (SIGTERM, then SIGKILL) by
    its own pid when the block exits.
    """
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    token_file = home / "served-token"
    token_file.write_text(token + "\n", encoding="utf-8")
    port = free_port()
    import ttpscope

    env = dict(os.environ, TTPSCOPE_HOME=str(home),
               PYTHONPATH=os.pathsep.join([str(Path(ttpscope.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "ttpscope", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--token-file", str(token_file), *extra_args], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, url, timeout)
        yield url
    finally:
        stop(proc)
        if log:
            out.close()


def wait_until_up(proc: subprocess.Popen, url: str, timeout: float = 90.0) -> None:
    """Poll ``url``/api/kb until it answers 200; RuntimeError if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with code {proc.returncode} before answering")
        try:
            if httpx.get(url + "/api/kb", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: no answer within {timeout:.0f} s")
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the child by its pid, SIGKILL if it has not gone within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
