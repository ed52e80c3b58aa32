"""The FastAPI application: REST endpoints under ``/api/``, server-rendered pages, OpenAPI at ``/openapi.json``.

    from ttpscope.api import create_app, Settings
    app = create_app(Settings(token="..."))

Nothing a request names is opened on the file system: templates and static assets are read from the
package once, at start, and served from memory; uploads are parsed in memory and handed to the library.
"""

from __future__ import annotations

import inspect
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from jinja2 import Environment, FunctionLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from ttpscope import __version__
from ttpscope.api.responses import ORJSONResponse
from ttpscope.errors import InputError, NotFoundError, OfflineError, TtpscopeError

MiB = 1024 * 1024


@dataclass
class Settings:
    """What the server is allowed to do. ``token`` guards every write."""

    token: str
    domain: str = "enterprise"
    bundle: str | None = None
    max_upload_bytes: int = 20 * MiB  # whole request body of an upload
    max_files: int = 10
    max_text_chars: int = 2_000_000  # pasted report text
    allowed_hosts: list[str] | None = None  # Host header check against DNS rebinding (None: any)
    workspace: str | None = None  # workspace path; None = the default under TTPSCOPE_HOME
    rules: str | None = None  # Sigma rules for uploaded event logs (None: the cached SigmaHQ set, if any)
    atomics: str | None = None  # Atomic Red Team index folder or file shown on technique pages (None: none)
    investigation_workers: int = 1
    job_seconds: float | None = 1800.0  # wall-clock budget of one investigation (None: unlimited)
    job_memory_mib: int | None = 4096  # address-space budget of one investigation's process (None: unlimited)
    max_pending_jobs: int = 8  # queued + running; beyond, uploads answer 429 with Retry-After
    view_cache_size: int = 2048  # serialised KB views kept in memory (0 = off)
    extra: dict[str, Any] = field(default_factory=dict)


def _load_package_texts(folder: str) -> dict[str, bytes]:
    root = resources.files("ttpscope.api") / folder
    return {item.name: item.read_bytes() for item in root.iterdir() if item.is_file()}


_SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src-elem 'self'; "
                               "style-src-attr 'unsafe-inline'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether or not they declare a Content-Length.

    A declared length over the limit is refused before anything is read. A chunked body is counted as it
    arrives and cut off at the limit: the multipart parser never spools more than that to disk.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    def _refusal(self, size: str) -> ORJSONResponse:
        return ORJSONResponse({"detail": f"request body {size}is over the {self.limit / MiB:.0f} MiB limit"},
                              status_code=413)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refusal(f"of {int(declared) / MiB:.1f} MiB ")(scope, receive, send)
        seen, over, started = 0, False, False

        async def counted():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    return {"type": "http.disconnect"}  # the app stops reading here
            return message

        async def guarded_send(message):
            nonlocal started
            if over and message["type"] == "http.response.start" and not started:
                started = True
                await self._refusal("")(scope, receive, send)
                return
            if over and started:
                return  # the app's own reply to the cut-off body is dropped
            await send(message)

        await self.app(scope, counted, guarded_send)
        if over and not started:  # the app gave up without answering: the client still gets the reason
            await self._refusal("")(scope, receive, send)


def _job_manager(settings: Settings):
    """Investigations under the settings' budgets; their records beside the workspace file (``<file>.jobs``);
    upload folders a killed server left behind are removed here."""
    from pathlib import Path

    from ttpscope.api.jobs import Budget, JobManager
    from ttpscope.api.uploads import remove_stale
    from ttpscope.store.workspace import default_path

    remove_stale()
    ws = Path(settings.workspace).expanduser() if settings.workspace else default_path()
    return JobManager(workers=settings.investigation_workers, max_pending=settings.max_pending_jobs,
                      store=ws.with_name(ws.name + ".jobs"),
                      budget=Budget(settings.job_seconds, settings.job_memory_mib))


