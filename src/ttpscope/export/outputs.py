"""Write a case's outputs to a folder: report.html, layer.json, bundle.json, case.json, observations.csv,
report.md. Each file is written to a temporary name and renamed into place, so a reader never sees half a
file and an interrupted run leaves the previous output whole."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import orjson

from ttpscope.errors import TtpscopeError, WriteError

if TYPE_CHECKING:
    from ttpscope.investigate.analysis import CaseAnalysis

FILES = {"html": "report.html", "layer": "layer.json", "stix": "bundle.json", "json": "case.json",
         "csv": "observations.csv", "markdown": "report.md"}
FORMATS = tuple(FILES)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
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


def render(fmt: str, analysis: CaseAnalysis, kb) -> bytes | str:
    """One output format's content."""
    if fmt == "html":
        from ttpscope.export.html import render_html

        return render_html(analysis, kb)
    if fmt == "layer":
        from ttpscope.export.case_layer import case_layer
        from ttpscope.export.navigator import validate_layer

        layer = case_layer(analysis.case, kb, analysis.evidence)
        problems = validate_layer(layer, kb)
        if problems:  # our own bug if it happens: never hand Navigator a layer it will refuse
            raise TtpscopeError(f"the case layer does not validate: {'; '.join(problems[:3])}")
        return orjson.dumps(layer, option=orjson.OPT_INDENT_2)
    if fmt == "stix":
        from ttpscope.export.stix import case_bundle

        return orjson.dumps(case_bundle(analysis, kb), option=orjson.OPT_INDENT_2)
    if fmt == "json":
        from ttpscope.export.tables import case_json

        return case_json(analysis)
    if fmt == "csv":
        from ttpscope.export.tables import observations_csv

        return observations_csv(analysis, kb)
    if fmt == "markdown":
        from ttpscope.export.tables import markdown_report

        return markdown_report(analysis, kb)
    raise TtpscopeError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")


def write_outputs(analysis: CaseAnalysis, kb, out_dir: str | Path, formats: Iterable[str] = FORMATS,
                  on_file: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Write the chosen formats into ``out_dir``; returns {format: path}."""
    out = Path(out_dir)
    written = {}
    formats = list(formats)
    unknown = [f for f in formats if f not in FILES]
    if unknown:
        raise TtpscopeError(f"unknown export format {unknown[0]!r}; one of {', '.join(FORMATS)}")
    for fmt in formats:
        if on_file:
            on_file(FILES.get(fmt, fmt))
        written[fmt] = write_atomic(out / FILES[fmt], render(fmt, analysis, kb))
    return written
