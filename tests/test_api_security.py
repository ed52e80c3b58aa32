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
