"""Checking uploaded evidence before anything is done with it: count, size, and what it is by its content.

What a file is, is judged by the same sniffer ``investigate`` routes with (:func:`ttpscope.ingest.sniff.sniff`),
so a zip named ``logs.json`` is taken for the zip it is, and an archive is only accepted when what it expands
to stays within the server's bounds (total size and ratio, counted while decompressing in small pieces).

The client's file name is only ever a label: evidence is written (when the library needs a path) into a
fresh folder under names the server makes up, so no request can name a path. Those folders live under
``TTPSCOPE_HOME/uploads`` and carry the server's pid, so a server started after a crash removes what a dead
one left behind (:func:`remove_stale`).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, UploadFile

from ttpscope.api.jobs import alive
from ttpscope.ingest.sniff import LOG, REPORT, SNIFF_BYTES, sniff

# extension -> (kind, leading bytes it must start with, or None)
ALLOWED: dict[str, tuple[str, bytes | None]] = {
    ".evtx": ("log", b"ElfFile\x00"),
    ".json": ("log", None), ".jsonl": ("log", None), ".ndjson": ("log", None),
    ".csv": ("log", None), ".log": ("log", None),
    ".parquet": ("log", b"PAR1"),
    ".zip": ("log", b"PK\x03\x04"), ".gz": ("log", b"\x1f\x8b"), ".tgz": ("log", b"\x1f\x8b"),
    ".tar": ("log", None),
    ".txt": ("report", None), ".md": ("report", None), ".markdown": ("report", None),
    ".html": ("report", None), ".htm": ("report", None),
    ".pdf": ("report", b"%PDF"),
}
ARCHIVES = ("zip", "gz", "tar")
MAX_EXPANDED_BYTES = 1024 * 1024 * 1024  # what one uploaded archive may expand to
MAX_RATIO = 200  # expanded : compressed; real logs compress 5-50 times, bombs thousands of times
MAX_MEMBERS = 10_000
_PIECE = 1024 * 1024


@dataclass
class Upload:
    """One accepted piece of evidence, in memory."""

    label: str  # the client's file name, for display only
    suffix: str
    kind: str  # log | report
    data: bytes
    format: str | None = None  # as the sniffer judged it


def uploads_root() -> Path:
    from ttpscope.paths import home

    root = home() / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _judge(label: str, data: bytes):
    """The sniffer's verdict on these bytes (it reads the head of a file, so only the head is written)."""
    name = "upload" + ("".join(Path(label.lower()).suffixes[-2:]) if label.lower().endswith((".tar.gz",))
                       else Path(label).suffix.lower())
    with tempfile.TemporaryDirectory(prefix=f"sniff-{os.getpid()}-", dir=uploads_root()) as tmp:
        path = Path(tmp) / name
        path.write_bytes(data[:SNIFF_BYTES])
        return sniff(path)


def expanded_size(data: bytes, fmt: str, limit: int) -> int:
    """How many bytes an archive expands to, counted piece by piece and stopped once over ``limit``.

    Members that cannot be read (corrupt, encrypted, an unsupported method) are left to the ingest, which
    reports them per member; they count for what could be read.
    """
    total = 0
    if fmt == "zip":
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, ValueError):
            return len(data)
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            return limit + 1
        for info in members:
            if info.is_dir():
                continue
            try:
                with archive.open(info) as fh:
                    while piece := fh.read(_PIECE):
                        total += len(piece)
                        if total > limit:
                            return total
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, OSError, EOFError,
                    ValueError):
                continue
        return total
    if fmt == "gz":  # gzip (and tar.gz): every member of the stream, without trusting its size trailer
        rest = data
        while rest:
            inflate = zlib.decompressobj(wbits=31)
            try:
                chunk = inflate.decompress(rest, _PIECE)
                while True:
                    total += len(chunk)
                    if total > limit:
                        return total
                    if inflate.eof or not inflate.unconsumed_tail:
                        break
                    chunk = inflate.decompress(inflate.unconsumed_tail, _PIECE)
                if not inflate.eof:
                    chunk = inflate.flush()
                    total += len(chunk)
            except zlib.error:
                return total
            rest = inflate.unused_data if inflate.eof else b""
            if rest and not rest.startswith(b"\x1f\x8b"):
                break
        return total
    return len(data)  # an uncompressed tar is its own size


