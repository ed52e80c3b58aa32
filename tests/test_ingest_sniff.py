"""The content sniffer: formats judged by bytes, the name only breaking ties."""

from __future__ import annotations

import gzip
import io
import tarfile

import orjson
import pytest

from ttpscope.ingest.sniff import LOG, REPORT, UNKNOWN, csv_delimiter, json_layout, sniff, sniff_bytes

LINES = b"".join(orjson.dumps({"EventID": i, "Channel": "c"}) + b"\n" for i in range(50))


@pytest.mark.parametrize("data, fmt", [
    (LINES, "jsonl"),
    (b"\xef\xbb\xbf" + LINES, "jsonl"),
    (b'{"EventID": 1, "Image": "cut\n' + LINES, "jsonl"),  # a damaged first line
    (b"garbage first line\n" + LINES, "jsonl"),
    (LINES[:300] + b"\x00" + LINES[300:], "jsonl"),  # one NUL byte is not binary
    (LINES.decode().encode("utf-16"), "jsonl"),
    (LINES.decode().encode("utf-16-le"), "jsonl"),  # UTF-16 without a byte order mark
    (orjson.dumps([{"a": 1}, {"a": 2}], option=orjson.OPT_INDENT_2), "json"),
    (b'{\n  "EventID": 1,\n  "Channel": "c"\n}\n', "json"),
    (b"EventID;Image;CommandLine\n1;a.exe;x\n2;b.exe;y\n", "csv"),
    (b"EventID\tImage\tCommandLine\n1\ta.exe\tx\n2\tb.exe\ty\n", "csv"),
    (gzip.compress(LINES), "gz"),
])
def test_log_formats_by_content(data, fmt):
    found = sniff_bytes(data, "file.bin", whole=True)
    assert (found.kind, found.format) == (LOG, fmt)


def test_tar_gz_by_content_not_name(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("e.jsonl")
        info.size = len(LINES)
        tf.addfile(info, io.BytesIO(LINES))
    path = tmp_path / "logs.gz"  # no .tar in the name
    path.write_bytes(buf.getvalue())
    assert sniff(path).format == "tar"


def test_binary_and_reports():
    assert sniff_bytes(bytes(range(256)) * 64, "x").kind == UNKNOWN
    assert sniff_bytes(b"\x00" * 5000 + b"abc", "x").kind == UNKNOWN  # mostly NULs: binary
    assert sniff_bytes(b"The actor used PowerShell.\n", "r.md").format == "md"
    assert sniff_bytes(b"<html><body>x</body></html>", "r").kind == REPORT


def test_json_layout_and_delimiter():
    assert json_layout('{"a": 1}\n{"a": 2}\n', whole=True) == "jsonl"
    assert json_layout('[\n  {"a": 1},\n  {"a": 2}\n]\n', whole=True) == "json"
    assert json_layout('{"a": NaN}\n{"a": 2}\n{"a": 3}\n', whole=True) == "jsonl"
    assert csv_delimiter("a;b;c\n1;2,5;3\n") == ";"
    assert csv_delimiter("a,b,c\n1,2,3\n") == ","
    assert csv_delimiter("just words\n") is None
