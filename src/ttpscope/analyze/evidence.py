"""Per-technique evidence of a case: how strong it is and what says so.

One summary feeds every output (Navigator layer scores and comments, the report heatmap, Markdown,
STIX, the web case matrix), so that they all tell the same story.

Strength: observations are first grouped by what produced them (one Sigma rule, one report sentence...);
each group counts once with its best confidence, and the groups combine as a noisy-OR,
``1 - prod(1 - c_i)``: independent sources corroborate each other, while a rule firing 500 times is still
one source.

Weight in a headline (:func:`headline_strength`): the same noisy-OR, but an informational Sigma rule counts
nothing (it marks ordinary activity: User Logoff Event is tagged T1531 Account Access Removal) and a report
claim counts as much as the structure it came from says (a table cell or a code line less than prose, as in
the extraction's own document score). Below ``DECISIVE`` a technique is on the case's record but cannot
decide the furthest stage or lead the key findings; :func:`weak_reason` says why in plain words.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ttpscope.extract.pipeline import KIND_WEIGHT
from ttpscope.model import Case, Observation

MAX_QUOTE = 240
DECISIVE = 0.5  # headline strength from which a technique may decide the furthest stage and the key findings
WEAK_LEVELS = {"informational", "info"}  # Sigma levels that mark ordinary activity, never an attack on their own
_CLASS_FIELDS = {"EventID", "Channel", "Provider_Name", "SourceName"}
# fields every event has: they tell nothing about what happened
ENVELOPE = _CLASS_FIELDS | {"Hostname", "Computer", "TimeCreated", "@timestamp", "Level", "Keywords", "Task",
                            "Opcode", "Message", "ProviderGuid", "Provider_Guid", "EventRecordID", "RecordNumber",
                            "Version", "Correlation", "Execution_ProcessID", "Execution_ThreadID", "Security_UserID",
                            "rule_title", "title", "level", "rule", "rule_id", "source", "record", "UtcTime",
                            "ProcessGuid", "LogonGuid", "RuleName"}
_TELLING = ("CommandLine", "ScriptBlockText", "Image", "TargetFilename", "TargetObject", "ServiceName",
            "ImageLoaded", "PipeName", "DestinationHostname", "DestinationIp", "QueryName", "TargetUserName",
            "ParentImage")


@dataclass(slots=True)
class TechniqueSummary:
    """What a case holds for one technique."""

    id: str
    name: str
    tactics: list[str]  # tactic shortnames it is placed under (see place_observation)
    strength: float  # 0..1, see the module docstring
    observations: int
    sources: int  # distinct producers (rules, sentences, analysts)
    kinds: dict[str, int]  # source kind -> observations
    hosts: list[str]
    users: list[str]
    documents: list[str]
    first_seen: datetime | None
    last_seen: datetime | None
    quotes: list[dict[str, str]] = field(default_factory=list)  # [{kind, ref, text}] strongest first
    known: bool = True  # False when the id is not in the knowledge base in use
    decisive: bool = True  # its headline strength reaches DECISIVE (see the module docstring)
    weak: str = ""  # why it is not decisive, in plain words

    @property
    def score(self) -> int:
        """Strength on the 0..100 scale of Navigator scores."""
        return round(100 * self.strength)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "tactics": self.tactics, "strength": round(self.strength, 4),
            "score": self.score, "observations": self.observations, "sources": self.sources,
            "kinds": self.kinds, "hosts": self.hosts, "users": self.users, "documents": self.documents,
            "first_seen": _iso(self.first_seen), "last_seen": _iso(self.last_seen), "quotes": self.quotes,
            "known": self.known, "decisive": self.decisive, "weak": self.weak,
        }


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def observation_text(obs: Observation, limit: int = MAX_QUOTE) -> str:
    """A one-line rendering of an observation's evidence: the sentence, or the telling event fields."""
    ev = obs.evidence or {}
    text = ev.get("sentence") or ev.get("text") or ev.get("note")
    if not text:
        title = ev.get("rule_title") or ev.get("title") or ev.get("rule")
        fields = ev.get("event") if isinstance(ev.get("event"), dict) else ev
        matched = ev.get("matched") if isinstance(ev.get("matched"), dict) else {}
        # the fields the rule tested come first (minus the event-class ones), then the telling ones
        parts = [f"{k}={v}" for k, v in matched.items() if v not in (None, "") and k not in _CLASS_FIELDS]
        parts += [f"{k}={fields[k]}" for k in _TELLING if isinstance(fields, dict) and fields.get(k)
                  and k not in matched]
        if not parts and isinstance(fields, dict):
            parts = [f"{k}={v}" for k, v in fields.items() if isinstance(v, (str, int, float)) and v != ""
                     and k not in ENVELOPE and not k.startswith("_")][:4]
        text = (f"{title}: " if title else "") + "; ".join(parts[:3])
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def place_observation(obs: Observation, technique_id: str, kb) -> list[str]:
    """The tactics an observation puts its technique under: the lifecycle's rule (the evidence's tactic when
    the technique has it, else the technique's earliest tactic), so that the heatmap, the layer and the
    lifecycle agree. Unknown techniques have no tactic."""
    from ttpscope.analyze.lifecycle import place  # the lifecycle weighs evidence with this module's rule

    if technique_id not in kb.techniques:
        return []
    return place(obs, technique_id, kb)[0]


def strongest_per_source(observations: list[Observation]) -> dict[tuple[str, str], Observation]:
    """The most confident observation of each producer (source kind, source ref)."""
    best: dict[tuple[str, str], Observation] = {}
    for obs in observations:
        key = (obs.source_kind, obs.source_ref)
        if key not in best or obs.confidence > best[key].confidence:
            best[key] = obs
    return best


