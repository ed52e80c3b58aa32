"""Technique ids from a newer ATT&CK release onto the loaded knowledge base's release.

SigmaHQ and Atomic Red Team tag with the newest ATT&CK; the knowledge base may be older (the embedded
v15.1). ``resolve_any_release`` answers, in order: the KB's own resolution (current id, revoked id followed);
a technique that ATT&CK v19 moved to a new id (Defense Evasion's split into Stealth and Defense Impairment
moved Impair Defenses' sub-techniques, e.g. T1562.001 "Disable or Modify Tools" became T1685); else, for a
sub-technique newer than the KB, its parent (a rule for T1219.002 detects part of T1219).
"""

from __future__ import annotations

from ttpscope.kb import KnowledgeBase
from ttpscope.kb.objects import Resolution

# v19 id -> the id of the same technique before v19 (same name, or the renamed same behaviour).
NEWER_TECHNIQUE_EQUIVALENTS: dict[str, str] = {
    "T1685": "T1562.001",      # Disable or Modify Tools
    "T1685.001": "T1562.002",  # Disable or Modify Windows Event Log (was: Disable Windows Event Logging)
    "T1685.002": "T1562.008",  # Disable or Modify Cloud Log(s)
    "T1685.004": "T1562.012",  # Disable or Modify Linux Audit System (Log)
    "T1685.005": "T1070.001",  # Clear Windows Event Logs
    "T1685.006": "T1070.002",  # Clear Linux or Mac System Logs
    "T1686": "T1562.004",      # Disable or Modify System Firewall
    "T1686.001": "T1562.007",  # cloud firewall
    "T1686.003": "T1562.004",  # host firewall
    "T1688": "T1562.009",      # Safe Mode Boot
    "T1689": "T1562.010",      # Downgrade Attack
    "T1690": "T1562.003",      # Prevent (was: Impair) Command History Logging
}


def resolve_any_release(kb: KnowledgeBase, technique_id: str) -> Resolution:
    """A technique id of any ATT&CK release resolved onto ``kb`` (see module doc); ``id`` None if no way."""
    res = kb.resolve_technique(technique_id)
    if res.id is not None:
        return res
    tid = technique_id.strip().upper()
    old = NEWER_TECHNIQUE_EQUIVALENTS.get(tid)
    if old and old in kb.techniques:
        return Resolution(technique_id, old, f"{tid} is a newer ATT&CK id; {kb.label} files it as {old} "
                                             f"({kb.techniques[old].name})")
    if "." in tid:
        parent = resolve_any_release(kb, tid.split(".")[0])
        if parent.id is not None:
            return Resolution(technique_id, parent.id, f"{tid} is newer than {kb.label}; counted for its parent "
                                                       f"{parent.id} ({kb.techniques[parent.id].name})")
    return res
