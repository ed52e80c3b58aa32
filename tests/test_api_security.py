"""Write protection, upload limits, host check, security headers, no file-system paths from requests."""

from __future__ import annotations

import os
import stat

import pytest
from fastapi.testclient import TestClient

from ttpscope.api import Settings, create_app
from ttpscope.api.security import load_or_create_token, token_matches
from ttpscope.errors import InputError

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(kb):
    return TestClient(create_app(Settings(token=TOKEN, bundle="embedded", max_upload_bytes=64 * 1024, max_files=3)))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"},
                                     {"Authorization": TOKEN}, {"Authorization": "Basic " + TOKEN}])
def test_writes_need_the_bearer_token(client, headers):
    up = client.post("/api/cases", files={"file": ("r.txt", b"APT29 used PowerShell", "text/plain")}, headers=headers)
    assert up.status_code == 401 and up.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in up.json()["detail"]
    assert client.delete("/api/cases/anything", headers=headers).status_code == 401


def test_upload_type_is_checked_by_name_and_content(client):
    r = client.post("/api/cases", files={"file": ("tool.exe", b"MZ\x90\x00", "application/octet-stream")}, headers=AUTH)
    assert r.status_code == 415 and "tool.exe" in r.json()["detail"] and ".exe" in r.json()["detail"]
    r = client.post("/api/cases", files={"file": ("fake.evtx", b"not an evtx file", "application/octet-stream")},
                    headers=AUTH)
    assert r.status_code == 415 and "fake.evtx" in r.json()["detail"]
    r = client.post("/api/cases", files={"file": ("bin.txt", b"\x00\x01\x02binary", "text/plain")}, headers=AUTH)
    assert r.status_code == 415 and "binary" in r.json()["detail"]
    r = client.post("/api/cases", files={"file": ("empty.txt", b"", "text/plain")}, headers=AUTH)
    assert r.status_code == 422 and "empty" in r.json()["detail"]


def test_upload_size_and_count_limits(client):
    big = client.post("/api/cases", files={"file": ("big.txt", b"a" * (70 * 1024), "text/plain")}, headers=AUTH)
    assert big.status_code == 413 and "MiB" in big.json()["detail"]
    many = client.post("/api/cases", files=[("file", (f"r{i}.txt", b"text", "text/plain")) for i in range(4)],
                       headers=AUTH)
    assert many.status_code == 413 and "at most 3" in many.json()["detail"]
    nothing = client.post("/api/cases", data={"text": "   "}, headers=AUTH)
    assert nothing.status_code == 422 and "nothing to investigate" in nothing.json()["detail"]


def test_pasted_text_is_capped(kb):
    """Pasted report text over the cap is refused with 413 and the reason before any job starts (the
    default cap: 2,000,000 characters; issue 15 item 8)."""
    c = TestClient(create_app(Settings(token=TOKEN, bundle="embedded")))
    r = c.post("/api/cases", data={"text": "APT29 used PowerShell. " * 90_000}, headers=AUTH)
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == ("pasted text of 2,070,000 characters is over the 2,000,000-character limit: "
                                  "upload the report as a file")
    small = TestClient(create_app(Settings(token=TOKEN, bundle="embedded", max_text_chars=1000)))
    r = small.post("/api/cases", data={"text": "x" * 1001}, headers=AUTH)
    assert r.status_code == 413 and "1,001 characters" in r.json()["detail"]


def test_host_header_is_checked_when_bound_to_loopback(kb):
    c = TestClient(create_app(Settings(token=TOKEN, bundle="embedded", allowed_hosts=["127.0.0.1", "localhost"])))
    assert c.get("/api/kb", headers={"host": "evil.example:8000"}).status_code == 400
    assert c.get("/api/kb", headers={"host": "127.0.0.1:8000"}).status_code == 200