def technique_strength(observations: list[Observation]) -> float:
    """The one evidence-strength rule (see the module docstring): noisy-OR over distinct producers, each
    counted once with its best confidence."""
    miss = 1.0
    for obs in strongest_per_source(observations).values():
        miss *= 1.0 - obs.confidence
    return 1.0 - miss


def headline_weight(obs: Observation) -> float:
    """What one observation can say in a headline (see the module docstring): 0 for an informational rule,
    a report claim weighed by the structure it came from, otherwise its confidence."""
    ev = obs.evidence if isinstance(obs.evidence, dict) else {}
    if obs.source_kind == "sigma" and str(ev.get("level") or "").lower() in WEAK_LEVELS:
        return 0.0
    if obs.source_kind == "text":
        return obs.confidence * KIND_WEIGHT.get(str(ev.get("kind") or "prose"), 1.0)
    return obs.confidence


def headline_strength(observations: list[Observation]) -> float:
    """Noisy-OR of :func:`headline_weight` over distinct producers, each counted once at its best."""
    best: dict[tuple[str, str], float] = {}
    for obs in observations:
        key = (obs.source_kind, obs.source_ref)
        best[key] = max(best.get(key, 0.0), headline_weight(obs))
    miss = 1.0
    for weight in best.values():
        miss *= 1.0 - weight
    return 1.0 - miss


def is_decisive(observations: list[Observation]) -> bool:
    return headline_strength(observations) >= DECISIVE


def weak_reason(observations: list[Observation]) -> str:
    """Why these observations cannot decide a headline ("" when they can), e.g. "informational rule only
    (User Logoff Event)" or "one report claim from a table cell (strength 16)"."""
    if not observations or is_decisive(observations):
        return ""
    info = [o for o in observations if o.source_kind == "sigma" and headline_weight(o) == 0.0]
    texts = [o for o in observations if o.source_kind == "text"]
    sources = {(o.source_kind, o.source_ref) for o in observations}
    if len(info) == len(observations):
        titles = sorted({str((o.evidence or {}).get("rule") or (o.evidence or {}).get("rule_title") or o.source_ref)
                         for o in info})
        shown = ", ".join(titles[:2]) + (f" +{len(titles) - 2}" if len(titles) > 2 else "")
        return f"informational rule{'s' if len(titles) > 1 else ''} only ({shown})"
    if len(texts) == len(observations) and len({o.source_ref for o in texts}) == 1:
        best = max(texts, key=lambda o: o.confidence)
        kind = str((best.evidence or {}).get("kind") or "prose")
        where = {"prose": "a sentence", "bullet": "a list item", "table": "a table cell", "code": "a code block",
                 "command": "a command line", "caption": "a caption"}.get(kind, kind)
        return f"one report claim from {where} (strength {round(100 * best.confidence)})"
    return (f"weak evidence only (headline strength {round(100 * headline_strength(observations))} "
            f"from {len(sources)} source{'s' if len(sources) != 1 else ''})")


def technique_evidence(case: Case, kb, quotes: int = 3) -> list[TechniqueSummary]:
    """A summary per technique of the case, strongest first (ties by id), for every output to share."""
    by_tech: dict[str, list[Observation]] = defaultdict(list)
    for obs in case.observations:
        by_tech[obs.technique_id].append(obs)
    order = kb.tactic_order()
    out = []
    for tid, group in by_tech.items():
        tech = kb.techniques.get(tid)
        placed: list[str] = []
        for obs in group:
            for t in place_observation(obs, tid, kb):
                if t not in placed:
                    placed.append(t)
        tactics = sorted(placed, key=lambda t: order.index(t) if t in order else len(order))
        best = strongest_per_source(group)
        kinds: dict[str, int] = defaultdict(int)
        for obs in group:
            kinds[obs.source_kind] += 1
        times = [o.time for o in group if o.time is not None]
        strongest = sorted(best.values(), key=lambda o: (-o.confidence, o.source_kind, o.source_ref))
        quoted = []
        for obs in strongest[:quotes]:
            quoted.append({"kind": obs.source_kind, "ref": obs.source_ref, "text": observation_text(obs),
                           "confidence": round(obs.confidence, 3)})
        out.append(TechniqueSummary(
            id=tid, name=tech.name if tech else tid, tactics=tactics, strength=technique_strength(group),
            observations=len(group), sources=len(best), kinds=dict(sorted(kinds.items())),
            hosts=sorted({o.host for o in group if o.host}), users=sorted({o.user for o in group if o.user}),
            documents=sorted({o.document for o in group if o.document}),
            first_seen=min(times) if times else None, last_seen=max(times) if times else None,
            quotes=quoted, known=tech is not None, decisive=is_decisive(group), weak=weak_reason(group)))
    out.sort(key=lambda e: (-e.strength, e.id))
    return out


def comment_of(ev: TechniqueSummary, limit: int = 600) -> str:
    """A Navigator cell comment: counts, where, and the strongest evidence."""
    kinds = ", ".join(f"{n} {k}" for k, n in ev.kinds.items())
    head = f"{ev.observations} observation(s) ({kinds}) from {ev.sources} source(s)"
    if ev.hosts:
        head += f"; hosts: {', '.join(ev.hosts[:5])}{'…' if len(ev.hosts) > 5 else ''}"
    body = " | ".join(q["text"] for q in ev.quotes)
    text = f"{head}. {body}" if body else head
    return text if len(text) <= limit else text[: limit - 1] + "…"
