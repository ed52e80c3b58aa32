"""The case as a STIX 2.1 bundle.

Built as plain dicts, written with orjson (``bundle.json`` object by object, :func:`bundle_json_chunks`),
not as ``stix2`` objects: measured with ``bench/stix_export_bench.py`` (2026-12-01, a busy 2-CPU machine),
``stix2`` objects cost 0.8-1.3 ms each (a 40,000-observation case, 101,008 objects: 77.8 s and +531 MB RSS
while exporting; 10,000 observations: 33.7 s, +142 MB) where the dicts cost about 0.08 ms (7.7 s, +52 MB;
2.2 s, +9 MB), the same bundle as parsed JSON. The dicts follow ``stix2``'s own
serialisation (``spec_version``, properties that are None or empty left out, ``created``/``modified`` to
the millisecond or finer, other timestamps without a zero fraction; cyber-observable ids from ``stix2``'s
namespace and canonicalisation), and the tests parse every object strictly with ``stix2`` and check it
serialises back to the same dict. ``stix2`` still builds what it must judge: the indicators (their patterns
go through stix2-patterns; a refused IOC is left out and counted, a refused feed indicator is not shared
on) and the TLP marking definitions.

What goes in:
- a ``report`` that refers to everything below, and the ``identity`` of ttpscope that made it;
- a ``campaign`` standing for the case's activity, with ``uses`` relationships to an ``attack-pattern`` per
  technique (the ATT&CK object's own STIX id and ``mitre-attack`` external id; confidence = evidence strength);
- per rule and host, an ``observed-data`` of the events' observables (process, file, registry key,
  user account, addresses) and a ``sighting`` of each technique the rule is tagged with, sighted where the
  host's ``identity`` (class ``system``) is;
- report sentences as ``note`` objects on the attack-patterns they support;
- ``indicator`` objects for the IOCs with a short validity window (IOCs go stale fast), ``vulnerability``
  objects for the CVEs;
- the top attributed group as an ``intrusion-set`` with an ``attributed-to`` relationship from the campaign
  carrying the attribution's confidence, only when the attribution is not "insufficient evidence" and the
  case is one intrusion (a case whose activity falls into separate clusters has no whole-case attribution).

From the reports themselves: ``report.published`` is the latest publication date the case's documents
state, else the earliest evidence time, else the case's creation time, never the export time (see
:func:`published_date`; the label ``ttpscope-published:<source>`` says which); an external reference per
source document (its name and SHA-256); a TLP 2.0 marking (the official marking-definition objects) from the
most restrictive TLP line of the documents, or ``tlp=``; an ``intrusion-set`` per group and a ``malware`` /
``tool`` per software and a ``campaign`` per ATT&CK campaign the reports name (ATT&CK ids as external
references), with ``uses`` relationships to the attack-patterns of this case their ATT&CK profile has, and
``attributed-to`` from a named campaign to the intrusion-sets ATT&CK attributes it to. Indicators come only from the IOCs that survived
the extraction's screening; their ``indicator_types`` stay "malicious-activity" with a confidence that says
they were extracted, not reviewed.

Review (:mod:`ttpscope.analyze.review`): rejected techniques and IOCs never reach the bundle (the case is
filtered before it is analysed). A confirmed technique's ``uses`` relationship and a confirmed IOC's
indicator carry the confidence the review gave (100 when it gave none) and the label
``ttpscope-review:confirmed``; unreviewed ones keep the machine's confidence with the label
``ttpscope-review:unreviewed``.

Ids of our own objects are UUIDv5 of the case id and the object's content, and times come from the case,
so the same case gives the same bundle.
"""

from __future__ import annotations

import ntpath
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import orjson
import stix2
from stix2.base import SCO_DET_ID_NAMESPACE
from stix2.canonicalization.Canonicalize import canonicalize

from ttpscope import __version__
from ttpscope.analyze.evidence import comment_of
from ttpscope.analyze.report import CaseAnalysis, IndicatorsSection
from ttpscope.analyze.review import CONFIRMED, technique_review
from ttpscope.model import Detection, ReportDocument, ioc_target