def create_app(settings: Settings) -> FastAPI:
    """Build the app for one ATT&CK domain; the knowledge base is loaded here, once."""
    from ttpscope.api import api_analyses, api_cases, api_feeds, api_kb, pages
    from ttpscope.api.formats import FILTERS
    from ttpscope.api.jobs import QueueFullError, redact_paths
    from ttpscope.api.matrix import ink, mark_for, matrix_view
    from ttpscope.kb import load_kb

    kb = load_kb(settings.domain, settings.bundle)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.jobs.shutdown()

    app = FastAPI(
        lifespan=lifespan,
        title="ttpscope",
        version=__version__,
        description="MITRE ATT&CK TTPs from evidence, and the answers defenders need. Every answer names the "
                    "ATT&CK domain and version that produced it. Writes need `Authorization: Bearer <token>`.",
        default_response_class=ORJSONResponse,
        docs_url=None,  # FastAPI's Swagger UI loads from a CDN; /api/docs is our own page over the schema
        redoc_url=None,
        # a form field may hold the pasted text (up to 4 UTF-8 bytes a character), so that the paste cap,
        # not the form parser's default 1 MiB, answers it (413 with the reason); older FastAPI: that 1 MiB
        **({"form_limits": {"max_part_size": 4 * settings.max_text_chars + 4096}}
           if "form_limits" in inspect.signature(FastAPI).parameters else {}),
    )
    app.state.settings = settings
    app.state.kb = kb
    app.state.matrix = matrix_view(kb)
    app.state.view_cache = {}
    app.state.analysis_cache = {}
    app.state.static = _load_package_texts("static")
    templates = {name: raw.decode("utf-8") for name, raw in _load_package_texts("templates").items()}
    app.state.templates = Environment(loader=FunctionLoader(templates.get),
                                      autoescape=select_autoescape(default=True, default_for_string=True),
                                      trim_blocks=True, lstrip_blocks=True)
    app.state.templates.globals["mark_for"] = mark_for
    app.state.templates.globals["ink"] = ink
    app.state.templates.filters.update(FILTERS)
    app.state.jobs = _job_manager(settings)

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        if settings.allowed_hosts is not None:
            host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]").lower()
            if host not in settings.allowed_hosts:
                return ORJSONResponse({"detail": f"host {host!r} not allowed"}, status_code=400)
        response = await call_next(request)
        for key, value in _SECURITY_HEADERS.items():  # routes that set their own policy keep it
            response.headers.setdefault(key, value)
        return response

    def _error(request: Request, status: int, detail: str, extra: dict | None = None) -> Response:
        detail = redact_paths(detail)  # no server path reaches a client
        extra = {k: redact_paths(v) if isinstance(v, str) else v for k, v in (extra or {}).items()}
        if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
            return ORJSONResponse({"detail": detail, **(extra or {})}, status_code=status)
        return pages.error_page(request, status, detail)

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError):
        return _error(request, 404, str(exc))

    @app.exception_handler(InputError)
    async def _bad_input(request: Request, exc: InputError):
        return _error(request, 422, str(exc), {"source": exc.source, "record": exc.record, "problem": exc.problem})

    @app.exception_handler(OfflineError)
    async def _offline(request: Request, exc: OfflineError):
        return _error(request, 503, str(exc))

    @app.exception_handler(QueueFullError)
    async def _busy(request: Request, exc: QueueFullError):
        # 429, not 503: the server is healthy, this client should come back later
        response = _error(request, 429, str(exc))
        response.headers["retry-after"] = "30"
        return response

    @app.exception_handler(TtpscopeError)
    async def _other(request: Request, exc: TtpscopeError):
        return _error(request, 400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        response = _error(request, exc.status_code, str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return _error(request, 422, "; ".join(problems) or "invalid request", {"errors": problems})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        body = app.state.static.get(name)
        if body is None:
            return Response("not found", status_code=404, media_type="text/plain")
        kind = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}.get(name.rsplit(".", 1)[-1],
                                                                                       "application/octet-stream")
        return Response(body, media_type=kind, headers={"cache-control": "public, max-age=3600"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:  # browsers ask for it whatever the page links; the page links the SVG
        return Response(app.state.static["favicon.svg"], media_type="image/svg+xml",
                        headers={"cache-control": "public, max-age=86400"})

    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.include_router(api_kb.router)
    app.include_router(api_cases.router)
    app.include_router(api_analyses.router)
    app.include_router(pages.router)
    app.include_router(api_feeds.router)  # feeds, their page and the TAXII 2.1 collection of the cases

    return app
