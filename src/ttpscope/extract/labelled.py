"""Labelled report sentences for training and evaluation, in the formats TRAM and its successors publish.

- TRAM / MAT annotated reports (``*.mjson``, or ``.json`` with ``signal`` and ``asets``): the report text and
  one annotation set per technique with character spans. The text is split with ttpscope's own segmenter
  and each sentence gets the techniques whose spans overlap it (sentences without any are negatives).
- TRAM single-label JSON: a list of ``{"text", "label", "doc_title"?}`` (positives only).
- Sentence tables (the SoK split): ``{"sentence": {i: text}, "labels": {i: [ids]}, "doc_title": {i: title}}``.
- JSON lines or a JSON list of ``{"text", "labels": [ids], "document"?}``.

A folder is read file by file. Bad records are reported and skipped; the good ones around them are kept.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ttpscope.errors import InputError

_TID = re.compile(r"\bT\d{4}(?:\.\d{3})?\b")


@dataclass(slots=True)
class LabelledSentence:
    text: str
    labels: list[str]
    document: str = ""


@dataclass
class LabelledSet:
    """Sentences read from labelled files, with the read/accepted/rejected counts and problems."""

    sentences: list[LabelledSentence] = field(default_factory=list)
    read: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return len(self.sentences)

    def reject(self, source: str, record: Any, problem: str) -> None:
        self.rejected += 1
        if len(self.problems) < 50:
            self.problems.append(str(InputError(source, record, problem)))


def read_labelled(path: str | Path, kb=None) -> LabelledSet:
    """Read labelled sentences from a file or a folder of files (formats in the module docstring).

    With ``kb``, technique ids are resolved (revoked ids remapped) and unknown ids rejected.
    """
    path = Path(path)
    out = LabelledSet()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".json", ".mjson", ".jsonl"))
        if not files:
            raise InputError(str(path), None, "no .json/.mjson/.jsonl files in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(str(path), None, "no such file or folder")
    for f in files:
        _read_file(f, out, kb)
    return out


def _read_file(path: Path, out: LabelledSet, kb) -> None:
    name = str(path)
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError(name, None, "the file is empty")
    if path.suffix.lower() == ".jsonl":
        for i, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            out.read += 1
            try:
                _add_record(orjson.loads(line), name, f"line {i}", out, kb)
            except orjson.JSONDecodeError as exc:
                out.reject(name, f"line {i}", f"not valid JSON: {exc}")
        return
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(name, None, f"not valid JSON: {exc}") from exc
    if isinstance(data, dict) and "signal" in data and "asets" in data:
        _read_mat(data, name, out, kb)
    elif isinstance(data, dict) and isinstance(data.get("sentence"), dict):
        labels = data.get("labels") or {}
        titles = data.get("doc_title") or {}
        for key in sorted(data["sentence"], key=lambda k: int(k) if str(k).isdigit() else str(k)):
            out.read += 1
            _add_record({"text": data["sentence"][key], "labels": labels.get(key, []),
                         "document": titles.get(key, "")}, name, f"sentence {key}", out, kb)
    elif isinstance(data, list):
        for i, rec in enumerate(data):
            out.read += 1
            _add_record(rec, name, f"record {i}", out, kb)
    else:
        raise InputError(name, None, "not a recognised labelled format (MAT report, single-label list, "
                         "sentence table or list of {text, labels})")


def _resolve(labels: list[str], kb, name: str, record: str, out: LabelledSet) -> list[str] | None:
    ids = []
    for label in labels:
        m = _TID.search(str(label))
        if not m:
            out.reject(name, record, f"label {label!r} is not a technique id")
            return None
        tid = m.group()
        if kb is not None:
            res = kb.resolve_technique(tid)
            if res.id is None:
                out.reject(name, record, res.note or f"unknown technique {tid}")
                return None
            tid = res.id
        if tid not in ids:
            ids.append(tid)
    return ids


def _add_record(rec: Any, name: str, record: str, out: LabelledSet, kb) -> None:
    if not isinstance(rec, dict):
        out.reject(name, record, "not a JSON object")
        return
    text = rec.get("text", rec.get("sentence"))
    if not isinstance(text, str) or not text.strip():
        out.reject(name, record, "no text")
        return
    if "labels" in rec:
        labels = rec["labels"]
        if isinstance(labels, str):
            labels = [labels]
    elif "label" in rec:
        labels = [rec["label"]] if rec["label"] else []
    else:
        out.reject(name, record, "no label or labels field")
        return
    if not isinstance(labels, list):
        out.reject(name, record, "labels must be a list of technique ids")
        return
    ids = _resolve(labels, kb, name, record, out)
    if ids is None:
        return
    doc = rec.get("document", rec.get("doc_title")) or ""
    out.sentences.append(LabelledSentence(text.strip(), ids, str(doc)))


def _read_mat(data: dict, name: str, out: LabelledSet, kb) -> None:
    """A MAT-annotated report: segment the text and label sentences by overlapping technique spans."""
    from ttpscope.extract.sentences import split_sentences

    text = data["signal"]
    asets = data["asets"]
    if isinstance(asets, str):
        try:
            asets = ast.literal_eval(asets)  # TRAM wrote some files with Python-literal annotation sets
        except (ValueError, SyntaxError) as exc:
            raise InputError(name, "asets", f"unreadable annotation sets: {exc}") from exc
    spans: list[tuple[int, int, str]] = []
    for aset in asets:
        m = _TID.search(str(aset.get("type", "")))
        if not m:
            continue
        ids = _resolve([m.group()], kb, name, f"annotation set {aset.get('type')}", out)
        if not ids:
            continue
        for annot in aset.get("annots", []):
            try:
                spans.append((int(annot[0]), int(annot[1]), ids[0]))
            except (TypeError, ValueError, IndexError):
                out.reject(name, f"annotation set {aset.get('type')}", f"bad span {annot!r}")
    spans.sort()
    doc = Path(name).stem
    for sent in split_sentences(text):
        out.read += 1
        labels = sorted({tid for s, e, tid in spans if s < sent.end and e > sent.start})
        out.sentences.append(LabelledSentence(sent.text, labels, doc))
