"""`ttpscope feeds add|list|show|remove|sync|indicators|match`: intelligence feeds in the workspace."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ttpscope.cli.output import JsonOpt, console, note, print_json, table

app = typer.Typer(name="feeds", help="Intelligence feeds (TAXII 2.1, STIX bundles, MISP feeds, folders): add, sync, "
                  "indicators, IOC matching on logs.", no_args_is_help=True)


def _guess_kind(url: str) -> str:
    if "/collections/" in url:
        return "taxii"
    if url.endswith(".json"):
        return "bundle"
    if Path(url).expanduser().is_dir():
        return "misp" if (Path(url).expanduser() / "manifest.json").is_file() else "folder"
    return "misp"


def _key_values(items: list[str] | None, what: str) -> dict[str, str]:
    from ttpscope.errors import InputError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(what, item, "expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


@app.command("add")
def add_cmd(
    name: str = typer.Argument(..., help="A short name for the feed (letters, digits, - _ .)."),
    url: str = typer.Argument(..., help="TAXII 2.1 collection URL, bundle file or URL, MISP feed URL or folder, "
                              "or a folder of bundles."),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="taxii, bundle, misp or folder (default: guessed "
                                       "from the URL)."),
    user_env: Optional[str] = typer.Option(None, "--user-env", help="Environment variable holding the user name "
                                           "(basic auth)."),
    password_env: Optional[str] = typer.Option(None, "--password-env", help="Environment variable holding the "
                                               "password."),
    token_env: Optional[str] = typer.Option(None, "--token-env", help="Environment variable holding an API token."),
    lifetime: list[str] = typer.Option(None, "--lifetime", help="Default indicator lifetime per kind when the feed "
                                       "gives no valid_until, e.g. ip=7d, domain=30d, hash=none (repeatable)."),
    filter_: list[str] = typer.Option(None, "--filter", help="TAXII match filter, e.g. type=indicator (repeatable)."),
    json_out: bool = JsonOpt,
) -> None:
    """Register a feed (credentials are read from the environment at each sync, never stored)."""
    from ttpscope.errors import InputError
    from ttpscope.feeds import add_feed, parse_duration

    lifetimes = _key_values(lifetime, "--lifetime")
    for k, v in lifetimes.items():
        try:
            parse_duration(v)
        except ValueError as exc:
            raise InputError("--lifetime", k, str(exc)) from None
    feed = add_feed(name, kind or _guess_kind(url), url, user_env=user_env, password_env=password_env,
                    token_env=token_env, lifetimes=lifetimes or None, filters=_key_values(filter_, "--filter") or None)
    if json_out:
        print_json(feed)
    else:
        console.print(f"added feed [bold]{feed['name']}[/bold] ({feed['kind']}): {feed['url']}")


@app.command("list")
def list_cmd(json_out: bool = JsonOpt) -> None:
    """Feeds of the workspace with their object counts and last sync."""
    from ttpscope.feeds import FeedStore

    feeds = FeedStore().list_feeds()
    if json_out:
        print_json({"feeds": feeds})
        return
    table("Feeds", ["name", "kind", "url", "objects", "last sync (UTC)", "last result"],
          [[f["name"], f["kind"], f["url"], f["objects"], (f["last_sync"] or "")[:19].replace("T", " "),
            _summary(f["last_report"])] for f in feeds],
          caption=None if feeds else "no feed yet: 'ttpscope feeds add NAME URL'")


def _summary(report: dict | None) -> str:
    if not report:
        return ""
    text = (f"fetched {report['fetched']}, new {report['new']}, updated {report['updated']}, "
            f"unchanged {report['unchanged']}, rejected {report['rejected']}")
    return text + (" (FAILED)" if report.get("failed") else "")


@app.command("show")
def show_cmd(name: str = typer.Argument(..., help="Feed name."), json_out: bool = JsonOpt) -> None:
    """A feed: its objects by type, its indicators by state, and its last sync report."""
    from collections import Counter

    from ttpscope.feeds import FeedStore

    store = FeedStore()
    feed = store.get_feed(name)
    types = Counter(o["type"] for o in store.objects(name))
    states = Counter(i["state"] for i in store.indicators(name))
    data = {**feed, "object_types": dict(sorted(types.items())), "indicators": dict(sorted(states.items()))}
    if json_out:
        print_json(data)
        return
    console.print(f"[bold]{feed['name']}[/bold] ({feed['kind']}) {feed['url']}")
    console.print(f"objects: {feed['objects']} versions of {feed['ids']} ids; last sync {feed['last_sync'] or 'never'}")
    table("Objects", ["type", "count"], sorted(types.items()))
    table("Indicators", ["state", "count"], sorted(states.items()))
    report = feed.get("last_report")
    if report:
        console.print("last sync: " + _summary(report))
        for r in report.get("rejections", [])[:20]:
            console.print(f"  rejected {r['object_id'] or '(feed)'}: {r['reason']}")


@app.command("remove")
def remove_cmd(name: str = typer.Argument(..., help="Feed name."),
               yes: bool = typer.Option(False, "--yes", help="Do not ask.")) -> None:
    """Remove a feed and everything it brought (objects, indicators, sightings)."""
    from ttpscope.feeds import FeedStore

    store = FeedStore()
    store.get_feed(name)
    if not yes and not typer.confirm(f"remove feed {name} and all its objects?"):
        raise typer.Exit(1)
    out = store.remove_feed(name)
    console.print(f"removed feed {out['name']} ({out['objects']} objects)")


@app.command("sync")
def sync_cmd(
    names: list[str] = typer.Argument(None, help="Feeds to sync (default: all)."),
    every: Optional[str] = typer.Option(None, "--every", help="Keep running: sync again after this interval "
                                        "(e.g. 1h, 15m)."),
    runs: int = typer.Option(0, "--runs", min=0, help="With --every: stop after this many syncs (0: never)."),
    page_size: int = typer.Option(1000, "--page-size", min=1, help="Objects per request / per stored page."),
    json_out: bool = JsonOpt,
) -> None:
    """Sync feeds incrementally: one line per feed with fetched / new / updated / unchanged / rejected."""
    from ttpscope.errors import InputError
    from ttpscope.feeds import FeedStore, parse_duration, sync_all

    interval = None
    if every:
        try:
            interval = parse_duration(every)
        except ValueError as exc:
            raise InputError("--every", every, str(exc)) from None
        if interval is None or interval.total_seconds() < 1:
            raise InputError("--every", every, "the interval must be at least one second")
    store = FeedStore()
    done = 0
    while True:
        started = time.monotonic()
        reports = sync_all(store, names or None, page_size)
        done += 1
        if json_out:
            print_json({"reports": [r.to_dict() for r in reports]})
        else:
            for r in reports:
                console.print(r.line())
                for rej in r.rejections[:10]:
                    console.print(f"  rejected {rej.object_id or '(feed)'}: {rej.reason}")
                if len(r.rejections) > 10:
                    console.print(f"  ... and {len(r.rejections) - 10} more (ttpscope feeds show {r.feed})")
                for n in r.notes[:3]:
                    note(f"{r.feed}: {n}")
        if interval is None or (runs and done >= runs):
            if interval is None and any(r.failed for r in reports):
                raise typer.Exit(1)  # a feed that could not be read at all: scripts should notice
            break
        time.sleep(max(interval.total_seconds() - (time.monotonic() - started), 0))


@app.command("indicators")
def indicators_cmd(
    feed: Optional[str] = typer.Option(None, "--feed", help="Only this feed."),
    state: Optional[str] = typer.Option(None, "--state", help="current, expired, revoked, not-yet-valid, "
                                        "not-for-detection or unsupported."),
    limit: int = typer.Option(50, "--limit", min=0, help="Rows per state in the table (0: all)."),
    json_out: bool = JsonOpt,
) -> None:
    """Indicators by state: current ones (matched on logs) apart from expired and revoked ones."""
    from ttpscope.feeds import FeedStore

    inds = FeedStore().indicators(feed, state)
    if json_out:
        print_json({"indicators": inds})
        return
    by_state: dict[str, list] = {}
    for i in inds:
        by_state.setdefault(i["state"], []).append(i)
    order = ["current", "not-yet-valid", "expired", "revoked", "not-for-detection", "unsupported"]
    for st in sorted(by_state, key=lambda s: order.index(s) if s in order else 99):
        rows = by_state[st][:limit or None]
        table(f"{st} indicators ({len(by_state[st])})", ["feed", "pattern", "valid from", "valid until", "note"],
              [[i["feed"], i["pattern"], (i["valid_from"] or "")[:10], (i["valid_until"] or "")[:10],
                i["problem"] or (i["lifetime_source"] or "")] for i in rows])
    if not inds:
        console.print("no indicator" + (f" in state {state}" if state else "") + ": 'ttpscope feeds sync' first")


@app.command("match")
def match_cmd(
    logs: list[Path] = typer.Argument(..., help="Event files, folders or archives (any format the ingest reads)."),
    case: Optional[str] = typer.Option(None, "--case", help="Keep the sightings with this case of the workspace."),
    feed: list[str] = typer.Option(None, "--feed", help="Only indicators of these feeds (repeatable)."),
    json_out: bool = JsonOpt,
) -> None:
    """Match the current indicators of every feed on event logs: sightings, apart from technique observations."""
    from ttpscope.detect.indicators import match_files
    from ttpscope.feeds import FeedStore

    store = FeedStore()
    res, totals = match_files(logs, store.current_terms(feeds=feed or None))
    case_id = None
    if case:
        from ttpscope.errors import NotFoundError
        from ttpscope.store import Workspace

        try:
            case_id = Workspace(store.path).get_case(case).id
        except NotFoundError:
            case_id = case
        store.save_sightings(res.sightings, case_id)
    if json_out:
        print_json({**res.to_dict(), "ingest": totals, "case": case_id})
        return
    console.print(f"read {totals['read']} events ({totals['accepted']} accepted, {totals['rejected']} rejected); "
                  f"{res.indicators} current indicators; {len(res.sightings)} sightings in {res.seconds:.1f} s")
    table("Indicator sightings", ["feed", "indicator", "value", "host", "source", "first seen", "last seen", "count"],
          [[s.feed, s.indicator_id, s.value, s.host, s.source, s.first_seen, s.last_seen, s.count]
           for s in res.sightings[:200]])
