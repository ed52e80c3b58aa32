"""CVE → technique mappings: real CTID files, hand-made files with known answers, bad inputs, URL caching."""

from __future__ import annotations

import http.server
import threading

import orjson
import pytest

from ttpscope.errors import InputError, NotFoundError
from ttpscope.kb.vulns import cve_view, extract_cves, load_mappings, resolve_mapping_techniques


def _mapex(objects, framework="kev", domain="enterprise"):
    return orjson.dumps({"metadata": {"mapping_version": "", "attack_version": "15.1", "technology_domain": domain,
                                      "creation_date": "01/01/2025", "mapping_framework": framework,
                                      "mapping_framework_version": "x", "mapping_types": {},
                                      "capability_groups": {}},
                         "mapping_objects": objects})


def _obj(cve, tid, mtype, **kw):
    return {"capability_id": cve, "attack_object_id": tid, "mapping_type": mtype, "attack_object_name": "",
            "capability_description": kw.get("desc", ""), "capability_group": "code_execution",
            "comments": "", "references": [], "status": "complete"}


@pytest.fixture(scope="module")
def real(shared_data):
    return load_mappings([shared_data / "ctid-mappings-explorer", shared_data / "ctid-attack_to_cve"])


def test_real_log4shell_by_mapping_type(real, kb):
    techs = real.techniques_for_cve("cve-2021-44228")
    assert techs["exploitation_technique"] == ["T1190"]
    assert {"T1486", "T1496", "T1505.003"} <= set(techs["secondary_impact"])
    view = cve_view(real, "CVE-2021-44228", kb)
    assert view["cve"] == "CVE-2021-44228"
    assert view["techniques"][0] == {**view["techniques"][0], "id": "T1190", "mapping_type": "exploitation_technique",
                                     "name": "Exploit Public-Facing Application"}
    assert "Log4j" in view["description"]
    assert view["attack_version"] == "15.1"


def test_real_sources_counted_and_non_cve_files_skipped(real):
    formats = {s["format"] for s in real.sources}
    assert "attack_to_cve csv" in formats and "mappings-explorer kev" in formats
    assert any("nist_800_53" in s for s in real.skipped)  # control mappings, not CVEs
    csv_src = next(s for s in real.sources if s["format"] == "attack_to_cve csv")
    assert csv_src["read"] == 839 and csv_src["accepted"] + csv_src["rejected"] == 839
    # the older CSV has typos such as 'T11190': reported per record, the other records kept
    assert any("CVE-2015-7912" in e and "T11190" in e for e in real.errors)
    assert "CVE-2019-15243" in real  # CSV-only CVE
    assert real.techniques_for_cve("CVE-2019-15243") == {"exploitation_technique": ["T1078", "T1190"],
                                                        "primary_impact": ["T1059"]}
    assert len(real) > 1000


def test_mobile_ids_left_out_for_enterprise(real, kb):
    maps = [m for m in real.by_cve["CVE-2016-4655"]]
    kept, notes = resolve_mapping_techniques(maps, kb)
    assert all(m.technique_id in kb.techniques for m in kept)


def test_handmade_merge_and_dedupe(tmp_path):
    a = tmp_path / "a.json"
    a.write_bytes(_mapex([_obj("CVE-2000-0001", "T1190", "exploitation_technique", desc="demo"),
                          _obj("CVE-2000-0001", "T1059.001", "primary_impact"),
                          _obj("CVE-2000-0002", "T1068", "primary_impact")]))
    b = tmp_path / "b.csv"
    b.write_text("CVE ID,Primary Impact,Secondary Impact,Exploitation Technique,Uncategorized,Phase\n"
                 "CVE-2000-0001,T1059.001,T1005; T1083,T1190,,Phase 1\n"
                 "CVE-2000-0003,,,,T1003.,Phase 1\n")
    m = load_mappings([a, b])
    assert m.techniques_for_cve("CVE-2000-0001") == {"exploitation_technique": ["T1190"],
                                                    "primary_impact": ["T1059.001"],
                                                    "secondary_impact": ["T1005", "T1083"]}
    both = [x for x in m.mappings_for_cve("CVE-2000-0001") if x.technique_id == "T1190"][0]
    assert both.sources == (str(a), str(b))
    assert m.techniques_for_cve("CVE-2000-0003") == {"uncategorized": ["T1003"]}
    assert m.cves_for_technique("T1190") == ["CVE-2000-0001"]
    assert m.describe("CVE-2000-0001") == "demo"


def test_bad_record_reported_others_kept(tmp_path):
    f = tmp_path / "m.json"
    f.write_bytes(_mapex([_obj("CVE-2000-0001", "T1190", "exploitation_technique"),
                          _obj("CVE-2000-0002", "X99", "primary_impact"),
                          _obj("CVE-2000-0003", "T1068", "bogus_type")]))
    m = load_mappings([f])
    assert m.cves() == ["CVE-2000-0001"]
    assert len(m.errors) == 2
    assert "mapping_objects[1]" in m.errors[0] and "X99" in m.errors[0]
    assert "bogus_type" in m.errors[1]
    assert m.sources[0] == {**m.sources[0], "read": 3, "accepted": 1, "rejected": 2}


@pytest.mark.parametrize("content,problem", [
    (b"{not json", "not valid JSON"),
    (b'{"metadata": {}}', "no 'mapping_objects'"),
])
def test_malformed_mapping_file_is_clear_error(tmp_path, content, problem):
    f = tmp_path / "bad.json"
    f.write_bytes(content)
    with pytest.raises(InputError) as err:
        load_mappings([f])
    assert str(f) in str(err.value) and problem in str(err.value)


def test_bad_csv_and_missing_path(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="CVE ID"):
        load_mappings([f])
    with pytest.raises(InputError, match="no such file"):
        load_mappings([tmp_path / "nope.json"])
    g = tmp_path / "controls.json"
    g.write_bytes(_mapex([{**_obj("AC-2", "T1078", "mitigates")}], framework="nist_800_53"))
    with pytest.raises(InputError, match="maps no CVEs"):
        load_mappings([g])


def test_unknown_cve_and_bad_id(real):
    with pytest.raises(NotFoundError, match="CVE-1999-99999"):
        cve_view(real, "CVE-1999-99999")
    with pytest.raises(InputError, match="not a CVE id"):
        cve_view(real, "log4shell")


def test_extract_cves_from_scanner_text():
    text = "host,cve\nweb1,cve-2021-44228\nweb2,CVE-2023-4966;CVE-2021-44228\n"
    assert extract_cves(text) == ["CVE-2021-44228", "CVE-2023-4966"]


def test_url_is_downloaded_once_and_cached(tmp_path):
    payload = _mapex([_obj("CVE-2000-0009", "T1133", "exploitation_technique")])
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/kev.json"
    try:
        first = load_mappings([url])
    finally:
        server.shutdown()
        server.server_close()
    assert first.techniques_for_cve("CVE-2000-0009") == {"exploitation_technique": ["T1133"]}
    again = load_mappings([url])  # server is gone: the cached copy answers
    assert again.cves() == ["CVE-2000-0009"]
    assert hits == ["/kev.json"]


def test_mapping_source_list_keeps_urls_whole():
    from ttpscope.kb.vulns import split_sources

    assert split_sources("/a/kev.json:https://h:8443/m.json:http://x/y.csv:/b", ":") == [
        "/a/kev.json", "https://h:8443/m.json", "http://x/y.csv", "/b"]
    assert split_sources(r"C:\m\kev.json;https://h/m.json", ";") == [r"C:\m\kev.json", "https://h/m.json"]
