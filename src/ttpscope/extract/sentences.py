"""Sentence segmentation for threat reports, with character offsets into the original text.

Reports are not clean prose: bullet lists, tables of indicators, code blocks, command lines, headings,
hard-wrapped PDF lines, and dotted tokens everywhere (``cmd.exe``, ``1.2.3[.]4``, ``v2.1``). The segmenter
works on lines first (structure) and then on prose (punctuation): every bullet item, table row, code or
command line, and heading is its own unit; wrapped prose lines are joined into paragraphs; paragraphs are
split at sentence punctuation followed by space and a capital, unless the word before is an abbreviation.
Generic sentence splitters (pysbd, punkt) see a report as one stream of prose, so command lines and table
rows run into the sentences around them; this is why ttpscope has its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

MAX_SENTENCE = 1000  # longer runs without punctuation (base64 blobs, long lists) are cut at whitespace


@dataclass(slots=True, frozen=True)
class Sentence:
    """``text == document_text[start:end]``; ``kind`` says what structure it came from."""

    start: int
    end: int
    text: str
    kind: str = "prose"  # prose | bullet | table | code | command | heading


_LINE = re.compile(r"[^\n]*\n?")
_FENCE = re.compile(r"^\s*(```|~~~)")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
_BULLET = re.compile(r"^\s*(?:[-*+•·▪◦‣●○■□➢►–—]|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)])\s+")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_PROMPT = re.compile(r"^\s*(?:\$|#|>|PS [A-Z]:\\[^>]*>|[A-Z]:\\[^>\s]*>|C:\\>|\w+@[\w.-]+[:~][^$#]*[$#])\s")
_COMMAND_WORDS = frozenset("""
cmd powershell pwsh schtasks reg net net1 wmic rundll32 regsvr32 mshta certutil bitsadmin vssadmin wevtutil sc
at whoami ipconfig nltest systeminfo tasklist taskkill netsh curl wget bash sh chmod crontab nohup python
python3 msiexec cscript wscript bcdedit attrib icacls psexec procdump mimikatz adfind ntdsutil dsquery nslookup
ping tar 7z rar copy xcopy move del echo set start iex invoke-expression invoke-webrequest sudo ssh scp
""".split())
_SWITCH = re.compile(r"\s[-/]{1,2}\w")
_END_PUNCT = ".!?:;,\"'”’)]"
# Sentence end: punctuation, optional closing quotes/brackets, whitespace, then a plausible sentence start.
_BOUNDARY = re.compile(r"([.!?…]+)[\"'”’)\]]*(\s+)(?=[\"'“‘(\[]?[A-Z0-9•])")
_ABBREV = frozenset("""
e.g i.e etc vs v al inc ltd co corp mr mrs ms dr st no nos fig figs approx ca cf resp jan feb mar apr jun jul
aug sep sept oct nov dec dept est gov min max sec ver vol pp p op u.s u.k a.k.a aka incl
""".split())


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Sentence]:
    """Sentences of ``text[start:end]`` in order, each with offsets into ``text``."""
    return list(iter_sentences(text, start, end))


def iter_sentences(text: str, start: int = 0, end: int | None = None) -> Iterator[Sentence]:
    """Lazy version of :func:`split_sentences` (a 20 MB report is never held as one list of lines)."""
    end = len(text) if end is None else end
    para_start = para_end = -1
    para_kind = "prose"
    last_line = ""
    in_fence = False
    pos = start
    for m in _LINE.finditer(text, start, end):
        line_start = m.start()
        if line_start >= end:
            break
        raw = m.group()
        if not raw:
            break
        content = raw.rstrip("\r\n")
        line_end = line_start + len(content)
        pos = m.end()
        stripped = content.strip()
        if _FENCE.match(content):
            if para_start >= 0:
                yield from _prose(text, para_start, para_end, para_kind)
                para_start = -1
            in_fence = not in_fence
            continue
        if in_fence:
            if stripped:
                yield from _unit(text, line_start, line_end, "code")
            continue
        if not stripped or _TABLE_SEP.match(content) and "-" in stripped:
            if para_start >= 0:
                yield from _prose(text, para_start, para_end, para_kind)
                para_start = -1
            continue
        kind = _line_kind(content, stripped)
        if kind == "prose":
            if para_start >= 0 and _looks_like_heading(last_line) and stripped[:1].isupper():
                yield from _prose(text, para_start, para_end, para_kind)
                para_start = -1
            if para_start < 0:
                para_start, para_kind = line_start, "prose"
            para_end = line_end
            last_line = stripped
            continue
        if para_start >= 0:
            yield from _prose(text, para_start, para_end, para_kind)
            para_start = -1
        if kind == "bullet":
            marker = _BULLET.match(content)
            para_start, para_end, para_kind = line_start + marker.end(), line_end, "bullet"
            last_line = stripped
        elif kind == "heading":
            h = _MD_HEADING.match(content)
            yield from _unit(text, line_start + (h.end() if h else 0), line_end, "heading")
        else:  # table | command
            yield from _unit(text, line_start, line_end, kind)
    if para_start >= 0:
        yield from _prose(text, para_start, para_end, para_kind)
    del pos


def _line_kind(content: str, stripped: str) -> str:
    if _MD_HEADING.match(content):
        return "heading"
    if stripped.count("|") >= 2 and (stripped.startswith("|") or stripped.endswith("|")) or stripped.count("\t") >= 2:
        return "table"
    if _BULLET.match(content):
        return "bullet"
    if _PROMPT.match(content) or _looks_like_command(stripped):
        return "command"
    return "prose"


def _looks_like_command(s: str) -> bool:
    """A shell line: a known program first, and switches or a short line that is not a sentence."""
    first = s.split(None, 1)[0].strip("\"'`").replace("\\", "/").rsplit("/", 1)[-1].lower()
    first = first.removesuffix(".exe")
    if first not in _COMMAND_WORDS:
        return False
    if _SWITCH.search(s):
        return True
    words = s.split()
    return len(words) == 1 or (len(words) <= 6 and not s.endswith(".") and not _is_plain_words(s))


def _is_plain_words(s: str) -> bool:
    """'Net Wire RAT' or 'Set up the network' is prose, 'net user /add' is a command."""
    return not re.search(r"[-/\\\"%=<>|&]|\.\w", s)


def _looks_like_heading(line: str) -> bool:
    return 0 < len(line) < 60 and line[-1] not in _END_PUNCT and not line[-1].isdigit() and \
        not line.lower().endswith((" the", " a", " an", " and", " or", " of", " to", " in", " with", " by"))


def _unit(text: str, start: int, end: int, kind: str) -> Iterator[Sentence]:
    """One structural unit (may still be cut if it is too long)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end <= start:
        return
    if not any(c.isalnum() for c in text[start:end]):
        return
    if end - start <= MAX_SENTENCE:
        yield Sentence(start, end, text[start:end], kind)
        return
    yield from _cut_long(text, start, end, kind)


