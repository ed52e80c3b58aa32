"""Where ttpscope keeps its own files: the workspace, caches of bundles, rules and models, and the one helper
every disk cache goes through.

    from ttpscope.paths import cache_dir, load_cache, save_cache
    kb = load_cache(cache_dir("kb") / "x.pickle", KnowledgeBase, "knowledge-base cache")
    if kb is None:
        kb = build(); save_cache(cache_dir("kb") / "x.pickle", kb, "knowledge-base cache")

A cache that cannot be read (random bytes, a truncated file, an unsupported pickle protocol, a pickle of
another type) is never fatal: :func:`load_cache` says so in one warning naming the file and returns None,
so the caller rebuilds it. :func:`save_cache` writes under a unique temporary name in the same folder and
renames it into place atomically, so processes writing the same cache at once never see a half file.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import platformdirs

log = logging.getLogger("ttpscope.cache")


def home() -> Path:
    """``TTPSCOPE_HOME`` if set, else the platform's user data dir. Created on first use."""
    root = os.environ.get("TTPSCOPE_HOME")
    path = Path(root).expanduser() if root else Path(platformdirs.user_data_dir("ttpscope"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(kind: str) -> Path:
    """A sub-folder of the home for one kind of cache (``bundles``, ``kb``, ``rules``, ``models``)."""
    path = home() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


Check = type | tuple[type, ...] | Callable[[Any], bool]


def _accepts(check: Check, value: Any) -> bool:
    if isinstance(check, type) or isinstance(check, tuple):
        return isinstance(value, check)
    return bool(check(value))


def load_cache(path: str | Path, check: Check, what: str) -> Any | None:
    """The object pickled in ``path`` if it loads and passes ``check`` (a type, tuple of types or predicate).

    None when there is no such file (silently) or when it is unusable (with one warning naming ``what`` and
    the file): the caller rebuilds the cache.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("%s %s cannot be read (%s): rebuilding it", what, path, exc.strerror or exc)
        return None
    collecting = gc.isenabled()
    gc.disable()  # unpickling makes many objects and no garbage: collecting meanwhile doubles its time
    try:
        value = pickle.loads(raw)
    except Exception as exc:  # random bytes, truncation, another protocol, classes that moved: all rebuilt
        log.warning("%s %s is unreadable (%s): rebuilding it", what, path, _one_line(exc))
        return None
    finally:
        if collecting:
            gc.enable()
    if not _accepts(check, value):
        log.warning("%s %s holds a %s, not what this version writes: rebuilding it", what, path,
                    type(value).__name__)
        return None
    return value


def save_cache(path: str | Path, value: Any, what: str) -> bool:
    """Pickle ``value`` to ``path`` through a unique temporary file and an atomic rename; False (with one
    warning) when it cannot be written, e.g. a full disk — a cache is never worth failing the command."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        return True
    except Exception as exc:  # a full disk, an unpicklable attribute: the cache is simply not kept
        log.warning("%s %s not written (%s); it is rebuilt next time", what, path,
                    getattr(exc, "strerror", None) or _one_line(exc))
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
