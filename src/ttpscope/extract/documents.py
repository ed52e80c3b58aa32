"""Reports to plain text: .txt, .md, .html (main content, scripts and boilerplate stripped), .pdf (text
layer) and stdin. Every later step points into ``Document.text`` by character offsets, so the text is
kept as read (defanged indicators such as ``hxxp://evil[.]com`` stay as the author wrote them).

Structure is kept: HTML becomes Markdown-like text (``#`` headings, ``|`` table rows); a PDF's lines set in a
large font are marked as headings (``Document.hints``), lines repeated at the top or bottom of most pages
(running headers and footers) are dropped, words hyphenated at a line end are re-joined, and identifiers cut
by a line break (``CVE-2014-⏎1761``, hashes, domains, paths) are put back together. The document's
``blocks`` (:class:`ttpscope.extract.sentences.Block`), title (first or largest heading), date and TLP
marking are read here too. :func:`is_documentation` tells README/LICENSE-like files from reports.
"""

from __future__ import annotations

import io
import re
import sys
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ttpscope.errors import InputError

KINDS = ("txt", "md", "html", "pdf")
_SUFFIX_KIND = {
    ".txt": "txt", ".text": "txt", ".log": "txt", "": "txt",
    ".md": "md", ".markdown": "md", ".rst": "txt",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".pdf": "pdf",
}
_HTML_SNIFF = re.compile(rb"^\s*(<!doctype html|<html|<head|<body|<\?xml[^>]*>\s*<html)", re.I)
# Control characters other than tab/newline/carriage return/form feed: many of them mean "not text".
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


