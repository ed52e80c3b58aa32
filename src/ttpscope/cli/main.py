"""The `ttpscope` command: thin shells over the library; each ``cli/<group>.py`` owns its Typer app and
this module only adds them."""

from __future__ import annotations

import sys

import typer

from ttpscope import __version__
from ttpscope.cli import analyze, case, defend, detect, extract, feeds, investigate, kb, rules, serve

app = typer.Typer(
    name="ttpscope",
    help="Evidence of adversary activity in, MITRE ATT&CK TTPs and defender answers out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module owns its Typer app (top-level commands, or a named group); the order is the help's order.
GROUPS = (investigate, case, kb, feeds, detect, rules, extract, analyze, defend, serve)
for group in GROUPS:
    app.add_typer(group.app)


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
