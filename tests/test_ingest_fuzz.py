"""Property-based tests of every reader and the sniffer (Hypothesis): real seed files from ``../shared/data``
(EVTX, JSON lines, CSV, and Parquet / JSON-array / zip / tar.gz / gz built from real records) mutated by
the campaign's mutators — bit flips, byte runs, truncation, chunk damage, spliced lines, deep nesting,
encodings — must never crash or hang the ingest, and every source must conserve its records
(read = accepted + rejected, a reason for each rejection, rows out = accepted). A fixed-seed derandomized
run, so CI is reproducible; ``bench/fuzz_campaign.py`` is the long run."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ttpscope.ingest import EventReader
from ttpscope.ingest.flatten import flatten_json_event
from ttpscope.ingest.sniff import LOG, REPORT, UNKNOWN, sniff_bytes

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _campaign():
    spec = importlib.util.spec_from_file_location("fuzz_campaign", ROOT / "bench" / "fuzz_campaign.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CAMPAIGN = _campaign()


@pytest.fixture(scope="module")
def seeds(shared_data):
    return CAMPAIGN.seed_corpus(shared_data)


def test_seeds_read_cleanly(seeds, tmp_path):
    """The unmutated seeds: every record accepted (so the mutated runs start from good input)."""
    for name, data in seeds.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = CAMPAIGN.read_all(path)
        assert not result["problems"] and result["rejected"] == 0 and result["accepted"] > 0, (name, result)


SEED_NAMES = ["evtx0.evtx", "evtx1.evtx", "events.jsonl", "tar.jsonl", "array.json", "s3.csv", "index.csv",
              "events.parquet", "three.zip", "mixed.tar.gz", "events.jsonl.gz"]


@pytest.mark.parametrize("seed_name", SEED_NAMES)
def test_mutated_seed_conserves_records(seeds, tmp_path, seed_name):
    @PROPERTY
    @given(st.integers(min_value=0, max_value=2**32 - 1))
    def check(salt):
        data = CAMPAIGN.mutate(seeds[seed_name], random.Random(salt))
        path = tmp_path / f"m-{seed_name}"
        path.write_bytes(data)
        result = CAMPAIGN.read_all(path)  # raises on a crash
        assert not result["problems"], result["problems"]
    check()


@PROPERTY
@given(st.binary(max_size=4096), st.sampled_from(["", "x.json", "x.csv", "x.evtx", "x.gz", "x.md", "x.yml"]))
def test_sniffer_total_on_any_bytes(data, name):
    found = sniff_bytes(data, name, whole=True)
    assert found.kind in (LOG, REPORT, UNKNOWN)
    assert (found.kind == UNKNOWN) == (found.problem is not None) or found.kind != UNKNOWN


@PROPERTY
@given(st.binary(max_size=20000), st.sampled_from(["jsonl", "json", "csv", "evtx", "parquet"]))
def test_every_reader_on_any_bytes(tmp_path_factory, data, fmt):
    """Each reader, given arbitrary bytes under its own format (no sniffing), conserves and never raises."""
    path = tmp_path_factory.mktemp("any") / "input"
    path.write_bytes(data)
    reader = EventReader([(path, fmt)])
    rows = sum(b.num_rows for b in reader.batches())
    for s in reader.stats:
        assert s.read == s.accepted + s.rejected and sum(s.reasons.values()) == s.rejected
        assert not any(k.startswith("internal error") for k in s.reasons), s.samples
    assert rows == sum(s.accepted for s in reader.stats)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30)


@PROPERTY
@given(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=8))
def test_flatten_any_object(obj):
    """Any JSON object flattens to text fields whose names are unique ignoring case."""
    for shaped in (obj, {"Event": obj}, {"Event": {"System": obj, "EventData": obj}}, {"winlog": obj}):
        fields = flatten_json_event(shaped)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
        assert len({k.lower() for k in fields}) == len(fields)


@PROPERTY
@given(st.integers(min_value=1, max_value=3000), st.sampled_from(["dict", "list", "mixed"]))
def test_nesting_of_any_depth_is_one_record(tmp_path_factory, depth, kind):
    """A line nested to any depth is one record, accepted or rejected with a reason; the lines beside it
    are read."""
    if kind == "dict":
        line = b'{"a":' * depth + b"1" + b"}" * depth
    elif kind == "list":
        line = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    else:
        line = b'{"Event":{"System":' + b'[{"x":' * depth + b"1" + b"}]" * depth + b"}}"
    path = tmp_path_factory.mktemp("deep") / "deep.jsonl"
    path.write_bytes(b'{"EventID": 1}\n' + line + b'\n{"EventID": 2}\n')
    reader = EventReader([path])
    list(reader.batches())
    (s,) = reader.stats
    assert s.read == 3 and s.accepted >= 2


@PROPERTY
@given(st.lists(st.lists(st.text(alphabet='ab,;"\n\t x', max_size=6), min_size=3, max_size=3), max_size=30),
       st.sampled_from([",", ";", "\t"]))
def test_csv_rows_conserved(tmp_path_factory, rows, delim):
    """CSV of arbitrary cells (quotes, delimiters, newlines inside): every physical record is counted once
    — never more rejected+accepted than lines — and a well-quoted file is read whole."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delim, lineterminator="\n")
    w.writerow(["EventID", "Image", "CommandLine"])
    w.writerows(rows)
    path = tmp_path_factory.mktemp("csv") / "rows.csv"
    path.write_text(buf.getvalue())
    reader = EventReader([(path, "csv")])
    out = [r for b in reader.batches() for r in b.table.to_pylist()]
    (s,) = reader.stats
    assert s.read == s.accepted + s.rejected
    nonblank = [r for r in rows if any(c.strip() for c in r) or any(c for c in r)]
    assert s.accepted == len(out) <= len(rows)
    if delim == "," and all(r != ["", "", ""] for r in rows):
        assert s.accepted == len(nonblank), s.samples


