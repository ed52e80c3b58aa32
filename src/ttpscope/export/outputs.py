"""The export registry, ``EXPORTS``: format name → :class:`Exporter` (file name, media type,
``render(analysis, kb)``, and for a large output ``stream(analysis, kb)``, its content in pieces), and writing a
case's outputs to a folder (streamed where the exporter can). Each file is written to a temporary
name and renamed into place, so a reader never sees half a file and an interrupted run leaves the previous
output whole. ``investigate``, ``ttpscope case export``/``export`` and the web app's
``/api/cases/{id}/export/{fmt}`` all go through this registry."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import orjson

from ttpscope.analyze.report import CaseAnalysis
from ttpscope.errors import TtpscopeError, WriteError
from ttpscope.export.html import render_html
from ttpscope.export.layers import case_layer, validate_layer
from ttpscope.export.stix import bundle_json_chunks
from ttpscope.export.tables import case_json, markdown_report, observations_csv
from ttpscope.kb import KnowledgeBase

Render = Callable[[CaseAnalysis, KnowledgeBase], "bytes | str"]
Stream = Callable[[CaseAnalysis, KnowledgeBase], Iterable[bytes]]


@dataclass(frozen=True)
class Exporter:
    """One output format: the file it is written to, its media type, and how it is rendered."""

    file_name: str
    media_type: str
    render: Render
    stream: Stream | None = None  # the same content in pieces, for writing a large file without a whole copy


def layer_json(analysis: CaseAnalysis, kb: KnowledgeBase) -> bytes:
    """The case's Navigator layer, checked before it is handed out."""
    layer = case_layer(analysis.case, kb, analysis.evidence)
    problems = validate_layer(layer, kb)
    if problems:  # our own bug if it happens: never hand Navigator a layer it will refuse
        raise TtpscopeError(f"the case layer does not validate: {'; '.join(problems[:3])}")
    return orjson.dumps(layer, option=orjson.OPT_INDENT_2)


def stix_json(analysis: CaseAnalysis, kb: KnowledgeBase) -> bytes:
    return b"".join(bundle_json_chunks(analysis, kb))


EXPORTS: dict[str, Exporter] = {
    "html": Exporter("report.html", "text/html; charset=utf-8", render_html),
    "layer": Exporter("layer.json", "application/json", layer_json),
    "stix": Exporter("bundle.json", "application/json", stix_json, bundle_json_chunks),
    "json": Exporter("case.json", "application/json", lambda analysis, kb: case_json(analysis)),
    "csv": Exporter("observations.csv", "text/csv", observations_csv),
    "markdown": Exporter("report.md", "text/markdown", markdown_report),
}
FILES = {name: e.file_name for name, e in EXPORTS.items()}
FORMATS = tuple(EXPORTS)


def exporter(fmt: str) -> Exporter:
    """The exporter of a format name, or a clear error naming the known ones."""
    try:
        return EXPORTS[fmt]
    except KeyError:
        raise TtpscopeError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes | str | Iterable[bytes]) -> Path:
    """Write ``data`` (or its pieces, one after the other) to ``path`` through a temporary file in the same
    folder and an atomic rename."""
    chunks = [data.encode("utf-8")] if isinstance(data, str) else [data] if isinstance(data, bytes) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):  # a full disk: one line; the previous file (if any) is still whole
            raise WriteError(f"{path}: cannot write ({exc.strerror or exc}); nothing half-written was left") from exc
        raise
    return path


def render(fmt: str, analysis: CaseAnalysis, kb: KnowledgeBase) -> bytes | str:
    """One output format's content."""
    return exporter(fmt).render(analysis, kb)


def write_outputs(analysis: CaseAnalysis, kb: KnowledgeBase, out_dir: str | Path, formats: Iterable[str] = FORMATS,
                  on_file: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Write the chosen formats into ``out_dir``; returns {format: path}."""
    out = Path(out_dir)
    chosen = [(fmt, exporter(fmt)) for fmt in formats]  # every name checked before anything is written
    written = {}
    for fmt, exp in chosen:
        if on_file:
            on_file(exp.file_name)
        content = exp.stream(analysis, kb) if exp.stream is not None else exp.render(analysis, kb)
        written[fmt] = write_atomic(out / exp.file_name, content)
    return written