NAMESPACE = uuid.UUID("5b0d7f55-6d0e-4bd6-9f34-8d3c2f1f0a11")  # ttpscope's UUIDv5 namespace
# IOC validity after the case: network indicators are re-used for days to weeks, file hashes a little longer
VALIDITY_DAYS = {"network": 30, "hash": 90, "other": 30}
OBSERVABLES_PER_GROUP = 5
EXTRACTED_IOC_CONFIDENCE = 50  # an IOC read from a report by a machine, not reviewed by an analyst
PUBLISHED_LABEL = "ttpscope-published"  # report label saying where report.published came from

# TLP 2.0 marking definitions as FIRST publishes them for STIX 2.1 (fixed ids, one extension definition)
_TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
_TLP_ORDER = ("clear", "green", "amber", "amber+strict", "red")


def tlp_marking(level: str) -> Any:
    """The TLP 2.0 marking-definition object of a level (clear, green, amber, amber+strict, red; white =
    clear)."""
    level = level.lower().strip().removeprefix("tlp:").replace(" ", "")
    level = "clear" if level == "white" else level
    if level not in TLP2_IDS:
        raise ValueError(f"unknown TLP level {level!r}; one of {', '.join(_TLP_ORDER)}")
    return stix2.MarkingDefinition(id=TLP2_IDS[level], created="2022-10-01T00:00:00.000Z",
                                   name=f"TLP:{level.upper()}",
                                   extensions={_TLP2_EXTENSION: {"extension_type": "property-extension",
                                                                 "tlp_2_0": level}})


def _strictest(levels: list[str]) -> str | None:
    known = [lv for lv in levels if lv in _TLP_ORDER]
    return max(known, key=_TLP_ORDER.index) if known else None

_IOC_TYPES = {  # extractor type names -> (STIX pattern path, validity class)
    "ipv4": ("ipv4-addr:value", "network"), "ip": ("ipv4-addr:value", "network"),
    "ipv4-addr": ("ipv4-addr:value", "network"), "ipv4_address": ("ipv4-addr:value", "network"),
    "ipv6": ("ipv6-addr:value", "network"), "ipv6-addr": ("ipv6-addr:value", "network"),
    "domain": ("domain-name:value", "network"), "domain-name": ("domain-name:value", "network"),
    "fqdn": ("domain-name:value", "network"), "hostname": ("domain-name:value", "network"),
    "url": ("url:value", "network"), "uri": ("url:value", "network"),
    "email": ("email-addr:value", "network"), "email-addr": ("email-addr:value", "network"),
    "email_address": ("email-addr:value", "network"),
    "md5": ("file:hashes.MD5", "hash"), "sha1": ("file:hashes.'SHA-1'", "hash"),
    "sha256": ("file:hashes.'SHA-256'", "hash"), "sha512": ("file:hashes.'SHA-512'", "hash"),
    "registry": ("windows-registry-key:key", "other"), "registry_key": ("windows-registry-key:key", "other"),
    "registry-key": ("windows-registry-key:key", "other"), "file_path": ("file:name", "other"),
    "filepath": ("file:name", "other"), "file": ("file:name", "other"), "filename": ("file:name", "other"),
}


def review_label(state: str) -> str:
    """The label that tells a bundle's reader whether an analyst reviewed the object."""
    return f"ttpscope-review:{state}"


def _id(kind: str, *parts: Any) -> str:
    return f"{kind}--{uuid.uuid5(NAMESPACE, '|'.join(str(p) for p in parts))}"


def _utc(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _ts(dt: datetime) -> str:
    """A STIX timestamp as ``stix2`` writes one of "any" precision: UTC, seconds, the fraction only as far as
    it is not zero."""
    z = dt.astimezone(timezone.utc) if dt.tzinfo else dt
    frac = f"{z.microsecond:06d}".rstrip("0") if z.microsecond else ""
    return z.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}Z" if frac else "Z")


