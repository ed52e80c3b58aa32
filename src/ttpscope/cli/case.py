"""`ttpscope case list|show|export|delete` and `ttpscope export CASE --format ...`: stored cases, re-analysed
without re-reading their evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ttpscope.cli.output import BundleOpt, JsonOpt, console, note, print_json, table

app = typer.Typer()  # `export` at the top, the `case` group beside it
case_app = typer.Typer(name="case", help="Cases stored in the workspace: list, show, export, hits, delete.",
                       no_args_is_help=True)
app.add_typer(case_app)

FormatOpt = typer.Option(None, "--format", "-f", help="html, layer, stix, json, csv or markdown (repeatable; "
                         "default: all).")
RulesOpt = typer.Option(None, "--rules", "-r", help="Sigma rules for the coverage section (default: the rule set "
                        "the case was investigated with).")


def _analysis(ref: str, bundle: str | None, rules: Path | None):
    from ttpscope.investigate.analysis import analyse_stored_case, case_kb, stored_rules
    from ttpscope.store import Workspace

    ws = Workspace()
    case = ws.get_case(ref)
    kb = case_kb(case, bundle)
    if rules is None and case.meta.get("rules") and stored_rules(case) is None:
        note(f"the rule set the case was investigated with is gone ({case.meta['rules']}); coverage is skipped")
    return analyse_stored_case(ws, case, kb, rules=rules), kb


@case_app.command("list")
def list_cmd(json_out: bool = JsonOpt) -> None:
    """Cases in the workspace, most recently updated first."""
    from ttpscope.store import Workspace

    ws = Workspace()
    cases = ws.list_cases()
    if json_out:
        print_json({"workspace": str(ws.path), "cases": cases})
        return
    table(f"Cases in {ws.path}", ["id", "name", "updated (UTC)", "techniques", "obs.", "detections", "reports"],
          [[c["id"], c["name"], (c["updated"] or "")[:16].replace("T", " "), c["techniques"], c["observations"],
            c["detections"], c["documents"]]
           for c in cases], caption=None if cases else "no case yet: run 'ttpscope investigate EVIDENCE...'")


@case_app.command("show")
def show_cmd(case: str = typer.Argument(..., help="Case id or name."), bundle: Optional[str] = BundleOpt,
             json_out: bool = JsonOpt) -> None:
    """A case's techniques with their strongest evidence, and where its evidence came from."""
    from ttpscope.analyze.evidence import technique_evidence
    from ttpscope.investigate.analysis import case_kb
    from ttpscope.store import Workspace

    ws = Workspace()
    c = ws.get_case(case)
    kb = case_kb(c, bundle)
    evidence = technique_evidence(c, kb)
    if json_out:
        print_json({"case": {k: v for k, v in c.to_dict().items() if k != "observations"},
                    "knowledge_base": kb.provenance(), "techniques": [e.to_dict() for e in evidence],
                    "observations": len(c.observations), "detections": len(ws.get_detections(c.id)),
                    "documents": [d.name for d in ws.get_documents(c.id)]})
        return
    console.print(f"[bold]{c.name}[/bold] ({c.id}) · updated {c.updated:%Y-%m-%d %H:%M} UTC · "
                  f"{len(c.observations)} observations · {kb.label}")
    table("Techniques (strongest evidence first)", ["technique", "name", "tactics", "strength", "obs.", "evidence"],
          [[e.id, e.name, ", ".join(e.tactics), e.score, e.observations, e.quotes[0]["text"] if e.quotes else ""]
           for e in evidence])
    sources = c.meta.get("sources") or []
    if sources:
        table("Evidence sources", ["source", "as", "read", "accepted", "rejected", "notes"],
              [[s["path"], s["format"] or s["kind"], s.get("read"), s.get("accepted"), s.get("rejected"),
                s.get("note")] for s in sources])


@case_app.command("export")
def export_cmd(case: str = typer.Argument(..., help="Case id or name."),
               formats: Optional[list[str]] = FormatOpt,
               out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default "
                                                  "./ttpscope-out/<case>)."),
               rules: Optional[Path] = RulesOpt, bundle: Optional[str] = BundleOpt, json_out: bool = JsonOpt) -> None:
    """Re-run the analyses on a stored case and write its outputs (all formats by default)."""
    from ttpscope.export.outputs import FORMATS, write_outputs
    from ttpscope.investigate import slug

    analysis, kb = _analysis(case, bundle, rules)
    out_dir = out or Path.cwd() / "ttpscope-out" / slug(analysis.case.name)
    written = write_outputs(analysis, kb, out_dir, formats or FORMATS)
    if json_out:
        print_json({"case": analysis.case.id, "outputs": {k: str(v) for k, v in written.items()}})
        return
    console.print(f"Wrote {', '.join(p.name for p in written.values())} to [bold]{out_dir}[/bold]")


