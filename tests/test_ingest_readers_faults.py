"""The ingest under bad input (issue 15): each case builds the input, reads it, and asserts a clean per-record
rejection with its reason, the good records kept, read = accepted + rejected by record, bounded memory for
the bombs (RSS measured in a child process) and no hang (every case under a hard timeout)."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ttpscope.ingest import EventReader, read_table
from ttpscope.ingest.sniff import sniff

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
FIREWALL = "evtx/evtx-to-mitre-attack/TA0005-Defense Evasion/T1562.004-Impair Defenses-Disable or Modify System Firewall/" \
           "ID4688-5447-4950-Firewall disabled (command).evtx"  # 998 records in 43 chunks
GOOD = b"".join(orjson.dumps({"EventID": 1, "Channel": "c", "Image": f"p{i}.exe"}) + b"\n" for i in range(1000))


def read(paths, **kw):
    table, reader = read_table(paths, **kw)
    for s in reader.stats:  # conservation and a reason for every rejection, whatever the case
        assert s.read == s.accepted + s.rejected, s
        assert sum(s.reasons.values()) == s.rejected, s
    return table.to_pylist(), reader


def totals(reader) -> tuple[int, int, int]:
    t = reader.totals()
    return t["read"], t["accepted"], t["rejected"]


def peak_rss_mb(code: str, *args: str) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter; its peak RSS in MB and what it printed."""
    # VmHWM, not ru_maxrss: Linux carries the parent's peak across exec into ru_maxrss
    prog = code + ("\nimport re\nprint('RSS', int(re.search(r'VmHWM:\\s+(\\d+)', "
                   "open('/proc/self/status').read()).group(1)) / 1024)")
    out = subprocess.run([sys.executable, "-c", prog, *args], capture_output=True, text=True, timeout=100,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    rss = float(out.stdout.rsplit("RSS", 1)[1])
    return rss, out.stdout


READ_AND_PRINT = """
import sys, json
from ttpscope.ingest import EventReader
r = EventReader(sys.argv[1:])
rows = sum(b.num_rows for b in r.batches())
print(json.dumps({"rows": rows, **r.totals(), "reasons": [dict(s.reasons) for s in r.stats]}))
"""


def _result(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-2])


# ------------------------------------------------------------------------------- 1: bombs, unbounded lines
def _zeros_zip(path: Path, name: str, size: int, head: bytes = b"") -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w", force_zip64=True) as fh:
            fh.write(head)
            block = b"\x00" * (1 << 20)
            for _ in range(size >> 20):
                fh.write(block)


def test_evtx_member_bomb_is_bounded(tmp_path, shared_data):
    """An EVTX member that expands 1000-fold is spooled to disk, stopped at the expansion limit, counted."""
    path = tmp_path / "logs.json"  # named like JSON: the content (a zip) decides
    head = (shared_data / FIREWALL).read_bytes()[:4096 + 65536]
    _zeros_zip(path, "big.evtx", 1 << 30, head)
    assert path.stat().st_size < 8 << 20
    rss, out = peak_rss_mb(READ_AND_PRINT, str(path))
    res = _result(out)
    assert rss < 400, rss
    assert res["accepted"] == 36 and res["rejected"] >= 1  # the records of the first chunk kept
    assert any("decompression bomb" in k for r in res["reasons"] for k in r)


def test_jsonl_member_without_newlines_is_bounded(tmp_path):
    """A JSON-lines member of 1 GiB without a newline: read in bounded blocks, the over-long line rejected,
    the member's next lines read; linear time (the old reader copied the buffer quadratically)."""
    path = tmp_path / "logs.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("events.jsonl", "w", force_zip64=True) as fh:
            fh.write(GOOD[:200])
            fh.write(b"\n" + b'{"a": "')
            for _ in range(40):  # 40 MiB of hex: compresses only ~2x, so no bomb, just one long line
                fh.write(os.urandom(1 << 19).hex().encode())
            fh.write(b'"}\n' + GOOD)
    rss, out = peak_rss_mb(READ_AND_PRINT, str(path))
    res = _result(out)
    assert rss < 400, rss
    assert res["accepted"] >= 1000 and any("line longer than" in k for r in res["reasons"] for k in r)


