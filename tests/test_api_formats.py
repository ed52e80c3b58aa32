"""One number format on every page, the one investigate's summary and the reports use."""

from __future__ import annotations

from datetime import datetime, timezone

from ttpscope.api.formats import num, pct, when


def test_shares_are_whole_percentages_as_the_summary_writes_them():
    for share in (0.2231, 0.24, 0.995, 1.0, 0.0, 0.5):
        assert pct(share) == f"{100 * share:.0f}%"  # export/tables.py's summary format
    assert pct(0.003) == "<1%" and pct(None) == "" and pct("n/a") == "n/a"


def test_scores_and_times():
    assert num(0.41666) == "0.42" and num(3) == "3" and num(0.5, 3) == "0.500" and num(None) == ""
    assert when("2026-12-01T13:11:59.386974Z") == "2026-12-01 13:11 UTC"
    assert when(datetime(2026, 12, 1, 14, 11, tzinfo=timezone.utc)) == "2026-12-01 14:11 UTC"
    assert when("yesterday") == "yesterday"
