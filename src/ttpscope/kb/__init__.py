"""The ATT&CK knowledge base: load a domain's bundle (embedded, file, URL, TAXII) and query it.

    from ttpscope.kb import load_kb
    kb = load_kb("enterprise")
    kb.technique("T1003.001").name        # 'LSASS Memory'
    kb.group("Cozy Bear").id              # 'G0016'

Loading indexes the bundle once and writes a warm cache (a pickle keyed by the bundle file's identity and
the loader's schema), so later processes start in a fraction of the parse time.

Beside the ATT&CK model: CVE mappings (:mod:`ttpscope.kb.vulns`), Atomic Red Team indexes
(:mod:`ttpscope.kb.atomics`) and data-source inventories (:mod:`ttpscope.kb.inventory`), the loaders the
analyses take their reference data from.
"""

from __future__ import annotations

import gc
import hashlib
import os
from pathlib import Path

from ttpscope import __version__
from ttpscope.kb.base import DOMAINS, KnowledgeBase, plain
from ttpscope.kb.loader import build_kb, parse_bundle
from ttpscope.kb.sources import BundleSource, resolve_source
from ttpscope.paths import cache_dir, load_cache, save_cache

__all__ = ["DOMAINS", "KnowledgeBase", "load_kb", "load_bundle_file", "plain"]

CACHE_SCHEMA = "3"  # bump when KnowledgeBase or the loader changes shape
_loaded: dict[tuple, KnowledgeBase] = {}


def _cache_key(src: BundleSource, include_deprecated: bool) -> str:
    stat = src.path.stat()
    from ttpscope.kb.aliases import misp_galaxy_dir

    misp = misp_galaxy_dir()
    misp_stamp = (misp / "threat-actor.json").stat().st_mtime_ns if misp else 0
    ident = f"{CACHE_SCHEMA}|{__version__}|{src.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|" \
            f"{src.version}|{src.label}|{include_deprecated}|{misp_stamp}"
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def load_bundle_file(path: str | Path, version: str | None = None, label: str | None = None,
                     include_deprecated: bool = False, domain: str | None = None) -> KnowledgeBase:
    """Parse and index one bundle file, without the warm cache."""
    path = Path(path)
    objects = parse_bundle(path.read_bytes(), str(path))
    return build_kb(objects, label or str(path), version=version, domain=domain,
                    include_deprecated=include_deprecated)


def load_kb(domain: str = "enterprise", bundle: str | None = None, include_deprecated: bool = False,
            use_cache: bool = True, refresh: bool = False) -> KnowledgeBase:
    """The knowledge base of a domain.

    ``bundle``: None (newest release fetched by ``kb update``, else the embedded v15.1), ``"embedded"``,
    a file path, an ``http(s)://`` URL (downloaded once) or a ``taxii+http(s)://.../collections/<id>/`` URL.
    """
    src = resolve_source(domain, bundle, refresh=refresh)
    memo = (str(src.path), include_deprecated)
    if memo in _loaded and not refresh:
        return _loaded[memo]
    kb = None
    cache_file = None
    if use_cache and os.environ.get("TTPSCOPE_NO_KB_CACHE") != "1":
        cache_file = cache_dir("kb") / f"{_cache_key(src, include_deprecated)}.pickle"
        gc_was_enabled = gc.isenabled()
        gc.disable()  # unpickling ~40k small objects: the cyclic GC only slows it down
        try:
            kb = load_cache(cache_file, KnowledgeBase, "knowledge-base cache")
        finally:
            if gc_was_enabled:
                gc.enable()
    if kb is None:
        objects = parse_bundle(src.path.read_bytes(), src.label)
        kb = build_kb(objects, src.label, version=src.version, include_deprecated=include_deprecated)
        wanted = domain.lower().removesuffix("-attack")
        if kb.domain != wanted:
            from ttpscope.errors import InputError

            raise InputError(src.label, None, f"this is an ATT&CK {kb.domain} bundle, not {wanted}")
        if cache_file is not None:
            save_cache(cache_file, kb, "knowledge-base cache")
    # The KB is read-only from here on: move its ~40k objects out of the cyclic GC's generations so that
    # later collections don't rescan them (measured: 10 ms saved on the first query after a warm load).
    gc.freeze()
    _loaded[memo] = kb
    return kb