@case_app.command("hits")
def hits_cmd(case: str = typer.Argument(..., help="Case id or name."),
             jsonl: bool = typer.Option(False, "--jsonl", help="JSON lines (the default)."),
             csv_out: bool = typer.Option(False, "--csv", help="CSV."),
             parquet: bool = typer.Option(False, "--parquet", help="Parquet (needs --out FILE or the default file)."),
             out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file, '-' for standard output "
                                                "(default ./ttpscope-out/<case>/hits.<format>)."),
             json_out: bool = JsonOpt) -> None:
    """Every rule hit of a case, one row each in time order: the detection timeline (time, host, user, IPs,
    log source, level, rule, techniques, the fields the rule matched, source file and record)."""
    import sys

    from ttpscope.errors import InputError
    from ttpscope.export.outputs import write_atomic
    from ttpscope.investigate import slug
    from ttpscope.store import Workspace
    from ttpscope.store.hits import hits_table, render_hits

    chosen = [name for name, on in (("jsonl", jsonl), ("csv", csv_out), ("parquet", parquet)) if on]
    if len(chosen) > 1:
        raise InputError("case hits", None, "give one of --jsonl, --csv, --parquet")
    fmt = chosen[0] if chosen else "jsonl"
    if str(out) == "-" and fmt == "parquet":
        raise InputError("--out", None, "Parquet is not written to standard output; give a file")
    ws = Workspace()
    target_case = ws.get_case(case)
    table = hits_table(ws, target_case.id)
    content = render_hits(table, fmt)
    if str(out) == "-":
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return
    target = out or Path.cwd() / "ttpscope-out" / slug(target_case.name) / f"hits.{fmt}"
    if target.is_dir():
        target = target / f"hits.{fmt}"
    write_atomic(target, content)
    if json_out:
        print_json({"case": target_case.id, "format": fmt, "hits": table.num_rows, "output": str(target)})
        return
    console.print(f"Wrote {table.num_rows:,} hits to {target}")


@case_app.command("delete")
def delete_cmd(case: str = typer.Argument(..., help="Case id or name."),
               yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
               json_out: bool = JsonOpt) -> None:
    """Remove a case and everything stored with it from the workspace."""
    from ttpscope.store import Workspace

    ws = Workspace()
    target = ws.get_case(case)
    if not yes and not json_out:
        typer.confirm(f"Delete case '{target.name}' ({target.id}) with {len(target.observations)} observations?",
                      abort=True)
    removed = ws.delete_case(target.id)
    if json_out:
        print_json({"deleted": removed})
        return
    console.print(f"Deleted case '{removed['name']}' ({removed['id']})")


@app.command("export")
def export_one_cmd(case: str = typer.Argument(..., help="Case id or name."),
                   fmt: str = typer.Option(..., "--format", "-f", help="html, layer, stix, json, csv or markdown."),
                   out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file or folder, '-' for "
                                                      "standard output (default ./ttpscope-out/<case>/<file>)."),
                   rules: Optional[Path] = RulesOpt, bundle: Optional[str] = BundleOpt,
                   json_out: bool = JsonOpt) -> None:
    """Export one format of a stored case (the analyses are re-run; the evidence is not re-read)."""
    import sys

    from ttpscope.errors import InputError
    from ttpscope.export.outputs import EXPORTS, write_atomic
    from ttpscope.investigate import slug

    exporter = EXPORTS.get(fmt)
    if exporter is None:
        raise InputError("--format", None, f"{fmt!r} is not one of {', '.join(EXPORTS)}")
    analysis, kb = _analysis(case, bundle, rules)
    content = exporter.render(analysis, kb)
    if str(out) == "-":
        sys.stdout.buffer.write(content.encode() if isinstance(content, str) else content)
        sys.stdout.flush()
        return
    target = out or Path.cwd() / "ttpscope-out" / slug(analysis.case.name) / exporter.file_name
    if target.is_dir():
        target = target / exporter.file_name
    write_atomic(target, content)
    if json_out:
        print_json({"case": analysis.case.id, "format": fmt, "output": str(target)})
        return
    console.print(f"Wrote {target}")
