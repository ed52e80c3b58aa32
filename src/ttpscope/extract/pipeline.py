"""A report in, its techniques (each with the sentences that say so), actors, software, IOCs and CVEs out.

    from ttpscope.extract import extract_file
    result = extract_file("report.pdf", kb)
    result.techniques[0]            # TechniqueFinding: id, name, confidence, evidence sentences
    result.observations             # [Observation(source_kind="text", source_ref="report.pdf#120-245", ...)]
    result.to_dict()                # the JSON of ``ttpscope extract --json``
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

from ttpscope.extract.documents import Document, read_document
from ttpscope.extract.entities import EntityMatcher
from ttpscope.extract.features import refang
from ttpscope.extract.iocs import defanged_values, find_iocs, reference_urls, registrable, screen_iocs
from ttpscope.extract.sentences import Sentence, iter_sentences
from ttpscope.model import Observation

# Budgets of one document: text beyond MAX_TEXT_CHARS is not read, and each long stage (reading sentences,
# finding indicators) stops after EXTRACT_SECONDS; what was extracted before is kept, with a warning.
MAX_TEXT_CHARS = 32 * 1024 * 1024
EXTRACT_SECONDS = 900.0
MAX_EVIDENCE = 5  # evidence sentences listed per technique in the summary (all are Observations)
Progress = Callable[[str, int, int], None]


@dataclass
class Evidence:
    sentence: str
    start: int
    end: int
    method: str
    confidence: float
    detail: str | None = None
    kind: str = "prose"  # the structure the sentence came from (ttpscope.extract.sentences.Sentence.kind)

    def to_dict(self) -> dict:
        d = {"sentence": self.sentence, "start": self.start, "end": self.end, "method": self.method,
             "confidence": round(self.confidence, 4), "kind": self.kind}
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass
class TechniqueFinding:
    """One technique of the report with its evidence, strongest first."""

    id: str
    name: str
    tactics: list[str]
    confidence: float
    evidence: list[Evidence] = field(default_factory=list)
    score: float = 0.0  # document-level strength: see document_score

    def to_dict(self, max_evidence: int | None = MAX_EVIDENCE) -> dict:
        ev = self.evidence if max_evidence is None else self.evidence[:max_evidence]
        return {"id": self.id, "name": self.name, "tactics": self.tactics, "confidence": round(self.confidence, 4),
                "score": round(self.score, 4), "sentences": len(self.evidence), "evidence": [e.to_dict() for e in ev]}


# How much one sentence of each structure counts towards a technique's document-level score: a table cell,
# a code line or a caption says less than a sentence of prose (it has no verb tying it to the adversary).
KIND_WEIGHT = {"prose": 1.0, "bullet": 1.0, "caption": 0.6, "command": 0.6, "code": 0.5, "table": 0.4}


def document_score(evidence: list[Evidence]) -> float:
    """Noisy-or of the evidence sentences, each weighted by its structure (``KIND_WEIGHT``): a technique
    stated in several sentences scores above one scraped from a single table cell."""
    miss = 1.0
    for ev in evidence:
        miss *= 1.0 - KIND_WEIGHT.get(ev.kind, 0.0) * max(0.0, min(1.0, ev.confidence))
    return 1.0 - miss


@dataclass
class Extraction:
    """Everything read from one document."""

    document: Document
    sentences: int
    techniques: list[TechniqueFinding]
    observations: list[Observation]
    groups: list[dict]
    software: list[dict]
    iocs: dict[str, list[str]]
    cves: list[dict]
    kb: dict
    model: dict
    min_confidence: float
    not_indicators: list[dict] = field(default_factory=list)  # [{type, value, reason, list?}]
    sentence_kinds: dict[str, int] = field(default_factory=dict)  # sentences per structure kind
    vendor_domains: list[str] = field(default_factory=list)
    campaigns: list[dict] = field(default_factory=list)  # ATT&CK campaigns the text names
    warnings: list[str] = field(default_factory=list)  # budgets hit, one line each, naming the document

    def to_dict(self, max_evidence: int | None = MAX_EVIDENCE) -> dict:
        return {**({"warnings": self.warnings} if self.warnings else {}),
            "document": {**self.document.summary(), "sentences": self.sentences,
                         "sentence_kinds": self.sentence_kinds, "vendor_domains": self.vendor_domains},
            "kb": self.kb,
            "model": self.model,
            "min_confidence": self.min_confidence,
            "techniques": [t.to_dict(max_evidence) for t in self.techniques],
            "groups": self.groups,
            "software": self.software,
            "campaigns": self.campaigns,
            "iocs": self.iocs,
            "not_indicators": self.not_indicators,
            "cves": self.cves,
        }


def extract_file(path: str, kb, min_confidence: float | None = None, progress: Progress | None = None,
                 classifier=None, with_iocs: bool = True, cve_mappings=None,
                 time_budget: float | None = EXTRACT_SECONDS) -> Extraction:
    """Read a report file (``-`` = stdin) and extract from it. See :func:`extract_document`."""
    return extract_document(read_document(path), kb, min_confidence, progress, classifier, with_iocs, cve_mappings,
                            time_budget)


def extract_document(doc: Document, kb, min_confidence: float | None = None, progress: Progress | None = None,
                     classifier=None, with_iocs: bool = True, cve_mappings=None,
                     time_budget: float | None = EXTRACT_SECONDS) -> Extraction:
    """Techniques, actors, software, IOCs and CVEs of a document.

    ``min_confidence`` defaults to the classifier's calibrated threshold. ``progress(stage, done, total)``
    is called as sentences are classified (and while a first-use model trains). ``cve_mappings`` (a
    ``ttpscope.kb.vulns.VulnMappings``) links CVE ids to the techniques CTID maps them to.
    ``time_budget``: seconds each of the two long stages (sentences, indicators) may take (None: no limit);
    the first :data:`MAX_TEXT_CHARS` characters are read. A budget hit is a line in ``warnings``.
    """
    from ttpscope.extract.classifier import get_classifier

    model = classifier or get_classifier(kb, progress=progress)
    floor = model.threshold if min_confidence is None else float(min_confidence)
    text = doc.text
    warnings: list[str] = []
    if len(text) > MAX_TEXT_CHARS:
        warnings.append(f"{doc.name}: {len(text):,} characters; only the first {MAX_TEXT_CHARS:,} were read "
                        "(the size budget of one document)")
        text = text[:MAX_TEXT_CHARS]
    entities = _entity_matcher(kb)
    findings: dict[str, TechniqueFinding] = {}
    observations: list[Observation] = []
    mentions: dict[tuple[str, str], dict] = {}
    batch: list[Sentence] = []
    kinds: dict[str, int] = {}
    boilerplate: list[str] = []  # the publisher's own lines: their domains and addresses are not indicators
    total = len(text)
    n_sentences = 0

    def flush() -> None:
        # sentences are classified in batches and not kept: memory stays bounded by the claims made.
        # Headings, TOC lines, table headers and boilerplate are context: never classified into a claim.
        claimable = [s for s in batch if not s.is_context]
        preds = model.predict([_model_text(s.text) for s in claimable], min_confidence=floor) if claimable else []
        for sent, cands in zip(claimable, preds):
            for cand in cands:
                # a table cell has no sentence tying it to the adversary: only an explicit technique id or
                # name in it is a claim, not what the classifier guesses from a few words
                if sent.kind == "table" and not cand.method.endswith(("id", "name")):
                    continue
                _add_claim(kb, doc, sent, cand, findings, observations)
        for sent in batch:
            kinds[sent.kind] = kinds.get(sent.kind, 0) + 1
            if sent.kind == "boilerplate" and len(boilerplate) < 200:
                boilerplate.append(sent.text)
            found = entities.find(sent.text, sent.start)
            spans: dict[tuple[int, int], int] = {}
            for _kind, _oid, start, end, _surface in found:
                spans[(start, end)] = spans.get((start, end), 0) + 1
            for kind, oid, start, end, surface in found:
                rel = start - sent.start
                around = sent.text[max(0, rel - 30):rel] + " " + sent.text[end - sent.start:end - sent.start + 30]
                _add_mention(kb, mentions, kind, oid, start, end, surface, sent.text,
                             weak=entities.is_weak(surface, kind), around=around, both=spans[(start, end)] > 1)
        if progress:
            progress("reading", batch[-1].end, total)
        batch.clear()

    deadline = None if time_budget is None else time.monotonic() + time_budget
    for sent in iter_sentences(text, hints=doc.hints):
        if deadline is not None and time.monotonic() > deadline:
            warnings.append(f"{doc.name}: sentences: the time budget of {time_budget:g} s ran out after "
                            f"{sent.start:,} of {total:,} characters; what was read before is kept")
            break
        n_sentences += 1
        batch.append(sent)
        if len(batch) >= 1024:
            flush()
    if batch:
        flush()
    if progress:
        progress("reading", total, total)
    for f in findings.values():
        f.evidence.sort(key=lambda e: (-e.confidence, e.start))
        f.score = document_score(f.evidence)
    techniques = sorted(findings.values(), key=lambda f: (-f.score, -f.confidence, f.id))
    groups, software, campaigns = _entities(kb, mentions, set(findings))
    iocs: dict[str, list[str]] = {}
    not_indicators: list[dict] = []
    vendors: set[str] = set()
    if with_iocs:
        stopped: list[int] = []
        found = find_iocs(text, progress=(lambda d, t: progress("indicators", d, t)) if progress else None,
                          deadline=None if time_budget is None else time.monotonic() + time_budget, stopped=stopped)
        if stopped:
            warnings.append(f"{doc.name}: indicators: the time budget of {time_budget:g} s ran out after "
                            f"{stopped[0]:,} of {total:,} characters; what was found before is kept")
        vendors = publisher_domains(boilerplate + list(doc.dropped))
        iocs, not_indicators = screen_iocs(found, vendor_domains=vendors, references=reference_urls(text),
                                           defanged=defanged_values(text))
    cves = _cves(kb, text, cve_mappings)
    return Extraction(doc, n_sentences, techniques, observations, groups, software, iocs, cves,
                      kb.provenance(), _model_summary(model), floor, not_indicators, kinds, sorted(vendors),
                      campaigns, warnings)


def publisher_domains(lines: list[str]) -> set[str]:
    """Registrable domains named in the publisher's own lines (contact blocks, copyright and TLP lines,
    running headers and footers): the vendor's site and addresses, which are not indicators. A defanged
    value there is still the author's indicator and does not count."""
    if not lines:
        return set()
    found = find_iocs("\n".join(lines))
    out = set()
    for host in found.get("domain", []) + [e.rsplit("@", 1)[-1] for e in found.get("email", [])] + \
            [_url_host(u) for u in found.get("url", [])]:
        reg = registrable(host) if host else None
        if reg:
            out.add(reg)
    return out - {v for v in defanged_values("\n".join(lines))}


