"""Text features for the technique classifier: report-aware word tokens and their bigrams.

Word n-grams cost a tenth of character n-grams to train on, so the report-specific variation that
character n-grams would catch is folded into the tokens instead: defanged indicators are refanged and
replaced by type tokens (a URL or hash says "network/file indicator here", its value says nothing
general), paths are split into their parts, ``cmd.exe`` also yields ``cmd``, and a light suffix stemmer
maps "encrypts", "encrypted" and "encrypting" to one token.
"""

from __future__ import annotations

import re

_REFANG = [
    (re.compile(r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)", re.I), "."),
    (re.compile(r"\[:\]"), ":"),
    (re.compile(r"\[@\]|\[at\]|\(at\)", re.I), "@"),
    (re.compile(r"\bhxxp", re.I), "http"),
    (re.compile(r"\bfxp\b", re.I), "ftp"),
]
_SUBST = [
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I), " zzurl "),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), " zzemail "),
    (re.compile(r"\bCVE-\d{4}-\d{4,7}\b", re.I), " zzcve "),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), " zzip "),
    (re.compile(r"\b[0-9a-fA-F]{32,128}\b"), " zzhash "),
    (re.compile(r"\b[A-Za-z0-9+/]{40,}={0,2}"), " zzblob "),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), " zzhex "),
]
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_$-]*(?:\.[a-z0-9]+)*")
_SUFFIXES = ("ations", "ation", "ments", "ment", "ings", "ing", "edly", "ed", "ies", "es", "ers", "er", "ly", "s")
_STOP = frozenset("""
a an the of to in on for by with and or as at be is are was were been being it its this that these those from
into than then there their they them he she his her we our you your i which who whom what when where while
also has have had having can could may might will would should do does did not no but if so such via
""".split())


def refang(text: str) -> str:
    """Undo common defanging (``hxxp``, ``[.]``, ``[at]``) so indicators read and parse as written."""
    for pattern, repl in _REFANG:
        text = pattern.sub(repl, text)
    return text


def _stem(tok: str) -> str:
    if len(tok) <= 4 or not tok.isalpha():
        return tok
    for suf in _SUFFIXES:
        if tok.endswith(suf) and len(tok) - len(suf) >= 4:
            return tok[: -len(suf)]
    return tok


def tokenize(text: str) -> list[str]:
    """Normalised word tokens of a sentence (stop words dropped)."""
    text = refang(text)
    for pattern, repl in _SUBST:
        text = pattern.sub(repl, text)
    text = text.lower().replace("\\", " ").replace("/", " ")
    out: list[str] = []
    for tok in _TOKEN.findall(text):
        if tok in _STOP:
            continue
        if "." in tok:
            head, _, ext = tok.rpartition(".")
            out.append(tok)
            if head and not head[0].isdigit():
                out.append(_stem(head.split(".")[-1]))
            if ext.isalpha():
                out.append("zzext_" + ext)
            continue
        if "-" in tok:
            parts = [p for p in tok.split("-") if p]
            out.extend(_stem(p) for p in parts if p not in _STOP)
            continue
        out.append(_stem(tok))
    return out


def analyze(text: str) -> list[str]:
    """Unigrams and bigrams of :func:`tokenize` (the analyzer of the TF-IDF vectorizer)."""
    toks = tokenize(text)
    return toks + [f"{a} {b}" for a, b in zip(toks, toks[1:])]
