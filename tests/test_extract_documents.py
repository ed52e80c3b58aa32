"""Reports to text: txt, Markdown, HTML, PDF (made here with fpdf2), stdin; empty and binary files refused."""

from __future__ import annotations

import fpdf  # fpdf2, a dev dependency: the tests write their own PDFs
import pytest

from ttpscope.errors import InputError
from ttpscope.extract.documents import document_from_bytes, document_from_text, read_document
from ttpscope.extract.sentences import split_sentences

HTML = """<!DOCTYPE html><html><head><title>APT29 targets ministries</title>
<script>var tracking = "spearphishing-in-a-script";</script><style>.x{color:red}</style></head>
<body><nav><a href="/">Home</a> <a href="/blog">Blog</a> <a href="/about">About us</a></nav>
<article><h1>APT29 targets ministries</h1>
<p>The actor sent spearphishing emails with a malicious attachment to ministry staff in March.</p>
<p>The payload ran <code>powershell -enc SQBFAFgA</code> to download a second stage from hxxp://evil[.]com/a.</p>
<ul><li>Persistence via a scheduled task named UpdateCheck</li><li>Credential dumping with Mimikatz</li></ul>
<table><tr><th>Indicator</th><th>Type</th></tr><tr><td>198.51.100[.]7</td><td>IPv4</td></tr></table>
</article><footer>Copyright 2024 Example Corp. All rights reserved. Subscribe to our newsletter.</footer></body></html>
"""


def test_txt_keeps_text_and_defanged_indicators(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text("The malware beacons to hxxp://evil[.]com/gate.php every 60 seconds.\n", encoding="utf-8")
    doc = read_document(p)
    assert doc.kind == "txt"
    assert "hxxp://evil[.]com/gate.php" in doc.text  # kept as written, readable
    assert doc.name == str(p)


def test_markdown_structure_becomes_sentences(tmp_path):
    p = tmp_path / "r.md"
    p.write_text("# Findings\n\n- The actor used **PowerShell**.\n- It deleted shadow copies.\n\n"
                 "```\nvssadmin delete shadows /all /quiet\n```\n", encoding="utf-8")
    doc = read_document(p)
    assert doc.kind == "md" and doc.title == "Findings"
    sents = split_sentences(doc.text)
    kinds = [(s.kind, s.text) for s in sents]
    assert ("heading", "Findings") in kinds
    assert ("bullet", "The actor used **PowerShell**.") in kinds
    assert ("code", "vssadmin delete shadows /all /quiet") in kinds
    for s in sents:
        assert doc.text[s.start:s.end] == s.text


def test_html_strips_scripts_styles_and_boilerplate(tmp_path):
    p = tmp_path / "r.html"
    p.write_text(HTML, encoding="utf-8")
    doc = read_document(p)
    assert doc.kind == "html"
    assert doc.title == "APT29 targets ministries"
    assert "spearphishing emails with a malicious attachment" in doc.text
    assert "powershell -enc SQBFAFgA" in doc.text
    assert "Credential dumping with Mimikatz" in doc.text
    assert "198.51.100[.]7" in doc.text
    assert "spearphishing-in-a-script" not in doc.text  # script content
    assert "color:red" not in doc.text  # style content
    assert "About us" not in doc.text  # navigation boilerplate


def test_html_is_sniffed_without_suffix():
    doc = document_from_bytes(HTML.encode(), "page")
    assert doc.kind == "html" and "Mimikatz" in doc.text


def test_pdf_text_layer(tmp_path):
    pdf = fpdf.FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "Threat report. The group used rundll32.exe to execute the loader DLL. "
                         "It established persistence with a registry run key.")
    pdf.add_page()
    pdf.multi_cell(0, 6, "Page two: the actor exfiltrated archives over the C2 channel.")
    p = tmp_path / "r.pdf"
    pdf.output(str(p))
    doc = read_document(p)
    assert doc.kind == "pdf"
    flat = " ".join(doc.text.split())
    assert "rundll32.exe to execute the loader DLL" in flat
    assert "exfiltrated archives over the C2 channel" in flat


def test_pdf_without_text_layer_is_a_clear_error(tmp_path):
    pdf = fpdf.FPDF()
    pdf.add_page()  # a page with no text at all, as a scan without OCR
    p = tmp_path / "scan.pdf"
    pdf.output(str(p))
    with pytest.raises(InputError, match="no text layer"):
        read_document(p)


def test_empty_file_is_a_clear_error(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    with pytest.raises(InputError) as exc:
        read_document(p)
    assert str(p) in str(exc.value) and "empty" in str(exc.value)
    (tmp_path / "blank.md").write_text("  \n\n\t\n")
    with pytest.raises(InputError, match="empty"):
        read_document(tmp_path / "blank.md")


def test_binary_file_is_a_clear_error(tmp_path):
    p = tmp_path / "sample.bin"
    p.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(InputError) as exc:
        read_document(p)
    assert str(p) in str(exc.value) and "binary" in str(exc.value)
    # control characters without NUL bytes (e.g. a compressed file) are refused too
    q = tmp_path / "blob.txt"
    q.write_bytes(bytes(b % 31 + 1 for b in range(4000)))
    with pytest.raises(InputError, match="binary"):
        read_document(q)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_document(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="directory"):
        read_document(tmp_path)


def test_utf16_and_cp1252_are_decoded():
    doc = document_from_bytes("The actor used Mimikatz — again.".encode("utf-16"), "u16.txt")
    assert "Mimikatz — again" in doc.text
    doc = document_from_bytes("caf\xe9 server compromised".encode("cp1252"), "cp.txt")
    assert "café server" in doc.text


def test_document_from_text_html():
    doc = document_from_text("<html><body><p>The actor used WMI to run commands remotely.</p></body></html>",
                             kind="html")
    assert doc.text.strip() == "The actor used WMI to run commands remotely."
