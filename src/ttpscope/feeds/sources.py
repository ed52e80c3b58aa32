"""Where feed objects come from: one fetcher per feed kind, each yielding pages with the cursor after them.

Registry ``FETCHERS``: kind -> ``fetch(feed, cursor, page_size) -> Iterator[Page]``. A fetcher never raises
for a bad server or file: it yields a page carrying the rejection (feed, object id or None, reason) and
stops or moves on, so one bad feed never stops the others.

- ``taxii``: a TAXII 2.1 collection URL (``taxii2-client``). Pages follow ``next`` with the original filters;
  the cursor is the ``X-TAXII-Date-Added-Last`` header (never an object's ``modified``), used as
  ``added_after`` next time. A server that repeats a ``next`` token or whose date does not advance while it
  says ``more`` is stopped with a note instead of being asked again (an inclusive ``added_after`` would
  otherwise return the same page for ever). Credentials come from the environment: options
  ``user_env``/``password_env`` (basic auth) or ``token_env``.
- ``bundle``: a STIX bundle file or http(s) URL; unchanged content (same sha256, or HTTP 304) is a no-op.
- ``folder``: every ``*.json`` bundle of a folder; only files whose size or mtime changed are read.
- ``misp``: a MISP feed (``manifest.json`` + ``<uuid>.json`` events) at an http(s) URL or a folder; only events
  whose manifest ``timestamp`` is newer than the last sync's are fetched.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from ttpscope.feeds.misp import event_to_stix
from ttpscope.feeds.objects import Rejected

DEFAULT_PAGE = 1000
HTTP_TIMEOUT = 60


@dataclass
class Page:
    objects: list[Any]
    cursor: dict[str, Any] | None  # the state to keep once this page is stored
    rejected: list[Rejected] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: int = 0  # records that are no STIX object of interest (MISP attributes of other types)
    fatal: bool = False  # the feed could not be read at all


def _fail(feed: str, reason: str, cursor: dict[str, Any] | None = None) -> Page:
    return Page([], None, [Rejected(feed, None, reason)], fatal=True)


def _http_reason(exc: Exception, url: str) -> str:
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code in (401, 403):
            return f"{url}: HTTP {code}: wrong or missing credentials"
        return f"{url}: HTTP {code}"
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return f"{url}: unreachable ({type(exc).__name__})"
    return f"{url}: {type(exc).__name__}: {str(exc)[:200]}"


def _env(options: dict[str, Any], key: str) -> str | None:
    name = options.get(key)
    return os.environ.get(name) if name else None


def _session(options: dict[str, Any]):
    import requests

    s = requests.Session()
    token = _env(options, "token_env")
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    user, password = _env(options, "user_env"), _env(options, "password_env")
    if user is not None:
        s.auth = (user, password or "")
    return s


# ---------------------------------------------------------------------------------------------- TAXII
def fetch_taxii(feed: dict[str, Any], cursor: dict[str, Any], page_size: int = DEFAULT_PAGE) -> Iterator[Page]:
    import requests
    from taxii2client.common import TokenAuth
    from taxii2client.v21 import Collection

    name, url, opts = feed["name"], feed["url"], feed.get("options") or {}
    token = _env(opts, "token_env")
    user, password = _env(opts, "user_env"), _env(opts, "password_env")
    headers: dict[str, str] = {}

    def keep_headers(resp, *args, **kwargs):
        headers.clear()
        headers.update({k: v for k, v in resp.headers.items() if k.lower().startswith("x-taxii")})

    try:
        coll = Collection(url, user=user, password=password, auth=TokenAuth(token) if token else None,
                          verify=opts.get("verify", True))
        coll._conn.session.hooks["response"].append(keep_headers)
        coll.refresh()  # reads the collection info (can_read) and checks the credentials
    except Exception as exc:  # requests and taxii2client errors alike: the feed is unusable this time
        yield _fail(name, _http_reason(exc, url))
        return
    if not coll.can_read:
        yield _fail(name, f"{url}: the collection is not readable with these credentials")
        return
    filters: dict[str, Any] = {k: v for k, v in (opts.get("filters") or {}).items() if v}
    if cursor.get("added_after"):
        filters["added_after"] = cursor["added_after"]
    state = dict(cursor)
    next_token: str | None = None
    seen_pages: set[tuple] = set()
    pages = 0
    while True:
        kwargs = dict(filters)
        if next_token:
            kwargs["next"] = next_token
        try:
            envelope = coll.get_objects(limit=page_size, **kwargs)
        except (requests.RequestException, Exception) as exc:
            yield Page([], None, [Rejected(name, None, f"page {pages + 1}: {_http_reason(exc, url)}")], fatal=True)
            return
        pages += 1
        last = headers.get("X-TAXII-Date-Added-Last") or headers.get("x-taxii-date-added-last")
        if last and (not state.get("added_after") or last > state["added_after"]):
            state["added_after"] = last
        objects = envelope.get("objects") or [] if isinstance(envelope, dict) else []
        notes = []
        more = bool(envelope.get("more")) if isinstance(envelope, dict) else False
        stop = not more
        if more:
            token = envelope.get("next")
            # servers may reuse one `next` token for a whole walk (medallion does), so a loop is a page seen
            # before: same token, same date added, same first and last object
            sig = (token, last, _oid(objects[:1]), _oid(objects[-1:]))
            if not objects:
                notes.append("the server says more but sent no object; stopped paging")
                stop = True
            elif sig in seen_pages:
                notes.append("the server sent the same page twice; stopped paging")
                stop = True
            seen_pages.add(sig)
            if token:
                next_token = token
            else:
                # a server without `next`: page on by date added; an inclusive added_after must still advance
                if not last or last <= (filters.get("added_after") or ""):
                    notes.append("the server says more but its date added did not advance; stopped paging")
                    stop = True
                filters["added_after"] = last
        yield Page(objects, dict(state), notes=notes)
        if stop:
            return


# ---------------------------------------------------------------------------------------------- bundles
def _read_source(url: str, options: dict[str, Any], cursor: dict[str, Any]) -> tuple[bytes | None, dict, str | None]:
    """(content or None when unchanged, new cursor fields, error)."""
    if url.startswith(("http://", "https://")):
        s = _session(options)
        req_headers = {}
        if cursor.get("etag"):
            req_headers["If-None-Match"] = cursor["etag"]
        if cursor.get("last_modified"):
            req_headers["If-Modified-Since"] = cursor["last_modified"]
        try:
            resp = s.get(url, headers=req_headers, timeout=HTTP_TIMEOUT)
            if resp.status_code == 304:
                return None, {}, None
            resp.raise_for_status()
        except Exception as exc:
            return None, {}, _http_reason(exc, url)
        extra = {k: v for k, v in (("etag", resp.headers.get("ETag")),
                                   ("last_modified", resp.headers.get("Last-Modified"))) if v}
        return resp.content, extra, None
    path = Path(url).expanduser()
    try:
        return path.read_bytes(), {}, None
    except OSError as exc:
        return None, {}, f"{path}: cannot read ({exc.strerror or exc})"


_SPACE = re.compile(rb"\s*")


def _bundle_pages(feed: str, data: bytes, where: str, page_size: int) -> Iterator[tuple[list[Any], list[Rejected]]]:
    """A bundle (or a bare list of objects) read object by object with ijson's C parser, in pages: an
    800,000-object bundle never sits in memory as Python objects all at once. A syntax error part-way
    keeps the pages before it and is reported with the page it cut short."""
    import ijson

    at = _SPACE.match(data).end()
    head = data[at:at + 1]
    if head == b"[":
        prefix = "item"  # a bare list of objects, as some exporters write
    elif head == b"{":
        try:
            kind = next(ijson.items(io.BytesIO(data), "type"), None)
        except ijson.JSONError as exc:
            yield [], [Rejected(feed, None, f"{where}: not JSON ({exc})")]
            return
        if kind != "bundle":
            yield [], [Rejected(feed, None, f"{where}: not a STIX bundle")]
            return
        prefix = "objects.item"
    else:
        yield [], [Rejected(feed, None, f"{where}: not JSON (starts with {head!r})" if head else f"{where}: empty")]
        return
    page: list[Any] = []
    try:
        for obj in ijson.items(io.BytesIO(data), prefix, use_float=True):
            page.append(obj)
            if len(page) >= page_size:
                yield page, []
                page = []
    except ijson.JSONError as exc:
        yield page, [Rejected(feed, None, f"{where}: not JSON after {len(page)} object(s) of the last page ({exc})")]
        return
    yield page, []


def fetch_bundle(feed: dict[str, Any], cursor: dict[str, Any], page_size: int = DEFAULT_PAGE) -> Iterator[Page]:
    name, url = feed["name"], feed["url"]
    data, extra, error = _read_source(url, feed.get("options") or {}, cursor)
    if error:
        yield _fail(name, error)
        return
    if data is None:
        yield Page([], dict(cursor), notes=["not modified since the last sync"])
        return
    digest = hashlib.sha256(data).hexdigest()
    if digest == cursor.get("sha256"):
        yield Page([], dict(cursor), notes=["content unchanged since the last sync"])
        return
    pending = None  # one page behind, so the last one can carry the cursor
    for chunk, rejected in _bundle_pages(name, data, url, page_size):
        if pending is not None:
            yield Page(pending[0], None, pending[1])
        pending = (chunk, rejected)
    if pending is not None:
        yield Page(pending[0], {**cursor, **extra, "sha256": digest}, pending[1])


def fetch_folder(feed: dict[str, Any], cursor: dict[str, Any], page_size: int = DEFAULT_PAGE) -> Iterator[Page]:
    name, root = feed["name"], Path(feed["url"]).expanduser()
    if not root.is_dir():
        yield _fail(name, f"{root}: not a folder")
        return
    seen: dict[str, list[int]] = dict(cursor.get("files") or {})
    files = sorted(p for p in root.rglob("*.json") if p.is_file())
    if not files:
        yield Page([], dict(cursor), notes=[f"{root}: no *.json bundle"])
    for path in files:
        rel = str(path.relative_to(root))
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        if seen.get(rel) == stamp:
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            yield Page([], None, [Rejected(name, None, f"{path}: cannot read ({exc.strerror})")])
            continue
        pending = None
        for chunk, rejected in _bundle_pages(name, data, str(path), page_size):
            if pending is not None:
                yield Page(pending[0], None, pending[1])
            pending = (chunk, rejected)
        seen[rel] = stamp
        yield Page(pending[0], {"files": dict(seen)}, pending[1])


# ---------------------------------------------------------------------------------------------- MISP
def fetch_misp(feed: dict[str, Any], cursor: dict[str, Any], page_size: int = DEFAULT_PAGE) -> Iterator[Page]:
    name, base, opts = feed["name"], feed["url"].rstrip("/"), feed.get("options") or {}
    remote = base.startswith(("http://", "https://"))
    session = _session(opts) if remote else None

    def get(rel: str) -> tuple[bytes | None, str | None]:
        if remote:
            url = f"{base}/{rel}"
            try:
                resp = session.get(url, timeout=HTTP_TIMEOUT)
                resp.raise_for_status()
                return resp.content, None
            except Exception as exc:
                return None, _http_reason(exc, url)
        path = Path(base).expanduser() / rel
        try:
            return path.read_bytes(), None
        except OSError as exc:
            return None, f"{path}: cannot read ({exc.strerror or exc})"

    data, error = get("manifest.json")
    if error:
        yield _fail(name, error)
        return
    try:
        manifest = orjson.loads(data)
        if not isinstance(manifest, dict):
            raise ValueError("not an object")
    except (orjson.JSONDecodeError, ValueError) as exc:
        yield _fail(name, f"manifest.json: not a MISP manifest ({exc})")
        return
    seen: dict[str, str] = dict(cursor.get("events") or {})
    todo: list[tuple[str, str]] = []
    bad: list[Rejected] = []
    for uuid, entry in manifest.items():
        stamp = entry.get("timestamp") if isinstance(entry, dict) else None
        if stamp in (None, ""):
            bad.append(Rejected(name, uuid, "manifest entry without 'timestamp'"))
            continue
        if not all(c.isalnum() or c == "-" for c in uuid):  # the uuid becomes a path: nothing else gets in
            bad.append(Rejected(name, uuid, "manifest key is not a UUID"))
            continue
        if str(stamp) != seen.get(uuid) and (uuid not in seen or _num(stamp) > _num(seen[uuid])):
            todo.append((uuid, str(stamp)))
    todo.sort(key=lambda t: (_num(t[1]), t[0]))
    if bad or not todo:
        yield Page([], {"events": dict(seen)}, bad, notes=[] if todo else ["no event newer than the last sync"])
    buffer: list[Any] = []
    rejected: list[Rejected] = []
    skipped = 0
    for uuid, stamp in todo:
        data, error = get(f"{uuid}.json")
        if error:
            rejected.append(Rejected(name, uuid, error))
        else:
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                rejected.append(Rejected(name, uuid, f"{uuid}.json: not JSON ({exc})"))
            else:
                objs, rej, skip = event_to_stix(name, doc, uuid)
                buffer.extend(objs)
                rejected.extend(rej)
                skipped += skip
                seen[uuid] = stamp  # an event that could not be fetched is tried again next time
        if len(buffer) >= page_size:
            yield Page(buffer, {"events": dict(seen)}, rejected, skipped=skipped)
            buffer, rejected, skipped = [], [], 0
    if buffer or rejected or skipped:
        yield Page(buffer, {"events": dict(seen)}, rejected, skipped=skipped)


def _oid(objs: list[Any]) -> str | None:
    return objs[0].get("id") if objs and isinstance(objs[0], dict) else None


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


FETCHERS: dict[str, Callable[..., Iterator[Page]]] = {
    "taxii": fetch_taxii,
    "bundle": fetch_bundle,
    "folder": fetch_folder,
    "misp": fetch_misp,
}
