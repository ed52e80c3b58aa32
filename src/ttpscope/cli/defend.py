"""Defender commands: `coverage`, `mitigate`, `hunt`, `emulate`, `vulns rank`.

Thin shells over ``ttpscope.analyze.{coverage,mitigations,emulation,vulns}``.
"""

from __future__ import annotations

import typer

from ttpscope.cli.output import (BundleOpt, DomainOpt, JsonOpt, MappingsOpt, PipelineOpt, TargetOpt, console, load,
                                 load_rules_noted, mappings_noted, note, print_json, table)

app = typer.Typer()

# ------------------------------------------------------------------ shared helpers
def _techniques_arg(ids: list[str] | None, layer: str | None) -> list[str]:
    """Technique ids from arguments and/or a Navigator layer / text file."""
    from ttpscope.errors import InputError
    from ttpscope.investigate.inputs import techniques_from

    out = techniques_from(ids, layer)
    if not out:
        raise InputError("techniques", None, "give technique ids (T1003.001 ...) or --layer FILE")
    return out


def _profile(kb, groups: list[str] | None, top: int | None, case: str | None, observed: list[str] | None,
             with_software: bool):
    """--profile GROUP... | --profile all | --profile-top N (--case CASE | --observed T...) → ThreatProfile."""
    from ttpscope.analyze.profile import DEFAULT_VIA, profile_of_attribution, profile_of_groups
    from ttpscope.investigate.inputs import case_techniques

    via = set(DEFAULT_VIA) | ({"software"} if with_software else set())
    if top:
        techniques = case_techniques(case) if case else list(observed or [])
        if not techniques:
            from ttpscope.errors import InputError

            raise InputError("--profile-top", None, "needs the evidence to attribute: --case CASE or --observed T...")
        return profile_of_attribution(kb, techniques, top, via=via)
    return profile_of_groups(kb, groups, via=via)


def _write_json(path: str, data) -> None:
    from pathlib import Path

    import orjson

    Path(path).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))


ProfileOpt = typer.Option(None, "--profile", "-p", help="Group(s) of the threat profile (id, name or alias; "
                          "repeatable), or 'all' for every group weighted by prevalence.")
ProfileTopOpt = typer.Option(None, "--profile-top", help="Profile = the top N groups of an attribution of "
                             "--case CASE or --observed T... (weighted by confidence).")
CaseOpt = typer.Option(None, "--case", help="A workspace case (id or name).")
ObservedOpt = typer.Option(None, "--observed", help="Observed technique ids to attribute (with --profile-top).")
SoftwareOpt = typer.Option(False, "--with-software", help="Also count techniques groups have only through "
                           "their software (off by default: it inflates profiles).")