def _ts_ms(dt: datetime) -> str:
    """A ``created`` / ``modified`` timestamp as ``stix2`` writes one: at least millisecond precision."""
    z = dt.astimezone(timezone.utc) if dt.tzinfo else dt
    return z.strftime("%Y-%m-%dT%H:%M:%S") + "." + f"{z.microsecond:06d}".rstrip("0").ljust(3, "0") + "Z"


def _pattern_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ioc_pattern(ioc_type: str, value: str) -> tuple[str, str] | None:
    """The STIX pattern of an IOC and its validity class, or None for a type STIX patterns do not cover."""
    key = str(ioc_type).lower().strip()
    if key not in _IOC_TYPES or not value:
        return None
    path, validity = _IOC_TYPES[key]
    if path == "file:name":
        value = ntpath.basename(value) or value
    return f"[{path} = {_pattern_literal(str(value))}]", validity


# STIX wants a registry key's full hive name; Sysmon writes the short one (HKLM\..., HKU\...)
_HIVES = {"HKLM": "HKEY_LOCAL_MACHINE", "HKU": "HKEY_USERS", "HKCU": "HKEY_CURRENT_USER",
          "HKCR": "HKEY_CLASSES_ROOT", "HKCC": "HKEY_CURRENT_CONFIG"}


def registry_key(key: str) -> str:
    """A registry key with its hive spelt out, as STIX 2.1 requires."""
    hive, sep, rest = key.partition("\\")
    return _HIVES[hive.upper()] + sep + rest if hive.upper() in _HIVES else key


@lru_cache(maxsize=1 << 16)  # the same file names, accounts and addresses recur across a large case
def _sco_id(kind: str, key: str, value: str) -> str:
    """A cyber-observable's deterministic id as STIX 2.1 defines it (and as ``stix2`` computes it): UUIDv5 of
    the canonical JSON of its id-contributing properties (here a single one) in the SCO namespace."""
    return f"{kind}--{uuid.uuid5(SCO_DET_ID_NAMESPACE, canonicalize({key: value}, utf8=False))}"


def _sco(kind: str, key: str, value: str) -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1", "id": _sco_id(kind, key, value), key: value}


def _observables(event: dict[str, Any]) -> list[dict[str, Any]]:
    """STIX cyber-observables of one event's telling fields (deterministic ids from their values)."""
    out: list[dict[str, Any]] = []
    image = event.get("Image") or event.get("NewProcessName")
    cmd = event.get("CommandLine")
    if image or cmd:
        props: dict[str, Any] = {}
        if cmd:
            props["command_line"] = str(cmd)
        if image:
            f = _sco("file", "name", ntpath.basename(str(image)) or str(image))
            out.append(f)
            props["image_ref"] = f["id"]
        pid = event.get("ProcessId") or event.get("NewProcessId")
        if isinstance(pid, int) or (isinstance(pid, str) and pid.isdigit()):
            props["pid"] = int(pid)
        # a process has no id-contributing properties in STIX 2.1: derive one from what identifies it here
        # (STIX wants a UUIDv4 there: the name-based UUID with its version bits set to 4 stays deterministic)
        pid_ = uuid.UUID(_id("process", props.get("command_line"), props.get("pid"), image).split("--")[1])
        out.append({"type": "process", "spec_version": "2.1",
                    "id": f"process--{uuid.UUID(bytes=pid_.bytes, version=4)}", **props})
    for key in ("TargetFilename", "ImageLoaded"):
        if event.get(key):
            out.append(_sco("file", "name", ntpath.basename(str(event[key])) or str(event[key])))
    if event.get("TargetObject"):
        out.append(_sco("windows-registry-key", "key", registry_key(str(event["TargetObject"]))))
    for key in ("TargetUserName", "SubjectUserName", "User"):
        if event.get(key) and str(event[key]) not in ("-", ""):
            out.append(_sco("user-account", "user_id", str(event[key])))
            break
    for key in ("DestinationIp", "SourceIp", "IpAddress"):
        val = str(event.get(key) or "")
        if val and val not in ("-", "::1", "127.0.0.1"):
            out.append(_sco("ipv6-addr" if ":" in val else "ipv4-addr", "value", val))
    for key in ("DestinationHostname", "QueryName"):
        if event.get(key):
            out.append(_sco("domain-name", "value", str(event[key])))
    return out


