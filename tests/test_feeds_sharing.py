"""Sightings shared back as STIX 2.1 sighting objects (validated by the stix2 library)."""

from __future__ import annotations

import json

import pyarrow as pa

from ttpscope.ingest.base import HOST, REC, SRC, TIME
import stix2

from feeds_data import indicator
from ttpscope.detect.indicators import match_indicators
from ttpscope.feeds import FeedStore, add_feed, sync_feed
from ttpscope.feeds.sharing import case_sightings_stix


def test_case_sightings_become_valid_stix(tmp_path):
    ind = indicator("203.0.113.5", oid="indicator--abababab-abab-4bab-8bab-abababababab")
    (tmp_path / "b.json").write_text(json.dumps({"type": "bundle", "id": "bundle--6f3c8a52-8a3f-4d1e-9c8e-2b6a7d0e4f13",
                                                 "objects": [ind]}))
    store = FeedStore(tmp_path / "ws.duckdb")
    add_feed("f", "bundle", str(tmp_path / "b.json"), store)
    sync_feed("f", store)
    t = pa.table({SRC: pa.array([0, 0, 0], pa.int32()), REC: pa.array([1, 2, 3], pa.int64()),
                  TIME: pa.array(["2026-11-30T10:00:00Z", "2026-11-30T11:00:00Z", "2026-11-30T12:00:00Z"]).cast(
                      pa.timestamp("us", tz="UTC")),
                  HOST: pa.array(["WS1", "WS1", "WS2"]), "DestinationIp": pa.array(["203.0.113.5"] * 3)})
    res = match_indicators([(t, ["net.json"])], store.current_terms())
    store.save_sightings(res.sightings, case_id="case-1")
    objs = case_sightings_stix("case-1", store)
    parsed = [stix2.parse(o, allow_custom=True) for o in objs]
    sightings = [o for o in parsed if o.type == "sighting"]
    assert sorted((s.count, s.sighting_of_ref) for s in sightings) == [(1, ind["id"]), (2, ind["id"])]
    ws1 = next(s for s in sightings if s.count == 2)
    assert ws1.first_seen.isoformat().startswith("2026-11-30T10:00") and ws1.last_seen.isoformat().startswith("2026-11-30T11:00")
    hosts = {o.id: o.name for o in parsed if o.type == "identity" and o.identity_class == "system"}
    assert hosts[ws1.where_sighted_refs[0]] == "WS1"
    assert any(o.type == "indicator" and o.id == ind["id"] for o in parsed)  # the bundle stands on its own
    assert case_sightings_stix("case-1", store)[-1]["id"] == objs[-1]["id"]  # stable ids
    assert case_sightings_stix("other", store) == []
