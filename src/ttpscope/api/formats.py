"""How the pages write numbers, one way everywhere (and the way the CLI writes them): shares as percentages
with one decimal (``ttpscope coverage`` prints ``22.3%``), scores and similarities on 0–1 with two decimals."""

from __future__ import annotations

from typing import Any


def pct(value: Any) -> str:
    """A share in [0, 1] as ``22.3%``; anything not a number as given."""
    try:
        return f"{float(value):.1%}"
    except (TypeError, ValueError):
        return "" if value is None else str(value)


def num(value: Any, digits: int = 2) -> str:
    """A score on the 0–1 scale (or any float) with ``digits`` decimals; integers stay integers."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


FILTERS = {"pct": pct, "num": num}