@PROPERTY
@given(st.lists(st.sampled_from([b'{"EventID": 1, "Image": "a"}', b'{"EventID": 2', b"\xff\xfe", b"NaN",
                                 b'{"a": NaN}', b"[1, 2]", b'{"x": "\\ud800"}', b"", b"   "]),
                min_size=1, max_size=60))
def test_json_lines_conserved(tmp_path_factory, lines):
    """JSON lines of good and bad lines in any order (the first line too): every non-blank line is one
    record, accepted or rejected, whatever line 1 is."""
    path = tmp_path_factory.mktemp("jsonl") / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    reader = EventReader([(path, "jsonl")])
    list(reader.batches())
    (s,) = reader.stats
    expected = sum(1 for ln in lines if ln.strip())
    good = sum(1 for ln in lines if ln == b'{"EventID": 1, "Image": "a"}')
    arrays_first = lines[0] == b"[1, 2]"
    assert s.read == expected + (1 if arrays_first else 0)
    assert s.accepted >= good


def test_json_array_document_elementwise(tmp_path):
    """A JSON array document: one bad element costs itself, a cut array keeps the elements before."""
    good = [{"EventID": i, "Image": f"p{i}"} for i in range(100)]
    text = orjson.dumps(good, option=orjson.OPT_INDENT_2)
    bad = text.replace(b'"p50"', b'"p50', 1)  # an unterminated string inside element 51
    for data, least in ((text, 100), (bad, 50), (text[: len(text) // 2], 45)):
        path = tmp_path / "doc.json"
        path.write_bytes(data)
        reader = EventReader([path])
        list(reader.batches())
        (s,) = reader.stats
        assert s.accepted >= least and s.read == s.accepted + s.rejected


def test_bounded_campaign_run(seeds, monkeypatch, tmp_path):
    """CI's bounded run of ``bench/fuzz_campaign.py`` (fixed seed, 640 mutants in batches of 32): no crash,
    hang or conservation failure, and every input counted."""
    monkeypatch.setenv("FUZZ_KEEP", str(tmp_path / "findings"))
    result = CAMPAIGN.campaign(640, float("inf"), 15, 20.0, lambda m: None, batch=32, seeds=seeds)
    assert result["executions"] == 640 and sum(result["by_seed"].values()) == 640
    assert (result["crashes"], result["hangs"], result["conservation_failures"]) == (0, 0, 0), result["examples"]
    assert result["read"] == result["accepted"] + result["rejected"] and result["accepted"] > 0


def test_campaign_batch_failure_is_judged_input_by_input(seeds, monkeypatch, tmp_path):
    """A batch holding one crashing input is read again input by input: that input counts as one crash
    (kept for replay), its 31 neighbours as clean executions."""
    monkeypatch.setenv("FUZZ_KEEP", str(tmp_path / "findings"))
    real_mutate, real_read = CAMPAIGN.mutate, CAMPAIGN.read_all
    calls = []

    def mutate(data, rng, rounds=None):
        calls.append(1)
        return b"BOOM" if len(calls) == 5 else real_mutate(data, rng, rounds)

    def read_all(paths):
        if any(p.read_bytes() == b"BOOM" for p in (paths if isinstance(paths, list) else [paths])):
            raise ValueError("boom")
        return real_read(paths)

    monkeypatch.setattr(CAMPAIGN, "mutate", mutate)
    monkeypatch.setattr(CAMPAIGN, "read_all", read_all)
    result = CAMPAIGN.campaign(64, float("inf"), 15, 20.0, lambda m: None, batch=32, seeds=seeds)
    assert (result["executions"], result["crashes"], result["hangs"], result["batches_rerun"]) == (64, 1, 0, 1)
    (example,) = result["examples"]
    assert example["problem"] == ["ValueError: boom"] and Path(example["input"]).read_bytes() == b"BOOM"