# ------------------------------------------------------------------ coverage
@app.command()
def coverage(rules: list[str] = typer.Option(..., "--rules", "-r", help="Sigma rule folder(s) or file(s)."),
             inventory: str = typer.Option(None, "--inventory", "-i", help="Data-source inventory YAML."),
             profile: list[str] = ProfileOpt, profile_top: int = ProfileTopOpt, case: str = CaseOpt,
             observed: list[str] = ObservedOpt, with_software: bool = SoftwareOpt,
             platform: list[str] = typer.Option(None, "--platform", help="Only techniques on these ATT&CK "
                                                "platforms (e.g. Windows)."),
             layer_out: str = typer.Option(None, "--layer-out", help="Write Navigator layers: FILE (coverage), "
                                           "FILE-profile.json and FILE-gaps.json beside it."),
             show: int = typer.Option(25, "--show", help="Gaps to list in the table."),
             domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """Detection coverage of a Sigma rule set against a threat profile: coverage %, prioritised gaps."""
    from ttpscope.analyze.coverage import coverage_report
    from ttpscope.export.layers import coverage_layers
    from ttpscope.kb.inventory import load_inventory

    kb = load(domain, bundle)
    prof = _profile(kb, profile, profile_top, case, observed, with_software)
    inv = load_inventory(inventory) if inventory else None
    loaded, errors = load_rules_noted(rules, kb)
    report = coverage_report(kb, loaded, prof, inv, platform)
    report["rule_errors"] = [str(e) for e in errors]
    if layer_out:
        from pathlib import Path

        layers = coverage_layers(report, kb)
        base = Path(layer_out)
        stem = base.with_suffix("") if base.suffix == ".json" else base
        paths = {"coverage": base if base.suffix == ".json" else base.with_suffix(".json"),
                 "profile": Path(f"{stem}-profile.json"), "gaps": Path(f"{stem}-gaps.json")}
        for kind, path in paths.items():
            _write_json(str(path), layers[kind])
        report["layers"] = {k: str(v) for k, v in paths.items()}
    if json:
        print_json(report)
        return
    c = report["counts"]
    title = report["profile"]["name"] if report["profile"] else "all techniques"
    console.print(f"[bold]Coverage of {title}[/bold]: {report['coverage']:.0%} of {c['techniques']} techniques "
                  f"detected ({c['detected']}); observable (not PRE-only): {report['coverage_observable']:.0%}; "
                  f"weighted: {report['weighted_coverage']:.0%}. Rules: {c['rules']} "
                  f"({c['rules_with_techniques']} ATT&CK-tagged).")
    table(f"Prioritised gaps ({len(report['gaps'])})", ["id", "name", "actors", "tactics", "visible", "note"],
          [(g["id"], g["name"], len(g["actors"]) or "", ", ".join(g["tactics"]),
            "" if g["visible"] is None else ("yes" if g["visible"] else "no"),
            "PRE only" if g["pre_compromise"] else (f"{g['parent_rules']} parent rules" if g["parent_rules"] else ""))
           for g in report["gaps"][:show]], caption=kb.label)
    if inv is not None:
        table(f"Visible but undetected ({len(report['visible_undetected'])})", ["id", "name"],
              [(g["id"], g["name"]) for g in report["visible_undetected"][:show]])
    for n in report["notes"][:5]:
        note(n)
    if report.get("layers"):
        console.print("layers: " + ", ".join(report["layers"].values()))


# ------------------------------------------------------------------ mitigations
@app.command()
def mitigate(techniques: list[str] = typer.Argument(None, help="Technique ids."),
             layer: str = typer.Option(None, "--layer", help="Techniques from a Navigator layer or text file."),
             case: str = CaseOpt, show: int = typer.Option(15, "--show"),
             domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """Mitigations covering the most techniques with the fewest M-ids, data to collect, detection strategies."""
    from ttpscope.analyze.mitigations import mitigation_plan
    from ttpscope.investigate.inputs import case_techniques

    kb = load(domain, bundle)
    ids = _techniques_arg(list(techniques or []) + (case_techniques(case) if case else []), layer)
    plan = mitigation_plan(kb, ids)
    for n in plan["notes"]:
        note(n)
    if json:
        print_json(plan)
        return
    rows = [(m["id"], m["name"], len(m["covers"]), len(m["new"]) if m["in_cover"] else "",
             f"{m['cumulative']:.0%}" if m["in_cover"] else "") for m in plan["mitigations"][:show]]
    table(f"Mitigations for {len(plan['techniques'])} techniques (greedy cover first)",
          ["id", "name", "covers", "adds", "cumulative"], rows)
    if plan["uncovered"]:
        console.print("no mitigation in ATT&CK: " + ", ".join(plan["uncovered"]))
    table("Data components to collect", ["data component", "data source", "techniques"],
          [(d["name"], d["data_source"] or "", len(d["techniques"])) for d in plan["data_components"][:show]])
    if plan["detection_strategies"]:
        table("Detection strategies (v18)", ["id", "name", "techniques", "analytics"],
              [(d["id"], d["name"], ", ".join(d["techniques"]), len(d["analytics"]))
               for d in plan["detection_strategies"][:show]])
    console.print(f"[dim]{kb.label}[/dim]")


# ------------------------------------------------------------------ emulation
@app.command()
def emulate(group: str = typer.Argument(None, help="Group id, name or alias."),
            atomics: list[str] = typer.Option(None, "--atomics", help="Atomic Red Team index folder or files "
                                              "(Indexes-CSV/*.csv, *-index.yaml)."),
            case: str = typer.Option(None, "--case", help="Plan for the top attributed group of a case."),
            platform: list[str] = typer.Option(None, "--platform", help="Only Atomic tests for these platforms "
                                               "(windows, linux, macos...)."),
            with_software: bool = SoftwareOpt,
            out: str = typer.Option(None, "--out", help="Write the plan as Markdown to this file."),
            layer_out: str = typer.Option(None, "--layer-out", help="Write the plan as a Navigator layer."),
            domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """An emulation plan for a group: its techniques by tactic, procedures and Atomic Red Team tests."""
    from pathlib import Path

    from ttpscope.analyze.attribution import attribute
    from ttpscope.analyze.emulation import emulation_plan, plan_markdown
    from ttpscope.analyze.profile import DEFAULT_VIA
    from ttpscope.export.layers import plan_layer
    from ttpscope.investigate.inputs import case_techniques
    from ttpscope.kb.atomics import load_atomics

    kb = load(domain, bundle)
    if not group:
        if not case:
            from ttpscope.errors import InputError

            raise InputError("emulate", None, "give a GROUP or --case CASE")
        ranked = attribute(case_techniques(case), kb).groups
        if not ranked:
            from ttpscope.errors import NotFoundError

            raise NotFoundError(f"the attribution of case {case} ranked no group")
        group = ranked[0].id
        note(f"case {case}: planning for the top attributed group {group} ({kb.name_of(group)})")
    index = load_atomics(atomics) if atomics else None
    via = set(DEFAULT_VIA) | ({"software"} if with_software else set())
    plan = emulation_plan(kb, group, index, via=via, platforms=platform)
    if plan["note"]:
        note(plan["note"])
    if out:
        Path(out).write_text(plan_markdown(plan), encoding="utf-8")
    if layer_out:
        _write_json(layer_out, plan_layer(plan, kb))
    if json:
        print_json(plan)
        return
    s = plan["summary"]
    table(f"Emulation plan: {plan['group']['name']} ({plan['group']['id']}) — {s['steps']} steps, "
          f"{s['with_atomics']} with Atomic tests", ["#", "tactic", "technique", "name", "atomics", "first test"],
          [(i, st["tactic"], st["technique"], st["name"], len(st["atomics"]),
            st["atomics"][0]["name"] if st["atomics"] else "") for i, st in enumerate(plan["steps"], 1)],
          caption=kb.label)
    if index is None:
        note("no --atomics given: steps carry no Atomic Red Team tests")
    if out:
        console.print(f"plan written to {out}")


# ------------------------------------------------------------------ vulnerabilities
vulns_app = typer.Typer(help="Vulnerabilities: rank CVEs by the techniques they enable.", no_args_is_help=True)
app.add_typer(vulns_app, name="vulns")


@vulns_app.command("rank")
def vulns_rank(file: str = typer.Argument(..., help="File with CVE ids (scanner CSV/JSON/text; ids are found "
                                          "anywhere in it)."),
               mappings: list[str] = MappingsOpt, profile: list[str] = ProfileOpt,
               with_software: bool = SoftwareOpt, show: int = typer.Option(20, "--show"),
               domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """Rank CVEs by the ATT&CK techniques they enable, weighted by the groups that use them."""
    from pathlib import Path

    from ttpscope.analyze.vulns import rank_cves
    from ttpscope.errors import InputError
    from ttpscope.kb.vulns import extract_cves

    try:
        text = Path(file).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(file, None, f"cannot read: {exc.strerror}") from exc
    cves = extract_cves(text)
    if not cves:
        raise InputError(file, None, "no CVE ids (CVE-YYYY-NNNN) found")
    kb = load(domain, bundle)
    maps = mappings_noted(mappings)
    prof = _profile(kb, profile, None, None, None, with_software)
    result = rank_cves(kb, maps, cves, prof)
    result["input"] = {"file": file, **result["counts"]}
    if json:
        print_json(result)
        return
    table(f"CVEs ranked for {result['profile']['name']}", ["cve", "score", "actors", "techniques", "description"],
          [(r["cve"], r["score"], len(r["actors"]),
            ", ".join(f"{t['id']}({t['mapping_type'][:3]})" for t in r["techniques"][:5]), r["description"][:80])
           for r in result["ranked"][:show]], caption=kb.label)
    c = result["counts"]
    console.print(f"{c['cves']} CVEs read from {file}: {c['mapped']} mapped, {c['unmapped']} without mappings"
                  + (f" ({', '.join(result['unmapped'][:10])})" if result["unmapped"] else ""))


# ------------------------------------------------------------------ hunting
@app.command()
def hunt(techniques: list[str] = typer.Argument(None, help="Technique ids to hunt for."),
         rules: list[str] = typer.Option(..., "--rules", "-r", help="Sigma rule folder(s) or file(s)."),
         layer: str = typer.Option(None, "--layer", help="Techniques from a Navigator layer or text file."),
         case: str = CaseOpt, target: str = TargetOpt, pipeline: str = PipelineOpt,
         domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """Hunting leads: the Sigma rules covering each technique, as queries for your SIEM."""
    from ttpscope.analyze.coverage import hunt_leads
    from ttpscope.investigate.inputs import case_techniques

    kb = load(domain, bundle)
    ids = _techniques_arg(list(techniques or []) + (case_techniques(case) if case else []), layer)
    loaded, _ = load_rules_noted(rules, kb)
    leads = hunt_leads(kb, loaded, ids, target, pipeline)
    for t in leads["unknown"]:
        note(f"{t}: not a technique of {kb.label}")
    if json:
        print_json(leads)
        return
    for tech in leads["techniques"]:
        console.rule(f"{tech['id']} {tech['name']}: {len(tech['rules'])} rules")
        for r in tech["rules"]:
            console.print(f"[bold]{r['title']}[/bold] ({r['level']}, {r['status']}) {r['id']}")
            if r["error"]:
                console.print(f"  [red]not converted:[/red] {r['error']}")
            for q in r["queries"]:
                console.print(q, markup=False, highlight=False, soft_wrap=True)
    c = leads["counts"]
    console.print(f"[dim]{c['rules']} rules, {c['converted']} converted to {leads['target']} "
                  f"({leads['pipeline']}), {c['failed']} failed; {kb.label}[/dim]")


