"""Shared CLI plumbing: JSON or Rich-table output, one-line errors, the common options (KB, CVE mappings)
and loaders that report what they could not read."""

from __future__ import annotations

import re
import sys
from typing import Any, Iterable

import orjson
import typer
from rich.console import Console
from rich.table import Table

def _no_metavar_on_flags() -> None:
    """Typer's Rich help prints a '<bool>' type beside every flag (--json, --help): a flag takes no value."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_ttpscope", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._ttpscope = True
    TyperOption.display_type_rich = display_type_rich


_no_metavar_on_flags()
console = Console()
err_console = Console(stderr=True)

DomainOpt = typer.Option("enterprise", "--domain", "-d", help="ATT&CK domain: enterprise, mobile or ics.")
BundleOpt = typer.Option(None, "--bundle", help="ATT&CK bundle: 'embedded', a path, an http(s) URL or "
                         "taxii+http(s)://server/api/collections/<id>/ (default: newest from 'kb update', "
                         "else the embedded v15.1).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")
FeedsOpt = typer.Option(True, "--feeds/--no-feeds", help="Lay the workspace's feed knowledge (groups, campaigns, "
                        "software from 'ttpscope feeds') over ATT&CK; --no-feeds uses ATT&CK alone.")
TargetOpt = typer.Option("splunk", "--target", "-t", help="splunk | elasticsearch (Lucene) | esql | kusto (KQL).")
PipelineOpt = typer.Option("default", "--pipeline", help="pySigma processing pipeline: 'default' for the "
                           "target, 'none', an installed pipeline name, or a pipeline YAML file.")


def print_json(data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str))
    sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


# A cell that is one token (an ATT&CK or case id, a level, a count) or a timestamp: never broken over lines.
_UNBREAKABLE = re.compile(r"[\w.:/+#@-]{1,40}|\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?Z?")


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]], caption: str | None = None) -> None:
    t = Table(title=title, caption=caption, show_lines=False, header_style="bold")
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    for i, col in enumerate(columns):
        values = [row[i] for row in cells if i < len(row) and row[i]]
        whole = bool(values) and all(_UNBREAKABLE.fullmatch(v) for v in values)
        t.add_column(col, overflow="fold", no_wrap=whole, min_width=max(map(len, values)) if whole else None)
    for row in cells:
        t.add_row(*row)
    console.print(t)


def note(text: str) -> None:
    """A remark for the human reader, on stderr so that --json output stays clean."""
    err_console.print(f"[yellow]note:[/yellow] {text}", soft_wrap=True)  # one line, whatever the width


def load(domain: str, bundle: str | None, feeds: bool = False):
    """The knowledge base; with ``feeds``, the workspace's feed knowledge laid over it."""
    from ttpscope.kb import load_kb

    kb = load_kb(domain, bundle)
    if feeds:
        from ttpscope.feeds.use import kb_for

        kb = kb_for(kb)
    return kb


MappingsOpt = typer.Option(None, "--mappings", "-m",
                           help="CVE mapping source (repeatable): a Mappings Explorer JSON, an attack_to_cve CSV, "
                                "a folder of them or a URL (cached). Default: $TTPSCOPE_CVE_MAPPINGS, else the "
                                "official Mappings Explorer KEV file.")


def mappings_noted(sources: list[str] | None):
    """CVE mappings from the sources given (else the default ones); rejected records are noted."""
    from ttpscope.kb.vulns import default_sources, load_mappings

    maps = load_mappings(sources or default_sources())
    if maps.errors:
        note(f"{len(maps.errors)} mapping records rejected (first: {maps.errors[0]})")
    return maps


def load_rules_noted(paths: list[str], kb):
    """Sigma rules through ttpscope.detect.rules; rules that fail to load are reported, not fatal."""
    from ttpscope.detect.rules import load_rules

    ruleset = load_rules(paths, kb=kb)
    errors = [": ".join(map(str, e)) if isinstance(e, tuple) else str(e) for e in ruleset.errors]
    if errors:
        note(f"{len(errors)} rules could not be loaded (first: {errors[0]})")
    return list(ruleset.rules), errors
