"""Official ATT&CK STIX 2.1 bundle -> KnowledgeBase.

One pass over the objects, one over the relationships. Revoked objects are resolved through
``revoked-by``; deprecated ones are flagged; relationships touching either are dropped unless
``include_deprecated``. References to objects the bundle does not hold are reported as warnings and the
rest of the bundle still loads.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from typing import Any

import orjson

from ttpscope.errors import InputError
from ttpscope.kb.aliases import misp_actor_records, normalize
from ttpscope.kb.base import KnowledgeBase
from ttpscope.kb.objects import (
    Analytic,
    Campaign,
    DataComponent,
    DataSource,
    DetectionStrategy,
    Group,
    Mitigation,
    Procedure,
    Software,
    Tactic,
    Technique,
)

KILL_CHAINS = {"mitre-attack": "enterprise", "mitre-mobile-attack": "mobile", "mitre-ics-attack": "ics"}
MATRIX_DOMAINS = {"enterprise-attack": "enterprise", "mobile-attack": "mobile", "ics-attack": "ics"}
_SOURCE_TYPES = {"intrusion-set": "group", "malware": "software", "tool": "software", "campaign": "campaign"}


def parse_bundle(raw: bytes, source: str) -> list[dict[str, Any]]:
    """Bytes of a STIX bundle -> its objects, with a clear error for anything that is not one."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # orjson builds ~1M small objects; the cyclic GC would rescan them many times
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(source, None, f"not valid JSON ({exc})") from exc
    finally:
        if gc_was_enabled:
            gc.enable()
    if not isinstance(data, dict) or data.get("type") != "bundle" or not isinstance(data.get("objects"), list):
        raise InputError(source, None, "not a STIX 2.1 bundle (expected an object with type 'bundle' and 'objects')")
    return data["objects"]


# Every field the loader reads, with the shape it must have when present. A bundle from a URL or a TAXII
# server can hold anything: an object with a wrong-typed field is rejected (and counted), never a crash.
_STR, _OPT_STR, _BOOL, _STRS, _DICTS = "a string", "a string or null", "true or false", "a list of strings", \
    "a list of objects"
_FIELDS: dict[str, str] = {
    "id": _STR, "type": _STR, "name": _STR, "description": _OPT_STR, "revoked": _BOOL,
    "x_mitre_deprecated": _BOOL, "external_references": _DICTS, "kill_chain_phases": _DICTS,
    "x_mitre_platforms": _STRS, "x_mitre_data_sources": _STRS, "x_mitre_detection": _OPT_STR,
    "x_mitre_is_subtechnique": _BOOL, "aliases": _STRS, "x_mitre_aliases": _STRS, "first_seen": _OPT_STR,
    "last_seen": _OPT_STR, "tactic_refs": _STRS, "x_mitre_shortname": _STR, "x_mitre_data_source_ref": _OPT_STR,
    "x_mitre_log_sources": _DICTS, "x_mitre_log_source_references": _DICTS, "x_mitre_analytic_refs": _STRS,
    "relationship_type": _STR, "source_ref": _STR, "target_ref": _STR,
}
# fields of the nested objects that are read
_NESTED: dict[str, tuple[str, ...]] = {
    "external_references": ("source_name", "external_id", "url"), "kill_chain_phases": ("kill_chain_name", "phase_name"),
    "x_mitre_log_sources": ("name", "channel"),
    "x_mitre_log_source_references": ("x_mitre_data_component_ref", "name", "channel"),
}


def _shape_ok(value: Any, shape: str) -> bool:
    if shape == _STR:
        return isinstance(value, str)
    if shape == _OPT_STR:
        return value is None or isinstance(value, str)
    if shape == _BOOL:
        return value is None or isinstance(value, bool)
    if shape == _STRS:
        return value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    return value is None or (isinstance(value, list) and all(isinstance(v, dict) for v in value))


