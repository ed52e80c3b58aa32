"""Detection coverage of a Sigma rule set against a threat profile: scores, coverage %, prioritised gaps.

Inputs are the loaded rules (``ttpscope.detect.rules.RuleInfo`` records: id, title, level, status, logsource,
techniques), the knowledge base, optionally a threat profile (``analyze.profile``) and a data-source
inventory (``load_inventory``). Per technique the answer holds the rules by level and status, whether the
data it needs is collected (visibility), and a detection score.

Detection score (0..1). Each rule counts ``LEVEL_WEIGHT[level] * STATUS_WEIGHT[status]`` (a stable critical
rule 1.0, an experimental low rule 0.18) and the rules combine as independent chances,
``1 - prod(1 - w)``: more and stronger rules raise the score, with diminishing returns. A technique is
*detected* when at least one alerting rule covers it: level low or above, status neither deprecated nor
unsupported, and (with an inventory) a log source that is collected. Rules tagged with a sub-technique
count for its parent (T1059.001 detects part of T1059); rules tagged only with a parent do not count for
its sub-techniques (a generic T1070 rule says nothing about T1070.004), they are listed as ``parent_rules``.

Visibility (with an inventory): a technique is visible when a platform it runs on collects one of its
ATT&CK data components (legacy ``detects`` links or the log sources of v18 analytics), names one of its
v18 analytic log sources, or collects the Sigma logsource of a rule for it. Sigma logsources also imply
data components through ``SIGMA_COMPONENTS``.

Gaps are the profile techniques that nothing detects, ordered by profile weight (how many actors use it,
or its prevalence), then by matrix order of the first tactic, then by id. Techniques that only a
pre-compromise platform (PRE: reconnaissance, resource development) can show are put after the others:
host and network logs cannot see them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ttpscope.errors import InputError
from ttpscope.kb import KnowledgeBase
from ttpscope.kb.aliases import normalize

from ttpscope.analyze.crosswalk import resolve_any_release
from ttpscope.analyze.profile import ThreatProfile

_TECH_TAG = re.compile(r"^attack\.t\d{4}(\.\d{3})?$", re.I)
LEVEL_WEIGHT = {"critical": 1.0, "high": 0.8, "medium": 0.6, "low": 0.3, "informational": 0.1}
STATUS_WEIGHT = {"stable": 1.0, "test": 0.8, "experimental": 0.6, "unsupported": 0.3, "deprecated": 0.0}
NON_ALERTING_STATUS = {"deprecated", "unsupported"}
LEVELS = ("critical", "high", "medium", "low", "informational")

# Sigma logsource (category, or service) -> ATT&CK data component names it supplies. Written from the
# meaning of each Sigma category (sigma-specification's taxonomy) and ATT&CK's data component definitions.
SIGMA_COMPONENTS: dict[str, tuple[str, ...]] = {
    "process_creation": ("Process Creation", "Command Execution"),
    "process_access": ("Process Access",),
    "process_tampering": ("Process Modification",),
    "create_remote_thread": ("Process Modification", "OS API Execution"),
    "raw_access_thread": ("Drive Access",),
    "image_load": ("Module Load",),
    "driver_load": ("Driver Load",),
    "file_event": ("File Creation",),
    "file_change": ("File Modification",),
    "file_rename": ("File Modification",),
    "file_delete": ("File Deletion",),
    "file_access": ("File Access",),
    "file_executable_detected": ("File Creation",),
    "registry_add": ("Windows Registry Key Creation",),
    "registry_set": ("Windows Registry Key Modification",),
    "registry_event": ("Windows Registry Key Creation", "Windows Registry Key Modification",
                       "Windows Registry Key Deletion"),
    "registry_delete": ("Windows Registry Key Deletion",),
    "registry_rename": ("Windows Registry Key Modification",),
    "network_connection": ("Network Connection Creation",),
    "dns_query": ("Network Traffic Content",),
    "dns": ("Network Traffic Content",),
    "firewall": ("Network Traffic Flow",),
    "proxy": ("Network Traffic Content",),
    "webserver": ("Network Traffic Content", "Application Log Content"),
    "pipe_created": ("Named Pipe Metadata",),
    "wmi_event": ("WMI Creation",),
    "ps_script": ("Script Execution", "Command Execution"),
    "ps_module": ("Script Execution", "Command Execution"),
    "ps_classic_start": ("Command Execution",),
    "ps_classic_provider_start": ("Command Execution",),
    "ps_classic_script": ("Script Execution", "Command Execution"),
    "clipboard_capture": ("OS API Execution",),
    "sysmon_status": ("Sensor Health",),
    "sysmon_error": ("Sensor Health",),
    "security": ("Logon Session Creation", "User Account Authentication", "User Account Creation",
                 "User Account Modification", "Active Directory Object Access", "Active Directory Object Modification",
                 "Scheduled Job Creation", "Service Creation", "Process Creation", "Group Modification"),
    "system": ("Service Creation", "Service Modification", "Driver Load", "OS API Execution"),
    "powershell": ("Script Execution", "Command Execution"),
    "powershell-classic": ("Command Execution",),
    "sysmon": ("Process Creation", "Network Connection Creation", "File Creation", "Process Access",
               "Module Load", "Windows Registry Key Modification", "Driver Load", "Named Pipe Metadata"),
    "auditd": ("Process Creation", "Command Execution", "File Modification", "File Access"),
    "application": ("Application Log Content",),
    "taskscheduler": ("Scheduled Job Creation", "Scheduled Job Modification"),
    "bits-client": ("Network Connection Creation",),
    "windefend": ("Sensor Health",),
    "cloudtrail": ("Cloud Service Modification", "User Account Modification", "Instance Creation"),
    "azureactivity": ("Cloud Service Modification", "Instance Creation"),
    "signinlogs": ("User Account Authentication", "Logon Session Creation"),
    "auditlogs": ("User Account Modification", "Active Directory Object Modification"),
    "okta": ("User Account Authentication", "Logon Session Creation"),
    "m365": ("Application Log Content", "User Account Authentication"),
    "gcp.audit": ("Cloud Service Modification",),
}


# ---------------------------------------------------------------------- inventory
_SIGMA_PRODUCTS = {"windows", "linux", "macos"}  # ATT&CK platforms that Sigma names the same way as products

@dataclass
class Inventory:
    """What is collected, per ATT&CK platform (``*`` = every platform)."""

    source: str
    data_components: dict[str, set[str]] = field(default_factory=dict)  # platform -> normalized DC names/ids
    log_sources: dict[str, set[str]] = field(default_factory=dict)  # platform -> normalized v18 log source names
    sigma: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # platform -> Sigma logsource patterns

    def platforms_for(self, platforms: Iterable[str]) -> list[str]:
        wanted = {normalize(p) for p in platforms}
        return [p for p in self.data_components if p == "*" or p in wanted]

    def sigma_collected(self, logsource: dict[str, Any]) -> bool:
        """True if a rule's logsource (product/category/service) matches a collected pattern on any platform."""
        ls = {k: str(v).lower() for k, v in (logsource or {}).items() if k in ("product", "category", "service") and v}
        for patterns in self.sigma.values():
            for pat in patterns:
                if pat and all(ls.get(k) == v if k != "name" else v in (ls.get("category"), ls.get("service"))
                               for k, v in pat.items()):
                    return True
        return False