def test_csv_without_newlines_is_bounded(tmp_path):
    path = tmp_path / "rows.csv.gz"
    raw = b"EventID,Image,CommandLine\n1,a.exe,x\n" + b"2,b.exe," + os.urandom(15 << 20).hex().encode() + \
        b"\n3,c.exe,y\n"
    path.write_bytes(gzip.compress(raw, compresslevel=1))
    rss, out = peak_rss_mb(READ_AND_PRINT, str(path))
    res = _result(out)
    assert rss < 400, rss
    assert (res["accepted"], res["rejected"]) == (2, 1)


def test_zip_of_many_bombs_is_bounded_as_a_whole(tmp_path):
    """Many members each within their own limit still stop at the archive's limit."""
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(40):
            zf.writestr(f"m{i}.jsonl", GOOD[:100] + b"\n" + b" " * (60 << 20) + b"\n")
    rss, out = peak_rss_mb(READ_AND_PRINT, str(path))
    assert rss < 400
    assert any("decompression bomb" in k for r in _result(out)["reasons"] for k in r)


# ------------------------------------------------------------------------------- 2: EVTX inside tar
@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_tar_holding_evtx(tmp_path, shared_data, mode):
    data = (shared_data / FIREWALL).read_bytes()
    path = tmp_path / ("logs.tar" if mode == "w" else "logs.tgz")
    with tarfile.open(path, mode) as tf:
        info = tarfile.TarInfo("x/firewall.evtx")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("x/events.log")  # JSON lines under a name that says nothing
        info.size = len(GOOD)
        tf.addfile(info, io.BytesIO(GOOD))
    recs, reader = read(path)
    assert totals(reader) == (1998, 1998, 0)
    assert {s.format for s in reader.stats} == {"evtx", "jsonl"}


# ------------------------------------------------------------------------------- 4, 22: the first line
@pytest.mark.parametrize("first", [b'{"EventID": 1, "Image": "cut', b'{"a": "\xff\xfe"}', b'{"a": NaN}',
                                   b'{"a": "\\ud800"}', b'{"a": 18446744073709551616, "b": [1e999999]}',
                                   b"not json"])
def test_bad_first_json_line_costs_only_itself(tmp_path, first):
    path = tmp_path / "events.json"
    path.write_bytes(first + b"\n" + GOOD)
    recs, reader = read(path)
    read_n, accepted, rejected = totals(reader)
    assert accepted >= 1000 and read_n == 1001 and rejected <= 1
    if rejected:
        assert reader.stats[0].samples[0][0] == 1


def test_utf8_bom_keeps_the_first_record(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD)
    recs, reader = read(path)
    assert totals(reader) == (1000, 1000, 0) and recs[0]["Image"] == "p0.exe"


def test_utf16_json_lines(tmp_path):
    path = tmp_path / "utf16.jsonl"
    path.write_bytes(GOOD.decode().encode("utf-16"))
    recs, reader = read(path)
    assert totals(reader) == (1000, 1000, 0)


# ------------------------------------------------------------------------------- 5, 12: compressed data
def test_corrupt_member_of_three_costs_only_itself(tmp_path, shared_data):
    path = tmp_path / "three.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.jsonl", GOOD)
        zf.writestr("b.jsonl", GOOD.replace(b"p", b"q"))
        zf.writestr("c.evtx", (shared_data / FIREWALL).read_bytes())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("b.jsonl")
    start = info.header_offset + 30 + len(info.filename) + 200
    data[start:start + 64] = b"\xa5" * 64  # inside b's deflate stream
    path.write_bytes(bytes(data))
    recs, reader = read(path)
    by = {s.source.rsplit("!", 1)[-1]: s for s in reader.stats}
    assert by["a.jsonl"].accepted == 1000 and by["c.evtx"].accepted == 998
    lost = [p for s in reader.stats if s.rejected for _, p in s.samples]
    assert lost and all("b.jsonl" in s.source for s in reader.stats if s.rejected and "!" in s.source) \
        or any("b.jsonl" in p for p in lost)