def object_problem(obj: Any) -> str | None:
    """Why an object of a bundle cannot be loaded (a wrong-typed field), or None when it can."""
    if not isinstance(obj, dict):
        return f"is a {type(obj).__name__}, not an object"
    for key, shape in _FIELDS.items():
        if key in obj and not _shape_ok(obj[key], shape):
            return f"'{key}' is {_kind(obj[key])}, not {shape}"
    for key, inner in _NESTED.items():
        for i, item in enumerate(obj.get(key) or ()):
            if key == "kill_chain_phases" and not isinstance(item.get("phase_name"), str):
                return f"'{key}[{i}]' has no phase_name"
            for field in inner:
                if item.get(field) is not None and not isinstance(item[field], str):
                    return f"'{key}[{i}].{field}' is {_kind(item[field])}, not a string"
    return None


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _attack_ref(obj: dict[str, Any]) -> tuple[str | None, str]:
    for ref in obj.get("external_references") or ():
        if ref.get("source_name") in ("mitre-attack", "mitre-mobile-attack", "mitre-ics-attack") and ref.get("external_id"):
            return ref["external_id"], ref.get("url", "")
    return None, ""


def _checked(objects: list[Any], source: str, warnings: list[str]) -> list[dict[str, Any]]:
    """The loadable objects; each rejected one is counted, the first ten named with their reason."""
    kept, rejected = [], 0
    for i, obj in enumerate(objects):
        if isinstance(obj, dict) and ("type" not in obj or "id" not in obj):
            kept.append(obj)  # reported below as an object without type/id
            continue
        problem = object_problem(obj)
        if problem is None:
            kept.append(obj)
            continue
        rejected += 1
        if rejected <= 10:
            ident = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else f"#{i}"
            warnings.append(f"{source}: object {ident} rejected: {problem}")
    if rejected:
        warnings.append(f"{source}: {rejected} of {len(objects)} objects rejected for wrong-typed fields; "
                        "the rest loaded")
    return kept


def _bundle_domain(objects: list[dict[str, Any]]) -> str | None:
    for obj in objects:
        if obj.get("type") == "x-mitre-matrix":
            ext, _ = _attack_ref(obj)
            if ext in MATRIX_DOMAINS:
                return MATRIX_DOMAINS[ext]
    for obj in objects:
        if obj.get("type") == "attack-pattern":
            for phase in obj.get("kill_chain_phases") or ():
                if phase.get("kill_chain_name") in KILL_CHAINS:
                    return KILL_CHAINS[phase["kill_chain_name"]]
    return None


def bundle_version(objects: list[dict[str, Any]]) -> str | None:
    """ATT&CK release of a bundle, from its x-mitre-collection (attack-stix-data bundles carry one)."""
    for obj in objects:
        if obj.get("type") == "x-mitre-collection" and obj.get("x_mitre_version"):
            return str(obj["x_mitre_version"])
    return None