def _sigma_pattern(item: Any, where: str, source: str) -> dict[str, str]:
    if isinstance(item, dict):
        pat = {k: str(v).lower() for k, v in item.items() if k in ("product", "category", "service") and v}
        if not pat or len(pat) != len(item):
            raise InputError(source, where, "a Sigma logsource needs only product / category / service keys")
        return pat
    if isinstance(item, str) and item.strip():
        parts = item.strip().lower().split("/")
        if len(parts) == 1:  # a category (process_creation) or a service (security)
            return {"name": parts[0]}
        if len(parts) == 2:  # "windows/security": product and a category or a service, whichever the rule uses
            return {"product": parts[0], "name": parts[1]}
    raise InputError(source, where, f"{item!r} is not a Sigma logsource (category, product/service or a mapping)")


def load_inventory(path: str | Path) -> Inventory:
    """Read a data-source inventory (YAML, safe loader)::

        platforms:
          Windows:
            data_components: [Process Creation, Command Execution, DC0032]   # names or ids
            log_sources: ["WinEventLog:Security"]                             # v18 analytic log sources
            sigma: [process_creation, windows/security, {product: windows, category: ps_script}]
          Linux:
            sigma: [linux/auditd]

    ``*`` as a platform applies to every platform. A Sigma logsource without a product listed under
    Windows, Linux or macOS means that product's logs. Raises InputError naming the file and the entry for
    anything malformed.
    """
    import yaml

    path = Path(path)
    src = str(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(src, None, f"cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(src, f"line {mark.line + 1}" if mark else None,
                         f"not valid YAML ({getattr(exc, 'problem', None) or exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("platforms"), dict) or not doc["platforms"]:
        raise InputError(src, None, "an inventory needs a 'platforms' mapping: platform -> "
                                    "{data_components, log_sources, sigma}")
    inv = Inventory(src)
    for platform, spec in doc["platforms"].items():
        where = f"platforms.{platform}"
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise InputError(src, where, "must be a mapping with data_components / log_sources / sigma lists")
        unknown = set(spec) - {"data_components", "log_sources", "sigma"}
        if unknown:
            raise InputError(src, where, f"unknown keys {sorted(unknown)} (use data_components, log_sources, sigma)")
        key = "*" if str(platform).strip() in ("*", "all") else normalize(str(platform))
        lists = {}
        for name in ("data_components", "log_sources", "sigma"):
            value = spec.get(name) or []
            if not isinstance(value, list):
                raise InputError(src, f"{where}.{name}", "must be a list")
            lists[name] = value
        dcs = inv.data_components.setdefault(key, set())
        for i, item in enumerate(lists["data_components"]):
            if not isinstance(item, str) or not item.strip():
                raise InputError(src, f"{where}.data_components[{i}]", f"{item!r} is not a data component name or id")
            dcs.add(normalize(item))
        logs = inv.log_sources.setdefault(key, set())
        for i, item in enumerate(lists["log_sources"]):
            if not isinstance(item, str) or not item.strip():
                raise InputError(src, f"{where}.log_sources[{i}]", f"{item!r} is not a log source name")
            logs.add(item.strip().lower())
        pats = inv.sigma.setdefault(key, [])
        for i, item in enumerate(lists["sigma"]):
            pat = _sigma_pattern(item, f"{where}.sigma[{i}]", src)
            if "product" not in pat and key in _SIGMA_PRODUCTS:  # Linux: [process_creation] is Linux's only
                pat["product"] = key
            pats.append(pat)
            for part in (pat.get("category"), pat.get("service"), pat.get("name")):
                for comp in SIGMA_COMPONENTS.get(part or "", ()):
                    dcs.add(normalize(comp))
    return inv


# ---------------------------------------------------------------------- rules per technique
def _rule_weight(rule) -> float:
    return LEVEL_WEIGHT.get(str(rule.level or "").lower(), 0.3) * STATUS_WEIGHT.get(str(rule.status or "").lower(), 0.6)


def _alerting(rule) -> bool:
    return str(rule.level or "").lower() in LEVELS[:4] and str(rule.status or "").lower() not in NON_ALERTING_STATUS


def rules_by_technique(rules: Iterable, kb: KnowledgeBase) -> tuple[dict[str, list], list[str]]:
    """Rules indexed by the KB technique ids of their tags; notes for tags mapped across releases or unknown.

    Tags are resolved with ``crosswalk.resolve_any_release`` (revoked ids, v19 moves, newer sub-techniques).
    """
    out: dict[str, list] = {}
    notes: dict[str, str] = {}
    cache: dict[str, str | None] = {}
    for rule in rules:
        seen: set[str] = set()
        # RuleInfo keeps tags its KB could not map (e.g. v19 ids under v15.1) in unknown_tags: try them too
        newer = [tag.split(".", 1)[1].upper() for tag, _ in getattr(rule, "unknown_tags", ()) or ()
                 if _TECH_TAG.match(str(tag))]
        for raw in list(rule.techniques or ()) + newer:
            if raw not in cache:
                res = resolve_any_release(kb, raw)
                cache[raw] = res.id
                if res.note:
                    notes[raw] = res.note
            tid = cache[raw]
            if tid and tid not in seen:
                seen.add(tid)
                out.setdefault(tid, []).append(rule)
    return out, [notes[k] for k in sorted(notes)]


@dataclass
class TechniqueCoverage:
    id: str
    name: str
    rules: list = field(default_factory=list)  # rules tagged with it (or, for a parent, with a sub)
    parent_rules: list = field(default_factory=list)  # rules tagged only with the parent (not counted)
    usable: list = field(default_factory=list)  # rules whose log source is collected (all without inventory)
    visible: bool | None = None
    visible_via: list[str] = field(default_factory=list)
    score: float = 0.0
    detected: bool = False

    def to_dict(self) -> dict:
        by_level = {lv: 0 for lv in LEVELS}
        by_status: dict[str, int] = {}
        for r in self.rules:
            by_level[str(r.level or "").lower()] = by_level.get(str(r.level or "").lower(), 0) + 1
            by_status[str(r.status or "")] = by_status.get(str(r.status or ""), 0) + 1
        return {"id": self.id, "name": self.name, "rules": len(self.rules), "rules_usable": len(self.usable),
                "rules_by_level": {k: v for k, v in by_level.items() if v},
                "rules_by_status": dict(sorted(by_status.items())),
                "rule_ids": sorted(str(r.id) for r in self.rules),
                "parent_rules": len(self.parent_rules),
                "visible": self.visible, "visible_via": self.visible_via,
                "score": round(self.score, 4), "detected": self.detected}


def _visibility(kb: KnowledgeBase, tid: str, inv: Inventory, rules: list) -> list[str]:
    tech = kb.techniques[tid]
    plats = inv.platforms_for(tech.platforms)
    reasons: list[str] = []
    if plats:
        collected = set().union(*(inv.data_components.get(p, set()) for p in plats))
        for dc in kb.data_components_of(tid):
            if normalize(dc.name) in collected or normalize(dc.id) in collected:
                reasons.append(f"data component: {dc.name}")
        logs = set().union(*(inv.log_sources.get(p, set()) for p in plats))
        if logs:
            for det in kb.detection_strategies_of(tid):
                for an in det.analytics:
                    for ls in kb.analytics[an].log_sources if an in kb.analytics else ():
                        if str(ls.get("name", "")).lower() in logs:
                            reasons.append(f"log source: {ls['name']}")
    for r in rules:
        if inv.sigma_collected(r.logsource):
            ls = r.logsource or {}
            reasons.append("sigma logsource: " + "/".join(str(ls[k]) for k in ("product", "category", "service")
                                                          if ls.get(k)))
    return sorted(set(reasons))


def technique_coverage(kb: KnowledgeBase, tid: str, index: dict[str, list],
                       inventory: Inventory | None = None) -> TechniqueCoverage:
    """Coverage of one technique from a rules-by-technique index (see module doc for the scoring)."""
    tech = kb.techniques[tid]
    own = list(index.get(tid, ()))
    seen = {id(r) for r in own}
    for sub in tech.subtechniques:
        for r in index.get(sub, ()):
            if id(r) not in seen:
                seen.add(id(r))
                own.append(r)
    parent = [r for r in index.get(tech.parent, ()) if id(r) not in seen] if tech.parent else []
    tc = TechniqueCoverage(tid, tech.name, own, parent)
    if inventory is not None:
        tc.usable = [r for r in own if inventory.sigma_collected(r.logsource)]
        tc.visible_via = _visibility(kb, tid, inventory, own)
        tc.visible = bool(tc.visible_via)
    else:
        tc.usable = own
    miss = 1.0
    for r in tc.usable:
        miss *= 1.0 - _rule_weight(r)
    tc.score = 1.0 - miss
    tc.detected = any(_alerting(r) for r in tc.usable)
    return tc


def _is_pre(kb: KnowledgeBase, tid: str) -> bool:
    tech = kb.techniques[tid]
    return bool(tech.platforms) and all(p == "PRE" for p in tech.platforms)


def coverage_report(kb: KnowledgeBase, rules: Iterable, profile: ThreatProfile | None = None,
                    inventory: Inventory | None = None, platforms: Iterable[str] | None = None) -> dict:
    """Coverage of ``rules`` over a profile's techniques (or every live technique without a profile).

    Returns ``{coverage, weighted_coverage, coverage_observable, techniques: [...], gaps: [{id, name,
    actors, tactics, weight, pre_compromise, visible}], visible_undetected: [...], blind_rules: [...],
    profile, counts, notes}``; see the module doc for the scoring and ordering. ``platforms`` keeps only
    techniques that run on one of them (e.g. ``["Windows"]``).
    """
    rules = list(rules)
    index, notes = rules_by_technique(rules, kb)
    if profile is not None:
        notes = list(profile.notes) + notes
        targets = dict(profile.weights)
    else:
        targets = {t.id: 1.0 for t in kb.live_techniques()}
    if platforms:
        wanted = {normalize(p) for p in platforms}
        targets = {t: w for t, w in targets.items()
                   if wanted & {normalize(p) for p in kb.techniques[t].platforms}}
    order = {s: i for i, s in enumerate(kb.tactic_order())}
    covs = {t: technique_coverage(kb, t, index, inventory) for t in sorted(targets)}
    total_w = sum(targets.values()) or 1.0
    detected = [t for t, c in covs.items() if c.detected]
    observable = [t for t in covs if not _is_pre(kb, t)]

    def first_tactic(tid: str) -> int:
        return min((order.get(s, 99) for s in kb.techniques[tid].tactics), default=99)

    def gap_row(tid: str) -> dict:
        tech = kb.techniques[tid]
        return {"id": tid, "name": tech.name,
                "actors": list(profile.actors.get(tid, [])) if profile is not None else [],
                "tactics": sorted(tech.tactics, key=lambda s: order.get(s, 99)),
                "weight": round(targets[tid], 6), "pre_compromise": _is_pre(kb, tid),
                "visible": covs[tid].visible, "parent_rules": len(covs[tid].parent_rules),
                "parent_rule_ids": sorted(str(r.id) for r in covs[tid].parent_rules)}

    gaps = sorted((t for t in covs if not covs[t].detected),
                  key=lambda t: (_is_pre(kb, t), -targets[t], first_tactic(t), t))
    gap_rows = [gap_row(t) for t in gaps]
    blind = []
    if inventory is not None:
        for t, c in covs.items():
            unusable = [r for r in c.rules if r not in c.usable]
            if unusable and not c.detected:
                blind.append({"id": t, "name": c.name, "rules": sorted(str(r.id) for r in unusable)})
    tech_rows = sorted((c.to_dict() for c in covs.values()), key=lambda d: (-d["score"], d["id"]))
    for row in tech_rows:
        row["weight"] = round(targets[row["id"]], 6)
    return {
        "coverage": round(len(detected) / len(covs), 4) if covs else 0.0,
        "weighted_coverage": round(sum(targets[t] for t in detected) / total_w, 4),
        "coverage_observable": round(sum(1 for t in observable if covs[t].detected) / len(observable), 4)
        if observable else 0.0,
        "techniques": tech_rows,
        "gaps": gap_rows,
        "visible_undetected": [g for g in gap_rows if g["visible"]],
        "blind_rules": blind,
        "profile": profile.to_dict(kb) if profile is not None else None,
        "inventory": inventory.source if inventory is not None else None,
        "counts": {"rules": len(rules), "rules_with_techniques": sum(1 for r in rules if r.techniques),
                   "techniques": len(covs), "detected": len(detected), "gaps": len(gap_rows),
                   "observable": len(observable)},
        "scoring": {"level_weight": LEVEL_WEIGHT, "status_weight": STATUS_WEIGHT},
        "notes": notes,
        **kb.provenance(),
    }


def coverage_layers(report: dict, kb: KnowledgeBase) -> dict[str, dict]:
    """Navigator layers of a coverage report: ``coverage`` (score per technique), ``profile`` (weights),
    ``gaps`` (undetected profile techniques; visible-but-undetected in orange)."""
    from ttpscope.export.navigator import make_layer

    title = report["profile"]["name"] if report["profile"] else "all techniques"
    cov = make_layer(f"Detection coverage: {title}", kb,
                     [{"id": t["id"], "score": t["score"],
                       "comment": f"{t['rules']} rules ({t['rules_usable']} usable)",
                       "metadata": {"rules": t["rules"], **t["rules_by_level"]}}
                      for t in report["techniques"] if t["rules"]],
                     description=f"coverage {report['coverage']:.0%} of {report['counts']['techniques']} techniques",
                     gradient=("#ffe6e6ff", "#ffff99ff", "#66cc66ff"), min_value=0, max_value=1,
                     metadata={"coverage": report["coverage"]})
    prof = make_layer(f"Threat profile: {title}", kb,
                      [{"id": t["id"], "score": t["weight"]} for t in report["techniques"]],
                      description="score = profile weight (actors using the technique, or its prevalence)",
                      gradient=("#ffffffff", "#ff6666ff"))
    gaps = make_layer(f"Detection gaps: {title}", kb,
                      [{"id": g["id"], "score": g["weight"],
                        "color": "#fdae61" if g["visible"] else "#e34a33",
                        "comment": ("visible but undetected; " if g["visible"] else "") +
                                   (f"actors: {', '.join(g['actors'])}" if g["actors"] else "")}
                       for g in report["gaps"]],
                      description="profile techniques no alerting rule detects",
                      legend=[("undetected", "#e34a33"), ("visible but undetected", "#fdae61")])
    return {"coverage": cov, "profile": prof, "gaps": gaps}


def hunt_leads(kb: KnowledgeBase, rules: Iterable, technique_ids: Iterable[str], target: str,
               pipeline: str | None = "default") -> dict:
    """Hunting leads: per technique the Sigma rules that cover it (own tag or a sub-technique's), each
    converted to ``target`` (see ``ttpscope.detect.convert``); conversion failures keep their reason.

    Returns ``{target, pipeline, techniques: [{id, name, rules: [{id, title, level, status, path, queries,
    error}]}], unknown, counts}``; rules by level (critical first), then id.
    """
    from ttpscope.detect.convert import convert_rules

    index, notes = rules_by_technique(rules, kb)
    wanted: list[str] = []
    unknown: list[str] = []
    for raw in technique_ids:
        res = resolve_any_release(kb, raw)
        if res.id is None:
            unknown.append(raw)
        elif res.id not in wanted:
            wanted.append(res.id)
    per_tech = {t: technique_coverage(kb, t, index).rules for t in wanted}
    unique = {id(r): r for rs in per_tech.values() for r in rs}
    converted = convert_rules(list(unique.values()), target, pipeline)
    by_obj = dict(zip(unique.keys(), converted.results))
    rank = {lv: i for i, lv in enumerate(LEVELS)}
    techniques = []
    for tid in wanted:
        rows = []
        for r in per_tech[tid]:
            c = by_obj[id(r)]
            rows.append({"id": str(r.id), "title": str(getattr(r, "title", "") or ""), "level": r.level,
                         "status": r.status, "path": str(getattr(r, "path", "") or "") or None,
                         "queries": c.queries, "error": c.error})
        rows.sort(key=lambda x: (rank.get(str(x["level"]).lower(), 9), x["id"]))
        techniques.append({"id": tid, "name": kb.techniques[tid].name, "rules": rows})
    return {"target": converted.target, "pipeline": converted.pipeline, "techniques": techniques,
            "unknown": unknown,
            "counts": {"techniques": len(wanted), "rules": len(unique), "converted": len(converted.queries),
                       "failed": len(converted.failures)},
            "notes": notes, **kb.provenance()}
