"""How the pages write numbers, one way everywhere and the way ``investigate``'s summary and the reports write
them: shares as whole percentages (``22%``; under one percent ``<1%``), scores and similarities on 0–1 with two
decimals, times to the minute in UTC."""

from __future__ import annotations

from typing import Any


def pct(value: Any) -> str:
    """A share in [0, 1] as ``22%`` (``<1%`` for a share above 0 that rounds to 0); anything else as given."""
    try:
        share = float(value)
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


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


def when(value: Any) -> str:
    """A timestamp (datetime or ISO text) to the minute, in UTC: ``2026-12-01 13:11 UTC``."""
    from datetime import datetime, timezone

    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M UTC")


FILTERS = {"pct": pct, "num": num, "when": when}