def _url_host(url: str) -> str:
    import re

    m = re.match(r"^[a-z][a-z0-9+.-]*://([^/:?#]+)", url, re.I)
    return m.group(1).lower() if m else ""


def _model_text(sentence: str) -> str:
    return " ".join(refang(sentence).split())


def _add_claim(kb, doc: Document, sent: Sentence, cand, findings: dict, observations: list) -> None:
    tech = kb.techniques.get(cand.technique_id)
    if tech is None:
        return
    ev = Evidence(sent.text, sent.start, sent.end, cand.method, cand.confidence, cand.detail, sent.kind)
    finding = findings.get(tech.id)
    if finding is None:
        finding = findings[tech.id] = TechniqueFinding(tech.id, tech.name, list(tech.tactics), 0.0)
    finding.evidence.append(ev)
    finding.confidence = max(finding.confidence, cand.confidence)
    evidence = {"sentence": sent.text, "start": sent.start, "end": sent.end, "method": cand.method,
                "kind": sent.kind}
    if cand.detail:
        evidence["detail"] = cand.detail
    observations.append(Observation(
        technique_id=tech.id, source_kind="text", source_ref=f"{doc.name}#{sent.start}-{sent.end}",
        evidence=evidence, tactic_ids=list(tech.tactics), document=doc.name,
        confidence=round(min(1.0, max(0.0, cand.confidence)), 4)))


