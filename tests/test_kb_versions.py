"""The v18 detection model, version diff (embedded v15.1 ICS vs shared v18.1 ICS) and the warm cache."""

import os
import pickle
import shutil

import pytest

from ttpscope.kb import load_bundle_file, load_kb
from ttpscope.kb.diff import diff_kb


@pytest.fixture(scope="module")
def ics18(shared_data):
    return load_bundle_file(shared_data / "attack" / "ics-attack-18.1.json")


def test_v18_detection_model(ics18):
    assert ics18.version == "18.1" and ics18.domain == "ics"
    strategies = ics18.detection_strategies_of("T0807")
    assert strategies and strategies[0].id.startswith("DET")
    analytics = [ics18.analytics[a] for a in strategies[0].analytics]
    assert analytics and analytics[0].log_sources
    components = ics18.data_components_of("T0807")
    assert {"Process Creation", "Command Execution"} <= {c.name for c in components}
    assert any(c.log_sources for c in ics18.data_components.values())


def test_diff_v15_to_v18_ics(ics_kb, ics18):
    d = diff_kb(ics_kb, ics18)
    assert d["old"]["attack_version"] == "15.1" and d["new"]["attack_version"] == "18.1"
    assert {"id": "C0041", "name": "FrostyGoop Incident"} in d["added"]["campaigns"]
    assert len(d["added"]["detection_strategies"]) == len(ics18.detection_strategies) > 50
    changes = {c["id"]: c for c in d["groups"]["profile_changes"]}
    assert "G0034" in changes and changes["G0034"]["gained"]  # Sandworm gained techniques
    # every technique reported gained really is new to the group's profile
    for gid, change in changes.items():
        assert not set(change["gained"]) & ics_kb.group_techniques(gid)


def test_diff_reports_revoked_renamed_moved(ics_kb, shared_data, tmp_path):
    import json

    bundle = json.loads((shared_data / "attack" / "ics-attack-18.1.json").read_text())
    techs = {o["id"]: o for o in bundle["objects"] if o["type"] == "attack-pattern" and not o.get("revoked")
             and not o.get("x_mitre_deprecated")}
    a, b, c = sorted(techs)[:3]
    techs[a]["name"] = techs[a]["name"] + " (renamed)"
    techs[b]["kill_chain_phases"] = [{"kill_chain_name": "mitre-ics-attack", "phase_name": "impact"}]
    techs[c]["revoked"] = True
    bundle["objects"].append({"type": "relationship", "id": "relationship--00000000-0000-4000-8000-000000000001",
                              "relationship_type": "revoked-by", "source_ref": c, "target_ref": a,
                              "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z"})
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(bundle))
    d = diff_kb(ics_kb, load_bundle_file(path))
    ext = lambda sid: next(r["external_id"] for r in techs[sid]["external_references"] if r.get("external_id"))  # noqa
    assert [r["id"] for r in d["techniques"]["renamed"]] == [ext(a)]
    assert ext(b) in [m["id"] for m in d["techniques"]["moved"]]
    revoked = {r["id"]: r["replaced_by"] for r in d["techniques"]["revoked"]}
    assert revoked == {ext(c): ext(a)}


def test_warm_cache_is_written_reused_and_invalidated(tmp_path, monkeypatch, shared_data):
    import ttpscope.kb as kbmod

    monkeypatch.setenv("TTPSCOPE_HOME", str(tmp_path / "home"))
    bundle = tmp_path / "ics.json"
    shutil.copy(shared_data / "attack" / "ics-attack-18.1.json", bundle)
    kbmod._loaded.clear()
    first = load_kb("ics", str(bundle))
    caches = list((tmp_path / "home" / "cache" / "kb").glob("*.pickle"))
    assert len(caches) == 1
    kbmod._loaded.clear()
    second = load_kb("ics", str(bundle))
    assert second is not first and second.info() == first.info()
    # the bundle changes: a new cache entry, and the new content answers
    text = bundle.read_text().replace('"Command-Line Interface"', '"Command-Line Interface v2"')
    bundle.write_text(text)
    os.utime(bundle, ns=(caches[0].stat().st_mtime_ns + 10**9,) * 2)
    kbmod._loaded.clear()
    third = load_kb("ics", str(bundle))
    assert third.technique("T0807").name == "Command-Line Interface v2"
    assert len(list((tmp_path / "home" / "cache" / "kb").glob("*.pickle"))) == 2
    # a corrupt cache file is rebuilt, not fatal
    for cache in (tmp_path / "home" / "cache" / "kb").glob("*.pickle"):
        cache.write_bytes(b"garbage")
    kbmod._loaded.clear()
    assert load_kb("ics", str(bundle)).technique("T0807").name == "Command-Line Interface v2"
    rebuilt = [c for c in (tmp_path / "home" / "cache" / "kb").glob("*.pickle") if c.read_bytes() != b"garbage"]
    assert len(rebuilt) == 1 and pickle.loads(rebuilt[0].read_bytes()).version == "18.1"
    kbmod._loaded.clear()
