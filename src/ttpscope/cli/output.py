"""Shared CLI plumbing: JSON or Rich-table output, one-line errors, the common options (KB, CVE mappings)
and loaders that report what they could not read."""

from __future__ import annotations

import sys
from typing import Any, Iterable

import orjson
import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

DomainOpt = typer.Option("enterprise", "--domain", "-d", help="ATT&CK domain: enterprise, mobile or ics.")
BundleOpt = typer.Option(None, "--bundle", help="ATT&CK bundle: 'embedded', a path, an http(s) URL or "
                         "taxii+http(s)://server/api/collections/<id>/ (default: newest from 'kb update', "
                         "else the embedded v15.1).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")
TargetOpt = typer.Option("splunk", "--target", "-t", help="splunk | elasticsearch (Lucene) | esql | kusto (KQL).")
PipelineOpt = typer.Option("default", "--pipeline", help="pySigma processing pipeline: 'default' for the "
                           "target, 'none', an installed pipeline name, or a pipeline YAML file.")


def print_json(data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str))
    sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]], caption: str | None = None) -> None:
    t = Table(title=title, caption=caption, show_lines=False, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    console.print(t)


def note(text: str) -> None:
    """A remark for the human reader, on stderr so that --json output stays clean."""
    err_console.print(f"[yellow]note:[/yellow] {text}")


def load(domain: str, bundle: str | None):
    from ttpscope.kb import load_kb

    return load_kb(domain, bundle)


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