def _add_mention(kb, mentions: dict, kind: str, oid: str, start: int, end: int, surface: str,
                 sentence: str, weak: bool = False, around: str = "", both: bool = False) -> None:
    entry = mentions.setdefault((kind, oid), {"id": oid, "name": kb.name_of(oid), "count": 0,
                                              "aliases_matched": [], "mentions": [], "corroborated": False,
                                              "shared_name_mentions": 0})
    entry["count"] += 1
    if both:
        entry["shared_name_mentions"] += 1  # the name is also another entity's and the sentence did not decide
    if not weak or (_CAMPAIGN_WORD if kind == "campaign" else _GROUP_WORD).search(around):
        entry["corroborated"] = True
    if surface not in entry["aliases_matched"] and len(entry["aliases_matched"]) < 20:
        entry["aliases_matched"].append(surface)
    if len(entry["mentions"]) < MAX_EVIDENCE:
        entry["mentions"].append({"start": start, "end": end, "sentence": sentence})


def _entities(kb, mentions: dict, observed: set[str]) -> tuple[list[dict], list[dict], list[dict]]:
    """Groups, software and campaigns named in the text, with their sentences; their known techniques are
    context (``known_techniques``, and which of them this report shows: ``also_observed``), never claims."""
    found: dict[str, list[dict]] = {"group": [], "software": [], "campaign": []}
    known_of = {"group": kb.group_techniques, "software": kb.software_techniques, "campaign": kb.campaign_techniques}
    for (kind, oid), entry in mentions.items():
        if not entry.pop("corroborated"):
            continue  # named only by an alias that is an ordinary word, never confirmed (see entities)
        known = known_of[kind](oid)
        entry["known_techniques"] = len(known)
        entry["also_observed"] = sorted(known & observed)
        if kind == "campaign":
            entry["groups"] = list(kb.campaigns[oid].groups)  # whom ATT&CK attributes it to
        found[kind].append(entry)
    key = lambda e: (-e["count"], e["id"])  # noqa: E731
    return tuple(sorted(found[k], key=key) for k in ("group", "software", "campaign"))  # type: ignore[return-value]