@dataclass(slots=True)
class Document:
    """A report as text. ``name`` is what Observations cite (``<name>#start-end``).

    ``date``: the publication date the document states (ISO ``YYYY-MM-DD``), else None. ``tlp``: its TLP
    2.0 marking (clear, green, amber, amber+strict, red; TLP:WHITE is read as clear), else None.
    ``hints``: line start offset -> block kind known from the layout (PDF headings). ``dropped``: running
    header/footer lines removed from a PDF's text."""

    name: str
    text: str
    kind: str  # txt | md | html | pdf
    title: str | None = None
    date: str | None = None
    tlp: str | None = None
    hints: dict[int, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    sha256: str | None = None

    def __len__(self) -> int:
        return len(self.text)

    @property
    def blocks(self) -> list:
        """The typed blocks of the text (headings, paragraphs, list items, tables, code, captions, TOC
        lines, boilerplate), computed on demand."""
        from ttpscope.extract.sentences import split_blocks

        return split_blocks(self.text, hints=self.hints)

    def summary(self) -> dict:
        """What ``extract --json`` and the case keep about the document itself."""
        counts: dict[str, int] = {}
        for b in self.blocks:
            counts[b.kind] = counts.get(b.kind, 0) + 1
        return {"name": self.name, "title": self.title, "kind": self.kind, "characters": len(self.text),
                "date": self.date, "tlp": self.tlp, "sha256": self.sha256, "blocks": counts,
                "dropped_lines": len(self.dropped)}


MAX_REPORT_BYTES = 256 << 20  # a report file larger than this is refused (its text is read whole)


def read_document(source: str | Path, kind: str | None = None) -> Document:
    """Read a report file (or ``-`` for stdin) into a Document.

    ``kind`` forces the format; otherwise it comes from the suffix, and the content is sniffed for PDF and
    HTML. Raises InputError naming the file for missing, empty, binary or unreadable input.
    """
    name = str(source)
    if name == "-":
        data = sys.stdin.buffer.read()
        return document_from_bytes(data, "<stdin>", kind)
    path = Path(source)
    if not path.exists():
        raise InputError(name, None, "no such file")
    if path.is_dir():
        raise InputError(name, None, "is a directory, not a report file")
    try:
        size = path.stat().st_size
        if size > MAX_REPORT_BYTES:
            raise InputError(name, None, f"{size:,} bytes: reports are limited to {MAX_REPORT_BYTES >> 20} MiB")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(name, None, f"cannot read: {exc.strerror or exc}") from exc
    doc = document_from_bytes(data, name, kind or _SUFFIX_KIND.get(path.suffix.lower()))
    doc.sha256 = hashlib.sha256(data).hexdigest()
    return doc


def document_from_text(text: str, name: str = "<text>", kind: str = "txt") -> Document:
    """A Document from a string already in memory (``kind`` "html" extracts the page's text)."""
    if kind == "html":
        return _html_document(text, name)
    if not text.strip():
        raise InputError(name, None, "the document is empty")
    return _finish(Document(name=name, text=text, kind=kind))


def document_from_bytes(data: bytes, name: str, kind: str | None = None) -> Document:
    """Decode raw bytes by (given or sniffed) format."""
    if kind is not None and kind not in KINDS:
        raise InputError(name, None, f"unknown document kind '{kind}' (expected one of {', '.join(KINDS)})")
    if not data.strip():
        raise InputError(name, None, "the document is empty")
    if data[:5] == b"%PDF-" or kind == "pdf":
        return _pdf_document(data, name)
    text = _decode(data, name)
    if kind == "html" or (kind in (None, "txt") and _HTML_SNIFF.match(data[:512])):
        return _html_document(text, name)
    return _finish(Document(name=name, text=text, kind=kind or "txt"))


def _decode(data: bytes, name: str) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else cp1252; binary content is refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputError(name, f"byte {exc.start}", "not valid UTF-16 text") from exc
    head = data[:65536]
    if b"\x00" in head:
        raise InputError(name, f"byte {head.index(0)}",
                         "binary content (NUL bytes): not a text, Markdown, HTML or PDF report")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    sample = text[:65536]
    controls = len(_CONTROL.findall(sample))
    if controls > max(8, len(sample) // 100):
        raise InputError(name, None, f"binary content ({controls} control characters in the first "
                         f"{len(sample)}): not a text, Markdown, HTML or PDF report")
    return text


def _finish(doc: Document, title: str | None = None) -> Document:
    """Title, date and TLP of a document read."""
    doc.title = title or _guess_title(doc.text, doc.hints)
    doc.date = doc.date or find_date(doc.text)
    doc.tlp = doc.tlp or find_tlp(doc.text)
    return doc


_JUNK_TITLE = re.compile(r"^(?:version|v|rev(?:ision)?)\s*\d|^(?:microsoft word|untitled|document\d*|page \d+)\b|"
                         r"^\W*tlp\s*[:\-]|^\d[\d./ -]*$", re.I)


def _guess_title(text: str, hints: dict[int, str] | None = None) -> str | None:
    """The first level-1 Markdown heading, else the first heading (from the layout or the text), else the
    first plausible line; never a version line, a TLP marking or a date."""
    from ttpscope.extract.sentences import iter_blocks

    first_heading = None
    fallback = None
    n = 0
    for block in iter_blocks(text, 0, min(len(text), 20000), hints):
        n += 1
        line = " ".join(block.text_of(text).split())
        if line.lower().startswith("title:"):
            return line[6:].strip() or None
        ok = 3 <= len(line) <= 200 and not _JUNK_TITLE.match(line)
        if block.kind == "heading" and ok:
            if block.level == 1:
                return line
            first_heading = first_heading or line
        elif ok and fallback is None and block.kind not in ("boilerplate", "toc", "table", "table_header"):
            fallback = line.split(". ")[0][:200]
        if n >= 40:
            break
    return first_heading or fallback


_MONTHS = {m: i + 1 for i, m in enumerate(
    "january february march april may june july august september october november december".split())}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_MON = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
_DATE_FORMS = (
    (re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"), "ymd"),
    (re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+" + _MON + r",?\s+(\d{4})\b", re.I), "dmy"),
    (re.compile(r"\b" + _MON + r"\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b", re.I), "mdy"),
)
_DATE_LABEL = re.compile(r"\b(?:published|publication date|date|released|posted|issued|last updated|updated|"
                         r"report date)\b\s*(?:on)?\s*[:\-–]?\s*", re.I)


def find_date(text: str) -> str | None:
    """The publication date a document states near its top: a date after "Published", "Date", "Posted" and
    the like, else a line that is only a date (a byline). Dates inside prose (when the intrusion happened)
    are not the publication date, so they are not taken."""
    head = text[:6000]
    for m in _DATE_LABEL.finditer(head):
        got = _parse_date(head[m.end():m.end() + 40], anchored=True)
        if got:
            return got
    for line in head.splitlines()[:40]:
        line = line.strip(" *_#|\t")
        if 6 <= len(line) <= 40:
            got = _parse_date(line, anchored=True, whole=True)
            if got:
                return got
    return None


def _parse_date(s: str, anchored: bool = False, whole: bool = False) -> str | None:
    import datetime as dt

    for pattern, order in _DATE_FORMS:
        m = pattern.match(s) if anchored else pattern.search(s)
        if not m or (whole and len(s[m.end():].strip(" .,")) > 0):
            continue
        g = m.groups()
        try:
            if order == "ymd":
                y, mo, d = int(g[0]), int(g[1]), int(g[2])
            elif order == "dmy":
                d, mo, y = int(g[0]), _MONTHS[g[1].lower()[:3]], int(g[2])
            else:
                mo, d, y = _MONTHS[g[0].lower()[:3]], int(g[1]), int(g[2])
            if not 1990 <= y <= 2100:
                continue
            return dt.date(y, mo, d).isoformat()
        except (ValueError, KeyError):
            continue
    return None


_TLP = re.compile(r"\bTLP\s*[:\-]?\s*(CLEAR|WHITE|GREEN|AMBER\s*\+\s*STRICT|AMBER|RED)\b", re.I)


def find_tlp(text: str) -> str | None:
    """The document's TLP marking (TLP 2.0 names; WHITE is CLEAR): the first one stated."""
    m = _TLP.search(text)
    if not m:
        return None
    level = re.sub(r"\s+", "", m.group(1).lower())
    return "clear" if level == "white" else level


_DOC_NAMES = re.compile(r"^(?:(?:readme|read[_-]me|license|licence|copying|changelog|missing[_-]from[_-]snapshot)"
                        r"(?:[._-][\w.-]*)?|(?:copyright|notice|changes|history|news|release[_-]?notes|contributing|"
                        r"contributors|authors|code[_-]of[_-]conduct|citation|datasheet|codebook|"
                        r"data[_-]?(?:dictionary|description|documentation))(?:\.[a-z0-9]{1,8})?)$", re.I)
_LICENSE_TEXT = re.compile(r"permission is hereby granted|licensed under the|creative commons|cc0 1\.0|"
                           r"gnu (?:general|lesser) public license|apache license|mit license|"
                           r"to the extent possible under law|public domain dedication|"
                           r"redistribution and use in source and binary forms", re.I)
_DATA_DOC = re.compile(r"\b(?:this (?:data ?set|dataset|folder|directory|repository|archive|snapshot|file) "
                       r"(?:contains|holds|includes|is)|the following (?:files|columns|fields)|"
                       r"(?:column|field)s? (?:are|is)|files? (?:in|of) this (?:folder|directory|dataset))\b", re.I)


def is_documentation(path: str | Path, text: str | None = None) -> str | None:
    """Why a file next to evidence is documentation and not a threat report (README, LICENSE, a changelog,
    the description of a data set), or None when it may be a report. ``text``: the file's text, when read."""
    p = Path(path)
    name = p.name
    if _DOC_NAMES.match(name):
        return f"documentation file name ({name})"
    if text is None:
        return None
    head = text[:20000]
    if _LICENSE_TEXT.search(head[:4000]) and len(text) < 60000:
        return "licence text"
    if _DATA_DOC.search(head[:3000]) and len(text) < 60000 and not _ATTACK_WORDS.search(head):
        return "describes a data set or folder, not an intrusion"
    return None


_ATTACK_WORDS = re.compile(r"\b(?:attacker|adversar(?:y|ies)|threat actor|intrusion|malware|implant|"
                           r"backdoor|ransomware|phishing|exploit(?:ed|s)?|c2|command and control)\b", re.I)


def _html_document(html: str, name: str) -> Document:
    """Main text of a page: trafilatura (boilerplate removal), falling back to all visible text."""
    import trafilatura

    html = _bounded_markup(html)
    text = None
    try:
        # Markdown keeps headings (#) and tables (|) for the structure-aware segmenter
        text = trafilatura.extract(html, include_tables=True, include_comments=False, favor_recall=True,
                                   include_links=False, include_images=False, deduplicate=False,
                                   output_format="markdown", include_formatting=True)
        if text:
            text = _MD_ESCAPE.sub(r"\1", text)
    except Exception:  # the library can trip over malformed markup; the fallback below still reads it
        text = None
    visible = _visible_text(html)
    # trafilatura can be too strict on short pages or pages without an article structure
    if not text or len(text) < 0.3 * len(visible):
        text = visible
    title = None
    m = re.search(r"<title[^>]*>", html, re.I)  # then one search for its end: (.*?)</title> from each of
    end = re.search(r"</title\s*>", html[m.end():m.end() + 4096], re.I) if m else None  # many unclosed ones
    if end:                                                                           # is quadratic
        title = re.sub(r"\s+", " ", _unescape(html[m.end():m.end() + end.start()])).strip() or None
    if not text.strip():
        raise InputError(name, None, "the HTML page has no visible text")
    return _finish(Document(name=name, text=text, kind="html"), title)


# A tag longer than this keeps its name only: the page's text never needs such attributes, and the HTML
# parser checks each new attribute against all before it (200,000 attributes took minutes)
MAX_TAG = 8192
_LONG_TAG = re.compile(r"<([A-Za-z][\w:-]{0,64})[^<>]{%d,}>" % MAX_TAG)


def _bounded_markup(html: str) -> str:
    return _LONG_TAG.sub(r"<\1>", html) if len(html) > MAX_TAG else html


# Markdown escapes trafilatura writes; reports' defanged indicators (evil[.]com) must read as written
_MD_ESCAPE = re.compile(r"\\([\[\]*_#`>()!+{}.|-])")


def _unescape(s: str) -> str:
    import html as html_mod

    return html_mod.unescape(s)


_BLOCK_TAGS = {"p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "br", "table", "section",
               "article", "blockquote", "ul", "ol", "dd", "dt", "td", "th"}
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "nav", "footer", "header", "aside", "form",
              "button", "iframe", "head"}


def _visible_text(html: str) -> str:
    """All visible text of a page with block elements on their own lines (lxml), scripts/navigation dropped."""
    import lxml.html

    try:
        root = lxml.html.fromstring(html)
    except Exception:
        return re.sub(r"<[^>]+>", " ", html)
    out: list[str] = []

    def walk(el) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in _SKIP_TAGS:
            if el.tail:
                out.append(el.tail)
            return
        block = tag in _BLOCK_TAGS
        if block:
            if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
                out.append("\n\n" + "#" * int(tag[1]) + " ")
            else:
                out.append("\n- " if tag == "li" else ("\t" if tag in ("td", "th") else "\n"))
        if el.text:
            out.append(el.text)
        for child in el:
            walk(child)
        if block and tag not in ("td", "th"):
            out.append("\n")
        if el.tail:
            out.append(el.tail)

    walk(root)
    text = "".join(out)
    text = re.sub(r"[ \t\r\f\v]*\n[ \t\r\f\v]*(\n[ \t\r\f\v]*)+", "\n\n", text)
    return text.strip()


def _pdf_document(data: bytes, name: str) -> Document:
    """Text layer of a PDF, page by page (pypdf), with its layout read: see the module docstring.
    Scanned PDFs without text get a clear error."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as exc:
                raise InputError(name, None, "the PDF is encrypted") from exc
        pages: list[list[tuple[str, float]]] = []
        for i, page in enumerate(reader.pages):
            try:
                pages.append(_page_lines(page))
            except Exception as exc:  # one bad page never loses the others
                pages.append([])
                print(f"ttpscope: warning: {name} [page {i + 1}]: no text extracted ({exc})", file=sys.stderr)
    except PdfReadError as exc:
        raise InputError(name, None, f"not a readable PDF: {exc}") from exc
    if not any(t.strip() for page in pages for t, _ in page):
        raise InputError(name, None, "the PDF has no text layer (a scanned document? run OCR first)")
    tlp = find_tlp("\n".join(t for page in pages for t, _ in page[:4] + page[-4:]))
    pages, dropped = _drop_running_lines(pages)
    text, hints, largest = _join_pdf_lines(pages)
    meta_title = meta_date = None
    try:
        meta = reader.metadata or {}
        meta_title = str(meta.get("/Title") or "").strip() or None
        raw = str(meta.get("/CreationDate") or "")
        m = re.match(r"D:(\d{4})(\d{2})(\d{2})", raw)
        if m:
            meta_date = _parse_date(f"{m.group(1)}-{m.group(2)}-{m.group(3)}")
    except Exception:
        pass
    doc = Document(name=name, text=text, kind="pdf", hints=hints, dropped=dropped, tlp=tlp)
    doc.date = find_date(text) or meta_date
    title = largest
    if not title and meta_title and not _JUNK_TITLE.match(meta_title):
        title = meta_title
    return _finish(doc, title)


def _page_lines(page) -> list[tuple[str, float]]:
    """(line text, largest font size on it) of one page, from pypdf's text visitor."""
    parts: list[tuple[str, float]] = []

    def visit(text, cm, tm, font_dict, font_size):
        try:
            scale = abs(float(tm[3]) * float(cm[3])) or 1.0
        except (TypeError, ValueError, IndexError):
            scale = 1.0
        parts.append((text, float(font_size or 0) * scale))

    page.extract_text(visitor_text=visit)
    lines: list[tuple[str, float]] = []
    cur: list[str] = []
    size = 0.0
    for text, fs in parts:
        pieces = text.split("\n")
        for k, piece in enumerate(pieces):
            if k > 0:
                lines.append(("".join(cur), size))
                cur, size = [], 0.0
            if piece:
                cur.append(piece)
                if piece.strip():
                    size = max(size, fs)
    if cur:
        lines.append(("".join(cur), size))
    return [(t.rstrip(), s) for t, s in lines]


_DIGITS = re.compile(r"\d+")


def _drop_running_lines(pages: list[list[tuple[str, float]]]) -> tuple[list[list[tuple[str, float]]], list[str]]:
    """Drop lines repeated at the top or bottom (three lines each) of most pages: running headers and
    footers ("Example Corp | TLP:CLEAR", "Page 3 of 39"). Digits are ignored when comparing."""
    real = [p for p in pages if any(t.strip() for t, _ in p)]
    if len(real) < 2:
        return pages, []
    seen: dict[str, int] = {}
    for page in real:
        content = [t for t, _ in page if t.strip()]
        edge = {_DIGITS.sub("#", " ".join(t.split())).lower() for t in content[:3] + content[-3:]}
        for key in edge:
            seen[key] = seen.get(key, 0) + 1
    need = max(2, (len(real) + 1) // 2)
    running = {k for k, n in seen.items() if n >= need and len(k) < 200}
    if not running:
        return pages, []
    dropped: list[str] = []
    out = []
    for page in pages:
        content_idx = [i for i, (t, _) in enumerate(page) if t.strip()]
        edges = set(content_idx[:3] + content_idx[-3:])
        keep = []
        for i, (t, fs) in enumerate(page):
            if i in edges and _DIGITS.sub("#", " ".join(t.split())).lower() in running:
                if t.strip() not in dropped:
                    dropped.append(t.strip())
                continue
            keep.append((t, fs))
        out.append(keep)
    return out, dropped


_HEX = re.compile(r"^[0-9a-fA-F]+$")
_HASH_LENGTHS = (32, 40, 64, 128)
_DOMAINISH = re.compile(r"^(?:[a-z0-9-]+(?:\.|\[\.\]))+[a-z]{2,24}(?:[/:][^\s]*)?$", re.I)
_CVE_CUT = re.compile(r"CVE-\d{4}-?$", re.I)


def _join_token(prev: str, nxt: str) -> str | None:
    """How the last token of a line and the first of the next go together when a line break cut one
    identifier or word: the joined text, or None when the break is a real word boundary."""
    if not prev or not nxt:
        return None
    if _CVE_CUT.search(prev) and re.match(r"^-?\d{3,7}\b", nxt):
        return prev.rstrip("-") + "-" + nxt.lstrip("-")
    p_core, n_core = prev.strip("`'\"(["), nxt.strip("`'\")].,;:")
    if _HEX.match(p_core) and _HEX.match(n_core) and len(p_core) >= 8 and len(p_core) + len(n_core) in _HASH_LENGTHS \
            and len(p_core) not in _HASH_LENGTHS:
        return prev + nxt
    if prev.endswith(("\\", "/")) and re.match(r"^[\w%$.-]", nxt) and re.search(r"[\\/]\w", prev):
        return prev + nxt  # a path or URL cut after a separator
    if (prev.endswith((".", "[.]")) and re.match(r"^[a-z0-9]", nxt) and _DOMAINISH.match(p_core + n_core)
            and "." in p_core.rstrip(".") and _known_domain(p_core + n_core)
            and not _known_domain(p_core.rstrip(".").removesuffix("[.]"))) or \
            (nxt.startswith((".", "[.]")) and _DOMAINISH.match(p_core + n_core) and _known_domain(p_core + n_core)):
        return prev + nxt  # a domain cut at a dot (not a sentence ending with one)
    if prev.endswith("-") and len(prev) > 2 and prev[-2].isalnum():
        joined = prev + nxt
        if _DOMAINISH.match(joined.strip("`'\"()[].,;:")):
            return joined  # a hyphenated domain cut at its hyphen keeps it
        if prev[:-1].isalpha() and nxt[:1].islower():
            return prev[:-1] + nxt  # a word hyphenated at the line end
    return None


def _known_domain(text: str) -> bool:
    """Whether a host name ends in a real public suffix (``update.eelu.biz`` yes, ``evil.com.then`` no)."""
    from ttpscope.extract.iocs import registrable

    host = re.split(r"[/:]", text.replace("[.]", "."), maxsplit=1)[0].strip(".")
    return "." in host and registrable(host) is not None


def _join_pdf_lines(pages: list[list[tuple[str, float]]]) -> tuple[str, dict[int, str], str | None]:
    """The pages' lines as one text: de-hyphenated, cut identifiers re-joined, blank lines between pages
    (unless a sentence runs on); lines in a font clearly larger than the body text marked as headings.
    Returns (text, hints, largest line of the first page with text)."""
    sizes: dict[float, int] = {}
    for page in pages:
        for t, fs in page:
            if t.strip() and fs:
                sizes[round(fs, 1)] = sizes.get(round(fs, 1), 0) + len(t)
    body = max(sizes, key=sizes.get) if sizes else 0.0
    lines: list[tuple[str, float, bool]] = []  # text, size, page start
    for page in pages:
        first = True
        for t, fs in page:
            lines.append((t, fs, first))
            first = False
    first_text = next((k for k, (t, _, _) in enumerate(lines) if t.strip()), 0)
    first_page_end = next((k for k in range(first_text + 1, len(lines)) if lines[k][2]), len(lines))
    out: list[str] = []
    hints: dict[int, str] = {}
    pos = 0
    largest = None
    largest_size = 0.0
    i = 0
    while i < len(lines):
        t, fs, page_start = lines[i]
        if page_start and out:
            prev = out[-1] if out else ""
            sep = "\n" if prev.strip() and prev.rstrip()[-1:] not in ".!?:" and t[:1].islower() else "\n\n"
            out.append(sep)
            pos += len(sep)
        # a line cut inside an identifier or a hyphenated word: carry its last token to the next line
        if i + 1 < len(lines) and t.strip() and lines[i + 1][0].strip() and not lines[i + 1][2]:
            head, _, last = t.rstrip().rpartition(" ")
            nxt = lines[i + 1][0].lstrip()
            first_tok = nxt.split(" ", 1)[0]
            joined = _join_token(last, first_tok)
            if joined is not None and fs == lines[i + 1][1]:
                rest = nxt[len(first_tok):]
                lines[i + 1] = ((head + " " if head else "") + joined + rest, lines[i + 1][1], lines[i + 1][2])
                i += 1
                continue
        stripped = t.strip()
        if stripped and body and fs >= body * 1.15 and len(stripped) <= 150:
            hints[pos] = "heading"
            if i < first_page_end and fs > largest_size and len(stripped) >= 3 and not _JUNK_TITLE.match(stripped) \
                    and not _TLP.search(stripped):
                largest, largest_size = stripped, fs
        out.append(t + "\n")
        pos += len(t) + 1
        i += 1
    text = "".join(out).strip("\n")
    # offsets shift by the leading newlines strip removed
    lead = len("".join(out)) - len("".join(out).lstrip("\n"))
    if lead:
        hints = {k - lead: v for k, v in hints.items() if k >= lead}
    return text, hints, largest
