"""One intrusion or several (ttpscope.analyze.intrusions and the "intrusions" report section): clusters of
related activity by shared hosts, users, IPs and accounts and by time gaps, each with its own attribution."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ttpscope.analyze.intrusions import activity_clusters
from ttpscope.analyze.sections import analyse
from ttpscope.model import Case, Detection, Observation

T0 = datetime(2021, 4, 21, 9, 0, tzinfo=timezone.utc)


def obs(tid: str, host: str | None, when: datetime, user: str | None = None, rule: str = "r",
        source: str = "a.evtx", record: int | None = None, tactic: str | None = None) -> Observation:
    return Observation(tid, "sigma", rule, {"rule": f"rule {rule}", "level": "high", "source": source,
                                              "record": record}, [f"attack.{tactic}"] if tactic else [],
                       time=when, host=host, user=user, confidence=0.85)


def test_shared_user_links_hosts_and_a_long_silence_splits():
    steps = [obs("T1059.001", "ws1.corp.local", T0, "CORP\\alice"),
             # two days later on another host with the same account (its UPN spelling): the same intrusion
             obs("T1021.002", "fs1.corp.local", T0 + timedelta(days=2), "alice@corp.local"),
             # the same host eight months later, nothing else in between: a new line of activity
             obs("T1003.001", "ws1.corp.local", T0 + timedelta(days=240), "CORP\\bob")]
    clusters = activity_clusters(steps)
    assert [len(c.observations) for c in clusters] == [2, 1]
    assert {h.split(".")[0] for h in clusters[0].hosts} == {"ws1", "fs1"} and "alice" in clusters[0].kind("user")
    assert clusters[1].first == T0 + timedelta(days=240)


def test_concurrent_activity_in_one_domain_is_one_but_not_across_networks():
    # an hour apart, no shared entity, one AD domain: one intruder's steps on two hosts
    one = activity_clusters([obs("T1059.001", "ws1.corp.local", T0), obs("T1003.001", "dc1.corp.local",
                                                                          T0 + timedelta(hours=1))])
    assert len(one) == 1
    # the same hour in two unrelated networks: two clusters
    two = activity_clusters([obs("T1059.001", "ws1.corp.local", T0), obs("T1003.001", "dc1.other.lan",
                                                                          T0 + timedelta(hours=1))])
    assert len(two) == 2


def test_the_rule_hit_links_through_an_ip_address():
    # days apart on two hosts of different domains; the hits behind them name one source IP
    hits = [Detection("r1", source="a.evtx", record=1, host="ws1.corp.local", src_ip="10.0.0.5", time=T0),
            Detection("r2", source="b.evtx", record=9, host="srv.partner.lan", src_ip="10.0.0.5",
                      time=T0 + timedelta(days=3))]
    steps = [obs("T1059.001", "ws1.corp.local", T0, rule="r1", source="a.evtx", record=1),
             obs("T1021.001", "srv.partner.lan", T0 + timedelta(days=3), rule="r2", source="b.evtx", record=9)]
    assert len(activity_clusters(steps)) == 2  # without the hits nothing links them
    linked = activity_clusters(steps, hits)
    assert len(linked) == 1 and "10.0.0.5" in linked[0].kind("ip")


def test_untimed_report_claims_belong_to_no_cluster():
    claim = Observation("T1566.001", "text", "r.md#1-9", {"sentence": "phishing"}, [], document="r.md")
    assert activity_clusters([claim]) == []
    assert len(activity_clusters([claim, obs("T1059.001", "ws1", T0)])[0].observations) == 1


def _lab_case() -> Case:
    """Two unrelated intrusions three years apart in two networks, each a few steps on two hosts."""
    a = [obs("T1566.001", "ws1.corp.local", T0, "CORP\\alice", rule="a1", tactic="initial-access"),
         obs("T1059.001", "ws1.corp.local", T0 + timedelta(minutes=5), "CORP\\alice", rule="a2"),
         obs("T1003.001", "ws1.corp.local", T0 + timedelta(hours=1), "CORP\\alice", rule="a3"),
         obs("T1021.002", "dc1.corp.local", T0 + timedelta(hours=2), "CORP\\alice", rule="a4")]
    t1 = T0 + timedelta(days=3 * 365)
    b = [obs("T1190", "web1.shop.lan", t1, "www-data", rule="b1"),
         obs("T1505.003", "web1.shop.lan", t1 + timedelta(minutes=3), "www-data", rule="b2"),
         obs("T1486", "db1.shop.lan", t1 + timedelta(hours=5), "www-data", rule="b3")]
    return Case("lab", a + b)


def test_section_warns_and_attributes_each_cluster(kb):
    analysis = analyse(_lab_case(), kb, only=["lifecycle", "intrusions", "attribution"])
    sec = analysis.sections["intrusions"]
    assert sec.ok and sec.data.separate
    assert sec.data.note.startswith("This looks like more than one intrusion") and "2 separate clusters" in sec.data.note
    rows = sec.data.clusters
    assert [r["observations"] for r in rows] == [4, 3]
    assert {h.split(".")[0] for h in rows[0]["hosts"]} == {"ws1", "dc1"} and rows[0]["first"].startswith("2021-04-21")
    assert rows[1]["furthest"] == "Impact" and rows[0]["furthest"] != "Impact"  # each cluster has its own stage
    for row in rows:  # and its own attribution, over its own techniques only
        assert row["attribution"] is not None and row["attribution"]["verdict"]
    assert set(rows[0]["techniques"]).isdisjoint(rows[1]["techniques"])
    att = analysis.sections["attribution"]
    assert "2 separate intrusions" in att.data.caveat and "2 separate intrusions" in att.message
    # the section data travels in case.json for the web case page
    assert analysis.to_dict()["sections"]["intrusions"]["data"]["clusters"][0]["id"] == "C1"


def test_one_intrusion_has_no_warning(kb):
    one = Case("one", _lab_case().observations[:4])
    sec = analyse(one, kb, only=["intrusions"]).sections["intrusions"]
    assert sec.ok and not sec.data.separate and len(sec.data.clusters) == 1
    assert sec.data.clusters[0]["attribution"] is None and "more than one" not in sec.data.note


def test_stix_has_no_whole_case_attribution_for_several_intrusions(kb):
    from ttpscope.export.stix import case_bundle

    analysis = analyse(_lab_case(), kb, only=["lifecycle", "intrusions", "attribution"])
    analysis.sections["attribution"].data.insufficient = False  # even a confident ranking would mix two intrusions
    bundle = case_bundle(analysis, kb)
    assert not [o for o in bundle["objects"] if o.get("relationship_type") == "attributed-to"]
    analysis.sections["attribution"].data.caveat = ""
    assert [o for o in case_bundle(analysis, kb)["objects"] if o.get("relationship_type") == "attributed-to"]


def test_many_lone_clusters_are_counted_but_kept_bounded(kb, monkeypatch):
    from ttpscope.analyze import sections

    monkeypatch.setattr(sections, "MAX_CLUSTERS", 3)
    lone = [obs("T1059.001", f"h{i}.net{i}.lan", T0 + timedelta(days=30 * i), rule=f"r{i}") for i in range(6)]
    sec = analyse(Case("scattered", lone), kb, only=["intrusions", "attribution"]).sections["intrusions"]
    assert sec.data.count == 6 and len(sec.data.clusters) == 3 and "6 separate clusters" in sec.data.note
