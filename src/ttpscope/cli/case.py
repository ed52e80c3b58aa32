"""`ttpscope case list|show|review|export|delete` and `ttpscope export CASE --format ...`: stored cases, re-analysed
without re-reading their evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from ttpscope.cli.output import BundleOpt, JsonOpt, console, note, print_json, table

app = typer.Typer()  # `export` at the top, the `case` group beside it
case_app = typer.Typer(name="case", help="Cases stored in the workspace: list, show, review, export, hits, delete.",
                       no_args_is_help=True)
app.add_typer(case_app)

FormatOpt = typer.Option(None, "--format", "-f", help="html, layer, stix, json, csv or markdown (repeatable; "
                         "default: all).")
RulesOpt = typer.Option(None, "--rules", "-r", help="Sigma rules for the coverage section (default: the rule set "
                        "the case was investigated with).")
ReviewedOnlyOpt = typer.Option(False, "--reviewed-only", help="Only confirmed findings: leave out unreviewed "
                               "observations and IOCs (rejected ones are always left out).")


def _analysis(ref: str, bundle: str | None, rules: Path | None, reviewed_only: bool = False):
    from ttpscope.investigate.analysis import analyse_stored_case, case_kb, stored_rules
    from ttpscope.store import Workspace

    ws = Workspace()
    case = ws.get_case(ref)
    kb = case_kb(case, bundle)
    if rules is None and case.meta.get("rules") and stored_rules(case) is None:
        note(f"the rule set the case was investigated with is gone ({case.meta['rules']}); coverage is skipped")
    return analyse_stored_case(ws, case, kb, rules=rules, reviewed_only=reviewed_only), kb


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
    history = c.meta.get("history") or []
    if history:
        table("History", ["when (UTC)", "what", "files", "obs.", "skipped (already in the case)"],
              [[str(h.get("time") or "")[:16].replace("T", " "), h.get("action"),
                ", ".join(Path(str(f.get("path"))).name for f in h.get("files") or []), h.get("observations"),
                ", ".join(Path(str(x.get("path"))).name for x in h.get("skipped") or [])] for h in history])


@case_app.command("export")
def export_cmd(case: str = typer.Argument(..., help="Case id or name."),
               formats: Optional[list[str]] = FormatOpt,
               out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default "
                                                  "./ttpscope-out/<case>)."),
               rules: Optional[Path] = RulesOpt, bundle: Optional[str] = BundleOpt,
               reviewed_only: bool = ReviewedOnlyOpt, json_out: bool = JsonOpt) -> None:
    """Re-run the analyses on a stored case and write its outputs (all formats by default)."""
    from ttpscope.export.outputs import FORMATS, write_outputs
    from ttpscope.investigate import slug

    analysis, kb = _analysis(case, bundle, rules, reviewed_only)
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
                   reviewed_only: bool = ReviewedOnlyOpt, json_out: bool = JsonOpt) -> None:
    """Export one format of a stored case (the analyses are re-run; the evidence is not re-read)."""
    import sys

    from ttpscope.errors import InputError
    from ttpscope.export.outputs import EXPORTS, write_atomic
    from ttpscope.investigate import slug

    exporter = EXPORTS.get(fmt)
    if exporter is None:
        raise InputError("--format", None, f"{fmt!r} is not one of {', '.join(EXPORTS)}")
    analysis, kb = _analysis(case, bundle, rules, reviewed_only)
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


# ---------------------------------------------------------------------- review before sharing


class _ReviewGroup(TyperGroup):
    """`ttpscope case review CASE` is `ttpscope case review list CASE`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


review_app = typer.Typer(name="review", cls=_ReviewGroup, no_args_is_help=True,
                         help="Review a case's findings before sharing: 'ttpscope case review CASE' lists them with "
                              "their state; confirm, reject or reset them, or add your own.")
case_app.add_typer(review_app)
CaseArg = typer.Argument(..., help="Case id or name.")
ByOpt = typer.Option(..., "--by", help="Who decides (kept with the decision).")
NoteOpt = typer.Option("", "--note", help="Why (kept with the decision).")
TechniqueFilterOpt = typer.Option(None, "--technique", "-t", help="A whole technique (repeatable).")
IocFilterOpt = typer.Option(None, "--ioc", help="An IOC by its value (repeatable).")
IdsArg = typer.Argument(None, help="Observation ids (or unique prefixes of 6+ characters), technique ids or "
                        "ioc:<type>:<value>, as 'ttpscope case review CASE' lists them.")


