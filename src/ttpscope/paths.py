"""Where ttpscope keeps its own files: the workspace, caches of bundles, rules and models."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


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
