"""The `ttpscope` command: thin shells over the library, one sub-command group per package."""

from __future__ import annotations

import sys

import typer

from ttpscope import __version__
from ttpscope.cli import analyze as analyze_cli
from ttpscope.cli import case as case_cli
from ttpscope.cli import defend as defend_cli
from ttpscope.cli import detect as detect_cli
from ttpscope.cli import extract as extract_cli
from ttpscope.cli import feeds as feeds_cli
from ttpscope.cli import investigate as investigate_cli
from ttpscope.cli import kb as kb_cli
from ttpscope.cli import rules as rules_cli
from ttpscope.cli import serve as serve_cli

app = typer.Typer(
    name="ttpscope",
    help="Evidence of adversary activity in, MITRE ATT&CK TTPs and defender answers out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# the main job and its workspace
app.command("investigate")(investigate_cli.investigate_cmd)
app.add_typer(case_cli.app, name="case")
app.command("export")(case_cli.export_one_cmd)
# know
app.add_typer(kb_cli.app, name="kb")
kb_cli.app.command("cve")(defend_cli.cve)
app.add_typer(feeds_cli.app, name="feeds")
# observe
app.command("detect")(detect_cli.detect_cmd)
app.add_typer(rules_cli.app, name="rules")
rules_cli.app.command("convert")(defend_cli.convert)
app.add_typer(extract_cli.app, name="extract")
# understand
for _name, _fn in (("lifecycle", analyze_cli.lifecycle_cmd), ("attribute", analyze_cli.attribute_cmd),
                   ("overlap", analyze_cli.overlap_cmd), ("anticipate", analyze_cli.anticipate_cmd)):
    app.command(_name)(_fn)
# defend
for _cmd in (defend_cli.coverage, defend_cli.mitigate, defend_cli.hunt, defend_cli.emulate):
    app.command()(_cmd)
app.add_typer(defend_cli.vulns_app, name="vulns")
# share
app.command(name="serve")(serve_cli.serve)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ttpscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """ttpscope: TTPs from event logs and threat reports, and what defenders ask of them."""


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    from ttpscope.errors import TtpscopeError

    try:
        app()
    except TtpscopeError as exc:
        print(f"ttpscope: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("ttpscope: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
