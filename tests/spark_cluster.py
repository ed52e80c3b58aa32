"""A real standalone Spark cluster on loopback, started from pyspark's own distribution (tests and bench).

    with standalone_cluster(workers=1) as cluster:   # master + worker processes, 1 core / 1 GB each
        cluster.master        # "spark://127.0.0.1:PORT"
    with connect_server(cluster.master) as url:       # a Spark Connect server on that cluster
        url                   # "sc://127.0.0.1:PORT"

Both stop their processes (and the process groups they started) on exit, also when the body fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    master: str
    webui: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: Path | None = None

    def workers(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.webui}/json/", timeout=5) as resp:
            return [w for w in json.load(resp).get("workers", []) if w.get("state") == "ALIVE"]

    def log_tail(self, n: int = 30) -> str:
        out = []
        for f in sorted(self.logs.glob("*.log")) if self.logs else []:
            out.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(out)


def _env() -> dict:
    env = dict(os.environ, SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP="127.0.0.1",
               SPARK_LOCAL_HOSTNAME="localhost", SPARK_NO_DAEMONIZE="1")
    env.pop("PYSPARK_GATEWAY_PORT", None)
    return env


def _start(args: list[str], log: Path) -> subprocess.Popen:
    fh = log.open("wb")
    return subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], stdout=fh, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=_env(), start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # spark-class execs java in its own new session: the group is ours
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextlib.contextmanager
def standalone_cluster(workers: int = 1, cores: int = 1, memory: str = "1g", timeout: float = 180.0
                       ) -> Iterator[Cluster]:
    port, webui = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="ttpscope-spark-cluster-") as tmp:
        logs = Path(tmp)
        cluster = Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{webui}", logs=logs)
        try:
            cluster.procs.append(_start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                         "--port", str(port), "--webui-port", str(webui)], logs / "master.log"))
            for i in range(workers):
                cluster.procs.append(_start(
                    ["org.apache.spark.deploy.worker.Worker", cluster.master, "--host", "127.0.0.1",
                     "--cores", str(cores), "--memory", memory, "--webui-port", str(free_port()),
                     "--work-dir", str(logs / f"work{i}")], logs / f"worker{i}.log"))
            deadline = time.monotonic() + timeout
            while True:
                dead = [p for p in cluster.procs if p.poll() is not None]
                if dead:
                    raise RuntimeError(f"a Spark process exited with {dead[0].returncode}\n{cluster.log_tail()}")
                try:
                    if len(cluster.workers()) >= workers:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Spark workers did not register in {timeout:.0f}s\n{cluster.log_tail()}")
                time.sleep(0.5)
            yield cluster
        finally:
            for proc in reversed(cluster.procs):
                _stop(proc)


@contextlib.contextmanager
def connect_server(master: str, timeout: float = 180.0, conf: dict | None = None) -> Iterator[str]:
    """A Spark Connect server (its jar ships in pyspark's ``jars/``) running its work on ``master``."""
    port = free_port()
    settings = {"spark.connect.grpc.binding.port": str(port), "spark.connect.grpc.binding.address": "127.0.0.1",
                "spark.ui.enabled": "false", "spark.driver.host": "127.0.0.1",
                "spark.sql.shuffle.partitions": "4", **(conf or {})}
    args = ["org.apache.spark.deploy.SparkSubmit", "--master", master, "--class",
            "org.apache.spark.sql.connect.service.SparkConnectServer", "--name", "ttpscope-connect"]
    for k, v in settings.items():
        args += ["--conf", f"{k}={v}"]
    args.append("spark-internal")
    with tempfile.TemporaryDirectory(prefix="ttpscope-spark-connect-") as tmp:
        log = Path(tmp) / "connect.log"
        proc = _start(args, log)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the Spark Connect server exited with {proc.returncode}\n"
                                       + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the Spark Connect server did not listen in time\n"
                                       + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
                time.sleep(0.5)
            yield f"sc://127.0.0.1:{port}"
        finally:
            _stop(proc)
