"""The Observation / Case contract: validation and JSON round-trip."""

from datetime import datetime, timezone

import pytest

from ttpscope.errors import InputError
from ttpscope.model import Case, Observation


def test_observation_validates_technique_id_and_confidence():
    Observation("T1059", "manual", "analyst")
    Observation("T1059.001", "sigma", "rule-1", confidence=0.0)
    for bad in ("T159", "t1059", "T1059.1", "T1059.0011", "1059", ""):
        with pytest.raises(ValueError, match="technique_id"):
            Observation(bad, "manual", "x")
    for bad in (-0.01, 1.01, "high"):
        with pytest.raises(ValueError, match="confidence"):
            Observation("T1059", "manual", "x", confidence=bad)
    with pytest.raises(ValueError, match="source_kind"):
        Observation("T1059", "guess", "x")


def test_case_json_round_trip_keeps_everything():
    t = datetime(2024, 3, 5, 10, 15, 0, tzinfo=timezone.utc)
    case = Case("intrusion", [
        Observation("T1003.001", "sigma", "rule-42", {"Image": "C:\\Windows\\System32\\rundll32.exe"},
                    ["credential-access"], t, "ws01", "alice", None, 0.8),
        Observation("T1566.001", "text", "report.md#10-80", {"sentence": "Spearphishing attachment <b>"},
                    document="report.md", confidence=0.6),
    ])
    back = Case.from_json(case.to_json())
    assert back.to_dict() == case.to_dict()
    assert back.observations[0].time == t
    assert back.technique_ids() == ["T1003.001", "T1566.001"]


def test_naive_times_are_utc_and_strings_parse():
    o = Observation.from_dict({"technique_id": "T1059", "source_kind": "import", "source_ref": "x",
                               "time": "2024-01-02T03:04:05Z"})
    assert o.time == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    o = Observation("T1059", "import", "x", time=datetime(2024, 1, 2))
    assert o.time.tzinfo is timezone.utc


def test_bad_case_json_names_the_record():
    with pytest.raises(InputError, match=r"case.json \[observation 1\]: technique_id"):
        Case.from_dict({"name": "c", "observations": [
            {"technique_id": "T1059", "source_kind": "manual", "source_ref": "a"},
            {"technique_id": "X1", "source_kind": "manual", "source_ref": "b"}]}, "case.json")
    with pytest.raises(InputError, match="not valid JSON"):
        Case.from_json(b"{nope", "case.json")