def _documents(analysis: CaseAnalysis) -> list[ReportDocument]:
    return list(analysis.documents)


def _obj(kind: str, id_: str, **props: Any) -> dict[str, Any]:
    """A STIX 2.1 object as a dict, as ``stix2`` serialises it: properties that are None or an empty list are
    left out (``stix2`` drops them too)."""
    obj: dict[str, Any] = {"type": kind, "spec_version": "2.1", "id": id_}
    for key, value in props.items():
        if value is not None and value != []:
            obj[key] = value
    return obj


def _stix2_dict(obj: Any) -> dict[str, Any]:
    """An object ``stix2`` built (and so validated) as the plain dict the bundle holds."""
    return orjson.loads(obj.serialize())


def _intrusion_set(group, stamp: str) -> dict[str, Any]:
    """An ATT&CK group as a STIX intrusion set, under its ATT&CK STIX id."""
    ref = {"source_name": "mitre-attack", "external_id": group.id}
    if group.url:
        ref["url"] = group.url
    return _obj("intrusion-set", group.stix_id or _id("intrusion-set", group.id), created=stamp, modified=stamp,
                name=group.name, aliases=[a for a in group.aliases if a != group.name],
                external_references=[ref])


def published_date(analysis: CaseAnalysis, docs: list[ReportDocument]) -> tuple[datetime, str]:
    """``report.published`` (STIX 2.1 requires it) and where it came from, never the export time: the latest
    date the case's documents state ("document"); else the earliest time of the case's evidence
    ("earliest-evidence": the activity cannot have been reported before it happened); else the time the
    case was created ("case-created"). The source goes into the report's ``labels``
    (``ttpscope-published:<source>``, a standard property: the bundle stays free of custom content) and,
    when it is not the document, its description, so a reader knows whether the date is the publisher's."""
    dates = sorted(d for d in (_utc(doc.date) for doc in docs) if d is not None)
    if dates:
        return dates[-1], "document"
    first, _ = analysis.time_span()
    first_dt = _utc(first)
    if first_dt is not None:
        return first_dt, "earliest-evidence"
    created = _utc(getattr(analysis.case, "created", None)) or _utc(analysis.case.updated)
    return created or datetime(1970, 1, 1, tzinfo=timezone.utc), "case-created"




def _named_campaign(campaign, stamp: str) -> dict[str, Any]:
    """An ATT&CK campaign a report names, under its ATT&CK STIX id (with its first/last seen dates)."""
    ref = {"source_name": "mitre-attack", "external_id": campaign.id}
    if campaign.url:
        ref["url"] = campaign.url
    seen: dict[str, Any] = {}
    first, last = _utc(campaign.first_seen), _utc(campaign.last_seen)
    if first is not None:
        seen["first_seen"] = _ts(first)
    if last is not None and (first is None or last >= first):
        seen["last_seen"] = _ts(last)
    return _obj("campaign", campaign.stix_id or _id("campaign", campaign.id), created=stamp, modified=stamp,
                name=campaign.name, aliases=[a for a in campaign.aliases if a != campaign.name],
                external_references=[ref], **seen)


