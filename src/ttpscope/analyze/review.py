"""Review before sharing: the analyst's decisions (:class:`ttpscope.model.Review`) applied to a case.

A decision targets an observation (its id), an IOC (``ioc:<type>:<value>``) or a whole technique (its id).
An observation's own decision wins over its technique's. :func:`apply_reviews` attaches the decisions and
filters what goes out: rejected findings never do, and with ``reviewed_only`` neither do unreviewed ones.
Every export and the case page analyse the filtered case, so no exporter filters on its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from ttpscope.analyze.evidence import observation_text
from ttpscope.errors import InputError
from ttpscope.model import TECHNIQUE_ID, Case, Detection, Observation, ReportDocument, Review, ioc_target

UNREVIEWED, CONFIRMED, REJECTED = "unreviewed", "confirmed", "rejected"
MIN_ID_PREFIX = 6  # observation ids may be given by a unique prefix of at least this many characters


def _by_target(reviews: Iterable[Review], case: Case) -> tuple[dict[str, Review], dict[str, Review]]:
    """Decisions by target, and by content for the observations whose id is gone (a re-investigation)."""
    present = {o.id for o in case.observations}
    by_target, by_print = {}, {}
    for r in reviews:
        by_target[r.target] = r
        if r.fingerprint and r.target not in present:
            by_print[r.fingerprint] = r
    return by_target, by_print


def observation_review(obs: Observation, by_target: dict[str, Review], by_print: dict[str, Review]) -> Review | None:
    """The decision on an observation: its own (by id, else by content after a re-investigation), else
    its technique's."""
    return by_target.get(obs.id) or by_print.get(obs.fingerprint()) or by_target.get(obs.technique_id)


def state_of(review: Review | None) -> str:
    return review.state if review is not None else UNREVIEWED


def _keep(review: Review | None, reviewed_only: bool) -> bool:
    state = state_of(review)
    return state != REJECTED and (state == CONFIRMED or not reviewed_only)


def apply_reviews(case: Case, reviews: Iterable[Review], detections: Iterable[Detection] = (),
                  documents: Iterable[ReportDocument] = (), *, reviewed_only: bool = False
                  ) -> tuple[Case, list[Detection], list[ReportDocument]]:
    """(case, detections, documents) with each observation's and IOC's decision attached and the rejected
    ones (and, with ``reviewed_only``, the unreviewed ones) left out. The inputs are not changed.

    A detection stays for the techniques of its rule and host that still have an observation; one whose
    techniques are all gone goes too (and, with ``reviewed_only``, one that stands for no technique)."""
    reviews = list(reviews)
    if not reviews and not reviewed_only:  # nothing decided: everything goes out as it is
        return case, list(detections), list(documents)
    by_target, by_print = _by_target(reviews, case)
    kept = []
    for obs in case.observations:
        review = observation_review(obs, by_target, by_print)
        if _keep(review, reviewed_only):
            kept.append(dataclasses.replace(obs, review=review))
    filtered = dataclasses.replace(case, observations=kept, meta=dict(case.meta))
    if reviewed_only:
        filtered.meta["reviewed_only"] = True
    surviving = {(o.source_ref, o.host or "", o.technique_id) for o in kept if o.source_kind == "sigma"}
    dets = []
    for det in detections:
        if not det.techniques:
            if not reviewed_only:
                dets.append(det)
            continue
        techniques = [t for t in det.techniques if (det.rule_id, det.host or "", t) in surviving]
        if techniques:
            dets.append(det if techniques == det.techniques else dataclasses.replace(det, techniques=techniques))
    docs = []
    for doc in documents:
        iocs = []
        for ioc in doc.iocs:
            review = by_target.get(ioc_target(ioc["type"], ioc["value"]))
            if _keep(review, reviewed_only):
                iocs.append({**ioc, "review": review.to_dict()} if review else dict(ioc))
        docs.append(dataclasses.replace(doc, iocs=iocs))
    return filtered, dets, docs