def test_zip_member_with_an_empty_name(tmp_path):
    """A damaged central directory can leave a member's name empty (found by bench/fuzz_campaign.py:
    zipfile's own is_dir() then raised IndexError): the member is read as unnamed, its neighbour too."""
    path = tmp_path / "unnamed.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.jsonl", GOOD)
        zf.writestr("b.jsonl", GOOD)
    data = path.read_bytes()
    cd = data.rindex(b"PK\x01\x02")  # the last central-directory entry: b.jsonl, its name made empty
    name_len = int.from_bytes(data[cd + 28:cd + 30], "little")
    data = data[:cd + 28] + b"\x00\x00" + data[cd + 30:cd + 46] + data[cd + 46 + name_len:]
    eocd = data.rindex(b"PK\x05\x06")
    cd_size = int.from_bytes(data[eocd + 12:eocd + 16], "little") - name_len
    path.write_bytes(data[:eocd + 12] + cd_size.to_bytes(4, "little") + data[eocd + 16:])
    with zipfile.ZipFile(path) as zf:
        assert "" in zf.namelist()
    recs, reader = read(path)
    assert reader.totals()["accepted"] >= 1000 and len(recs) == reader.totals()["accepted"]


def test_encrypted_and_deflate64_members(tmp_path):
    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("enc.jsonl", GOOD)
        zf.writestr("d64.jsonl", GOOD)
        zf.writestr("ok.jsonl", GOOD)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        enc, d64 = zf.getinfo("enc.jsonl"), zf.getinfo("d64.jsonl")
    for info, patch in ((enc, None), (d64, 9)):
        for off in (info.header_offset, data.rfind(b"PK\x01\x02", 0, len(data)) if False else None):
            pass
    # set the encryption flag / the compression method (9 = deflate64) in both the local and central headers
    cd = data.find(b"PK\x01\x02")
    while cd >= 0:
        name_len = int.from_bytes(data[cd + 28:cd + 30], "little")
        name = bytes(data[cd + 46:cd + 46 + name_len])
        local = int.from_bytes(data[cd + 42:cd + 46], "little")
        if name == b"enc.jsonl":
            data[cd + 8] |= 1
            data[local + 6] |= 1
        elif name == b"d64.jsonl":
            data[cd + 10:cd + 12] = (9).to_bytes(2, "little")
            data[local + 8:local + 10] = (9).to_bytes(2, "little")
        cd = data.find(b"PK\x01\x02", cd + 4)
    path.write_bytes(bytes(data))
    recs, reader = read(path)
    by = {s.source.rsplit("!", 1)[-1]: s for s in reader.stats}
    assert by["ok.jsonl"].accepted == 1000
    problems = " ".join(p for s in reader.stats for _, p in s.samples)
    assert "enc.jsonl: member not read: encrypted" in problems and "d64.jsonl: member not read" in problems


