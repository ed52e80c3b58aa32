"""Evidence is sorted by content: real EVTX, Parquet, JSON lines, CSV logs; txt/md/html/pdf reports; the rest
is reported with the reason it was left out."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ttpscope.investigate.route import LOG, REPORT, UNKNOWN, classify, collect


@pytest.fixture(scope="module")
def evtx_file(shared_data):
    files = sorted((shared_data / "evtx" / "evtx-to-mitre-attack").rglob("*.evtx"))
    assert files, "no EVTX under the shared data"
    return files[0]


def _pdf(path):
    from pypdf import PdfWriter

    w = PdfWriter()
    w.add_blank_page(width=200, height=200)
    with path.open("wb") as fh:
        w.write(fh)
    return path


def test_each_format_by_content(tmp_path, evtx_file):
    files = {}
    files["evtx"] = evtx_file
    table = pa.table({"EventID": [1, 4688], "CommandLine": ["a", "b"]})
    pq.write_table(table, tmp_path / "events.bin")  # a misleading name: the content decides
    files["parquet"] = tmp_path / "events.bin"
    (tmp_path / "sysmon.log").write_text('{"EventID": 1, "Image": "C:\\\\x.exe"}\n{"EventID": 3}\n')
    files["jsonl"] = tmp_path / "sysmon.log"
    (tmp_path / "export.json").write_text('[\n  {"EventID": 1},\n  {"EventID": 3}\n]\n')
    files["json"] = tmp_path / "export.json"
    (tmp_path / "events.txt").write_text("TimeCreated,EventID,Computer,CommandLine\n"
                                         "2024-01-01T00:00:00Z,1,WS01,cmd.exe /c whoami\n"
                                         "2024-01-01T00:00:01Z,1,WS01,\"net view, all\"\n")
    files["csv"] = tmp_path / "events.txt"
    (tmp_path / "advisory").write_text("<!DOCTYPE html><html><body><p>The actor used PowerShell.</p></body></html>")
    files["html"] = tmp_path / "advisory"
    (tmp_path / "report.md").write_text("# Report\n\nThe actor used spearphishing, then PowerShell.\n")
    files["md"] = tmp_path / "report.md"
    (tmp_path / "notes").write_text("The intruder dumped LSASS memory. Then they moved to the DC.\n")
    files["txt"] = tmp_path / "notes"
    files["pdf"] = _pdf(tmp_path / "report.dat")
    expected_kind = {"evtx": LOG, "parquet": LOG, "jsonl": LOG, "json": LOG, "csv": LOG,
                     "html": REPORT, "md": REPORT, "txt": REPORT, "pdf": REPORT}
    for fmt, path in files.items():
        ev = classify(path)
        assert (ev.kind, ev.format) == (expected_kind[fmt], fmt), (path, ev)


def test_archives_of_logs_go_to_the_ingest(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.jsonl", '{"EventID": 1}\n')
    (tmp_path / "logs.zip").write_bytes(buf.getvalue())
    (tmp_path / "logs.jsonl.gz").write_bytes(gzip.compress(b'{"EventID": 1}\n'))
    with tarfile.open(tmp_path / "logs.tar", "w") as tar:
        tar.add(tmp_path / "logs.zip", arcname="inner.zip")
    for name, fmt in (("logs.zip", "zip"), ("logs.jsonl.gz", "gz"), ("logs.tar", "tar")):
        ev = classify(tmp_path / name)
        assert (ev.kind, ev.format) == (LOG, fmt), name


def test_unusable_files_say_why(tmp_path):
    cases = {
        "empty.jsonl": (b"", "empty"),
        "blob.bin": (bytes(range(256)) * 40, "binary"),
        "logs.7z": (b"7z\xbc\xaf\x27\x1c" + bytes(100), "archive"),
        "rule.yml": (b"title: x\nlogsource:\n  product: windows\ndetection:\n  sel:\n    a: 1\n  condition: sel\n",
                     "Sigma rule"),
        "layer.json": (b'{"name": "x", "versions": {"layer": "4.5"}, "techniques": []}', "Navigator layer"),
        "events.xml": (b'<?xml version="1.0"?><Events><Event/></Events>', "XML"),
    }
    for name, (data, why) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        ev = classify(path)
        assert ev.kind == UNKNOWN and why.lower() in ev.problem.lower(), (name, ev)


def test_collect_walks_folders_sorted_skips_hidden_and_reports_missing(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.md").write_text("The actor used PowerShell.")
    (tmp_path / "a.jsonl").write_text('{"EventID": 1}\n')
    (tmp_path / ".hidden.jsonl").write_text('{"EventID": 1}\n')
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.jsonl").write_text('{"EventID": 1}\n')
    got = collect([tmp_path, tmp_path / "a.jsonl", tmp_path / "missing.evtx"])
    assert [e.path.name for e in got] == ["a.jsonl", "z.md", "missing.evtx"]  # no duplicate of a.jsonl
    assert got[-1].kind == UNKNOWN and "no such file" in got[-1].problem