_GROUP_WORD = re.compile(r"\b(?:group|actor|APT|gang|crew)\b", re.I)
_CAMPAIGN_WORD = re.compile(r"\b(?:campaigns?|operations?)\b", re.I)
_matchers: dict[str, EntityMatcher] = {}


def _entity_matcher(kb) -> EntityMatcher:
    key = f"{kb.label}|{kb.source}"
    if key not in _matchers:
        _matchers[key] = EntityMatcher(kb)
    return _matchers[key]


def _cves(kb, text: str, mappings) -> list[dict]:
    """CVE ids in order of mention; with CTID mappings (``ttpscope.kb.vulns``), the techniques each is
    mapped to, by mapping type. These are what the vulnerability enables, kept apart from the techniques
    the text shows the adversary using."""
    out = []
    from ttpscope.kb.vulns import extract_cves

    for cve in extract_cves(text):
        entry: dict = {"id": cve}
        if mappings is not None:
            from ttpscope.kb.vulns import resolve_mapping_techniques

            maps, _ = resolve_mapping_techniques(mappings.mappings_for_cve(cve), kb)
            entry["mapped"] = bool(maps)
            entry["description"] = mappings.describe(cve)
            entry["techniques"] = [{"id": m.technique_id, "name": m.technique_name, "mapping_type": m.mapping_type}
                                   for m in maps]
        out.append(entry)
    return out


def _model_summary(model) -> dict:
    keep = ("kb", "examples", "report_sentences", "techniques", "threshold", "calibration", "labelled_source",
            "labelled_sentences", "train_seconds")
    return {k: model.info[k] for k in keep if k in model.info}