def test_truncated_jsonl_gz_keeps_the_records_before_the_cut(tmp_path):
    path = tmp_path / "events.jsonl.gz"
    full = gzip.compress(GOOD * 5)
    path.write_bytes(full[: len(full) * 3 // 4])
    recs, reader = read(path)
    read_n, accepted, rejected = totals(reader)
    assert accepted > 3000 and rejected == 1
    assert "truncated" in reader.stats[0].samples[0][1]


def test_corrupt_gzip_and_xz(tmp_path):
    bad = bytearray(gzip.compress(GOOD))
    bad[len(bad) // 2:len(bad) // 2 + 16] = b"\x00" * 16
    (tmp_path / "bad.jsonl.gz").write_bytes(bytes(bad))
    (tmp_path / "x.jsonl.xz").write_bytes(b"\xfd7zXZ\x00\x00" + b"garbage" * 10)
    recs, reader = read([tmp_path / "bad.jsonl.gz", tmp_path / "x.jsonl.xz"])
    (gz,) = [s for s in reader.stats if s.source.endswith(".gz")]
    assert gz.rejected >= 1 and gz.read <= 1001 and gz.accepted > 0
    (xz,) = [s for s in reader.stats if s.source.endswith(".xz")]
    assert xz.rejected == 1 and "not read" in xz.samples[0][1]


# ------------------------------------------------------------------------------- 6: Parquet
def test_damaged_parquet_row_group_costs_only_its_rows(tmp_path):
    table = pa.table({"EventID": [str(i % 5) for i in range(1000)], "Image": [f"p{i}.exe" for i in range(1000)]})
    path = tmp_path / "events.parquet"
    pq.write_table(table, path, row_group_size=200, compression="snappy")
    meta = pq.ParquetFile(path).metadata
    col = meta.row_group(2).column(1)
    start = col.data_page_offset
    data = bytearray(path.read_bytes())
    data[start + 20:start + 200] = b"\xff" * 180  # inside the third row group's Image pages
    path.write_bytes(bytes(data))
    recs, reader = read(path)
    (stats,) = reader.stats
    assert stats.accepted == 800 and stats.read == 1000
    assert "corrupt Parquet row group 2" in stats.samples[0][1]


def test_truncated_parquet(tmp_path):
    table = pa.table({"EventID": ["1"] * 100})
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    path.write_bytes(path.read_bytes()[:-20])
    recs, reader = read(path)
    assert totals(reader) == (1, 0, 1)


# ------------------------------------------------------------------------------- 9: nesting
def test_deep_nesting_costs_only_its_record(tmp_path):
    lines = [b'{"a":' * 990 + b"1" + b"}" * 990,  # deeper than Python's recursion limit
             b'{"x":' + b"[" * 300 + b"]" * 300 + b"}",  # deeper than orjson can render
             b'{"x":' + b"[" * 2000 + b"]" * 2000 + b"}",  # deeper than orjson parses
             b'{"Event": {"System": [1, 2, {"EventID": 4}], "EventData": {"Image": "z.exe"}}}',
             b'{"Event": {"System": {"Provider": {"#attributes": [1]}, "EventID": 4}, "EventData": [1, {"a": 2}]}}',
             b'{"Event": "text", "EventID": 3}']
    path = tmp_path / "deep.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n" + GOOD)
    recs, reader = read(path)
    read_n, accepted, rejected = totals(reader)
    assert read_n == 1006 and accepted >= 1003 and rejected <= 2
    deep = next(r for r in recs if any(k.startswith("a.a.a") for k in r))
    assert deep["a" + ".a" * 989] == "1"
    system_list = next(r for r in recs if r.get("Event.EventData.Image") == "z.exe")  # not the EVTX shape
    assert system_list["Event.System"] == '[1,2,{"EventID":4}]'


# ------------------------------------------------------------------------------- 10: NUL bytes
def test_a_nul_byte_does_not_make_a_log_binary(tmp_path):
    path = tmp_path / "events.log"
    path.write_bytes(GOOD[:5000] + b"\x00" + GOOD[5000:])
    assert sniff(path).format == "jsonl"
    recs, reader = read(path)
    read_n, accepted, rejected = totals(reader)
    assert read_n == 1000 and accepted >= 999


# ------------------------------------------------------------------------------- 11: CSV
def test_csv_unbalanced_quote_costs_one_row(tmp_path):
    rows = ["EventID,Image,CommandLine"] + [f'1,p{i}.exe,"run {i}, now"' for i in range(1000)]
    rows[500] = '1,"p499.exe,run 499 now'  # the quote never closes
    path = tmp_path / "events.csv"
    path.write_text("\n".join(rows) + "\n")
    recs, reader = read(path)
    (stats,) = reader.stats
    assert (stats.read, stats.accepted, stats.rejected) == (1000, 999, 1)
    assert stats.samples[0][0] == 501 and "quote" in stats.samples[0][1]
    assert recs[-1]["CommandLine"] == "run 999, now"


def test_csv_quoted_newlines_are_one_record(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text('EventID,ScriptBlockText\n1,"line one\nline two, ""quoted""\nline three"\n2,plain\n')
    recs, reader = read(path)
    assert totals(reader) == (2, 2, 0)
    assert recs[0]["ScriptBlockText"] == 'line one\nline two, "quoted"\nline three'


@pytest.mark.parametrize("delim", [";", "\t", "|"])
def test_csv_delimiters(tmp_path, delim):
    path = tmp_path / "events.csv"
    path.write_text("\n".join(delim.join(r) for r in [["EventID", "Image", "CommandLine"],
                                                     ["1", "a.exe", "x, y"], ["4688", "b.exe", "z"]]) + "\n")
    recs, reader = read(path)
    assert totals(reader) == (2, 2, 0)
    assert recs[0]["CommandLine"] == "x, y" and recs[1]["EventID"] == "4688"


# ------------------------------------------------------------------------------- 13: EVTX loss by record
def _damaged(shared_data, tmp_path, how) -> tuple[object, int]:
    data = bytearray((shared_data / FIREWALL).read_bytes())
    how(data)
    path = tmp_path / "damaged.evtx"
    path.write_bytes(bytes(data))
    recs, reader = read(path)
    (stats,) = reader.stats
    return stats, len(recs)


CHUNK = 65536


@pytest.mark.parametrize("case", ["bad chunk magic", "zeroed chunk", "zeroed records", "truncated",
                                  "cut mid-chunk", "header claims 65535 chunks", "last chunk zeroed"])
def test_evtx_loss_is_counted_by_record(shared_data, tmp_path, case):
    def chunk(i):
        return 4096 + i * CHUNK

    how = {
        "bad chunk magic": lambda d: d.__setitem__(slice(chunk(5), chunk(5) + 8), b"XXXXXXXX"),
        "zeroed chunk": lambda d: d.__setitem__(slice(chunk(7), chunk(8)), b"\x00" * CHUNK),
        "zeroed records": lambda d: d.__setitem__(slice(chunk(3) + 512, chunk(3) + 20000), b"\x00" * 19488),
        "truncated": lambda d: d.__delitem__(slice(chunk(30), None)),
        "cut mid-chunk": lambda d: d.__delitem__(slice(chunk(30) + 30000, None)),
        "header claims 65535 chunks": lambda d: d.__setitem__(slice(42, 44), b"\xff\xff"),
        "last chunk zeroed": lambda d: d.__setitem__(slice(chunk(42), chunk(43)), b"\x00" * CHUNK),
    }[case]
    stats, rows = _damaged(shared_data, tmp_path, how)
    assert stats.accepted == rows
    if case == "header claims 65535 chunks":  # a header that fails its checksum is not believed
        assert (stats.read, stats.accepted) == (998, 998)
        return
    lost = 998 - stats.accepted
    assert lost > 0
    assert stats.read == 998, (case, stats.read, stats.reasons)  # every lost record counted, not chunks


WSMAN = "evtx/evtx-to-mitre-attack/TA0008-Lateral Movement/T1021.006-Windows Remote Management/" \
        "ID4656-WS Management listener enumeration.evtx"  # 29 records in one chunk


@pytest.mark.timeout(60)
def test_evtx_parser_looping_on_a_damaged_chunk_is_stopped(shared_data, tmp_path):
    """The fuzz campaign's first hang (seed 17001): one bit flipped in a record (byte 5877, 0 -> 1) sends
    evtx 0.14 into an endless loop that holds the GIL, so no signal could stop it in this process. The
    damaged file is parsed in a child that is stopped; the intact file beside it keeps all its records."""
    data = bytearray((shared_data / WSMAN).read_bytes())
    assert data[5877] == 0
    data[5877] = 1
    (tmp_path / "looping.evtx").write_bytes(data)
    (tmp_path / "intact.evtx").write_bytes((shared_data / WSMAN).read_bytes())
    rows, reader = read([tmp_path / "looping.evtx", tmp_path / "intact.evtx"])
    by = {Path(s.source).name: s for s in reader.stats}
    assert (by["intact.evtx"].read, by["intact.evtx"].accepted) == (29, 29) and len(rows) == 29
    looping = by["looping.evtx"]
    assert looping.read == 29 and looping.rejected == 29 - looping.accepted > 0
    assert any("EVTX parser stopped: no record for 5 s" in why for _, why in looping.samples), looping.samples


@pytest.mark.timeout(60)
def test_evtx_parser_dying_on_a_damaged_file_costs_only_that_file(shared_data, tmp_path, monkeypatch):
    """A damaged file's parser that dies (here: SIGKILL in the child, as a crash in native code or the OOM
    killer would end it) is said as such; the process and the other file's records go on."""
    import signal

    from ttpscope.ingest import readers

    items, parent = readers._evtx_items, os.getpid()

    def crashing(path, threads):
        for n, item in enumerate(items(path, threads)):
            if n == 3 and os.getpid() != parent:  # only in the guarded parser's child
                os.kill(os.getpid(), signal.SIGKILL)
            yield item

    monkeypatch.setattr(readers, "_evtx_items", crashing)
    data = bytearray((shared_data / FIREWALL).read_bytes())
    data[4096 + 5 * CHUNK: 4096 + 5 * CHUNK + 8] = b"XXXXXXXX"  # chunk 5 damaged: parsed in a child
    (tmp_path / "damaged.evtx").write_bytes(data)
    (tmp_path / "intact.evtx").write_bytes((shared_data / WSMAN).read_bytes())
    rows, reader = read([tmp_path / "damaged.evtx", tmp_path / "intact.evtx"])
    by = {Path(s.source).name: s for s in reader.stats}
    assert by["intact.evtx"].accepted == 29
    damaged = by["damaged.evtx"]
    assert damaged.read == 998 and 0 < damaged.accepted < 998
    assert any("EVTX parser died (signal 9)" in why for _, why in damaged.samples), damaged.samples


@pytest.mark.parametrize("where", ["EventRecordID", "record header"])
def test_evtx_record_id_beyond_int64_costs_at_most_its_record(shared_data, tmp_path, monkeypatch, where):
    """Fuzz seed 18000: a damaged record whose EventRecordID reads 2**64 - 1 crashed the batch (Arrow's int64
    record column overflowed). The record keeps the parser's number instead; a parser number out of range
    rejects only that record."""
    from ttpscope.ingest import readers

    items = readers._evtx_items

    def damaged(path, threads):
        for kind, *rest in items(path, threads):
            if kind == "record" and rest[0] == 4:
                event = orjson.loads(rest[1])
                if where == "EventRecordID":
                    event["Event"]["System"]["EventRecordID"] = 2 ** 64 - 1
                else:
                    rest[0] = 2 ** 64 - 1
                rest[1] = orjson.dumps(event, option=orjson.OPT_PASSTHROUGH_BIG_INT).decode() \
                    if hasattr(orjson, "OPT_PASSTHROUGH_BIG_INT") else json.dumps(event)
            yield (kind, *rest)

    monkeypatch.setattr(readers, "_evtx_items", damaged)
    (tmp_path / "a.evtx").write_bytes((shared_data / WSMAN).read_bytes())
    rows, reader = read([tmp_path / "a.evtx"])
    stats = reader.stats[0]
    if where == "EventRecordID":
        assert (stats.read, stats.accepted, len(rows)) == (29, 29, 29)
        assert sorted(r["EventRecordID"] for r in rows if str(r["EventRecordID"]) == str(2 ** 64 - 1))
    else:
        assert (stats.accepted, stats.rejected) == (28, 1) and len(rows) == 28
        assert any("out of range" in why for _, why in stats.samples)


# ------------------------------------------------------------------------------- formats by content
def test_members_and_files_are_sniffed_by_content(tmp_path, shared_data):
    evtx = (shared_data / FIREWALL).read_bytes()
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("logs/security.bin", evtx)  # EVTX without its ending
        zf.writestr("logs/events.txt", GOOD)  # JSON lines as .txt
        zf.writestr("README.md", b"# notes\nnot events\n")  # a report: not a source, not an error
    (tmp_path / "sysmon.log").write_bytes(GOOD)
    recs, reader = read([path, tmp_path / "sysmon.log"])
    by = {s.source.rsplit("!", 1)[-1]: s for s in reader.stats}
    assert by["logs/security.bin"].format == "evtx" and by["logs/security.bin"].accepted == 998
    assert by["logs/events.txt"].format == "jsonl" and by["logs/events.txt"].accepted == 1000
    assert by[str(tmp_path / "sysmon.log")].accepted == 1000
    assert not any("README" in s for s in by)


def test_explicit_formats(tmp_path):
    path = tmp_path / "x.dat"
    path.write_bytes(b"EventID;Image\n1;a.exe\n")
    for reader in (EventReader([(path, "csv")]), EventReader([path], formats={path: "csv"})):
        rows = [r for b in reader.batches() for r in b.table.to_pylist()]
        assert reader.stats[0].format == "csv" and rows[0]["Image"] == "a.exe"
    reader = EventReader([(path, "jsonl")])  # a wrong explicit format: per-line rejections, no crash
    list(reader.batches())
    assert reader.totals()["rejected"] == 2
