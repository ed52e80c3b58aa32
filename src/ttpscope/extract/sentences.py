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


# Kinds of sentence that are context for the text around them, never a claim on their own.
CONTEXT_KINDS = frozenset({"heading", "toc", "table_header", "boilerplate"})


@dataclass(slots=True, frozen=True)
class Sentence:
    """``text == document_text[start:end]``; ``kind`` says what structure it came from."""

    start: int
    end: int
    text: str
    kind: str = "prose"  # prose | bullet | table | table_header | code | command | heading | toc | caption | boilerplate

    @property
    def is_context(self) -> bool:
        """Headings, TOC lines, table headers and boilerplate: context, never a claim alone."""
        return self.kind in CONTEXT_KINDS


@dataclass(slots=True, frozen=True)
class Block:
    """A structural unit of a document, ``document_text[start:end]``.

    kind: heading | paragraph | list (one item) | table | table_header (a table's first row) | code |
    command | caption | toc | boilerplate (TLP lines, disclaimers, contact blocks). ``level`` is a
    Markdown heading's depth (0 when unknown)."""

    kind: str
    start: int
    end: int
    level: int = 0

    def text_of(self, text: str) -> str:
        return text[self.start:self.end]


_SENTENCE_KIND = {"heading": "heading", "paragraph": "prose", "list": "bullet", "table": "table",
                  "table_header": "table_header", "code": "code", "command": "command", "caption": "caption",
                  "toc": "toc", "boilerplate": "boilerplate"}


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
# "Introduction ........ 3", "2.1 Persistence 12" (the second only inside a table of contents)
_TOC_LEADER = re.compile(r"^.{2,120}?(?:\.\s?){3,}\s*\d{1,4}$|^.{2,120}?…+\s*\d{1,4}$")
_TOC_LINE = re.compile(r"^(?:\d+(?:\.\d+)*\.?\s+)?[A-Z].{0,110}?\s\d{1,4}$")
_TOC_HEADING = re.compile(r"^(?:table of )?contents?$|^index$|^inhalt$|^sommaire$")
_NUMBERED_HEADING = re.compile(r"^\d{1,2}(?:\.\d{1,2})*\.?\s+[A-Z]")
_CAPTION = re.compile(r"^(?:figure|fig\.|table|image|screenshot|exhibit|listing)\s*\d+[a-z]?\s*[:.\-–—)]", re.I)
# sections whose every paragraph is boilerplate
_BOILER_SECTION = re.compile(r"^(?:\d+(?:\.\d+)*\.?\s+)?(?:disclaimer|legal (?:notice|disclaimer)|"
                             r"contact(?:s| us| information)?|about (?:us|the authors?|[\w .-]{2,40})|"
                             r"copyright|terms of use|imprint|distribution|notice)\b")
# boilerplate sentences: traffic-light markings, disclaimers, copyright, contact lines
_BOILERPLATE = re.compile(
    r"\bTLP\s*[:\-]?\s*(?:CLEAR|WHITE|GREEN|AMBER(?:\s*\+\s*STRICT)?|RED)\b|"
    r"\bdisclaimer\b|\bprovided\s+[\"“']?as[\s-]is\b|\bwithout\s+(?:any\s+)?warrant(?:y|ies)\b|"
    r"\ball rights reserved\b|\bcopyright\b|©|\(c\)\s*\d{4}|\bfor (?:general )?informational purposes\b|"
    r"\bdoes not constitute\b|\bnot (?:be )?(?:held )?liable\b|\btrademarks?\b|\bmay (?:not )?be (?:re)?produced\b|"
    r"\b(?:are|is) (?:invented|fictitious|fictional)\b|\bfor more information,? (?:please )?(?:contact|visit|e-?mail)\b|"
    r"\bcontact us\b|\bplease contact\b|^\s*(?:e-?mail|tel(?:ephone)?|phone|fax|web(?:site)?|twitter)\s*:|"
    r"\bsubscribe to\b|\bfollow us\b|^\s*(?:version|v|rev\.?|revision)\s*\d[\d.]*\s*$|"
    r"^\s*(?:published|publication date|date|posted|updated|author(?:s|ed by)?|written by)\s*(?:on\s*)?:", re.I)
