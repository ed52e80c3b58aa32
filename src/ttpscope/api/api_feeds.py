"""Intelligence feeds over HTTP: list and show the workspace's feeds, trigger a sync (needs the token), the
``/feeds`` page with each feed's last sync report, the TAXII 2.1 collection of the cases
(:mod:`ttpscope.api.api_taxii`), and :class:`FeedScheduler`, which syncs every feed on an interval while
``ttpscope serve --sync-feeds-every 1h`` runs.

Feed URLs lose any user:password part and reports lose server paths before they reach a client.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse

from ttpscope.api import api_taxii
from ttpscope.api.jobs import redact_paths
from ttpscope.api.security import require_token
from ttpscope.feeds import FeedStore, sync_all, sync_feed

router = APIRouter()
router.include_router(api_taxii.router)

FEED_NAME = Path(pattern=r"^[A-Za-z0-9._-]{1,100}$", description="Feed name")


def feed_store(request: Request) -> FeedStore:
    """The server's feed store (the workspace file the server serves), opened once."""
    store = getattr(request.app.state, "feed_store", None)
    if store is None:
        store = request.app.state.feed_store = FeedStore(request.app.state.settings.workspace)
    return store


def _public_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return redact_paths(url)  # a local file or folder: its name only


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_paths(value)
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


def public_feed(feed: dict[str, Any]) -> dict[str, Any]:
    """A feed as clients may see it: no credentials (only the names of the variables holding them), no path."""
    return {"name": feed["name"], "kind": feed["kind"], "url": _public_url(feed["url"]),
            "options": {k: v for k, v in (feed.get("options") or {}).items() if k != "verify"},
            "created": feed.get("created"), "last_sync": feed.get("last_sync"), "objects": feed.get("objects", 0),
            "ids": feed.get("ids", 0), "last_report": _redacted(feed.get("last_report"))}


def _indicator_states(store: FeedStore, name: str | None = None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ind in store.indicators(name):
        counts[ind["state"]] = counts.get(ind["state"], 0) + 1
    return counts


@router.get("/api/feeds", tags=["feeds"], summary="Intelligence feeds of the workspace with their last sync")
def list_feeds(request: Request) -> dict:
    store = feed_store(request)
    scheduler = getattr(request.app.state, "feed_scheduler", None)
    return {"feeds": [public_feed(f) for f in store.list_feeds()],
            "schedule": scheduler.status() if scheduler is not None else None}


@router.get("/api/feeds/{name}", tags=["feeds"], summary="One feed: its last sync report and indicators by state")
def show_feed(request: Request, name: str = FEED_NAME) -> dict:
    store = feed_store(request)
    return {**public_feed(store.get_feed(name)), "indicators": _indicator_states(store, name)}


@router.post("/api/feeds/{name}/sync", tags=["feeds"], dependencies=[Depends(require_token)],
             summary="Sync one feed now (needs the token); answers with its sync report")
def sync_one(request: Request, name: str = FEED_NAME) -> dict:
    store = feed_store(request)
    store.get_feed(name)  # 404 before anything is fetched
    with _sync_lock(request.app):
        report = sync_feed(name, store)
    request.app.state.taxii_cache = {}  # sightings may change with the indicators
    return {"report": _redacted(report.to_dict()), "line": redact_paths(report.line())}


@router.post("/api/feeds/sync", tags=["feeds"], dependencies=[Depends(require_token)],
             summary="Sync every feed now (needs the token); one report per feed")
def sync_every(request: Request) -> dict:
    store = feed_store(request)
    with _sync_lock(request.app):
        reports = sync_all(store)
    return {"reports": [_redacted(r.to_dict()) for r in reports]}


@router.get("/feeds", include_in_schema=False, response_class=HTMLResponse)
def feeds_page(request: Request):
    from ttpscope.api.pages import render

    store = feed_store(request)
    feeds = [{**public_feed(f), "indicators": _indicator_states(store, f["name"])} for f in store.list_feeds()]
    scheduler = getattr(request.app.state, "feed_scheduler", None)
    return render(request, "feeds.html", title="Feeds", feeds=feeds,
                  schedule=scheduler.status() if scheduler is not None else None)


def _sync_lock(app) -> threading.Lock:
    """One sync at a time per server: the scheduler and the endpoints share it."""
    lock = getattr(app.state, "feed_sync_lock", None)
    if lock is None:
        lock = app.state.feed_sync_lock = threading.Lock()
    return lock


class FeedScheduler:
    """Sync every feed of the workspace each ``every`` seconds in a background thread (the first run at
    start). A failing feed is in its report; an unexpected error is kept as ``last_error`` and the next run
    still happens."""

    def __init__(self, app, every: float):
        self.app, self.every = app, float(every)
        self.runs = 0
        self.last_run: str | None = None
        self.last_error: str | None = None
        self.next_run: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ttpscope-feed-sync", daemon=True)
        app.state.feed_scheduler = self

    def start(self) -> FeedScheduler:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        nxt = None
        if self.next_run is not None:
            nxt = datetime.fromtimestamp(time.time() + max(self.next_run - time.monotonic(), 0), timezone.utc)
        return {"every_seconds": self.every, "runs": self.runs, "last_run": self.last_run,
                "next_run": nxt.isoformat().replace("+00:00", "Z") if nxt else None,
                "last_error": self.last_error}

    def _loop(self) -> None:
        store = FeedStore(self.app.state.settings.workspace)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with _sync_lock(self.app):
                    sync_all(store)
                self.last_error = None
            except Exception as exc:  # a broken workspace must not kill the server's thread
                self.last_error = redact_paths(f"{type(exc).__name__}: {exc}")
            self.runs += 1
            self.last_run = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
            self.app.state.taxii_cache = {}
            self.next_run = started + self.every
            self._stop.wait(max(self.every - (time.monotonic() - started), 0.0))
