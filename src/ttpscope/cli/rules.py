"""`ttpscope rules list|check|show|update|convert`: Sigma rule sets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ttpscope.cli.output import (BundleOpt, DomainOpt, JsonOpt, PipelineOpt, TargetOpt, console, load, load_rules_noted,
                                 note, print_json, table)

app = typer.Typer(name="rules", help="Sigma rules: list, check (load + compile), show one, update the SigmaHQ "
                  "release, convert to SIEM queries.",
                  no_args_is_help=True)

PathsArg = typer.Argument(None, help="Rule files or folders (default: the cached SigmaHQ release).")


def _load(paths, domain, bundle, **filters):
    from ttpscope.detect.rules import load_rules

    kb = load(domain, bundle)
    return load_rules(paths or None, kb=kb, **{k: v for k, v in filters.items() if v}), kb


@app.command("list")
def list_cmd(paths: list[Path] = PathsArg,
             level: Optional[str] = typer.Option(None, "--level", help="'medium+', 'high', 'low,high'."),
             technique: list[str] = typer.Option(None, "--technique", "-t"),
             tactic: list[str] = typer.Option(None, "--tactic"),
             status: Optional[str] = typer.Option(None, "--status"),
             product: Optional[str] = typer.Option(None, "--product"),
             category: Optional[str] = typer.Option(None, "--category"),
             service: Optional[str] = typer.Option(None, "--service"),
             limit: int = typer.Option(50, help="Rows to show (all with --json)."),
             domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """Rules with their level, log source and ATT&CK techniques, filtered."""
    rs, kb = _load(paths, domain, bundle, level=level, technique=technique, tactic=tactic, status=status,
                   product=product, category=category, service=service)
    if json:
        print_json({"kb": kb.provenance(), "summary": rs.summary(), "rules": [r.to_dict() for r in rs.rules],
                    "errors": [{"path": p, "error": m} for p, m in rs.errors]})
        return
    table(f"{len(rs.rules):,} rules ({rs.filtered_out:,} filtered out)", ["id", "title", "level", "log source",
                                                                          "techniques"],
          [(r.id[:8], r.title, r.level, "/".join(v for v in r.logsource.values() if v), ", ".join(r.techniques))
           for r in rs.rules[:limit]], caption=kb.label)
    if len(rs.rules) > limit:
        note(f"{len(rs.rules) - limit} more (use --limit or --json)")


@app.command("check")
def check_cmd(paths: list[Path] = PathsArg, validate: bool = typer.Option(
                  False, "--validate", help="Also run pySigma's rule validators (style and content checks)."),
              domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """Load and compile every rule: the share that compiles, every failure with its reason, tag problems."""
    from ttpscope.detect.runner import compile_ruleset

    rs, kb = _load(paths, domain, bundle)
    compiled = compile_ruleset(rs)
    failures = [{"rule_id": rs.rules[c.index].id, "path": rs.rules[c.index].path, "error": c.error}
                for c in compiled if c.error]
    notes: dict[str, int] = {}
    for c in compiled:
        if c.note:
            notes[c.note] = notes.get(c.note, 0) + 1
    unknown: dict[str, int] = {}
    for r in rs.rules:
        for _, why in r.unknown_tags:
            unknown[why] = unknown.get(why, 0) + 1
    issues: dict[str, int] = {}
    if validate:
        issues = _validate(rs)
    ok = len(compiled) - len(failures)
    data = {"kb": kb.provenance(), "files": rs.files, "rules": len(rs.rules), "correlations": len(rs.correlations),
            "load_errors": [{"path": p, "error": m} for p, m in rs.errors], "compiled": ok,
            "compiled_share": round(ok / len(compiled), 4) if compiled else None, "compile_failures": failures,
            "logsource_notes": notes, "unknown_tags": dict(sorted(unknown.items(), key=lambda kv: -kv[1])),
            "validation_issues": issues}
    if json:
        print_json(data)
        return
    share = f"{ok / len(compiled):.1%}" if compiled else "-"
    console.print(f"{rs.files:,} files · {len(rs.rules):,} rules · {len(rs.correlations)} correlation rules · "
                  f"{len(rs.errors)} load errors · [bold]{ok:,}/{len(compiled):,} compiled ({share})[/bold]")
    if rs.errors:
        table("Load errors", ["file", "error"], rs.errors[:50])
    if failures:
        table("Compile failures", ["rule", "reason"], [(Path(f["path"] or "").name or f["rule_id"], f["error"])
                                                       for f in failures])
    if notes:
        table("Log sources without a channel mapping", ["note", "rules"], notes.items())
    if unknown:
        table("Tags not mapped to the knowledge base", ["why", "rules"], list(data["unknown_tags"].items())[:20],
              caption=kb.label)
    if issues:
        table("pySigma validator findings", ["issue", "rules"], issues.items())


def _validate(rs) -> dict[str, int]:
    from sigma.collection import SigmaCollection
    from sigma.validators.core import validators
    from sigma.validation import SigmaValidator

    validator = SigmaValidator([v for v in validators.values()])
    found: dict[str, int] = {}
    for issue in validator.validate_rules(SigmaCollection([r.fresh_rule() for r in rs.rules])):
        name = type(issue).__name__
        found[name] = found.get(name, 0) + 1
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


@app.command("show")
def show_cmd(rule: str = typer.Argument(..., help="Rule id (or its first 8+ characters) or exact title."),
             paths: list[Path] = typer.Option(None, "--rules", "-r", help="Rule files or folders."),
             domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """One rule: metadata, ATT&CK mapping and the conditions it compiles to, per log-source variant."""
    from ttpscope.detect.compiler import compile_rule
    from ttpscope.detect.sql import render

    rs, kb = _load(paths, domain, bundle)
    info = rs.get(rule)
    data = info.to_dict()
    if info.kind == "rule":
        cr = compile_rule(info)
        data["compiled"] = {"error": cr.error, "note": cr.note, "variants": {}}
        for name, cond in cr.variants.items():
            data["compiled"]["variants"][name] = render(cond, _NamedColumns())
    if json:
        print_json(data)
        return
    console.print(f"[bold]{info.title}[/bold]  ({info.id})  level {info.level} · status {info.status}")
    console.print(info.description)
    console.print("log source: " + ", ".join(f"{k}={v}" for k, v in info.logsource.items() if v))
    console.print("techniques: " + (", ".join(f"{t} {kb.techniques[t].name}" for t in info.techniques) or "-"))
    console.print("tactics: " + (", ".join(info.tactics) or "-"))
    for tag, why in [*info.unknown_tags, *info.remapped_tags]:
        note(f"{tag}: {why}")
    for name, sql in data.get("compiled", {}).get("variants", {}).items():
        console.print(f"[bold]{name}[/bold]: {sql}", soft_wrap=True)
    if data.get("compiled", {}).get("error"):
        note(f"does not compile: {data['compiled']['error']}")
    console.print(f"file: {info.path}")


class _NamedColumns:
    """A column map that names columns as the rule does: lower(Field) / Field (for display only)."""

    def __init__(self):
        from ttpscope.detect.sql import sql_ident

        self._ident = sql_ident
        self.python_regex = None
        self.native_regex_ok = None
        self.lower = _Lookup(lambda k: f"lower({self._ident(k)})")
        self.orig = _Lookup(lambda k: self._ident(k))


class _Lookup(dict):
    def __init__(self, make):
        super().__init__()
        self._make = make

    def __missing__(self, key):
        return self._make("<any field>" if key.startswith("\x00") else key)


@app.command("update")
def update_cmd(url: str = typer.Option(None, "--url", help="Rule archive (zip) to fetch instead of the latest "
                                        "SigmaHQ release."), json: bool = JsonOpt) -> None:
    """Download the SigmaHQ rule release into the cache and make it the default rule set."""
    from ttpscope.detect.update import SIGMAHQ_RELEASE, update_rules

    info = update_rules(url or SIGMAHQ_RELEASE)
    if json:
        print_json(info)
        return
    console.print(f"{info['rules']:,} rule files from {info['url']} → {info['path']}")


@app.command("convert")
def convert(rules: list[str] = typer.Argument(..., help="Sigma rule files or folders."),
            target: str = TargetOpt, pipeline: str = PipelineOpt,
            out: str = typer.Option(None, "--out", help="Write the queries to this file (one per line)."),
            json: bool = JsonOpt) -> None:
    """Convert Sigma rules to Splunk SPL, Elasticsearch Lucene / ES|QL or Microsoft KQL; failures with reasons."""
    from pathlib import Path

    from ttpscope.detect.convert import convert_rules

    loaded, errors = load_rules_noted(rules, None)
    result = convert_rules(loaded, target, pipeline, isolate=False)  # freshly loaded: nothing reuses them
    data = result.to_dict()
    data["load_errors"] = [str(e) for e in errors]
    if out:
        Path(out).write_text("\n".join(q for r in result.queries for q in r.queries) + "\n", encoding="utf-8")
    if json:
        print_json(data)
        return
    if not out:
        for r in result.queries:
            console.print(f"[dim]# {r.title} ({r.rule_id})[/dim]")
            for q in r.queries:
                console.print(q, markup=False, highlight=False, soft_wrap=True)
    if result.failures:
        table(f"Not converted ({len(result.failures)})", ["rule", "title", "reason"],
              [(r.path or r.rule_id, r.title, r.error) for r in result.failures])
    console.print(f"{len(result.queries)}/{len(result.results)} rules converted to {result.target} "
                  f"({result.pipeline}): {result.rate:.1%}" + (f"; {len(errors)} rules failed to load" if errors else ""))