def build_kb(objects: list[dict[str, Any]], source: str, version: str | None = None,
             domain: str | None = None, include_deprecated: bool = False, misp: bool = True) -> KnowledgeBase:
    """Build a KnowledgeBase from the objects of one ATT&CK domain bundle.

    Objects with a wrong-typed field are left out, counted in ``kb.warnings``; the rest of the bundle loads.
    """
    rejected: list[str] = []
    objects = _checked(objects, source, rejected)
    domain = domain or _bundle_domain(objects)
    if domain is None:
        raise InputError(source, None, "no ATT&CK matrix or technique found: not an ATT&CK bundle")
    version = bundle_version(objects) or version or "unknown"
    kb = KnowledgeBase(domain=domain, version=version, source=source, include_deprecated=include_deprecated)
    kb.warnings.extend(rejected)
    kill_chain = next(k for k, d in KILL_CHAINS.items() if d == domain)

    by_stix: dict[str, dict[str, Any]] = {}
    ext_of: dict[str, str] = {}  # stix id -> ATT&CK id (or stix id where there is none)
    relationships: list[dict[str, Any]] = []
    matrices: list[dict[str, Any]] = []
    revoked_stix: set[str] = set()
    deprecated_stix: set[str] = set()
    for obj in objects:
        if not isinstance(obj, dict) or "type" not in obj or "id" not in obj:
            kb.warnings.append(f"{source}: skipped an object without type/id")
            continue
        otype = obj["type"]
        if otype == "relationship":
            relationships.append(obj)
            continue
        sid = obj["id"]
        by_stix[sid] = obj
        ext, _ = _attack_ref(obj)
        ext_of[sid] = ext or sid
        if obj.get("revoked"):
            revoked_stix.add(sid)
        elif obj.get("x_mitre_deprecated"):
            deprecated_stix.add(sid)
        if otype == "x-mitre-matrix" and not obj.get("revoked") and not obj.get("x_mitre_deprecated"):
            matrices.append(obj)

    # tactics in matrix order
    order: list[str] = []
    for matrix in matrices:
        for ref in matrix.get("tactic_refs") or ():
            if ref not in order:
                order.append(ref)
    for sid in order:
        obj = by_stix.get(sid)
        if obj is None:
            kb.warnings.append(f"{source}: matrix refers to missing tactic {sid}")
            continue
        ext, url = _attack_ref(obj)
        kb.tactics[ext or sid] = Tactic(ext or sid, obj.get("x_mitre_shortname", ""), obj.get("name", ""),
                                        obj.get("description", ""), len(kb.tactics), sid, url)
    tactic_rank = {t.shortname: t.order for t in kb.tactics.values()}

    def hidden(sid: str) -> bool:
        return sid in revoked_stix or (sid in deprecated_stix and not include_deprecated)

    for sid, obj in by_stix.items():
        if sid in revoked_stix:
            continue
        otype = obj["type"]
        ext, url = _attack_ref(obj)
        deprecated = sid in deprecated_stix
        desc = obj.get("description", "") or ""
        if otype == "attack-pattern" and ext:
            tactics = [p["phase_name"] for p in obj.get("kill_chain_phases") or ()
                       if p.get("kill_chain_name") == kill_chain]
            tactics.sort(key=lambda s: tactic_rank.get(s, 99))
            is_sub = bool(obj.get("x_mitre_is_subtechnique")) or "." in ext
            kb.techniques[ext] = Technique(
                ext, obj.get("name", ""), desc, tactics, list(obj.get("x_mitre_platforms") or ()), is_sub,
                ext.split(".")[0] if is_sub else None, [], list(obj.get("x_mitre_data_sources") or ()),
                obj.get("x_mitre_detection", "") or "", deprecated, sid, url)
        elif otype == "intrusion-set" and ext:
            aliases = list(dict.fromkeys([obj.get("name", ""), *(obj.get("aliases") or ())]))
            kb.groups[ext] = Group(ext, obj.get("name", ""), aliases, desc, deprecated=deprecated, stix_id=sid, url=url)
        elif otype in ("malware", "tool") and ext:
            aliases = list(dict.fromkeys([obj.get("name", ""), *(obj.get("x_mitre_aliases") or ())]))
            kb.software[ext] = Software(ext, obj.get("name", ""), otype, aliases,
                                        list(obj.get("x_mitre_platforms") or ()), desc, deprecated, sid, url)
        elif otype == "campaign" and ext:
            kb.campaigns[ext] = Campaign(ext, obj.get("name", ""), list(obj.get("aliases") or ()), desc,
                                         obj.get("first_seen"), obj.get("last_seen"), [], deprecated, sid, url)
        elif otype == "course-of-action" and ext:
            kb.mitigations[ext] = Mitigation(ext, obj.get("name", ""), desc, deprecated, sid, url)
        elif otype == "x-mitre-data-source" and not deprecated:
            kb.data_sources[ext or sid] = DataSource(ext or sid, obj.get("name", ""), desc, sid)
        elif otype == "x-mitre-data-component" and not deprecated:
            ds = obj.get("x_mitre_data_source_ref")
            kb.data_components[ext or sid] = DataComponent(
                ext or sid, obj.get("name", ""), ext_of.get(ds) if ds else None, desc,
                [{"name": ls.get("name", ""), "channel": ls.get("channel", "")}
                 for ls in obj.get("x_mitre_log_sources") or ()], sid)
        elif otype == "x-mitre-analytic" and not deprecated:
            kb.analytics[ext or sid] = Analytic(
                ext or sid, obj.get("name", ""), desc, list(obj.get("x_mitre_platforms") or ()),
                [{"data_component": ext_of.get(ls.get("x_mitre_data_component_ref", ""), ""),
                  "name": ls.get("name", ""), "channel": ls.get("channel", "")}
                 for ls in obj.get("x_mitre_log_source_references") or ()], sid)
        elif otype == "x-mitre-detection-strategy" and not deprecated:
            kb.detection_strategies[ext or sid] = DetectionStrategy(
                ext or sid, obj.get("name", ""), [ext_of.get(r, r) for r in obj.get("x_mitre_analytic_refs") or ()],
                [], sid)

    campaign_by_stix = {c.stix_id: c for c in kb.campaigns.values()}
    group_sw: dict[str, list[str]] = defaultdict(list)
    campaign_sw: dict[str, list[str]] = defaultdict(list)
    mitig: dict[str, list[tuple[str, str]]] = defaultdict(list)
    comps: dict[str, list[str]] = defaultdict(list)
    strategies: dict[str, list[str]] = defaultdict(list)
    dangling = 0
    for rel in relationships:
        rtype = rel.get("relationship_type")
        src, dst = rel.get("source_ref"), rel.get("target_ref")
        if src not in by_stix or dst not in by_stix:
            dangling += 1
            if dangling <= 20:
                missing = src if src not in by_stix else dst
                kb.warnings.append(f"{source}: relationship {rel.get('id')} ({rtype}) refers to missing object {missing}")
            continue
        if rtype == "revoked-by":
            old = ext_of[src]
            kb.revoked[old] = (ext_of[dst], by_stix[src].get("name", ""))
            continue
        if rel.get("revoked") or (rel.get("x_mitre_deprecated") and not include_deprecated):
            continue
        if hidden(src) or hidden(dst):
            continue
        stype, dtype = by_stix[src]["type"], by_stix[dst]["type"]
        s_ext, d_ext = ext_of[src], ext_of[dst]
        if rtype == "uses":
            if dtype == "attack-pattern" and stype in _SOURCE_TYPES and d_ext in kb.techniques:
                refs = rel.get("external_references") or ()
                kb.procedures.append(Procedure(
                    s_ext, _SOURCE_TYPES[stype], d_ext, rel.get("description", "") or "",
                    tuple(r.get("source_name", "") for r in refs), tuple(r["url"] for r in refs if r.get("url"))))
            elif dtype in ("malware", "tool") and stype == "intrusion-set":
                group_sw[s_ext].append(d_ext)
            elif dtype in ("malware", "tool") and stype == "campaign":
                campaign_sw[s_ext].append(d_ext)
        elif rtype == "subtechnique-of" and s_ext in kb.techniques and d_ext in kb.techniques:
            kb.techniques[s_ext].parent = d_ext
            kb.techniques[d_ext].subtechniques.append(s_ext)
        elif rtype == "mitigates" and stype == "course-of-action":
            mitig[d_ext].append((s_ext, rel.get("description", "") or ""))
        elif rtype == "detects" and dtype == "attack-pattern":
            if stype == "x-mitre-data-component":
                comps[d_ext].append(s_ext)
            elif stype == "x-mitre-detection-strategy":
                strategies[d_ext].append(s_ext)
                if s_ext in kb.detection_strategies:
                    kb.detection_strategies[s_ext].techniques.append(d_ext)
        elif rtype == "attributed-to" and stype == "campaign" and dtype == "intrusion-set":
            if src in campaign_by_stix:
                campaign_by_stix[src].groups.append(d_ext)
    if dangling > 20:
        kb.warnings.append(f"{source}: {dangling} relationships in all refer to missing objects (skipped)")
    for tech in kb.techniques.values():
        tech.subtechniques.sort()
    kb.group_software = {k: sorted(set(v)) for k, v in group_sw.items()}
    kb.campaign_software = {k: sorted(set(v)) for k, v in campaign_sw.items()}
    kb.technique_mitigations = dict(mitig)
    kb.technique_components = {k: list(dict.fromkeys(v)) for k, v in comps.items()}
    kb.technique_strategies = {k: list(dict.fromkeys(v)) for k, v in strategies.items()}
    kb.procedures.sort(key=lambda p: (p.source_id, p.technique_id))
    ambiguous = enrich_with_misp(kb) if misp else set()
    kb.index(ambiguous)
    return kb


def enrich_with_misp(kb: KnowledgeBase) -> set[str]:
    """Add MISP synonyms and context to groups. Returns alias keys that point at several groups (dropped)."""
    alias_owner: dict[str, set[str]] = defaultdict(set)
    by_name = {}
    for group in kb.groups.values():
        for name in group.aliases:
            by_name.setdefault(normalize(name), group.id)
    for record in misp_actor_records():
        gid = record["group_id"]
        if gid not in kb.groups:
            # no ATT&CK link: attach only when the MISP main name is an ATT&CK alias
            gid = by_name.get(normalize(record["names"][0]))
        if gid not in kb.groups:
            continue
        group = kb.groups[gid]
        for name in record["names"]:
            alias_owner[normalize(name)].add(gid)
            if name not in group.aliases and name not in group.misp_aliases:
                group.misp_aliases.append(name)
        for key, value in record["context"].items():
            group.context.setdefault(key, value)
    return {key for key, owners in alias_owner.items() if len(owners) > 1}
