"""A small hand-built case for the export and investigate tests: a few Sigma detections on two hosts and
report sentences, with attacker-controlled text that must come out escaped everywhere."""

from __future__ import annotations

from ttpscope.model import Case, Observation

XSS = "<script>alert('xss')</script>"
FORMULA = "=HYPERLINK(\"http://evil.example\",\"x\")"


def sample_case(name: str = "sample-intrusion") -> tuple[Case, list[dict], list[dict]]:
    """(case, detections, documents) of a small intrusion: phishing, PowerShell, LSASS, lateral movement."""
    dets = [
        {"rule_id": "r-ps", "title": "Encoded PowerShell " + XSS, "level": "high", "techniques": ["T1059.001"],
         "tactics": ["execution"], "time": "2024-03-05T08:12:01Z", "host": "WS01", "source": "ws01.jsonl",
         "record": 12, "event": {"EventID": 1, "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                                 "CommandLine": "powershell -enc SQBFAFgA </script><script>alert(2)</script>",
                                 "User": "CORP\\alice", "ProcessId": "4242"}},
        {"rule_id": "r-lsass", "title": "LSASS access", "level": "critical", "techniques": ["T1003.001"],
         "tactics": ["credential-access"], "time": "2024-03-05T09:30:00Z", "host": "WS01", "source": "ws01.jsonl",
         "record": 40, "event": {"EventID": 10, "TargetImage": "C:\\Windows\\System32\\lsass.exe",
                                 "SourceImage": "C:\\Windows\\System32\\rundll32.exe"}},
        {"rule_id": "r-smb", "title": "Admin share", "level": "medium", "techniques": ["T1021.002"],
         "tactics": ["lateral-movement"], "time": "2024-03-05T10:02:00Z", "host": "DC01", "source": "dc01.jsonl",
         "record": 7, "event": {"EventID": 5140, "ShareName": "\\\\*\\ADMIN$", "IpAddress": "10.0.0.5",
                                "TargetUserName": "svc_backup"}},
        {"rule_id": "r-smb", "title": "Admin share", "level": "medium", "techniques": ["T1021.002"],
         "tactics": ["lateral-movement"], "time": "2024-03-05T10:05:00Z", "host": "DC01", "source": "dc01.jsonl",
         "record": 9, "event": {"EventID": 5140, "ShareName": "\\\\*\\C$", "IpAddress": "10.0.0.5"}},
    ]
    obs = []
    for d in dets:
        for tid in d["techniques"]:
            obs.append(Observation(tid, "sigma", d["rule_id"], {"rule_title": d["title"], **d["event"]},
                                   d["tactics"], time=d["time"], host=d["host"], confidence=0.8))
    obs += [
        Observation("T1566.001", "text", "report.md#10-90",
                    {"sentence": "The actor sent a spearphishing attachment " + XSS, "method": "classifier"}, [],
                    document="report.md", confidence=0.7),
        Observation("T1059.001", "text", "report.md#91-150",
                    {"sentence": FORMULA + " PowerShell ran an encoded command.", "method": "explicit"}, [],
                    document="report.md", confidence=0.9),
        Observation("T1490", "manual", "analyst", {"note": "shadow copies deleted (analyst)"}, ["impact"],
                    time="2024-03-05T11:00:00Z", host="DC01", confidence=0.6),
    ]
    docs = [{"name": "report.md", "kind": "md", "sha256": "ab" * 32,
             "iocs": [{"type": "ipv4", "value": "203.0.113.7"}, {"type": "domain", "value": "evil-cdn.example"},
                      {"type": "sha256", "value": "3f7a1c9e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a"},
                      {"type": "url", "value": "https://evil-cdn.example/a'b.ps1"},
                      {"type": "bitcoin", "value": "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"}],
             "cves": [{"id": "CVE-2021-40444", "techniques": ["T1203"]}]}]
    case = Case(name=name, observations=obs, meta={"sources": [
        {"path": "ws01.jsonl", "kind": "log", "format": "jsonl", "read": 100, "accepted": 99, "rejected": 1,
         "reasons": ["line 7: not JSON"], "note": "", "used": True},
        {"path": "report.md", "kind": "report", "format": "md", "read": 30, "accepted": 30, "rejected": 0,
         "note": "", "used": True}]})
    return case, dets, docs
