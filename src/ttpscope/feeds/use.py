"""How commands use the workspace's feeds: the knowledge layer for attribution, overlap and anticipation
(on by default, ``--no-feeds`` leaves it out) and indicator matching on an investigation's event logs.

A workspace without feeds costs nothing here: no file is created, no table read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from ttpscope.detect.indicators import match_files
from ttpscope.feeds.knowledge import kb_with_feeds
from ttpscope.store.feeds import FeedStore
from ttpscope.store.workspace import Workspace, default_path

TOP_VALUES = 5  # matched values named in the run summary


def feed_layer(workspace: Workspace | str | Path | None = None) -> FeedStore | None:
    """The workspace's feed store when it has at least one feed, else None (an absent file stays absent)."""
    if isinstance(workspace, Workspace):
        path, ws = Path(workspace.path), workspace
    else:
        path, ws = (Path(workspace).expanduser() if workspace else default_path()), None
    if not path.exists():
        return None
    store = FeedStore(workspace=ws) if ws is not None else FeedStore(path)
    return store if store.list_feeds() else None


def kb_for(kb, feeds: bool = True, workspace: Workspace | str | Path | None = None):
    """``kb`` with the workspace's feed knowledge laid over it (``feeds``), else ``kb`` itself."""
    if not feeds:
        return kb
    store = feed_layer(workspace)
    return kb_with_feeds(kb, store) if store is not None else kb


def summarise(sightings: list[Any], terms: Any, seconds: float | None = None) -> dict[str, Any]:
    """What the run summary says about a matching: indicators current and matched, events, top values."""
    current = len(set(zip(terms.column("feed").to_pylist(), terms.column("indicator_id").to_pylist())))
    per_value: dict[str, int] = {}
    for s in sightings:
        per_value[s.value or s.indicator_id] = per_value.get(s.value or s.indicator_id, 0) + s.count
    top = sorted(per_value.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VALUES]
    out = {"indicators": current, "indicators_matched": len({(s.feed, s.indicator_id) for s in sightings}),
           "sightings": len(sightings), "events": sum(s.count for s in sightings), "top": top}
    if seconds is not None:
        out["seconds"] = round(seconds, 3)
    return out


def current_terms(store: FeedStore | None):
    """The comparisons of the current indicators, or None when there is none to match."""
    if store is None:
        return None
    terms = store.current_terms()
    return terms if terms.num_rows else None


def match_feeds(store: FeedStore, logs: Iterable[str | Path],
                progress: Callable[[str, int, int | None, str], None] | None = None
                ) -> tuple[dict[str, Any] | None, list[Any]]:
    """Match the current indicators of every feed on event log files in a pass of their own (when no Sigma
    pass runs): (what the run summary says, the sightings). (None, []) when no indicator is current."""
    terms = current_terms(store)
    if terms is None:
        return None, []
    if progress:
        progress("indicators", 0, None, "matching feed indicators")
    res, _ = match_files(list(logs), terms)
    summary = summarise(res.sightings, terms, res.seconds)
    if progress:
        progress("indicators", 1, 1, f"{summary['indicators_matched']} indicator(s) sighted")
    return summary, res.sightings
