"""The STIX 2.1 bundle, built as plain dicts, checked object by object against ``stix2`` (the spec's
authority here): on the README's example case (logs and a report, investigated for real), on a real OTRF
campaign through SigmaHQ rules, and on the hand-built case with IOCs, attribution and a TLP marking.

Each object must parse strictly (``allow_custom=False``) and serialise back through ``stix2`` to exactly
the dict we wrote (same properties, defaults and timestamp precision); each cyber-observable's id must be
the one ``stix2`` derives from its id-contributing properties; the file written streamed must be the
bundle itself."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import stix2
from helpers_investigate import sample_case, with_attribution

from ttpscope.export.outputs import write_outputs
from ttpscope.export.stix import TLP2_IDS, case_bundle
from ttpscope.investigate import investigate
from ttpscope.investigate.analysis import analyse_case, analyse_stored_case
from ttpscope.store import Workspace

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCO_TYPES = {"file", "user-account", "windows-registry-key", "ipv4-addr", "ipv6-addr", "domain-name"}


def _stored(tmp_path_factory, evidence, rules, name, kb):
    path = tmp_path_factory.mktemp(name) / "workspace.duckdb"
    ws = Workspace(path)
    investigate(evidence, rules=rules, name=name, workspace=ws, formats=[], feeds=False)
    return analyse_stored_case(ws, name, kb)


@pytest.fixture(scope="module")
def example(tmp_path_factory, kb):
    return _stored(tmp_path_factory, [EXAMPLES / "evidence"], EXAMPLES / "rules", "stix-example", kb)


@pytest.fixture(scope="module")
def lsass(tmp_path_factory, kb, shared_data):
    campaign = shared_data / "otrf-cross-environment" / "compound" / "LSASS_campaign_01"
    rules = shared_data / "sigma" / "rules" / "windows" / "process_creation"
    return _stored(tmp_path_factory, [campaign], rules, "stix-lsass", kb)


@pytest.fixture(scope="module")
def sample(kb):
    case, dets, docs = sample_case()
    return with_attribution(analyse_case(case, kb, detections=dets, documents=docs))


def check_with_stix2(bundle: dict) -> dict[str, int]:
    """Every object of the bundle as stix2 sees it; returns the count per type."""
    stix2.parse(bundle, allow_custom=False)  # the bundle as a whole, strictly
    counts: dict[str, int] = {}
    for obj in bundle["objects"]:
        parsed = stix2.parse(obj, allow_custom=False)
        assert orjson.loads(parsed.serialize()) == obj, obj["id"]  # what stix2 would have written itself
        if obj["type"] in SCO_TYPES:
            derived = stix2.parse({k: v for k, v in obj.items() if k != "id"}, allow_custom=False)
            assert derived.id == obj["id"]  # the SCO's deterministic id, as stix2 derives it
        counts[obj["type"]] = counts.get(obj["type"], 0) + 1
    ids = [o["id"] for o in bundle["objects"]]
    assert len(ids) == len(set(ids))
    report = bundle["objects"][1]
    assert report["type"] == "report" and bundle["objects"][0]["id"] == report["created_by_ref"]
    markings = {o["id"] for o in bundle["objects"] if o["type"] == "marking-definition"}
    assert set(report["object_refs"]) == set(ids) - {report["id"], report["created_by_ref"]} - markings
    return counts


def test_example_case_bundle_is_what_stix2_writes(example, kb, tmp_path):
    bundle = case_bundle(example, kb)
    counts = check_with_stix2(bundle)
    # logs and a report: sightings with their observables, and the report's indicators and TLP marking
    for kind in ("attack-pattern", "sighting", "observed-data", "process", "file", "identity", "indicator",
                 "relationship", "marking-definition"):
        assert counts.get(kind, 0) > 0, kind
    marking = bundle["objects"][2]
    assert marking["type"] == "marking-definition" and marking["id"] in TLP2_IDS.values()
    assert all(o.get("object_marking_refs") == [marking["id"]] for o in bundle["objects"] if "created_by_ref" in o)
    indicators = [o for o in bundle["objects"] if o["type"] == "indicator"]
    assert all(o["pattern_type"] == "stix" and o["pattern_version"] == "2.1" for o in indicators)
    assert {o["labels"][0] for o in indicators} <= {"ttpscope-review:unreviewed", "ttpscope-review:confirmed"}
    # the file written streamed is the bundle itself, in the layout of one indented dump
    path = write_outputs(example, kb, tmp_path, ["stix"])["stix"]
    assert path.read_bytes() == orjson.dumps(bundle, option=orjson.OPT_INDENT_2)


@pytest.mark.slow  # 54k events through 1,183 SigmaHQ rules first (~50 s)
def test_real_campaign_bundle_is_what_stix2_writes(lsass, kb, tmp_path):
    assert lsass.detections  # SigmaHQ process-creation rules fire on this campaign
    bundle = case_bundle(lsass, kb)
    counts = check_with_stix2(bundle)
    assert counts["sighting"] >= 1 and counts["observed-data"] >= 1
    sightings = [o for o in bundle["objects"] if o["type"] == "sighting"]
    assert sum(s["count"] for s in sightings) >= len(lsass.detections)  # each fired rule counted per technique
    assert "marking-definition" not in counts  # no document, no TLP line: no marking
    path = write_outputs(lsass, kb, tmp_path, ["stix"])["stix"]
    assert orjson.loads(path.read_bytes()) == bundle


def test_hand_built_case_with_attribution_and_tlp(sample, kb):
    bundle = case_bundle(sample, kb, tlp="amber")
    counts = check_with_stix2(bundle)
    assert counts["indicator"] == 4 and counts["vulnerability"] == 1 and counts["intrusion-set"] >= 1
    assert bundle["objects"][2]["id"] == TLP2_IDS["amber"]
    rel = [o for o in bundle["objects"] if o.get("relationship_type") == "attributed-to"
           and o["source_ref"].startswith("campaign--")]
    assert len(rel) == 1 and rel[0]["confidence"] == 62
    assert case_bundle(sample, kb, tlp="amber") == bundle  # deterministic


def test_feed_indicator_sightings_go_through_stix2(sample, kb):
    import dataclasses

    def indicator(oid, pattern):
        return {"type": "indicator", "spec_version": "2.1", "id": oid, "created": "2024-09-01T10:00:00.000Z",
                "modified": "2024-09-01T10:00:00.000Z", "pattern": pattern, "pattern_type": "stix",
                "valid_from": "2024-09-01T10:00:00Z", "x_feed_score": 7}

    good = indicator("indicator--0a1b2c3d-0000-4000-8000-00000000c001", "[ipv4-addr:value = '203.0.113.50']")
    bad = indicator("indicator--0a1b2c3d-0000-4000-8000-00000000c002", "[ipv4-addr:value = ")  # refused pattern
    rows = [{"indicator": good, "feed": "iocs", "count": n, "host": host, "source": "/x/logs.jsonl",
             "first_seen": "2024-09-16T08:00:00.5Z", "last_seen": "2024-09-16T09:00:00Z"}
            for n, host in ((2, "WS1"), (1, "WS2"))]
    rows.append({"indicator": bad, "feed": "iocs", "count": 3, "host": "WS1"})
    bundle = case_bundle(dataclasses.replace(sample, sightings=rows), kb)
    check_with_stix2(bundle)
    objs = {o["id"]: o for o in bundle["objects"]}
    assert good["id"] in objs and "x_feed_score" not in objs[good["id"]]  # carried along without custom properties
    assert bad["id"] not in objs  # stix2-patterns refuses it: not shared on
    sightings = [o for o in bundle["objects"] if o.get("sighting_of_ref") == good["id"]]
    assert sorted(s["count"] for s in sightings) == [1, 2]
    assert sorted(objs[s["where_sighted_refs"][0]]["name"] for s in sightings) == ["WS1", "WS2"]
    assert {s["first_seen"] for s in sightings} == {"2024-09-16T08:00:00.5Z"}
    assert not [o for o in bundle["objects"] if o.get("sighting_of_ref") == bad["id"]]
