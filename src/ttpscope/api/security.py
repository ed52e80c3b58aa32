"""Write protection for the server: one bearer token, generated at first start or read from a file.

Reads (the knowledge base, cases, analyses) are open to whoever can reach the socket, which is loopback by
default. Every write (upload, delete) needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path, PurePath

from fastapi import HTTPException, Request, status

from ttpscope.errors import InputError

TOKEN_FILE_NAME = "api-token"
_MIN_TOKEN_LENGTH = 16


def default_token_file() -> Path:
    from ttpscope.paths import home

    return home() / TOKEN_FILE_NAME


def load_or_create_token(token_file: str | Path | None = None) -> tuple[str, bool]:
    """The server's token and whether it was just created.

    With ``token_file`` the token is read from it (a missing or too short file is an error: the caller
    chose it). Without, the token lives in ``TTPSCOPE_HOME/api-token`` and is generated (mode 0600) at
    first start.
    """
    if token_file is not None:
        path = Path(token_file)
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(str(path), None, f"cannot read the token file: {exc.strerror}") from exc
        if len(token) < _MIN_TOKEN_LENGTH:
            raise InputError(str(path), None, f"the token must be at least {_MIN_TOKEN_LENGTH} characters")
        return token, False
    path = default_token_file()
    if path.is_file():
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= _MIN_TOKEN_LENGTH:
            return token, False
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, True


def token_matches(expected: str, header: str | None) -> bool:
    """Constant-time check of an ``Authorization: Bearer ...`` header against the server token."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def require_token(request: Request) -> None:
    """FastAPI dependency for write endpoints: 401 without a valid bearer token."""
    expected: str = request.app.state.settings.token
    if not token_matches(expected, request.headers.get("authorization")):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            detail="this endpoint changes data: send 'Authorization: Bearer <token>' "
                                   "(the token was printed when the server started)",
                            headers={"WWW-Authenticate": "Bearer"})


def public_meta(meta: dict) -> dict:
    """A case's ``meta`` as clients may see it: the server's rule folder, evidence and source paths reduced to
    their last component, warnings without server paths. Changes ``meta`` in place and returns it; call it
    after the analysis has used the real paths."""
    from ttpscope.api.jobs import redact_paths

    def name(value):
        return PurePath(value).name if isinstance(value, str) and ("/" in value or "\\" in value) else value

    if meta.get("rules"):
        meta["rules"] = name(meta["rules"])
    if isinstance(meta.get("evidence"), list):
        meta["evidence"] = [name(v) for v in meta["evidence"]]
    for source in meta.get("sources") or ():
        if isinstance(source, dict) and "path" in source:
            source["path"] = name(source["path"])
    if isinstance(meta.get("warnings"), list):
        meta["warnings"] = [redact_paths(w) if isinstance(w, str) else w for w in meta["warnings"]]
    return meta