_END_PUNCT = ".!?:;,\"'”’)]"
# Sentence end: punctuation, optional closing quotes/brackets, whitespace, then a plausible sentence start.
_BOUNDARY = re.compile(r"([.!?…]+)[\"'”’)\]]*(\s+)(?=[\"'“‘(\[]?[A-Z0-9•])")
_ABBREV = frozenset("""
e.g i.e etc vs v al inc ltd co corp mr mrs ms dr st no nos fig figs approx ca cf resp jan feb mar apr jun jul
aug sep sept oct nov dec dept est gov min max sec ver vol pp p op u.s u.k a.k.a aka incl
""".split())


def split_sentences(text: str, start: int = 0, end: int | None = None,
                    hints: dict[int, str] | None = None) -> list[Sentence]:
    """Sentences of ``text[start:end]`` in order, each with offsets into ``text``."""
    return list(iter_sentences(text, start, end, hints))


def iter_sentences(text: str, start: int = 0, end: int | None = None,
                   hints: dict[int, str] | None = None) -> Iterator[Sentence]:
    """Lazy version of :func:`split_sentences` (a 20 MB report is never held as one list of lines).

    ``hints`` maps a line's start offset to a kind the reader knew from the layout (a PDF line set in a
    large font is a "heading")."""
    for block in iter_blocks(text, start, end, hints):
        yield from _block_sentences(text, block)


def split_blocks(text: str, start: int = 0, end: int | None = None,
                 hints: dict[int, str] | None = None) -> list[Block]:
    """The typed blocks of ``text[start:end]`` (see :class:`Block`)."""
    return list(iter_blocks(text, start, end, hints))


def _lines(text: str, start: int, end: int) -> Iterator[tuple[int, int, str]]:
    for m in _LINE.finditer(text, start, end):
        if m.start() >= end or not m.group():
            break
        content = m.group().rstrip("\r\n")
        yield m.start(), m.start() + len(content), content


def iter_blocks(text: str, start: int = 0, end: int | None = None,
                hints: dict[int, str] | None = None) -> Iterator[Block]:
    """Typed blocks in order: headings, paragraphs, list items, table rows, code, captions, TOC lines,
    boilerplate. Boilerplate is recognised per paragraph (a TLP line, a disclaimer, a contact block) and for
    every paragraph under a heading such as "Disclaimer" or "Contact"."""
    end = len(text) if end is None else end
    hints = hints or {}
    para: list[int] = []  # [start, end] of the open paragraph or list item
    para_kind = "paragraph"
    last_line = ""
    in_fence = False
    in_toc = False
    table_rows = 0  # rows of the current table run, so its first row is known as the header
    section = ""  # the last heading's text (lower case), for boilerplate sections
    lines = _lines(text, start, end)
    nxt = next(lines, None)

    def close():
        nonlocal para
        if para:
            kind = para_kind
            if kind == "paragraph" and _BOILER_SECTION.match(section):
                kind = "boilerplate"
            blk = Block(kind, para[0], para[1])
            para = []
            return blk
        return None

    while nxt is not None:
        line_start, line_end, content = nxt
        nxt = next(lines, None)
        stripped = content.strip()
        if _FENCE.match(content):
            if (b := close()):
                yield b
            in_fence = not in_fence
            table_rows = 0
            continue
        if in_fence:
            if stripped:
                yield Block("code", line_start, line_end)
            continue
        if not stripped:
            if (b := close()):
                yield b
            table_rows = 0
            continue
        if _TABLE_SEP.match(content) and "-" in stripped:
            if (b := close()):
                yield b
            continue
        kind = hints.get(line_start) or _line_kind(content, stripped)
        # a hard-wrapped line of an open paragraph stays in it, even if it starts like a command
        # (a Markdown code span such as `net view` at the start of a wrapped line)
        if kind == "command" and para and not _PROMPT.match(content) and (
                last_line[-1:] not in ".!?:" or stripped.startswith("`") and re.search(r"`[^`]+`\s*\w", stripped)):
            kind = "prose"
        if kind == "command" and " " not in stripped and not _PROMPT.match(content) and \
                _standalone_heading(stripped[:1].upper() + stripped[1:], bool(para), last_line, nxt):
            kind = "heading"  # "PowerShell" or "mshta" alone on a line: a section's title
        if kind == "prose" and _TOC_LEADER.match(stripped):
            kind = "toc"
        elif kind == "prose" and in_toc and _TOC_LINE.match(stripped):
            kind = "toc"
        elif kind == "prose" and _CAPTION.match(stripped) and len(stripped) < 300:
            kind = "caption"
        elif kind == "prose" and _standalone_heading(stripped, bool(para), last_line, nxt):
            kind = "boilerplate" if _is_boilerplate(stripped) else "heading"  # a TLP line on its own
        if kind != "toc" and in_toc and kind != "heading":
            in_toc = False
        if kind == "prose":
            if not para:
                para, para_kind = [line_start, line_end], "paragraph"
            else:
                para[1] = line_end
            last_line = stripped
            continue
        if (b := close()):
            yield b
        last_line = stripped
        if kind != "table":
            table_rows = 0
        if kind == "bullet":
            marker = _BULLET.match(content)
            para, para_kind = [line_start + marker.end(), line_end], "list"
        elif kind == "heading":
            h = _MD_HEADING.match(content)
            section = stripped.lstrip("#").strip().lower()
            in_toc = bool(_TOC_HEADING.match(section))
            yield Block("heading", line_start + (h.end() if h else 0), line_end, level=_heading_level(content))
        elif kind == "table":
            table_rows += 1
            header = table_rows == 1 and (nxt is not None and _TABLE_SEP.match(nxt[2]) and "-" in nxt[2]
                                          or _header_like_row(stripped))
            yield Block("table_header" if header else "table", line_start, line_end)
        else:  # command | toc | caption | boilerplate
            yield Block(kind, line_start, line_end)
    if (b := close()):
        yield b


