"""Continuous intelligence feeds: TAXII 2.1 collections, STIX bundles (file or URL), MISP feeds and folders
of bundles, synced incrementally into the workspace; the feed knowledge layer; indicators and their
lifetimes; STIX sightings to share back.

    from ttpscope.feeds import add_feed, sync_feed
    add_feed("osint", "misp", "https://www.circl.lu/doc/misp/feed-osint")
    report = sync_feed("osint")            # fetched / new / updated / unchanged / rejected
    print(report.line())

Extension point: ``ttpscope.feeds.sources.FETCHERS`` (feed kind -> ``fetch(feed, cursor, page_size)``
yielding ``Page`` objects). Persistence is ``ttpscope.store.feeds.FeedStore``.
"""

from __future__ import annotations

from typing import Any

from ttpscope.feeds.objects import DEFAULT_LIFETIMES, Rejected, parse_duration
from ttpscope.feeds.sync import SyncReport, sync_all, sync_feed
from ttpscope.store.feeds import FEED_KINDS, FeedStore


def add_feed(name: str, kind: str, url: str, store: FeedStore | None = None, **options: Any) -> dict[str, Any]:
    """Register a feed (options: user_env, password_env, token_env, filters, lifetimes, verify)."""
    return (store or FeedStore()).add_feed(name, kind, url, {k: v for k, v in options.items() if v is not None})


__all__ = ["DEFAULT_LIFETIMES", "FEED_KINDS", "FeedStore", "Rejected", "SyncReport", "add_feed", "parse_duration",
           "sync_all", "sync_feed"]
