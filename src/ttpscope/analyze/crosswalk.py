"""Technique ids from a newer ATT&CK release onto the loaded knowledge base's release.

SigmaHQ and Atomic Red Team tag with the newest ATT&CK; the knowledge base may be older (the embedded
v15.1). ``resolve_any_release`` answers, in order: the KB's own resolution (current id, revoked id followed,
a technique ATT&CK v19 moved to a new id such as T1685 for T1562.001); else, for a sub-technique newer than
the KB, its parent (a rule for T1219.002 detects part of T1219) — an approximation the KB itself does not
make, which coverage and emulation accept.
"""

from __future__ import annotations

from ttpscope.kb import KnowledgeBase
from ttpscope.kb.objects import Resolution


def resolve_any_release(kb: KnowledgeBase, technique_id: str) -> Resolution:
    """A technique id of any ATT&CK release resolved onto ``kb`` (see module doc); ``id`` None if no way."""
    res = kb.resolve_technique(technique_id)  # current ids, revoked ids and v19's moved techniques
    if res.id is not None:
        return res
    tid = technique_id.strip().upper()
    if "." in tid:
        parent = resolve_any_release(kb, tid.split(".")[0])
        if parent.id is not None:
            return Resolution(technique_id, parent.id, f"{tid} is newer than {kb.label}; counted for its parent "
                                                       f"{parent.id} ({kb.techniques[parent.id].name})")
    return res