def _bound(label: str, data: bytes, fmt: str) -> None:
    if fmt not in ("zip", "gz"):
        return
    limit = min(MAX_EXPANDED_BYTES, max(len(data), 64 * 1024) * MAX_RATIO)
    size = expanded_size(data, fmt, limit)
    if size > limit:
        raise HTTPException(413, detail=f"{label}: a {fmt} archive expanding to more than {limit // (1024 * 1024)} "
                                        f"MiB ({MAX_RATIO}x its size at most) is not accepted")


def _label(name: str | None, index: int) -> str:
    base = (name or f"upload-{index}").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable())[:120] or f"upload-{index}"


async def read_uploads(files: list[UploadFile], text: str | None, max_files: int, max_bytes: int,
                       max_text_chars: int) -> list[Upload]:
    """Accepted evidence from a multipart upload plus pasted report text; 413/415/422 with the reason."""
    files = [f for f in files or [] if f.filename or f.size]
    if len(files) > max_files:
        raise HTTPException(413, detail=f"{len(files)} files sent; at most {max_files} per upload")
    out: list[Upload] = []
    total = 0
    for i, upload in enumerate(files):
        label = _label(upload.filename, i)
        suffix = Path(label).suffix.lower()
        if suffix not in ALLOWED:
            raise HTTPException(415, detail=f"{label}: file type '{suffix or '(none)'}' is not accepted; send "
                                            f"one of {', '.join(sorted(ALLOWED))}")
        data = await upload.read(max_bytes + 1)
        total += len(data)
        if len(data) > max_bytes or total > max_bytes:
            raise HTTPException(413, detail=f"{label}: uploads are limited to {max_bytes // (1024 * 1024)} MiB "
                                            "in all")
        if not data:
            raise HTTPException(422, detail=f"{label}: the file is empty")
        kind, magic = ALLOWED[suffix]
        if magic is not None and not data.startswith(magic):
            raise HTTPException(415, detail=f"{label}: named {suffix} but its content is not {suffix[1:].upper()}")
        judged = _judge(label, data)
        if judged.kind not in (LOG, REPORT):
            raise HTTPException(415, detail=f"{label}: {judged.problem or 'not an event log or a report'}")
        if judged.format in ARCHIVES:  # by content, whatever the name says
            _bound(label, data, judged.format)
        kind = judged.kind  # routed by content later, as investigate does
        out.append(Upload(label, suffix, kind, data, judged.format))
    if text and text.strip():
        if len(text) > max_text_chars:
            raise HTTPException(413, detail=f"pasted text of {len(text):,} characters is over the "
                                            f"{max_text_chars:,}-character limit: upload the report as a file")
        out.append(Upload("pasted report.txt", ".txt", "report", text.encode("utf-8")))
    if not out:
        raise HTTPException(422, detail="nothing to investigate: attach evidence files (field 'file') or paste "
                                        "report text (field 'text')")
    return out


def stage(evidence: list[Upload]) -> tuple[Path, list[tuple[Path, str]]]:
    """Write evidence to a fresh private folder under :func:`uploads_root`; returns (folder, [(path, label)]).

    File names are made here: ``NN-<label stem reduced to letters, digits, - and _>.<checked suffix>``, so
    reports keep a recognisable name in the case while no client text can steer the path.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=uploads_root()))
    staged = []
    try:
        for i, ev in enumerate(evidence):
            double = ev.label.lower().endswith(".tar.gz")
            stem = re.sub(r"[^A-Za-z0-9_-]+", "-", ev.label[:-7] if double else Path(ev.label).stem).strip("-")[:60]
            path = folder / f"{i:02d}-{stem or 'evidence'}{'.tar.gz' if double else ev.suffix}"
            path.write_bytes(ev.data)
            staged.append((path, ev.label))
    except BaseException:  # a full disk: nothing half-staged stays behind
        remove(folder)
        raise
    return folder, staged


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def remove_stale(root: Path | None = None) -> list[Path]:
    """Remove upload folders whose server process is gone (killed, crashed); returns what was removed.

    Folders of live servers (this one included) are left alone: several servers may share a home.
    """
    root = root or uploads_root()
    removed = []
    for folder in root.iterdir():
        owner = folder.name.removeprefix("sniff-").split("-", 1)[0]
        if folder.is_dir() and owner.isdigit() and not alive(int(owner)):
            remove(folder)
            removed.append(folder)
    return removed