def technique_review(case: Case, technique_id: str) -> tuple[str, int | None]:
    """(state, confidence) of a technique in a case that :func:`apply_reviews` filtered: confirmed when any of
    its observations is (with the highest confidence vouched for), else unreviewed."""
    confirmed = [o.review for o in case.observations if o.technique_id == technique_id and o.review is not None
                 and o.review.state == CONFIRMED]
    if not confirmed:
        return UNREVIEWED, None
    given = [r.confidence for r in confirmed if r.confidence is not None]
    return CONFIRMED, max(given) if given else 100


def findings(case: Case, documents: Iterable[ReportDocument], reviews: Iterable[Review],
             names: dict[str, str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """What can be reviewed, with its state: techniques, observations and IOCs (JSON-ready)."""
    reviews = list(reviews)
    by_target, by_print = _by_target(reviews, case)
    names = names or {}
    techniques: dict[str, dict[str, Any]] = {}
    observations = []
    for obs in case.observations:
        review = observation_review(obs, by_target, by_print)
        row = techniques.setdefault(obs.technique_id, {
            "target": obs.technique_id, "technique_id": obs.technique_id,
            "name": names.get(obs.technique_id, ""), "observations": 0,
            "states": {UNREVIEWED: 0, CONFIRMED: 0, REJECTED: 0},
            "review": by_target[obs.technique_id].to_dict() if obs.technique_id in by_target else None})
        row["observations"] += 1
        row["states"][state_of(review)] += 1
        observations.append({
            "target": obs.id, "technique_id": obs.technique_id, "source_kind": obs.source_kind,
            "source_ref": obs.source_ref, "host": obs.host, "time": obs.to_dict()["time"],
            "confidence": obs.confidence, "evidence": observation_text(obs, 200),
            "state": state_of(review), "review": review.to_dict() if review else None})
    for row in techniques.values():
        row["state"] = state_of(by_target.get(row["target"]))
    iocs: dict[str, dict[str, Any]] = {}
    for doc in documents:
        for ioc in doc.iocs:
            target = ioc_target(ioc["type"], ioc["value"])
            row = iocs.setdefault(target, {"target": target, "type": ioc["type"], "value": ioc["value"],
                                           "documents": [], "state": state_of(by_target.get(target)),
                                           "review": by_target[target].to_dict() if target in by_target else None})
            if doc.label not in row["documents"]:
                row["documents"].append(doc.label)
    return {"techniques": list(techniques.values()), "observations": observations,
            "iocs": sorted(iocs.values(), key=lambda r: (r["type"], r["value"]))}


def resolve_targets(case: Case, documents: Iterable[ReportDocument], ids: Iterable[str] = (),
                    techniques: Iterable[str] = (), iocs: Iterable[str] = ()) -> list[tuple[str, str | None]]:
    """The review targets that ids and filters name, as (target, fingerprint): observation ids (or unique
    prefixes), technique ids, ``ioc:<type>:<value>`` targets, and IOCs by value (``iocs``). Anything that
    names nothing in the case is an error naming it."""
    documents = list(documents)
    known_iocs: dict[str, str] = {}  # target -> value
    for doc in documents:
        for ioc in doc.iocs:
            known_iocs[ioc_target(ioc["type"], ioc["value"])] = ioc["value"]
    case_techniques = set(case.technique_ids())
    by_id = {o.id: o for o in case.observations}
    out: dict[str, str | None] = {}
    for raw in ids:
        ref = str(raw).strip()
        if TECHNIQUE_ID.match(ref):
            if ref not in case_techniques:
                raise InputError(case.name, ref, "the case has no observation of this technique")
            out[ref] = None
        elif ref.lower().startswith("ioc:"):
            kind, _, value = ref[4:].partition(":")
            target = ioc_target(kind, value)
            if target not in known_iocs:
                raise InputError(case.name, ref, "no such IOC in the case's reports")
            out[target] = None
        else:
            obs = by_id.get(ref)
            if obs is None and len(ref) >= MIN_ID_PREFIX:
                matches = [o for i, o in by_id.items() if i.startswith(ref)]
                if len(matches) > 1:
                    raise InputError(case.name, ref, f"the prefix matches {len(matches)} observations; give more "
                                     "of the id")
                obs = matches[0] if matches else None
            if obs is None:
                raise InputError(case.name, ref, "no observation, technique or IOC of this id in the case "
                                 "(see 'ttpscope case review CASE')")
            out[obs.id] = obs.fingerprint()
    for tid in techniques:
        tid = str(tid).strip()
        if not TECHNIQUE_ID.match(tid) or tid not in case_techniques:
            raise InputError(case.name, tid, "the case has no observation of this technique")
        out[tid] = None
    for value in iocs:
        hits = [t for t, v in known_iocs.items() if v == value or t == str(value)]
        if not hits:
            raise InputError(case.name, value, "no IOC of this value in the case's reports")
        for t in hits:
            out[t] = None
    if not out:
        raise InputError(case.name, None, "name what to review: observation ids, --technique or --ioc")
    return list(out.items())


def decide(workspace, ref: str, state: str, *, ids: Iterable[str] = (), techniques: Iterable[str] = (),
           iocs: Iterable[str] = (), by: str | None = None, note: str = "",
           confidence: int | None = None) -> list[Review]:
    """Confirm, reject or reset (``unreviewed``) the findings of a stored case that ids and filters name;
    every name is checked before anything is written. Returns the decisions recorded."""
    if state not in (CONFIRMED, REJECTED, UNREVIEWED):
        raise InputError("review", state, f"not one of {CONFIRMED}, {REJECTED}, {UNREVIEWED}")
    case = workspace.get_case(ref)
    targets = resolve_targets(case, workspace.get_documents(case.id), ids, techniques, iocs)
    try:
        made = [Review(target=t, state=state, by=(by or "").strip() or None, note=note or "",
                       confidence=confidence if state == CONFIRMED else None, fingerprint=fp,
                       time=_now()) for t, fp in targets]
    except ValueError as exc:
        raise InputError("review", None, str(exc)) from exc
    return workspace.save_reviews(case.id, made)


def add_manual(workspace, ref: str, technique_id: str, evidence: str, *, kb=None, host: str | None = None,
               by: str | None = None, note: str = "") -> Observation:
    """Add an analyst's own observation (source kind ``manual``, confidence 1) to a stored case, confirmed
    by whoever added it. ``kb`` checks the technique and gives its tactics."""
    tid = str(technique_id or "").strip()
    if not TECHNIQUE_ID.match(tid):
        raise InputError("--technique", tid, "not of the form T1234 or T1234.567")
    tactics: list[str] = []
    if kb is not None:
        if tid not in kb.techniques:
            raise InputError("--technique", tid, f"no such technique in ATT&CK {kb.domain}")
        tactics = list(kb.techniques[tid].tactics)
    text = " ".join(str(evidence or "").split())
    if not text:
        raise InputError("--evidence", None, "a manual observation needs its evidence text")
    who = (by or "").strip() or "analyst"
    case = workspace.get_case(ref)
    obs = Observation(technique_id=tid, source_kind="manual", source_ref=f"analyst:{who}",
                      evidence={"text": text, "by": who}, tactic_ids=tactics, host=(host or None),
                      time=None, confidence=1.0)
    case.add([obs])
    workspace.save_case(case)
    workspace.save_reviews(case.id, [Review(target=obs.id, state=CONFIRMED, by=who, note=note or "added by hand",
                                            confidence=100, fingerprint=obs.fingerprint(), time=_now())])
    return obs


def _now():
    from ttpscope.model import utcnow

    return utcnow()