@review_app.command("list")
def list_findings_cmd(case: str = CaseArg,
                      show_all: bool = typer.Option(False, "--all", help="List every observation (default: the "
                                                    "first 40)."),
                      json_out: bool = JsonOpt) -> None:
    """The case's techniques, observations and IOCs with their review state (unreviewed, confirmed, rejected)."""
    from ttpscope.analyze.review import findings
    from ttpscope.investigate.analysis import case_kb
    from ttpscope.store import Workspace

    ws = Workspace()
    c = ws.get_case(case)
    kb = case_kb(c)
    found = findings(c, ws.get_documents(c.id), ws.get_reviews(c.id),
                     names={t: kb.techniques[t].name for t in c.technique_ids() if t in kb.techniques})
    if json_out:
        print_json({"case": {"id": c.id, "name": c.name}, **found})
        return
    console.print(f"[bold]{c.name}[/bold] ({c.id}): review before sharing")
    table("Techniques", ["technique", "name", "decision", "obs. confirmed/rejected/unreviewed", "by / note"],
          [[t["technique_id"], t["name"], t["state"],
            f"{t['states']['confirmed']}/{t['states']['rejected']}/{t['states']['unreviewed']}", _who(t["review"])]
           for t in found["techniques"]])
    rows = found["observations"] if show_all else found["observations"][:40]
    table("Observations", ["id", "technique", "source", "host", "time", "state", "evidence"],
          [[o["target"], o["technique_id"], f"{o['source_kind']}: {o['source_ref']}", o["host"] or "",
            (o["time"] or "")[:19].replace("T", " "), o["state"], o["evidence"]] for o in rows],
          caption=None if len(rows) == len(found["observations"]) else
          f"{len(rows)} of {len(found['observations'])} observations (--all lists every one)")
    if found["iocs"]:
        table("IOCs", ["id", "found in", "state", "by / note"],
              [[i["target"], ", ".join(i["documents"]), i["state"], _who(i["review"])] for i in found["iocs"]])


def _who(review: dict | None) -> str:
    if not review:
        return ""
    return f"{review.get('by') or ''}" + (f": {review['note']}" if review.get("note") else "")


def _decide(case: str, state: str, ids, techniques, iocs, by, note, confidence, json_out: bool) -> None:
    from ttpscope.analyze.review import decide
    from ttpscope.store import Workspace

    made = decide(Workspace(), case, state, ids=ids or (), techniques=techniques or (),
                  iocs=iocs or (), by=by, note=note, confidence=confidence)
    if json_out:
        print_json({"case": case, "reviews": [r.to_dict() for r in made]})
        return
    done = {"confirmed": "Confirmed", "rejected": "Rejected"}.get(state, "Reset")
    console.print(f"{done} {len(made)} finding(s) of case '{case}': "
                  + ", ".join(r.target for r in made[:8]) + (" …" if len(made) > 8 else ""))


@review_app.command("confirm")
def confirm_cmd(case: str = CaseArg, ids: Optional[list[str]] = IdsArg,
                technique: Optional[list[str]] = TechniqueFilterOpt, ioc: Optional[list[str]] = IocFilterOpt,
                by: str = ByOpt, note: str = NoteOpt,
                confidence: Optional[int] = typer.Option(None, "--confidence", min=0, max=100, help="How sure you "
                                                         "are, 0-100 (default 100); the STIX export carries it."),
                json_out: bool = JsonOpt) -> None:
    """Confirm findings: they go into --reviewed-only exports with your confidence."""
    _decide(case, "confirmed", ids, technique, ioc, by, note, confidence, json_out)


@review_app.command("reject")
def reject_cmd(case: str = CaseArg, ids: Optional[list[str]] = IdsArg,
               technique: Optional[list[str]] = TechniqueFilterOpt, ioc: Optional[list[str]] = IocFilterOpt,
               by: str = ByOpt, note: str = NoteOpt, json_out: bool = JsonOpt) -> None:
    """Reject findings (false positives): no export carries them any more."""
    _decide(case, "rejected", ids, technique, ioc, by, note, None, json_out)


@review_app.command("reset")
def reset_cmd(case: str = CaseArg, ids: Optional[list[str]] = IdsArg,
              technique: Optional[list[str]] = TechniqueFilterOpt, ioc: Optional[list[str]] = IocFilterOpt,
              json_out: bool = JsonOpt) -> None:
    """Take decisions back: the findings are unreviewed again."""
    _decide(case, "unreviewed", ids, technique, ioc, None, "", None, json_out)


@review_app.command("add")
def add_cmd(case: str = CaseArg,
            technique: str = typer.Option(..., "--technique", "-t", help="The technique seen, e.g. T1059.001."),
            evidence: str = typer.Option(..., "--evidence", "-e", help="What shows it (kept as the evidence)."),
            host: Optional[str] = typer.Option(None, "--host", help="Where it was seen."),
            by: Optional[str] = typer.Option(None, "--by", help="Who adds it (default: your user name)."),
            note: str = NoteOpt, json_out: bool = JsonOpt) -> None:
    """Add your own observation (source kind manual, confidence 1), confirmed by you."""
    import getpass

    from ttpscope.analyze.review import add_manual
    from ttpscope.investigate.analysis import case_kb
    from ttpscope.store import Workspace

    ws = Workspace()
    kb = case_kb(ws.get_case(case))
    obs = add_manual(ws, case, technique, evidence, kb=kb, host=host, by=by or getpass.getuser(),
                     note=note)
    if json_out:
        print_json({"case": case, "observation": obs.to_dict()})
        return
    console.print(f"Added observation {obs.id} ({obs.technique_id}) to case '{case}', confirmed")
