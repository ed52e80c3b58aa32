"""Explicit technique mentions: ATT&CK ids (old and revoked ids remapped), technique names and synonyms.

A technique id in a report is a claim by its author, taken with high confidence. A technique name or a
synonym is only as good as the phrase: "PowerShell" almost always means T1059.001, "Services" rarely means
anything. So every phrase gets a precision measured on ATT&CK's own procedure examples (how often a
procedure that contains the phrase is labelled with that technique, its parent or one of its
sub-techniques); phrases below ``MIN_PRECISION`` are not used, and the rest carry that (Laplace-smoothed) precision as
their confidence. A phrase seen fewer than ``MIN_SUPPORT`` times is kept only if it was never wrong, and
one never seen only when it is specific (three or more words).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from ttpscope.extract.phrases import PhraseMatcher, tokens

TECHNIQUE_ID = re.compile(r"(?<![\w.])T(\d{4})(?:[./](\d{3}))?(?![\w])")
MIN_PRECISION = 0.35
MIN_SUPPORT = 3
ID_CONFIDENCE = 0.95

# Common report phrasings of techniques, beyond ATT&CK's own names. Each is checked against ATT&CK's
# procedure examples like the names are; written for ttpscope (not copied from any list).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "T1003.001": ("lsass memory", "dumped lsass", "lsass dump", "dump lsass", "lsass.exe process memory",
                  "sekurlsa::logonpasswords", "mimikatz sekurlsa", "comsvcs.dll minidump", "procdump lsass"),
    "T1003.002": ("security account manager", "reg save hklm\\sam", "sam hive"),
    "T1003.006": ("dcsync", "lsadump::dcsync"),
    "T1003.003": ("ntds.dit", "ntdsutil", "install from media"),
    # procedure-level phrases: command lines and tool verbs that state one technique
    "T1136.001": ("net user /add", "created a new local account", "created a local administrator account",
                  "new local admin account", "new admin account", "created a new user account"),
    "T1136.002": ("net user /add /domain", "created a new domain account"),
    "T1134.001": ("named pipe impersonation", "getsystem", "token impersonation"),
    "T1550.002": ("overpass-the-hash", "overpass the hash", "sekurlsa::pth"),
    "T1558.003": ("kerberoasting", "kerberoast", "invoke-kerberoast"),
    "T1021.002": ("admin$ share", "c$ share", "admin shares", "psexec"),
    "T1059.001": ("powershell", "powershell.exe", "powershell script", "powershell command", "powershell -enc",
                  "-encodedcommand"),
    # (a bare "rdp" / "remote desktop" was tried: it cost 0.002-0.004 sentence and document F1 on TRAM)
    "T1021.001": ("remote desktop protocol", "rdp session", "rdp sessions", "via rdp", "over rdp"),
    "T1027": ("obfuscated", "obfuscation", "base64-encoded payload", "xor-encoded", "xor encrypted"),
    "T1036.005": ("masquerade as a legitimate", "disguised as a legitimate"),
    "T1047": ("wmic", "windows management instrumentation", "wmi to execute", "via wmi"),
    "T1053.003": ("cron job", "crontab"),
    "T1053.005": ("scheduled task", "schtasks", "schtasks.exe"),
    "T1055": ("process injection", "code injection", "injects code", "injected into"),
    "T1055.012": ("process hollowing", "hollowed process"),
    "T1056.001": ("keylogger", "keylogging", "keystroke logging", "logs keystrokes", "captures keystrokes"),
    "T1059.003": ("cmd.exe", "command prompt", "windows command shell", "cmd /c"),
    "T1059.004": ("bash script", "shell script", "/bin/sh", "/bin/bash"),
    "T1059.005": ("vbscript", "visual basic script", "vba macro", "vba macros", "macro code"),
    "T1059.006": ("python script",),
    "T1059.007": ("javascript", "jscript"),
    "T1070.001": ("clear event logs", "cleared event logs", "clears event logs", "wevtutil cl"),
    "T1070.004": ("deletes itself", "delete itself", "self-delete", "self-deletes", "removes itself"),
    "T1070.006": ("timestomp", "timestomping", "timestomped"),
    "T1071.001": ("http for c2", "https for c2", "http-based c2", "c2 over http", "c2 over https"),
    "T1071.004": ("dns tunneling", "dns tunnelling", "c2 over dns"),
    "T1082": ("systeminfo", "systeminfo.exe", "system information discovery"),
    "T1083": ("file and directory discovery", "enumerates files", "lists files"),
    "T1057": ("tasklist", "tasklist.exe", "running processes", "process list"),
    "T1016": ("ipconfig", "ipconfig /all", "network configuration"),
    "T1033": ("whoami", "whoami.exe", "current user"),
    "T1049": ("netstat",),
    "T1018": ("net view",),
    "T1482": ("nltest", "domain trusts"),
    "T1012": ("reg query", "query the registry", "queries the registry"),
    "T1112": ("modify the registry", "modifies the registry", "registry modification", "reg add"),
    "T1105": ("ingress tool transfer", "downloads additional payloads", "download additional payloads",
              "downloads a second stage", "downloads additional tools"),
    "T1110.003": ("password spraying", "password spray"),
    "T1113": ("screenshot", "screenshots", "screen capture", "captures the screen"),
    "T1140": ("decodes", "decoded", "decrypts the payload", "certutil -decode", "deobfuscate"),
    "T1190": ("exploit public-facing application", "exploited a vulnerability in", "public-facing"),
    "T1204.002": ("opens the attachment", "open the attachment", "enable macros", "enable content"),
    "T1219": ("teamviewer", "anydesk", "remote access software", "screenconnect", "atera"),
    "T1486": ("encrypts files", "encrypted files", "file encryption", "ransom note"),
    "T1490": ("shadow copies", "vssadmin delete shadows", "delete shadow copies"),
    "T1518.001": ("security software discovery", "installed antivirus", "security products"),
    "T1543.003": ("creates a service", "create a service", "new service", "windows service", "sc create"),
    "T1547.001": ("run key", "run keys", "currentversion\\run", "startup folder"),
    "T1548.002": ("uac bypass", "bypass uac", "bypasses uac", "user account control"),
    "T1550.002": ("pass-the-hash", "pass the hash"),
    "T1558.003": ("kerberoasting", "kerberoast"),
    "T1562.001": ("disable antivirus", "disables antivirus", "disable windows defender", "disables windows defender",
                  "disable security tools", "tamper protection"),
    "T1566.001": ("spearphishing attachment", "malicious attachment", "phishing email with an attachment"),
    "T1566.002": ("spearphishing link", "malicious link"),
    "T1569.002": ("psexec service", "psexesvc", "service execution"),
    "T1570": ("lateral tool transfer",),
    "T1574.001": ("dll search order hijacking", "search order hijacking"),
    "T1574.002": ("dll side-loading", "dll sideloading", "side-loading", "sideloading", "side-loads"),
    "T1218.005": ("mshta", "mshta.exe"),
    "T1218.007": ("msiexec", "msiexec.exe"),
    "T1218.010": ("regsvr32", "regsvr32.exe"),
    "T1218.011": ("rundll32", "rundll32.exe"),
    "T1484.001": ("group policy object", "group policy objects", "gpo"),
    "T1090": ("proxy", "proxies"),
    "T1041": ("exfiltrates data over", "exfiltrated over the c2 channel", "exfiltration over c2 channel"),
    "T1005": ("data from local system", "collects files from", "steals files"),
    "T1074.001": ("local data staging", "staged in a temporary directory"),
    "T1560.001": ("rar archive", "winrar", "7-zip", "7zip"),
}


@dataclass(slots=True, frozen=True)
class Mention:
    """One explicit mention of a technique inside a text."""

    technique_id: str
    start: int
    end: int
    surface: str
    method: str  # "id" | "name"
    confidence: float
    note: str | None = None  # e.g. "T1086 (PowerShell) is revoked ...; replaced by T1059.001"


class ExplicitMatcher:
    """Finds technique ids and measured technique names/synonyms in text."""

    def __init__(self, kb, phrase_precision: dict[str, tuple[str, float]]):
        self.kb = kb
        self.phrases: PhraseMatcher[tuple[str, float]] = PhraseMatcher()
        for phrase, (tid, precision) in sorted(phrase_precision.items()):
            self.phrases.add(phrase, (tid, precision))

    @classmethod
    def build(cls, kb, procedures: Iterable[tuple[str, list[str]]]) -> ExplicitMatcher:
        """Measure every candidate phrase on labelled sentences (ATT&CK procedure examples by default)."""
        return cls(kb, measure_phrases(kb, procedures))

    def find(self, text: str) -> list[Mention]:
        out: list[Mention] = []
        for m in TECHNIQUE_ID.finditer(text):
            raw = f"T{m.group(1)}" + (f".{m.group(2)}" if m.group(2) else "")
            res = self.kb.resolve_technique(raw)
            if res.id is None:
                continue
            out.append(Mention(res.id, m.start(), m.end(), m.group(), "id", ID_CONFIDENCE,
                               res.note if res.id != raw else None))
        for hit in self.phrases.finditer(text):
            tid, precision = hit.value
            out.append(Mention(tid, hit.start, hit.end, hit.surface, "name", precision))
        return out


def candidate_phrases(kb) -> dict[str, str]:
    """Every technique name (and common synonym) → technique id; names shared by several techniques
    (e.g. "Domain Accounts") are ambiguous and left out."""
    owners: dict[str, set[str]] = defaultdict(set)
    for tech in kb.live_techniques():
        owners[" ".join(tokens(tech.name))].add(tech.id)
    for tid, words in SYNONYMS.items():
        res = kb.resolve_technique(tid)
        if res.id is None:
            continue
        for w in words:
            owners[" ".join(tokens(w))].add(res.id)
    return {p: next(iter(ids)) for p, ids in owners.items() if p and len(ids) == 1}


def _family(kb, tid: str) -> set[str]:
    tech = kb.techniques.get(tid)
    fam = {tid}
    if tech is None:
        return fam
    if tech.parent:
        fam.add(tech.parent)
    fam.update(tech.subtechniques)
    return fam


def measure_phrases(kb, examples: Iterable[tuple[str, list[str]]]) -> dict[str, tuple[str, float]]:
    """Precision of each candidate phrase as a rule, on labelled sentences.

    A phrase's hit counts as correct if the sentence is labelled with the phrase's technique, its parent or
    one of its sub-techniques. Returns phrase → (technique id, smoothed precision), only phrases worth
    using.
    """
    cands = candidate_phrases(kb)
    matcher: PhraseMatcher[str] = PhraseMatcher()
    for p in cands:
        matcher.add(p, p)
    hits: dict[str, int] = defaultdict(int)
    good: dict[str, int] = defaultdict(int)
    for text, labels in examples:
        seen = set()
        for hit in matcher.finditer(text):
            if hit.value in seen:
                continue
            seen.add(hit.value)
            hits[hit.value] += 1
            if _family(kb, cands[hit.value]) & set(labels):
                good[hit.value] += 1
    out: dict[str, tuple[str, float]] = {}
    for phrase, tid in cands.items():
        n = hits.get(phrase, 0)
        precision = (good[phrase] + 1) / (n + 2)  # Laplace: a phrase seen 3/3 times is not certain
        if n >= MIN_SUPPORT or (n > 0 and good[phrase] == n):
            if precision >= MIN_PRECISION:
                out[phrase] = (tid, round(precision, 3))
        elif n == 0 and len(phrase.split()) >= 3:
            out[phrase] = (tid, 0.5)
    return out
