"""Defender commands: `coverage`, `mitigate`, `hunt`, `emulate`, `vulns rank`, `kb cve`, `rules convert`.

Thin shells over ``ttpscope.analyze.{coverage,mitigations,emulation,vulns}``, ``ttpscope.kb.vulns`` and
``ttpscope.detect.convert``.
"""

from __future__ import annotations

import typer

from ttpscope.cli.output import BundleOpt, DomainOpt, JsonOpt, console, load, note, print_json, table

MappingsOpt = typer.Option(None, "--mappings", "-m",
                           help="CVE mapping source (repeatable): a Mappings Explorer JSON, an attack_to_cve CSV, "
                                "a folder of them or a URL (cached). Default: $TTPSCOPE_CVE_MAPPINGS, else the "
                                "official Mappings Explorer KEV file.")


def _mappings(sources: list[str] | None):
    from ttpscope.kb.vulns import default_sources, load_mappings

    maps = load_mappings(sources or default_sources())
    if maps.errors:
        note(f"{len(maps.errors)} mapping records rejected (first: {maps.errors[0]})")
    return maps


def cve(cve_id: str = typer.Argument(..., help="CVE id, e.g. CVE-2021-44228."),
        mappings: list[str] = MappingsOpt, domain: str = DomainOpt, bundle: str = BundleOpt,
        json: bool = JsonOpt) -> None:
    """The ATT&CK techniques a CVE enables, by mapping type (exploitation, primary / secondary impact)."""
    from ttpscope.kb.vulns import cve_view

    maps = _mappings(mappings)
    kb = load(domain, bundle)
    view = cve_view(maps, cve_id, kb)
    for n in view["notes"]:
        note(n)
    if json:
        print_json(view)
        return
    console.print(f"[bold]{view['cve']}[/bold]  {view['description'][:300]}")
    table(f"Techniques of {view['cve']}", ["mapping type", "id", "name"],
          [(t["mapping_type"], t["id"], t["name"]) for t in view["techniques"]], caption=kb.label)
