"""The feed knowledge layer: feed groups join ATT&CK and change attribution answers."""

from __future__ import annotations

import json
import uuid

from feeds_data import NOW, ts
from ttpscope.analyze.attribution import attribute
from ttpscope.feeds import FeedStore, add_feed, sync_feed
from ttpscope.feeds.knowledge import LayerReport, kb_with_feeds

OBSERVED = ["T1205", "T1539", "T1559.001"]  # rare-ish techniques of different ATT&CK groups


def _sdo(kind: str, name: str, **extra) -> dict:
    return {"type": kind, "spec_version": "2.1", "id": f"{kind}--{uuid.uuid4()}", "created": ts(NOW),
            "modified": ts(NOW), "name": name, **extra}


def _ap(ext_id: str) -> dict:
    return _sdo("attack-pattern", f"pattern {ext_id}",
                external_references=[{"source_name": "mitre-attack", "external_id": ext_id}])


def _uses(src: dict, dst: dict) -> dict:
    return {"type": "relationship", "spec_version": "2.1", "id": f"relationship--{uuid.uuid4()}",
            "created": ts(NOW), "modified": ts(NOW), "relationship_type": "uses", "source_ref": src["id"],
            "target_ref": dst["id"]}


def test_a_feed_group_makes_an_insufficient_case_attributable(tmp_path, kb):
    before = attribute(OBSERVED, kb, campaigns=False)
    assert before.insufficient_evidence and "confidence" in before.verdict

    group = _sdo("intrusion-set", "Harbor Spider", aliases=["HS-1"])
    patterns = [_ap(t) for t in OBSERVED] + [_ap("T1086")]  # T1086 is revoked: it becomes T1059.001
    apt29 = _sdo("intrusion-set", "APT29", external_references=[{"source_name": "mitre-attack", "external_id": "G0016"}])
    gone = _sdo("intrusion-set", "Withdrawn Group", revoked=True)
    objs = [group, apt29, gone, *patterns, *[_uses(group, p) for p in patterns], _uses(apt29, patterns[0]),
            _uses(gone, patterns[1])]
    (tmp_path / "intel.json").write_text(json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objs}))
    store = FeedStore(tmp_path / "ws.duckdb")
    add_feed("partner-intel", "bundle", str(tmp_path / "intel.json"), store)
    assert sync_feed("partner-intel", store).new == len(objs)

    layer = LayerReport()
    kb2 = kb_with_feeds(kb, store, report=layer)
    assert kb2 is not kb and group["id"] not in kb.groups  # the ATT&CK KB is untouched
    assert layer.groups_added == [group["id"]] and layer.groups_enriched == ["G0016"]
    assert gone["id"] not in kb2.groups  # revoked: not part of the layer
    assert sum(1 for g in kb2.groups.values() if g.name == "APT29") == 1  # joined, not duplicated
    assert kb2.group_techniques(group["id"]) == {*OBSERVED, "T1059.001"}
    assert "T1205" in kb2.group_techniques("G0016") and "T1205" not in kb.group_techniques("G0016")
    assert kb2.group("HS-1").id == group["id"]
    assert "partner-intel" in kb2.provenance()["source"]

    after = attribute(OBSERVED, kb2, campaigns=False)
    top = after.groups[0]
    assert not after.insufficient_evidence, after.verdict
    assert (top.id, top.name) == (group["id"], "Harbor Spider")
    assert top.context["source"] == "feed partner-intel"
    assert top.closest_instance["name"] == "feed partner-intel"
    assert {m.technique_id for m in top.explained} == set(OBSERVED)

    # a feed only mentioning ATT&CK's own group adds no candidate
    assert len(kb2.live_groups()) == len(kb.live_groups()) + 1
