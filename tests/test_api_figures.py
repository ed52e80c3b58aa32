"""The case timeline figure: its time axis for one instant, short windows and long ones, and the lifecycle
reading that goes with it."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from ttpscope.analyze.lifecycle import read_intent
from ttpscope.api.figures import axis_ticks, timeline_svg

T0 = datetime(2024, 9, 16, 8, 42, 15, tzinfo=timezone.utc)
TACTICS = ["initial-access", "execution", "persistence", "credential-access", "impact"]


def _steps(times: list[datetime]) -> list[dict]:
    return [{"time": t.isoformat(), "tactic": TACTICS[i % len(TACTICS)], "host": "ws1",
             "technique_id": "T1059.001", "technique": "PowerShell"} for i, t in enumerate(times)]


def _ticks(svg: str) -> list[str]:
    return re.findall(r'class="tick">([^<]*)</text>', svg)


def test_one_instant_gets_one_label():
    svg = str(timeline_svg(_steps([T0] * 5), TACTICS, {t: t for t in TACTICS}))
    assert _ticks(svg) == ["2024-09-16 08:42:15"]
    xs = set(re.findall(r'<circle cx="([\d.]+)" cy="[\d.]+" r="5" fill="#[0-9a-f]+" fill-opacity', svg))
    assert len(xs) == 1  # all dots in one column


def test_short_and_long_windows_never_repeat_a_label():
    for span in (timedelta(seconds=3), timedelta(seconds=90), timedelta(minutes=7), timedelta(hours=20),
                 timedelta(days=3), timedelta(days=400)):
        ticks = axis_ticks(T0, T0 + span, 0, 800)
        labels = [label for _, label in ticks]
        assert len(labels) == len(set(labels)) >= 2, (span, labels)
    seconds = [label for _, label in axis_ticks(T0, T0 + timedelta(seconds=3), 0, 800)]
    assert seconds[0] == "2024-09-16 08:42:15" and seconds[-1] == "08:42:18"  # the date once, then the time
    years = [label for _, label in axis_ticks(T0, T0 + timedelta(days=400), 0, 800)]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", label) for label in years)


def test_the_end_labels_stay_inside_the_figure():
    svg = str(timeline_svg(_steps([T0, T0 + timedelta(hours=20)]), TACTICS, {t: t for t in TACTICS}))
    anchors = re.findall(r'text-anchor="(\w+)" font-size="11" fill="#555" class="tick"', svg)
    assert anchors[0] == "start" and anchors[-1] == "end"


def test_no_forward_progress_is_read_into_one_instant(kb):
    reached = ["initial-access", "execution", "credential-access"]
    same = [{"time": T0.isoformat(), "tactic": t, "host": "ws1"} for t in reached]
    assert "progresses forward" not in read_intent(kb, reached, same)
    spread = [{"time": (T0 + timedelta(minutes=i)).isoformat(), "tactic": t, "host": "ws1"}
              for i, t in enumerate(reached)]
    assert "progresses forward" in read_intent(kb, reached, spread)