def _heading_level(content: str) -> int:
    h = _MD_HEADING.match(content)
    return len(h.group().strip()) if h else 0


def _standalone_heading(stripped: str, in_para: bool, last_line: str, nxt) -> bool:
    """A short line on its own, not ending like a sentence, that starts a section: "Persistence",
    "Initial Access", "3.2 Command and Control". A wrapped line of a paragraph is not one."""
    if in_para and last_line[-1:] not in ".!?:;":
        return False
    if not _looks_like_heading(stripped) or len(stripped.split()) > 10:
        return False
    if not (stripped[:1].isupper() or stripped[:1].isdigit()):
        return False
    if stripped[:1].isdigit() and not _NUMBERED_HEADING.match(stripped):
        return False
    if nxt is None:
        return not in_para
    following = nxt[2].strip()
    return not following or following[:1].isupper() or following[:1].isdigit() or following[:1] in "#-*•|`\"(["


def _header_like_row(row: str) -> bool:
    """A tab- or pipe-separated row of short labels without digits or indicators: a table's header."""
    cells = [c.strip() for c in re.split(r"\t|\|", row) if c.strip()]
    return bool(cells) and all(len(c.split()) <= 4 and not re.search(r"\d|\[\.\]|\.\w", c) for c in cells)


def _block_sentences(text: str, block: Block) -> Iterator[Sentence]:
    kind = _SENTENCE_KIND[block.kind]
    if block.kind in ("paragraph", "list", "caption", "boilerplate"):
        sents = list(_prose(text, block.start, block.end, kind))
        if kind in ("prose", "bullet"):
            boiler = [_is_boilerplate(s.text) for s in sents]
            # a paragraph mostly made of boilerplate (a byline with its TLP line and disclaimer) is boilerplate
            if sum(boiler) * 2 >= len(sents):
                boiler = [True] * len(sents)
            sents = [Sentence(s.start, s.end, s.text, "boilerplate") if b else s for s, b in zip(sents, boiler)]
        yield from sents
    else:
        yield from _unit(text, block.start, block.end, kind)


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


def _is_boilerplate(sentence: str) -> bool:
    return bool(_BOILERPLATE.search(sentence)) and len(sentence) < 600


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