def test_pages_carry_security_headers(client):
    r = client.get("/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert "<script>" not in r.text.replace('<script src="/static/app.js" defer></script>', "")


@pytest.mark.parametrize("name", ["../app.py", "..%2Fapp.py", "%2e%2e%2f__init__.py", "/etc/passwd", "app.py"])
def test_static_assets_come_from_memory_not_from_request_paths(client, name):
    r = client.get(f"/static/{name}")
    assert r.status_code == 404
    assert b"create_app" not in r.content and b"root:" not in r.content
    assert client.get("/static/app.css").status_code == 200


def test_token_generated_once_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("TTPSCOPE_HOME", str(tmp_path))
    token, created = load_or_create_token()
    assert created and len(token) >= 16
    path = tmp_path / "api-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, created_again = load_or_create_token()
    assert again == token and not created_again
    assert token_matches(token, f"Bearer {token}") and not token_matches(token, f"Bearer {token}x")


def test_token_file_must_exist_and_be_long_enough(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_or_create_token(tmp_path / "missing")
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(InputError, match="at least 16"):
        load_or_create_token(short)
    good = tmp_path / "good"
    good.write_text("a-long-enough-token-value\n")
    assert load_or_create_token(good) == ("a-long-enough-token-value", False)


def _serve(home, *args):
    import subprocess
    import sys
    from pathlib import Path

    import ttpscope

    env = dict(os.environ, TTPSCOPE_HOME=str(home), PYTHONPATH=str(Path(ttpscope.__file__).parents[1]))
    return subprocess.Popen([sys.executable, "-m", "ttpscope", "serve", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_serve_generates_and_prints_a_token_at_first_start(tmp_path):
    import httpx

    from ttpscope.api.launch import free_port, stop, wait_until_up

    port = free_port()
    proc = _serve(tmp_path, "--port", str(port), "--bundle", "embedded")
    try:
        wait_until_up(proc, f"http://127.0.0.1:{port}")
        saved = (tmp_path / "api-token").read_text().strip()
        r = httpx.delete(f"http://127.0.0.1:{port}/api/cases/x", headers={"Authorization": f"Bearer {saved}"})
        assert r.status_code == 404  # the printed token opens writes; the case just does not exist
    finally:
        stop(proc)
    out = proc.stdout.read()
    assert "write token (new" in out and saved in out and f"127.0.0.1:{port}/#token={saved}" in out


def test_serve_with_a_bad_token_file_exits_with_one_line(tmp_path):
    short = tmp_path / "tok"
    short.write_text("short")
    proc = _serve(tmp_path, "--token-file", str(short))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [f"ttpscope: error: {short}: the token must be at least 16 characters"]


def test_chunked_bodies_are_counted_and_cut_at_the_limit(client):
    def chunks():
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
        for _ in range(40):
            yield b"a" * 4096  # 160 KiB in all, no Content-Length declared
        yield b"\r\n--xyz--\r\n"

    r = client.post("/api/cases", content=chunks(), headers={**AUTH, "content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    declared = client.post("/api/cases", content=b"x" * (65 * 1024), headers={**AUTH, "content-type": "text/plain"})
    assert declared.status_code == 413 and "MiB" in declared.json()["detail"]


# ---------------------------------------------------------------------------- hardening (issue 15)
import io  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import orjson  # noqa: E402

EXAMPLE_RULES = Path(__file__).resolve().parents[1] / "examples" / "rules"
EVENT = {"EventID": 1, "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
         "CommandLine": "powershell -enc SQBFAFgA", "Computer": "ws-07", "UtcTime": "2026-03-02 09:00:00"}


def _zip(members: dict[str, bytes | int]) -> bytes:
    """A zip; an int member is that many zero bytes, written in pieces (a compression bomb)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, body in members.items():
            with zf.open(name, "w") as fh:
                if isinstance(body, int):
                    for _ in range(body // (1024 * 1024)):
                        fh.write(bytes(1024 * 1024))
                else:
                    fh.write(body)
    return buf.getvalue()


def _wait(client, job_id, limit_s=300):
    deadline = time.monotonic() + limit_s
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def _leaks(payload) -> list[str]:
    text = orjson.dumps(payload).decode()
    return [s for s in ("Traceback", 'File "', "/work/", "/tmp/", "/root/", str(Path.home()), "ttpscope-upload-",
                        os.environ.get("TTPSCOPE_HOME", "\0")) if s in text]


def test_a_zip_bomb_named_logs_json_is_recognised_by_content_and_refused(client):
    bomb = _zip({"events.json": 60 * 1024 * 1024})  # ~60 KiB expanding to 60 MiB
    assert len(bomb) < 64 * 1024  # under the upload limit: only its content gives it away
    r = client.post("/api/cases", files={"file": ("logs.json", bomb, "application/json")}, headers=AUTH)
    assert r.status_code == 413, r.text
    assert "logs.json" in r.json()["detail"] and "zip" in r.json()["detail"]
    import gzip

    gz = gzip.compress(bytes(60 * 1024 * 1024), compresslevel=9)
    r = client.post("/api/cases", files={"file": ("logs.jsonl", gz, "application/json")}, headers=AUTH)
    assert r.status_code == 413 and "gz" in r.json()["detail"]


def test_a_small_zip_named_logs_json_is_taken_for_a_zip_and_investigated(tmp_path, kb, monkeypatch):
    monkeypatch.chdir(EXAMPLE_RULES.parents[1])  # the server's rules given relative to where it started
    c = TestClient(create_app(Settings(token=TOKEN, bundle="embedded", rules="examples/rules",
                                       workspace=str(tmp_path / "ws.duckdb"))))
    lines = b"\n".join(orjson.dumps({**EVENT, "n": i}) for i in range(200))
    r = c.post("/api/cases", files={"file": ("logs.json", _zip({"events.jsonl": lines}), "application/json")},
               headers=AUTH)
    assert r.status_code == 202, r.text
    job = _wait(c, r.json()["job"]["id"])
    assert job["state"] == "done", job
    assert not _leaks(job), _leaks(job)
    (source,) = job["result"]["sources"]
    assert source["format"] == "zip" and source["path"] == "logs.json" and source["accepted"] == 200
    case_id = job["result"]["case_id"]
    for url in (f"/api/cases/{case_id}", f"/cases/{case_id}", f"/api/cases/{case_id}/analysis",
                f"/api/cases/{case_id}/export/json", f"/api/cases/{case_id}/export/markdown"):
        r = c.get(url)
        assert r.status_code == 200 and not _leaks(r.text), (url, _leaks(r.text))


def test_an_internal_error_in_a_job_answers_without_traceback_or_paths(client, tmp_path, caplog):
    import logging

    from ttpscope.api.investigation import run_investigation

    jobs = client.app.state.jobs

    def broken(progress):
        progress(f"reading {tmp_path / 'secret' / 'evidence.json'}", 0.1)
        raise RuntimeError(f"bug while reading {tmp_path / 'secret' / 'evidence.json'}")

    with caplog.at_level(logging.ERROR, logger="ttpscope.jobs"):
        in_thread = jobs.submit("t", "broken", broken)
        # in a child process: a real bug (no evidence list at all) inside the investigate job function
        in_child = jobs.submit_child("t", "broken child", run_investigation,
                                     {"files": None, "labels": [], "name": "x", "domain": "enterprise",
                                      "bundle": "embedded", "rules": None, "workspace": str(tmp_path / "w.duckdb")})
        states = [_wait(client, j.id) for j in (in_thread, in_child)]
    for job, state in zip((in_thread, in_child), states):
        assert state["state"] == "failed", state
        assert state["error"] == f"internal error (reference {job.id}); the details are in the server log"
        assert not _leaks(state), _leaks(state)
    assert "evidence.json" in states[0]["log"][0] and str(tmp_path) not in states[0]["log"][0]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Traceback" in logged and in_thread.id in logged and in_child.id in logged  # the server log has it all
    listed = client.get("/api/jobs").json()
    assert not _leaks(listed)


def test_not_found_texts_carry_no_server_path(tmp_path, kb):
    ws = tmp_path / "private-folder" / "ws.duckdb"
    c = TestClient(create_app(Settings(token=TOKEN, bundle="embedded", workspace=str(ws))))
    r = c.get("/api/cases/nope")
    assert r.status_code == 404 and "nope" in r.json()["detail"] and "private-folder" not in r.text
    page = c.get("/cases/nope")
    assert page.status_code == 404 and "private-folder" not in page.text


def test_a_full_queue_answers_429_with_retry_after_and_keeps_no_upload(tmp_path, kb):
    from ttpscope.api.uploads import uploads_root

    c = TestClient(create_app(Settings(token=TOKEN, bundle="embedded", workspace=str(tmp_path / "ws.duckdb"),
                                       max_pending_jobs=1)))
    before = {p.name for p in uploads_root().iterdir()}
    first = c.post("/api/cases", data={"text": "APT29 used PowerShell."}, headers=AUTH)
    assert first.status_code == 202
    second = c.post("/api/cases", data={"text": "APT28 used Mimikatz."}, headers=AUTH)
    assert second.status_code == 429 and second.headers["retry-after"].isdigit()
    assert "try again" in second.json()["detail"]
    _wait(c, first.json()["job"]["id"])
    assert {p.name for p in uploads_root().iterdir()} <= before  # both upload folders are gone


@pytest.mark.parametrize("budget, expected", [({"job_seconds": 0.3}, "time budget of 0.3 s"),
                                              ({"job_memory_mib": 300}, "memory budget of 300 MiB")])
def test_a_job_over_its_budget_fails_cleanly_with_a_message(tmp_path, kb, budget, expected):
    c = TestClient(create_app(Settings(token=TOKEN, bundle="embedded", workspace=str(tmp_path / "ws.duckdb"),
                                       rules=str(EXAMPLE_RULES), **budget)))
    lines = b"\n".join(orjson.dumps({**EVENT, "n": i}) for i in range(100))
    r = c.post("/api/cases", files={"file": ("events.jsonl", lines, "application/json")}, headers=AUTH)
    assert r.status_code == 202
    job = _wait(c, r.json()["job"]["id"], limit_s=120)
    assert job["state"] == "failed" and expected in job["error"], job
    assert not _leaks(job)
    assert c.get("/api/kb").status_code == 200  # the server itself is untouched


def test_after_kill_9_the_next_server_marks_the_job_failed_and_removes_its_upload(tmp_path):
    import httpx

    from ttpscope.api.launch import free_port, stop, wait_until_up

    home = tmp_path / "home"
    home.mkdir()
    (home / "tok").write_text(TOKEN)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ("--port", str(port), "--bundle", "embedded", "--token-file", str(home / "tok"))
    proc = _serve(home, *args)
    try:
        wait_until_up(proc, url)
        r = httpx.post(url + "/api/cases", data={"text": "APT29 used PowerShell to run a payload. " * 200},
                       headers=AUTH, timeout=30)
        assert r.status_code == 202
        job_id = r.json()["job"]["id"]
        staged = [p for p in (home / "uploads").iterdir() if p.name.startswith(f"{proc.pid}-")]
        assert len(staged) == 1  # the evidence is on disk while the job runs
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    again = _serve(home, *args)
    try:
        wait_until_up(again, url)
        job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=30).json()
        assert job["state"] == "failed" and "server stopped" in job["error"], job
        assert not staged[0].exists()
    finally:
        stop(again)
        again.stdout.close()
        again.stderr.close()


MALFORMED_LAYER_CELLS = {
    "scores of ±1e308": [{"techniqueID": "T1059", "score": 1e308}, {"techniqueID": "T1003", "score": -1e308}],
    "a list as tactic": [{"techniqueID": "T1059", "tactic": ["execution"]}],
    "a list as color": [{"techniqueID": "T1059", "color": ["#ff0000"]}],
    "a number as metadata": [{"techniqueID": "T1059", "metadata": 5}],
    "a number as techniqueID": [{"techniqueID": 1059}],
    "an object as comment": [{"techniqueID": "T1059", "comment": {"a": 1}}],
}


@pytest.mark.parametrize("what", sorted(MALFORMED_LAYER_CELLS))
def test_malformed_layers_are_answered_422_with_a_one_line_reason(client, what):
    raw = orjson.dumps({"name": "l", "domain": "enterprise-attack", "versions": {"layer": "4.5"},
                        "techniques": MALFORMED_LAYER_CELLS[what]})
    upload = ("layer.json", raw, "application/json")
    api = client.post("/api/layers/read", files={"file": upload})
    assert api.status_code == 422 and api.json()["record"] == "techniques[0]"
    assert "\n" not in api.json()["detail"] and "techniques[0]." in api.json()["detail"]
    home = client.post("/", files={"layer": upload})
    assert home.status_code == 422 and "techniques[0]." in home.text
    compare = client.post("/compare", files={"layer_a": upload, "layer_b": upload})
    assert compare.status_code == 422 and "techniques[0]." in compare.text


def test_cli_layer_with_a_non_string_technique_id_is_one_line(tmp_path):
    layer = tmp_path / "layer.json"
    layer.write_bytes(orjson.dumps({"name": "l", "techniques": [{"techniqueID": 1059, "score": 1}]}))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    done = subprocess.run([sys.executable, "-m", "ttpscope", "attribute", "--layer", str(layer),
                           "--bundle", "embedded"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "techniqueID 1059" in lines[0] and str(layer) in lines[0], done.stderr


def test_stopping_the_server_removes_the_uploads_of_queued_jobs(tmp_path, kb):
    from ttpscope.api.uploads import uploads_root

    app = create_app(Settings(token=TOKEN, bundle="embedded", workspace=str(tmp_path / "ws.duckdb")))
    before = {p.name for p in uploads_root().iterdir()}
    with TestClient(app) as c:  # the block's end runs the app's shutdown, as SIGTERM does for serve
        ids = [c.post("/api/cases", data={"text": f"APT{i} used PowerShell."}, headers=AUTH).json()["job"]["id"]
               for i in range(3)]  # one worker: two of them are still queued at the end
        assert len({p.name for p in uploads_root().iterdir()} - before) >= 2
    assert {p.name for p in uploads_root().iterdir()} <= before
    states = {app.state.jobs.get(i).state for i in ids}
    assert states <= {"done", "failed"}
