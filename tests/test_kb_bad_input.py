"""Bad input to the KB gives one clear line on stderr and exit code 2 — never a traceback."""

import json
import os
import subprocess
import sys

import pytest

from kb_servers import free_port
from ttpscope.kb import load_bundle_file


def run_cli(*args, home):
    env = {**os.environ, "TTPSCOPE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "ttpscope", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def one_clear_line(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_malformed_json(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"type": "bundle", "objects": [')
    one_clear_line(run_cli("kb", "info", "--bundle", str(bad), home=tmp_path), "broken.json", "not valid JSON")


def test_json_that_is_not_a_bundle(tmp_path):
    bad = tmp_path / "layer.json"
    bad.write_text(json.dumps({"name": "a layer", "techniques": []}))
    one_clear_line(run_cli("kb", "info", "--bundle", str(bad), home=tmp_path), "layer.json", "not a STIX 2.1 bundle")
    empty = tmp_path / "empty-bundle.json"
    empty.write_text(json.dumps({"type": "bundle", "id": "bundle--1", "objects": [{"type": "identity", "id": "x"}]}))
    one_clear_line(run_cli("kb", "info", "--bundle", str(empty), home=tmp_path), "empty-bundle.json",
                   "not an ATT&CK bundle")


def test_missing_file(tmp_path):
    one_clear_line(run_cli("kb", "info", "--bundle", str(tmp_path / "nope.json"), home=tmp_path), "nope.json",
                   "no such file")


def test_dangling_references_warn_and_load_the_rest(tmp_path, shared_data):
    bundle = json.loads((shared_data / "attack" / "ics-attack-18.1.json").read_text())
    # drop two techniques: their relationships now point at nothing
    dropped = [o for o in bundle["objects"] if o["type"] == "attack-pattern"][:2]
    bundle["objects"] = [o for o in bundle["objects"] if o not in dropped]
    path = tmp_path / "dangling.json"
    path.write_text(json.dumps(bundle))
    kb = load_bundle_file(path)
    assert kb.warnings and "refers to missing object" in kb.warnings[0]
    assert len(kb.techniques) == 95 - 2 and kb.procedures
    proc = run_cli("kb", "info", "--bundle", str(path), "--domain", "ics", home=tmp_path)
    assert proc.returncode == 0 and "refers to missing object" in proc.stderr


def test_unknown_technique_id(tmp_path):
    one_clear_line(run_cli("kb", "technique", "T9999", home=tmp_path), "T9999 is not in enterprise ATT&CK v15.1")
    one_clear_line(run_cli("kb", "technique", "not-a-technique", home=tmp_path), "not-a-technique")
    one_clear_line(run_cli("kb", "group", "Nobody Bear", home=tmp_path), "no group named 'Nobody Bear'")


def test_unreachable_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/enterprise-attack.json"
    one_clear_line(run_cli("kb", "info", "--bundle", url, home=tmp_path), url, "cannot reach")
    one_clear_line(run_cli("kb", "update", "--index-url", url, home=tmp_path), "cannot reach")


def test_wrong_domain_for_bundle(tmp_path, shared_data):
    ics = shared_data / "attack" / "ics-attack-18.1.json"
    one_clear_line(run_cli("kb", "info", "--bundle", str(ics), home=tmp_path), "ics bundle, not enterprise")
    one_clear_line(run_cli("kb", "info", "--domain", "windows", home=tmp_path), "unknown domain 'windows'")


@pytest.mark.parametrize("args,expect", [
    (["kb", "technique", "T1003.001", "--json"], {"id": "T1003.001", "name": "LSASS Memory"}),
    (["kb", "group", "Cozy Bear", "--json"], {"id": "G0016", "name": "APT29"}),
    (["kb", "technique", "T1086", "--json"], {"id": "T1059.001", "requested": "T1086"}),
])
def test_done_when_commands(tmp_path, args, expect):
    proc = run_cli(*args, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key, value in expect.items():
        assert data[key] == value
    if args[1] == "technique":
        assert {"tactics", "is_subtechnique", "parent", "subtechniques", "groups", "mitigations",
                "attack_version", "domain"} <= data.keys()
    if args[:3] == ["kb", "technique", "T1003.001"]:
        assert data["tactics"] == ["credential-access"]
    if args[1] == "group":
        assert {"aliases", "techniques", "software", "campaigns"} <= data.keys()
        assert all({"id", "name", "via"} <= t.keys() for t in data["techniques"])


WRONG_TYPES = {  # object type to damage -> (field, wrong value)
    "external_references a string": ("attack-pattern", "external_references", "https://attack.mitre.org"),
    "kill_chain_phases a number": ("attack-pattern", "kill_chain_phases", 7),
    "tactic_refs a number": ("x-mitre-matrix", "tactic_refs", 12),
    "id an object": ("attack-pattern", "id", {"nested": "attack-pattern--1"}),
    "a number as a kill chain phase name": ("attack-pattern", "kill_chain_phases",
                                            [{"kill_chain_name": "mitre-ics-attack", "phase_name": 3}]),
    "a list of numbers as aliases": ("intrusion-set", "aliases", [1, 2]),
}


@pytest.mark.parametrize("what", sorted(WRONG_TYPES))
def test_wrong_typed_fields_reject_the_object_with_a_counted_reason(tmp_path, shared_data, what):
    otype, field, value = WRONG_TYPES[what]
    bundle = json.loads((shared_data / "attack" / "ics-attack-18.1.json").read_text())
    clean = load_bundle_file(shared_data / "attack" / "ics-attack-18.1.json")
    assert not any("rejected" in w for w in clean.warnings)  # the real bundle loses nothing
    victim = next(o for o in bundle["objects"] if o["type"] == otype and not o.get("revoked"))
    victim[field] = value
    path = tmp_path / "damaged.json"
    path.write_text(json.dumps(bundle))
    kb = load_bundle_file(path, domain="ics")
    rejected = [w for w in kb.warnings if "rejected" in w]
    assert len(rejected) == 2 and f"'{field}" in rejected[0] and "1 of" in rejected[1], kb.warnings
    if otype == "attack-pattern":  # only the damaged technique is lost
        assert len(kb.techniques) == len(clean.techniques) - 1 and kb.procedures
    elif otype == "intrusion-set":
        assert len(kb.groups) == len(clean.groups) - 1
    else:  # without its matrix the tactics are unknown, the techniques still load
        assert len(kb.techniques) == len(clean.techniques)
    proc = run_cli("kb", "info", "--bundle", str(path), "--domain", "ics", home=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "rejected" in proc.stderr, proc.stderr