def _indicator_sightings(analysis: CaseAnalysis, hosts: dict[str, Any], common: dict[str, Any]) -> list[Any]:
    """Each stored indicator sighting as a STIX ``sighting`` of the feed's indicator (carried along, without
    its custom properties), with count, first/last seen and ``where_sighted_refs`` (the host). The feed's
    indicator goes through ``stix2`` (its pattern through stix2-patterns), once per indicator: it is
    someone else's content."""
    case, out = analysis.case, []
    checked: dict[str, dict[str, Any] | None] = {}
    for row in analysis.sightings:
        obj = row.get("indicator")
        if obj is None:
            continue
        try:
            key = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # not JSON: not a feed object
            continue
        if key not in checked:
            try:
                checked[key] = _stix2_dict(stix2.Indicator(**{k: v for k, v in obj.items() if not k.startswith("x_")},
                                                           allow_custom=False))
            except (stix2.exceptions.STIXError, ValueError, TypeError):
                checked[key] = None  # a feed object stix2 refuses is not shared on
            if checked[key] is not None:
                out.append(checked[key])
        indicator = checked[key]
        if indicator is None:
            continue
        props: dict[str, Any] = {"count": max(0, min(int(row.get("count") or 0), 999_999_999)),
                                 "description": f"indicator of feed {row['feed']} matched {row.get('count')} "
                                                f"event(s)" + (f" of {ntpath.basename(row['source'])}"
                                                               if row.get("source") else "")}
        first, last = _utc(row.get("first_seen")), _utc(row.get("last_seen"))
        if first:
            props["first_seen"] = _ts(first)
            props["last_seen"] = _ts(max(last or first, first))
        host = row.get("host")
        if host:
            if host not in hosts:
                hosts[host] = _obj("identity", _id("identity", case.id, "host", host), **common, name=host,
                                   identity_class="system")
                out.append(hosts[host])
            props["where_sighted_refs"] = [hosts[host]["id"]]
        out.append(_obj("sighting", _id("sighting", case.id, "indicator", row["feed"], indicator["id"],
                                        row.get("source") or "", host or ""),
                        **common, sighting_of_ref=indicator["id"], **props))
    return out


