"""Reports to plain text: .txt, .md, .html (main content, scripts and boilerplate stripped), .pdf (text
layer) and stdin. Every later step points into ``Document.text`` by character offsets, so the text is
kept as read (defanged indicators such as ``hxxp://evil[.]com`` stay as the author wrote them).
"""

from __future__ import annotations

import io
import re
import sys
from dataclasses import dataclass
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
    """A report as text. ``name`` is what Observations cite (``<name>#start-end``)."""

    name: str
    text: str
    kind: str  # txt | md | html | pdf
    title: str | None = None

    def __len__(self) -> int:
        return len(self.text)


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
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(name, None, f"cannot read: {exc.strerror or exc}") from exc
    return document_from_bytes(data, name, kind or _SUFFIX_KIND.get(path.suffix.lower()))


def document_from_text(text: str, name: str = "<text>", kind: str = "txt") -> Document:
    """A Document from a string already in memory (``kind`` "html" extracts the page's text)."""
    if kind == "html":
        return _html_document(text, name)
    if not text.strip():
        raise InputError(name, None, "the document is empty")
    return Document(name=name, text=text, kind=kind, title=_guess_title(text))


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
    return Document(name=name, text=text, kind=kind or "txt", title=_guess_title(text))


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


def _guess_title(text: str) -> str | None:
    for line in text.splitlines()[:20]:
        line = line.strip().lstrip("#").strip()
        if line.lower().startswith("title:"):
            line = line[6:].strip()
        if 3 <= len(line) <= 200:
            return line
    return None


def _html_document(html: str, name: str) -> Document:
    """Main text of a page: trafilatura (boilerplate removal), falling back to all visible text."""
    import trafilatura

    text = None
    try:
        text = trafilatura.extract(html, include_tables=True, include_comments=False, favor_recall=True,
                                   include_links=False, include_images=False, deduplicate=False)
    except Exception:  # the library can trip over malformed markup; the fallback below still reads it
        text = None
    visible = _visible_text(html)
    # trafilatura can be too strict on short pages or pages without an article structure
    if not text or len(text) < 0.3 * len(visible):
        text = visible
    title = None
    m = re.search(r"<title[^>]*>(.*?)</title>", html, re.I | re.S)
    if m:
        title = re.sub(r"\s+", " ", _unescape(m.group(1))).strip() or None
    if not text.strip():
        raise InputError(name, None, "the HTML page has no visible text")
    return Document(name=name, text=text, kind="html", title=title or _guess_title(text))


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
    """Text layer of a PDF, page by page (pypdf). Scanned PDFs without text get a clear error."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as exc:
                raise InputError(name, None, "the PDF is encrypted") from exc
        pages = []
        for i, page in enumerate(reader.pages):
            try:
                pages.append(page.extract_text() or "")
            except Exception as exc:  # one bad page never loses the others
                pages.append("")
                print(f"ttpscope: warning: {name} [page {i + 1}]: no text extracted ({exc})", file=sys.stderr)
    except PdfReadError as exc:
        raise InputError(name, None, f"not a readable PDF: {exc}") from exc
    text = "\n\n".join(p.strip("\n") for p in pages)
    if not text.strip():
        raise InputError(name, None, "the PDF has no text layer (a scanned document? run OCR first)")
    title = None
    try:
        title = (reader.metadata or {}).get("/Title") or None
    except Exception:
        title = None
    return Document(name=name, text=text, kind="pdf", title=str(title) if title else _guess_title(text))
