"""CLI polish: every command's help lists its own options and no type beside a flag; empty input is exit 2;
"did you mean" for knowledge-base names; library warnings as ttpscope lines; `extract FOLDER`; ids whole."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from ttpscope.cli.main import app
from ttpscope.errors import NotFoundError

ROOT = Path(__file__).resolve().parents[1]


def leaf_commands(cmd, path: tuple[str, ...] = ()):
    if getattr(cmd, "commands", None):  # a group (Typer carries its own copy of click: no isinstance)
        for name, sub in cmd.commands.items():
            if name == "run" and sub.hidden:  # `extract`'s default command: its help is `extract --help`
                yield path, sub
            else:
                yield from leaf_commands(sub, (*path, name))
    else:
        yield path, cmd


COMMANDS = list(leaf_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "ttpscope" for p, _ in COMMANDS])
def test_help_lists_the_command_options_without_flag_types(path, cmd):
    out = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert out.exit_code == 0, out.output
    for param in cmd.params:
        if getattr(param, "param_type_name", "") == "option" and not getattr(param, "hidden", False):
            assert max(param.opts, key=len) in out.output, (path, param.opts)
    assert "<bool>" not in out.output


def test_extract_help_is_about_extracting():
    out = CliRunner().invoke(app, ["extract", "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert out.exit_code == 0
    assert "--min-confidence" in out.output and "--highlight" in out.output and "extract train --help" in out.output
    assert re.search(r"Usage: ttpscope extract \[OPTIONS\]", out.output)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "ttpscope", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=cwd)


@pytest.mark.parametrize("command", [
    ("detect", "{empty}", "--rules", str(ROOT / "examples" / "rules")),
    ("investigate", "{empty}", "--rules", str(ROOT / "examples" / "rules"), "--no-save"),
    ("extract", "{empty}"),
])
def test_empty_input_is_exit_2_with_one_line(tmp_path, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run(*[str(empty) if a == "{empty}" else a for a in command], cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [x for x in proc.stderr.splitlines() if "error" in x.lower()]  # progress lines may come before
    assert len(errors) == 1 and errors[0].startswith("ttpscope: error:") and str(empty) in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,hint", [
    (("group", "Fancy Bare"), "did you mean 'Fancy Bear' (G0007 APT28)"),
    (("software", "Mimikats"), "did you mean 'Mimikatz' (S0002)"),
    (("technique", "OS Credental Dumping"), "did you mean 'OS Credential Dumping' (T1003)"),
    (("campaign", "Solarwind"), "did you mean 'SolarWinds Compromise' (C0024)"),
])
def test_kb_names_that_match_nothing_suggest_close_ones(args, hint):
    out = CliRunner().invoke(app, ["kb", *args, "--bundle", "embedded"])
    assert isinstance(out.exception, NotFoundError) and out.exception.exit_code == 2  # main() makes it exit 2
    assert hint in str(out.exception)


def test_kb_no_suggestion_when_nothing_is_close():
    out = CliRunner().invoke(app, ["kb", "group", "qqqqzzzz", "--bundle", "embedded"])
    assert isinstance(out.exception, NotFoundError) and "did you mean" not in str(out.exception)


def test_extract_reads_folders_and_turns_pdf_library_warnings_into_notes(tmp_path):
    import fpdf

    folder = tmp_path / "reports"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# A\n\nThe actor ran PowerShell to download a payload from a remote server.\n")
    (folder / ".hidden.txt").write_text("The actor used Mimikatz.\n")
    (folder / "notes.bin").write_bytes(b"\x00\x01")
    pdf = fpdf.FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "The group used rundll32.exe to execute the loader DLL and dumped LSASS memory.")
    data = re.sub(rb"startxref\n\d+", b"startxref\n9", bytes(pdf.output()))  # pypdf warns, then recovers
    (folder / "sub" / "b.pdf").write_bytes(data)
    proc = run("extract", str(folder), "--json", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = orjson.loads(proc.stdout)
    assert [Path(r["document"]["name"]).name for r in out["reports"]] == ["a.md", "b.pdf"]
    assert out["read"] == 2 and out["accepted"] == 2
    lines = proc.stderr.splitlines()
    assert lines and all(x.startswith("note: ") for x in lines), proc.stderr  # nothing printed raw by pypdf
    assert any("b.pdf: pypdf: incorrect startxref pointer" in x for x in lines)


def test_ids_in_tables_never_wrap(monkeypatch):
    from rich.console import Console

    from ttpscope.cli import output

    narrow = Console(width=60, record=True, file=open(os.devnull, "w"), color_system=None)
    monkeypatch.setattr(output, "console", narrow)
    output.table("t", ["id", "time", "description"],
                 [("T1003.001", "2024-03-05 08:12:01", "word " * 40), ("3df99a149d1d", "2024-03-05T09:30:00Z", "x")])
    text = narrow.export_text()
    for token in ("T1003.001", "3df99a149d1d", "2024-03-05 08:12:01", "2024-03-05T09:30:00Z"):
        assert token in text, text
