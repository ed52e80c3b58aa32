"""Checking uploaded evidence before anything is done with it: count, size, type (by name and content).

The client's file name is only ever a label: evidence is written (when the library needs a path) into a
fresh temporary folder under names the server makes up, so no request can name a path.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, UploadFile

# extension -> (kind, leading bytes it must start with, or None)
ALLOWED: dict[str, tuple[str, bytes | None]] = {
    ".evtx": ("log", b"ElfFile\x00"),
    ".json": ("log", None), ".jsonl": ("log", None), ".ndjson": ("log", None),
    ".csv": ("log", None), ".log": ("log", None),
    ".parquet": ("log", b"PAR1"),
    ".txt": ("report", None), ".md": ("report", None), ".markdown": ("report", None),
    ".html": ("report", None), ".htm": ("report", None),
    ".pdf": ("report", b"%PDF"),
}
_BINARY = {".evtx", ".parquet", ".pdf"}


@dataclass
class Upload:
    """One accepted piece of evidence, in memory."""

    label: str  # the client's file name, for display only
    suffix: str
    kind: str  # log | report
    data: bytes


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
        if suffix not in _BINARY and b"\x00" in data[:8192]:
            raise HTTPException(415, detail=f"{label}: named {suffix} but the content is binary, not text")
        out.append(Upload(label, suffix, kind, data))
    if text and text.strip():
        if len(text) > max_text_chars:
            raise HTTPException(413, detail=f"pasted text of {len(text)} characters is over the "
                                            f"{max_text_chars} limit")
        out.append(Upload("pasted report.txt", ".txt", "report", text.encode("utf-8")))
    if not out:
        raise HTTPException(422, detail="nothing to investigate: attach evidence files (field 'file') or paste "
                                        "report text (field 'text')")
    return out


def stage(evidence: list[Upload]) -> tuple[Path, list[tuple[Path, str]]]:
    """Write evidence to a fresh private temp folder; returns (folder, [(path, label)]).

    File names are made here: ``NN-<label stem reduced to letters, digits, - and _>.<checked suffix>``, so
    reports keep a recognisable name in the case while no client text can steer the path.
    """
    folder = Path(tempfile.mkdtemp(prefix="ttpscope-upload-"))
    staged = []
    for i, ev in enumerate(evidence):
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(ev.label).stem).strip("-")[:60] or "evidence"
        path = folder / f"{i:02d}-{stem}{ev.suffix}"
        path.write_bytes(ev.data)
        staged.append((path, ev.label))
    return folder, staged


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
