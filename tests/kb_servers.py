"""Real servers on loopback for the KB source tests: a static HTTP server and a medallion TAXII 2.1 server."""

from __future__ import annotations

import functools
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StaticServer:
    """Serves a folder on 127.0.0.1 and counts the requests it answered."""

    def __init__(self, root: Path):
        self.requests: list[str] = []
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"medallion exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("medallion did not start")


class TaxiiServer:
    """medallion (the OASIS TAXII 2.1 reference server) with one empty writable collection."""

    COLLECTION = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"
    USER, PASSWORD = "analyst", "s3cret-pass"

    def __init__(self, workdir: Path):
        self.port = free_port()
        base = f"http://127.0.0.1:{self.port}"
        self.api_root = f"{base}/api1/"
        self.collection_url = f"{self.api_root}collections/{self.COLLECTION}/"
        data = {
            "/discovery": {"title": "ttpscope test TAXII", "description": "", "contact": "",
                           "default": self.api_root, "api_roots": [self.api_root]},
            "api1": {
                "information": {"title": "api1", "description": "", "versions": ["application/taxii+json;version=2.1"],
                                "max_content_length": 200_000_000},
                "status": [],
                "collections": [{"id": self.COLLECTION, "title": "ATT&CK", "description": "", "can_read": True,
                                 "can_write": True, "media_types": ["application/stix+json;version=2.1"],
                                 "objects": [], "manifest": []}],
            },
        }
        (workdir / "data.json").write_text(json.dumps(data))
        config = {"backend": {"module": "medallion.backends.memory_backend", "module_class": "MemoryBackend", "filename": str(workdir / "data.json")},
                  "users": {self.USER: self.PASSWORD}, "taxii": {"max_page_size": 500}}
        (workdir / "config.json").write_text(json.dumps(config))
        exe = shutil.which("medallion", path=str(Path(sys.executable).parent)) or "medallion"
        self.proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(self.port), str(workdir / "config.json")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_port(self.port, self.proc)

    def add_objects(self, objects: list[dict]) -> None:
        from taxii2client.v21 import Collection

        coll = Collection(self.collection_url, user=self.USER, password=self.PASSWORD)
        for i in range(0, len(objects), 400):
            status = coll.add_objects({"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
                                       "objects": objects[i:i + 400]})
            assert status.failure_count == 0, status.failures

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
