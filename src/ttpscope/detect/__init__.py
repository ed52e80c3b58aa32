"""Sigma rules: loading, ATT&CK tag mapping, compilation, execution on DuckDB (Spark at scale), correlation.

Entry points: :func:`ttpscope.detect.rules.load_rules` (rules with their techniques/tactics) and
:func:`detect` (logs + rules → detections and observations).
"""

from __future__ import annotations

from typing import Any


def detect(*args: Any, **kwargs: Any):
    """See :func:`ttpscope.detect.runner.detect` (imported lazily: pySigma and DuckDB load on first use)."""
    from ttpscope.detect.runner import detect as _detect

    return _detect(*args, **kwargs)


__all__ = ["detect"]
