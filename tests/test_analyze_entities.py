"""The entity graph across log sources: hand-built detections of four environments, then real OTRF data
(Log4Shell on a Linux Tomcat host and a Windows workstation) through real SigmaHQ rules."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

from ttpscope.analyze.entities import entity_graph, entity_key
from ttpscope.model import Detection

T0 = datetime(2024, 3, 5, 8, 0, tzinfo=timezone.utc)


def _det(rule: str, logsource: str, minutes: float, **entities) -> Detection:
    return Detection(rule_id=rule, title=rule, level="high", techniques=["T1078"], time=T0 + timedelta(minutes=minutes),
                     logsource=logsource, source=f"{logsource}.log", record=int(minutes), **entities)


def _cross() -> list[Detection]:
    return [
        _det("win-logon", "windows/security", 0, host="WS01", user="CORP\\alice", src_ip="203.0.113.7"),
        _det("win-logon", "windows/security", 5, host="ws01", user="corp\\ALICE", src_ip="203.0.113.7"),
        _det("zeek-rdp", "zeek/conn", 1, src_ip="203.0.113.7", dst_ip="10.0.0.5"),
        _det("aws-login", "aws/cloudtrail", 30, user="alice", src_ip="203.0.113.7", account="123456789012"),
        _det("win-ps", "windows/sysmon/process_creation", 200, host="DC01", user="SYSTEM", src_ip="127.0.0.1"),
    ]


def test_entities_links_and_environments():
    g = entity_graph(_cross())
    ids = {n["id"] for n in g.nodes}
    # hosts and users compared case-insensitively, users by their bare name (Windows CORP\\alice is the IAM
    # user alice); SYSTEM and loopback name no entity
    assert {"host:ws01", "user:alice", "ip:203.0.113.7", "ip:10.0.0.5", "account:123456789012", "host:dc01"} == ids
    alice = next(n for n in g.nodes if n["id"] == "user:alice")
    assert alice["spellings"] == ["CORP\\alice", "alice", "corp\\ALICE"] and alice["products"] == ["aws", "windows"]
    ws01 = next(n for n in g.nodes if n["id"] == "host:ws01")
    assert ws01["detections"] == 2 and ws01["first"] == "2024-03-05T08:00:00Z" and ws01["last"] == "2024-03-05T08:05:00Z"
    edges = {(e["source"], e["target"], e["relation"]): e for e in g.edges}
    assert edges[("ip:10.0.0.5", "ip:203.0.113.7", "connected to")]["logsources"] == {"zeek/conn": 1}
    assert edges[("host:ws01", "user:alice", "host + user")]["detections"] == 2
    assert ("account:123456789012", "ip:203.0.113.7", "account + src_ip") in edges
    # the attacker's IP is seen by Windows, Zeek and CloudTrail, alice by Windows and CloudTrail: one group
    # spanning three products
    assert [b["id"] for b in g.bridges] == ["ip:203.0.113.7", "user:alice"]
    assert g.bridges[0]["products"] == ["aws", "windows", "zeek"]
    assert len(g.components) == 1 and g.components[0]["products"] == ["aws", "windows", "zeek"]
    assert "host:dc01" not in g.components[0]["entities"]
    envs = {e["logsource"]: e["detections"] for e in g.environments}
    assert envs == {"windows/security": 2, "zeek/conn": 1, "aws/cloudtrail": 1, "windows/sysmon/process_creation": 1}


def test_timelines_group_runs_within_the_window():
    dets = _cross() + [_det("win-logon", "windows/security", 90, host="WS01", user="CORP\\alice")]
    g = entity_graph(dets)
    logons = [r for r in g.timeline if r["rule_id"] == "win-logon"]
    assert [(r["time"], r["count"]) for r in logons] == [("2024-03-05T08:00:00Z", 2), ("2024-03-05T09:30:00Z", 1)]
    assert [r["time"] for r in g.timeline] == sorted(r["time"] for r in g.timeline)
    assert {r["logsource"] for r in g.entity_timelines["ip:203.0.113.7"]} == {"windows/security", "zeek/conn",
                                                                             "aws/cloudtrail"}


def test_entity_values():
    assert entity_key("ip", "::1") is None and entity_key("ip", "not-an-ip") is None
    assert entity_key("ip", "2001:db8:0::1") == ("ip:2001:db8::1", "2001:db8::1")
    assert entity_key("user", "-") is None and entity_key("host", "WS01") == ("host:ws01", "WS01")
    assert entity_key("host", "WS01.corp.local")[0] == "host:ws01" and entity_key("host", "10.0.0.5")[0] == "host:10.0.0.5"
    assert entity_key("user", "arn:aws:iam::123456789012:user/Bob")[0] == entity_key("user", "bob@corp.com")[0]
    assert entity_key("user", "NT AUTHORITY\\SYSTEM") is None
    assert entity_graph([]).nodes == []


RULES = ("linux/process_creation/proc_creation_lnx_susp_java_children.yml",
         "linux/network_connection/net_connection_lnx_back_connect_shell_dev.yml",
         "windows/process_creation/proc_creation_win_powershell_base64_frombase64string.yml")


def test_log4shell_linux_and_windows_in_one_graph(shared_data, tmp_path):
    from ttpscope.detect import detect

    rules = tmp_path / "rules"
    rules.mkdir()
    for rel in RULES:
        shutil.copy(shared_data / "sigma/rules" / rel, rules)
    result = detect([shared_data / "otrf-cross-environment/compound/Log4Shell"], rules)
    g = entity_graph(result.detections)
    products = {e["product"] for e in g.environments}
    assert {"linux", "windows"} <= products
    nodes = {n["id"]: n for n in g.nodes}
    assert nodes["host:ubuntu5"]["products"] == ["linux"] and nodes["host:workstation5"]["products"] == ["windows"]
    # the Linux hits tie the Tomcat host to its address and its service account
    edge = next(e for e in g.edges if {e["source"], e["target"]} == {"host:ubuntu5", "ip:192.168.2.5"})
    assert edge["products"] == ["linux"]
    assert any({e["source"], e["target"]} == {"host:ubuntu5", "user:tomcat"} for e in g.edges)
    assert {r["product"] for r in g.timeline} == products
