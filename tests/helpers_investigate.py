"""A small hand-built case for the export and investigate tests: a few Sigma detections on two hosts and
report sentences, with attacker-controlled text that must come out escaped everywhere."""

from __future__ import annotations

import json
from pathlib import Path

from browser import SHOTS

from ttpscope.analyze.report import OK, AttributionSection, Section
from ttpscope.model import Case, Detection, Observation, ReportDocument

ROOT = Path(__file__).resolve().parents[1]

XSS = "<script>alert('xss')</script>"
FORMULA = "=HYPERLINK(\"http://evil.example\",\"x\")"


def sample_case(name: str = "sample-intrusion") -> tuple[Case, list[Detection], list[ReportDocument]]:
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
    return case, [Detection.from_dict(d) for d in dets], [ReportDocument.from_dict(d) for d in docs]


# what each figure draws once Plotly has rendered it
DRAWN = """() => {
  const out = {};
  for (const d of document.querySelectorAll('[data-figure]')) {
    out[d.dataset.figure] = {
      rendered: d.dataset.rendered === 'true',
      svg: d.querySelectorAll('.main-svg').length,
      heat: d.querySelectorAll('.hm image, .heatmaplayer image').length,
      points: d.querySelectorAll('.scatterlayer .point').length,
      bars: d.querySelectorAll('.barlayer .point').length,
      width: d.getBoundingClientRect().width, height: d.getBoundingClientRect().height,
    };
  }
  return out;
}"""


def open_report(browser, path: Path):
    """The report page, offline, with every request, dialog and script error recorded."""
    context = browser.new_context(viewport={"width": 1366, "height": 900}, offline=True)
    page = context.new_page()
    page.requests, page.dialogs, page.errors = [], [], []
    page.on("request", lambda r: page.requests.append(r.url) if not r.url.startswith(("file:", "data:", "blob:"))
            else None)
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(path.as_uri())
    return context, page


def check_report(browser, path: Path, shot: str) -> dict:
    """Open a report, wait for its figures, check each one drew, take screenshots; returns what was drawn."""
    figures = json.loads(path.read_text(encoding="utf-8").split('<script id="figures-data" type="application/json">')[1]
                         .split("</script>")[0])
    context, page = open_report(browser, path)
    try:
        page.wait_for_function(f"Object.keys(window.ttpscopeFigures || {{}}).length >= {len(figures)}", timeout=30000)
        drawn = page.evaluate(DRAWN)
        assert set(drawn) == set(figures)
        for name, fig in drawn.items():
            assert fig["rendered"] and fig["svg"] >= 1 and fig["width"] > 300 and fig["height"] > 100, (name, fig)
        assert drawn["matrix"]["heat"] >= 1
        if "timeline" in figures:
            # a span of repeated steps is drawn as its two ends ([start, end, None] per span: None is the gap)
            assert drawn["timeline"]["points"] == sum(1 for t in figures["timeline"]["data"] for x in t["x"]
                                                      if x is not None)
        if "attribution" in figures:
            assert drawn["attribution"]["bars"] == len(figures["attribution"]["data"][0]["x"])
        page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
        page.locator("#matrix").screenshot(path=str(SHOTS / f"{shot}-matrix.png"))
        assert page.dialogs == [], "a script from the evidence ran"
        assert page.errors == []
        assert page.requests == [], "the report fetched something over the network"
        return drawn
    finally:
        context.close()


def colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as im:
        return len(im.convert("RGB").resize((200, 100)).getcolors(maxcolors=20000) or [])


def with_attribution(analysis, insufficient: bool = False):
    """The analysis with an attribution section naming APT29 (sufficient or not), the rest unchanged."""
    sections = dict(analysis.sections)
    sections["attribution"] = Section("attribution", "Attribution", OK, "", AttributionSection(
        verdict="best match APT29", insufficient=insufficient, information=None,
        groups=[{"id": "G0016", "name": "APT29", "score": 3.2, "confidence": 0.62, "explained": [],
                 "missing": [], "context": {}, "why": ""}], campaigns=[]))
    return type(analysis)(case=analysis.case, provenance=analysis.provenance, evidence=analysis.evidence,
                          sections=sections, detections=analysis.detections, documents=analysis.documents,
                          generated=analysis.generated)