def _cut_long(text: str, start: int, end: int, kind: str) -> Iterator[Sentence]:
    while end - start > MAX_SENTENCE:
        cut = text.rfind(" ", start + MAX_SENTENCE // 2, start + MAX_SENTENCE)
        if cut <= start:
            cut = start + MAX_SENTENCE
        yield from _unit(text, start, cut, kind)
        start = cut
    yield from _unit(text, start, end, kind)


def _prose(text: str, start: int, end: int, kind: str) -> Iterator[Sentence]:
    """Split a paragraph at sentence punctuation that is not an abbreviation or initial."""
    sent_start = start
    for m in _BOUNDARY.finditer(text, start, end):
        punct_at = m.start(1)
        if text[punct_at] == "." and len(m.group(1)) == 1 and _is_abbreviation(text, sent_start, punct_at):
            continue
        yield from _unit(text, sent_start, m.start(2), kind)
        sent_start = m.end(2)
    yield from _unit(text, sent_start, end, kind)


def _is_abbreviation(text: str, lo: int, dot: int) -> bool:
    i = dot
    while i > lo and not text[i - 1].isspace() and text[i - 1] not in "([\"'":
        i -= 1
    word = text[i:dot].lower()
    if not word:
        return False
    if len(word) == 1 and word.isalpha():  # initials: "J. Smith"
        return True
    return word in _ABBREV or word.rstrip(".") in _ABBREV
