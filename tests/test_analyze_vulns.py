"""CVE ranking against a threat profile: a known answer and real prevalence."""

from __future__ import annotations

import pytest

from ttpscope.analyze.profile import profile_from_groups
from ttpscope.analyze.vulns import rank_cves
from ttpscope.kb.vulns import load_mappings


def test_rank_cves_known_answer(tmp_path, kb):
    f = tmp_path / "m.csv"
    f.write_text("CVE ID,Primary Impact,Secondary Impact,Exploitation Technique,Uncategorized,Phase\n"
                 "CVE-2000-0001,T1059.001,,T1190,,Phase 1\n"
                 "CVE-2000-0002,,T1005,,,Phase 1\n")
    maps = load_mappings([f])
    prof = profile_from_groups(kb, ["APT29"])
    r = rank_cves(kb, maps, ["CVE-2000-0002", "cve-2000-0001", "CVE-2000-0003"], prof)
    assert [x["cve"] for x in r["ranked"]] == ["CVE-2000-0001", "CVE-2000-0002"]
    apt29 = prof.actors
    expected = (1.0 if "T1059.001" in apt29 else 0.0) + (1.0 if "T1190" in apt29 else 0.0)
    assert r["ranked"][0]["score"] == pytest.approx(expected)
    assert r["ranked"][1]["score"] == pytest.approx(0.5 if "T1005" in apt29 else 0.0)
    assert r["unmapped"] == ["CVE-2000-0003"]


def test_rank_cves_real_prevalence(kb, shared_data):
    maps = load_mappings([shared_data / "ctid-mappings-explorer" / "mappings" / "kev"])
    r = rank_cves(kb, maps, ["CVE-2021-44228", "CVE-2017-11882"])
    assert r["profile"]["kind"] == "all-groups"
    assert all(0 < x["score"] for x in r["ranked"])
    scores = [x["score"] for x in r["ranked"]]
    assert scores == sorted(scores, reverse=True)