def _bundle_objects(analysis: CaseAnalysis, kb, tlp: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The bundle's id and its objects: ttpscope's identity, the report, the marking (if any), then every
    other object ordered by id."""
    case = analysis.case
    stamp_dt = _utc(case.updated) or datetime.now(timezone.utc)
    stamp = _ts_ms(stamp_dt)  # created / modified of every object
    docs = _documents(analysis)
    level = (tlp.lower().strip().removeprefix("tlp:") if tlp else None) or _strictest(
        [(d.tlp or "").lower() for d in docs])
    marking = _stix2_dict(tlp_marking(level)) if level else None
    first, last = analysis.time_span()
    first_dt, last_dt = _utc(first), _utc(last)
    objects: dict[str, dict[str, Any]] = {}

    def add(obj: dict[str, Any]) -> dict[str, Any]:
        return objects.setdefault(obj["id"], obj)

    me = add(_obj("identity", _id("identity", "ttpscope"), created=stamp, modified=stamp, name="ttpscope",
                  description=f"ttpscope {__version__}", identity_class="system"))
    common: dict[str, Any] = {"created_by_ref": me["id"], "created": stamp, "modified": stamp}
    if marking is not None:
        common["object_marking_refs"] = [marking["id"]]
    campaign_props: dict[str, Any] = {}
    if first_dt:
        campaign_props["first_seen"] = _ts(first_dt)
        campaign_props["last_seen"] = _ts(max(last_dt or first_dt, first_dt))
    campaign = add(_obj("campaign", _id("campaign", case.id), **common, name=f"Activity of case {case.name}",
                        description=f"Activity observed in ttpscope case {case.name} ({case.id}).",
                        **campaign_props))
    patterns: dict[str, dict[str, Any]] = {}
    for ev in analysis.evidence:
        tech = kb.techniques.get(ev.id)
        if tech is None:
            continue
        ref = {"source_name": "mitre-attack", "external_id": tech.id}
        if tech.url:
            ref["url"] = tech.url
        ap = add(_obj("attack-pattern", tech.stix_id or _id("attack-pattern", tech.id), created=stamp,
                      modified=stamp, name=tech.name, external_references=[ref],
                      kill_chain_phases=[{"kill_chain_name": "mitre-attack", "phase_name": t} for t in tech.tactics]))
        patterns[ev.id] = ap
        state, vouched = technique_review(case, ev.id)
        add(_obj("relationship", _id("relationship", case.id, "uses", ev.id), **common, relationship_type="uses",
                 description=comment_of(ev), source_ref=campaign["id"], target_ref=ap["id"],
                 confidence=vouched if state == CONFIRMED else max(0, min(100, ev.score)),
                 labels=[review_label(state)]))
    # detections: per rule and host, the observables and a sighting of each tagged technique
    hosts: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[str, str], list[Detection]] = defaultdict(list)
    for det in analysis.detections:
        groups[(det.rule_id, det.host or "")].append(det)
    for (rule, host), dets in sorted(groups.items()):
        techniques = sorted({t for d in dets for t in d.techniques if t in patterns})
        if not techniques:
            continue
        times = sorted(t for t in (_utc(d.time) for d in dets) if t is not None)
        seen_first = _ts(times[0]) if times else _ts(stamp_dt)
        seen_last = _ts(times[-1]) if times else _ts(stamp_dt)
        where = []
        if host:
            if host not in hosts:
                hosts[host] = add(_obj("identity", _id("identity", case.id, "host", host), **common, name=host,
                                       identity_class="system"))
            where = [hosts[host]["id"]]
        observables: dict[str, dict[str, Any]] = {}
        for det in dets[:OBSERVABLES_PER_GROUP]:
            for sco in _observables(det.event):
                observables.setdefault(sco["id"], sco)
        od_refs = []
        if observables:
            for sco in observables.values():
                add(sco)
            od = add(_obj("observed-data", _id("observed-data", case.id, rule, host), **common,
                          first_observed=seen_first, last_observed=seen_last, number_observed=len(dets),
                          object_refs=sorted(observables)))
            od_refs = [od["id"]]
        title = dets[0].title or rule
        description = (f"Sigma rule '{title}' ({dets[0].level or 'no level'}) fired {len(dets)} time(s)"
                       + (f" on {host}" if host else ""))
        for tid in techniques:
            add(_obj("sighting", _id("sighting", case.id, rule, host, tid), **common, description=description,
                     first_seen=seen_first, last_seen=seen_last, count=len(dets), sighting_of_ref=patterns[tid]["id"],
                     observed_data_refs=od_refs, where_sighted_refs=where))
    # report sentences: a note per technique quoting the strongest sentences
    sentences: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in analysis.report_sentences(limit=None):
        sentences[row["technique_id"]].append(row)
    for tid, rows in sorted(sentences.items()):
        if tid not in patterns:
            continue
        text = "\n".join(f"- \"{r['sentence']}\" ({r['document']}, confidence {r['confidence']:.2f})" for r in rows[:5])
        add(_obj("note", _id("note", case.id, tid), **common, abstract=f"Report evidence for {tid}", content=text,
                 object_refs=[patterns[tid]["id"]]))
    # indicators and vulnerabilities, apart from the TTPs
    skipped_iocs = 0
    ind = analysis.sections.get("indicators")
    ind_data = ind.data if ind is not None and ind.ok else IndicatorsSection(iocs=[], cves=[])
    ioc_reviews = {ioc_target(i["type"], i["value"]): i["review"] for doc in (analysis.documents or [])
                   for i in getattr(doc, "iocs", None) or [] if isinstance(i.get("review"), dict)}
    for ioc in ind_data.iocs:
        review = ioc_reviews.get(ioc_target(ioc.get("type", ""), str(ioc.get("value", ""))))
        confirmed = review is not None and review.get("state") == CONFIRMED
        made = ioc_pattern(ioc.get("type", ""), str(ioc.get("value", "")))
        if made is None:
            skipped_iocs += 1
            continue
        pattern, validity = made
        try:  # through stix2: the pattern is checked by stix2-patterns, a refused one is left out and counted
            indicator = _stix2_dict(stix2.Indicator(
                id=_id("indicator", case.id, pattern), name=str(ioc["value"])[:200], pattern=pattern,
                pattern_type="stix", indicator_types=["malicious-activity"], valid_from=stamp_dt,
                valid_until=stamp_dt + timedelta(days=VALIDITY_DAYS[validity]),
                description=f"{ioc.get('type')} named in {', '.join(map(str, ioc.get('documents') or []))} "
                            + (f"(extracted from the text, confirmed by {review.get('by')})" if confirmed
                               else "(extracted from the text, not reviewed)"),
                confidence=(review.get("confidence", 100) if confirmed else EXTRACTED_IOC_CONFIDENCE),
                labels=[review_label(CONFIRMED if confirmed else "unreviewed")],
                **{**common, "created": stamp_dt, "modified": stamp_dt}))
        except (stix2.exceptions.STIXError, ValueError):
            skipped_iocs += 1
            continue
        add(indicator)
        add(_obj("relationship", _id("relationship", case.id, "indicates", indicator["id"]), **common,
                 relationship_type="indicates", source_ref=indicator["id"], target_ref=campaign["id"]))
    for cve in ind_data.cves:
        vuln = add(_obj("vulnerability", _id("vulnerability", cve["id"]), **common, name=cve["id"],
                        external_references=[{"source_name": "cve", "external_id": cve["id"]}]))
        add(_obj("relationship", _id("relationship", case.id, "targets", vuln["id"]), **common,
                 relationship_type="targets", source_ref=campaign["id"], target_ref=vuln["id"]))
    # groups and software the reports name, with the techniques of this case their profile has
    named_groups: dict[str, set[str]] = defaultdict(set)
    named_software: dict[str, set[str]] = defaultdict(set)
    named_campaigns: dict[str, set[str]] = defaultdict(set)
    for doc in docs:
        for g in doc.groups:
            if isinstance(g, dict) and g.get("id") in kb.groups:
                named_groups[g["id"]].update(t for t in g.get("also_observed") or [] if t in patterns)
        for sw in doc.software:
            if isinstance(sw, dict) and sw.get("id") in kb.software:
                named_software[sw["id"]].update(t for t in sw.get("also_observed") or [] if t in patterns)
        for c in doc.campaigns:
            if isinstance(c, dict) and c.get("id") in kb.campaigns:
                named_campaigns[c["id"]].update(t for t in c.get("also_observed") or [] if t in patterns)
    named = "named in the report; ATT&CK lists this technique for it"
    for gid, techs in sorted(named_groups.items()):
        iset = add(_intrusion_set(kb.groups[gid], stamp))
        for tid in sorted(techs):
            add(_obj("relationship", _id("relationship", case.id, "uses", gid, tid), **common,
                     relationship_type="uses", description=named, source_ref=iset["id"],
                     target_ref=patterns[tid]["id"]))
    for cid, techs in sorted(named_campaigns.items()):
        camp = add(_named_campaign(kb.campaigns[cid], stamp))
        for tid in sorted(techs):
            add(_obj("relationship", _id("relationship", case.id, "uses", cid, tid), **common,
                     relationship_type="uses", description=named, source_ref=camp["id"],
                     target_ref=patterns[tid]["id"]))
        for gid in kb.campaigns[cid].groups:
            if gid in kb.groups:
                iset = add(_intrusion_set(kb.groups[gid], stamp))
                add(_obj("relationship", _id("relationship", case.id, "attributed-to", cid, gid), **common,
                         relationship_type="attributed-to", description="ATT&CK attributes this campaign to this group",
                         source_ref=camp["id"], target_ref=iset["id"]))
    for sid, techs in sorted(named_software.items()):
        sw = kb.software[sid]
        ref = {"source_name": "mitre-attack", "external_id": sw.id}
        if sw.url:
            ref["url"] = sw.url
        kind = "malware" if sw.type == "malware" else "tool"
        extra = {"is_family": True} if kind == "malware" else {}
        obj = add(_obj(kind, sw.stix_id or _id(sw.type, sw.id), created=stamp, modified=stamp, name=sw.name,
                       external_references=[ref], **extra))
        for tid in sorted(techs):
            add(_obj("relationship", _id("relationship", case.id, "uses", sid, tid), **common,
                     relationship_type="uses", description=named, source_ref=obj["id"],
                     target_ref=patterns[tid]["id"]))
    # the top attribution, when it is more than a guess
    at = analysis.sections.get("attribution")
    if at is not None and at.ok and at.data.groups and not at.data.insufficient and not at.data.caveat:
        top = at.data.groups[0]
        group = kb.groups.get(top["id"])
        if group is not None:
            iset = add(_intrusion_set(group, stamp))
            conf = top.get("confidence")
            add(_obj("relationship", _id("relationship", case.id, "attributed-to", group.id), **common,
                     relationship_type="attributed-to", description=at.data.verdict or top["why"],
                     source_ref=campaign["id"], target_ref=iset["id"],
                     confidence=round(100 * float(conf)) if conf is not None else None))
    for obj in _indicator_sightings(analysis, hosts, common):  # feed indicators matched: apart from the TTPs
        add(obj)
    refs = sorted(i for i in objects if i != me["id"])
    description = (f"ttpscope case {case.name} ({case.id}): {len(analysis.evidence)} techniques, "
                   f"{len(analysis.detections)} detections, {len(analysis.documents)} reports; {kb.label}.")
    if skipped_iocs:
        description += f" {skipped_iocs} IOC(s) of types STIX patterns do not cover were left out."
    published, published_source = published_date(analysis, docs)
    if published_source != "document":
        description += (" No document states a publication date: 'published' is the "
                        + ("earliest time of the case's evidence." if published_source == "earliest-evidence"
                           else "time the case was created."))
    sources = []
    for doc in docs:
        name = ntpath.basename(doc.path or doc.name) or None
        if not name:
            continue
        src: dict[str, Any] = {"source_name": name, "description": "source document"
                               + (f" ({doc.title})" if doc.title else "")}
        if doc.sha256:
            src["hashes"] = {"SHA-256": doc.sha256}
        sources.append(src)
    report = _obj("report", _id("report", case.id), **common, name=f"ttpscope case: {case.name}",
                  description=description, report_types=["threat-report"], published=_ts(published),
                  object_refs=refs, labels=[f"{PUBLISHED_LABEL}:{published_source}"], external_references=sources)
    head = [me, report] + ([marking] if marking is not None else [])
    return _id("bundle", case.id, stamp_dt.isoformat()), head + [objects[i] for i in refs]


def case_bundle(analysis: CaseAnalysis, kb, tlp: str | None = None) -> dict[str, Any]:
    """The STIX 2.1 bundle of a case, as a JSON-ready dict (the ``stix2`` serialisation of every object).
    ``tlp`` overrides the TLP marking the documents state."""
    bundle_id, objects = _bundle_objects(analysis, kb, tlp)
    return {"type": "bundle", "id": bundle_id, "objects": objects}


def bundle_json_chunks(analysis: CaseAnalysis, kb, tlp: str | None = None) -> Iterator[bytes]:
    """The bundle as indented JSON (the layout of ``orjson.dumps(case_bundle(...), option=OPT_INDENT_2)``),
    object by object: a file is written without a second, serialised copy of the whole bundle in memory."""
    bundle_id, objects = _bundle_objects(analysis, kb, tlp)
    yield b'{\n  "type": "bundle",\n  "id": ' + orjson.dumps(bundle_id) + b',\n  "objects": ['
    for n, obj in enumerate(objects):
        # JSON strings hold no raw newline, so re-indenting the object's own lines is safe
        yield (b",\n    " if n else b"\n    ") + orjson.dumps(obj, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n    ")
    yield (b"\n  ]\n}" if objects else b"]\n}")
