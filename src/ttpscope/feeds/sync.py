"""Incremental, idempotent feed sync: fetch pages, validate, store once per (id, modified), keep the cursor.

Each page is stored with the cursor after it in one transaction, so an interrupted sync resumes where it
stopped and a repeated sync stores nothing twice. The report counts per sync: fetched / new / updated /
unchanged / rejected (each rejection with feed, object id and reason), plus unsupported indicator patterns
(kept, never matched) and revocations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ttpscope.errors import InputError
from ttpscope.feeds.objects import Rejected, check_objects, parse_lifetimes
from ttpscope.feeds.sources import DEFAULT_PAGE, FETCHERS
from ttpscope.store.feeds import FeedStore

MAX_REPORTED = 1000  # rejections listed one by one; beyond that only counted


@dataclass
class SyncReport:
    feed: str
    started: str
    seconds: float = 0.0
    pages: int = 0
    fetched: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    skipped: int = 0
    revoked: int = 0
    unsupported: int = 0
    failed: bool = False
    rejections: list[Rejected] = field(default_factory=list)
    unsupported_patterns: list[Rejected] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _cursor: dict[str, Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"feed": self.feed, "started": self.started, "seconds": round(self.seconds, 3), "pages": self.pages,
                "fetched": self.fetched, "new": self.new, "updated": self.updated, "unchanged": self.unchanged,
                "rejected": self.rejected, "skipped": self.skipped, "revoked": self.revoked,
                "unsupported": self.unsupported, "failed": self.failed,
                "rejections": [r.to_dict() for r in self.rejections],
                "unsupported_patterns": [r.to_dict() for r in self.unsupported_patterns], "notes": self.notes}

    def line(self) -> str:
        return (f"{self.feed}: fetched {self.fetched}, new {self.new}, updated {self.updated}, unchanged "
                f"{self.unchanged}, rejected {self.rejected}" + (f", unsupported patterns {self.unsupported}"
                                                                 if self.unsupported else "")
                + (f", revoked {self.revoked}" if self.revoked else "") + (" (FAILED)" if self.failed else "")
                + f" in {self.seconds:.1f} s")


def sync_feed(name: str, store: FeedStore | None = None, page_size: int = DEFAULT_PAGE,
              on_page: Callable[[SyncReport], None] | None = None) -> SyncReport:
    """Sync one feed into the workspace; never raises for a bad server or object (the report says)."""
    store = store or FeedStore()
    feed = store.get_feed(name)
    fetch = FETCHERS.get(feed["kind"])
    if fetch is None:
        raise InputError("feeds", name, f"unknown feed kind {feed['kind']!r}")
    try:
        lifetimes = parse_lifetimes((feed.get("options") or {}).get("lifetimes"))
    except ValueError as exc:
        raise InputError("feeds", name, f"option lifetimes: {exc}") from None
    report = SyncReport(name, datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"))
    t0 = time.perf_counter()
    cursor = dict(feed.get("cursor") or {})
    cache: dict[str, Any] = {}
    with store.held():
        _pages(store, name, fetch(feed, cursor, page_size), lifetimes, cache, report, on_page)
        cursor = report._cursor or cursor
        report.seconds = time.perf_counter() - t0
        store.save_sync_state(name, cursor, report.to_dict())
    return report


def _pages(store, name, pages, lifetimes, cache, report, on_page) -> None:
    for page in pages:
        report.pages += 1
        report.notes.extend(page.notes)
        report.skipped += page.skipped
        report.fetched += len(page.objects)
        checked = check_objects(name, page.objects, lifetimes, cache)
        bad = [*page.rejected, *checked.rejected]
        report.rejected += len(checked.rejected) + sum(1 for r in page.rejected if r.object_id is not None)
        if page.fatal:
            report.failed = True
        room = MAX_REPORTED - len(report.rejections)
        report.rejections.extend(bad[:max(room, 0)])
        report.unsupported += len(checked.unsupported)
        report.unsupported_patterns.extend(checked.unsupported[:max(MAX_REPORTED - len(report.unsupported_patterns), 0)])
        counts = store.store_page(name, checked.objects, checked.indicators, checked.terms, page.cursor)
        if checked.revoked:
            store.mark_revoked(name, checked.revoked)
            report.revoked += len(checked.revoked)
        report.new += counts["new"]
        report.updated += counts["updated"]
        report.unchanged += counts["unchanged"]
        if page.cursor is not None:
            report._cursor = page.cursor
        store.breathe()
        if on_page:
            on_page(report)


def sync_all(store: FeedStore | None = None, names: list[str] | None = None, page_size: int = DEFAULT_PAGE
             ) -> list[SyncReport]:
    """Sync several feeds (all by default), one after another; a failing feed never stops the rest."""
    store = store or FeedStore()
    names = names or [f["name"] for f in store.list_feeds()]
    return [sync_feed(n, store, page_size) for n in names]
