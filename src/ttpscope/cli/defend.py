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


# ------------------------------------------------------------------ shared helpers
def _techniques_arg(ids: list[str] | None, layer: str | None) -> list[str]:
    """Technique ids from arguments and/or a Navigator layer / text file."""
    from ttpscope.export.layers import technique_ids_from_file

    out = list(ids or [])
    if layer:
        out.extend(technique_ids_from_file(layer))
    if not out:
        from ttpscope.errors import InputError

        raise InputError("techniques", None, "give technique ids (T1003.001 ...) or --layer FILE")
    return list(dict.fromkeys(out))


def _case_techniques(case_ref: str) -> list[str]:
    from ttpscope.store.workspace import Workspace

    case = Workspace().get_case(case_ref)
    return sorted({o.technique_id for o in case.observations})


def _attribution_ranking(kb, techniques: list[str]):
    """[(group id, confidence)] from ttpscope.analyze.attribution, best first."""
    try:
        from ttpscope.analyze.attribution import attribute
    except ImportError as exc:  # the analyze package's attribution is a separate delivery
        from ttpscope.errors import TtpscopeError

        raise TtpscopeError("--profile-top needs ttpscope.analyze.attribution, which is not installed") from exc
    result = attribute(techniques, kb)
    return [(c.id, c.confidence) for c in result.groups]


def _profile(kb, groups: list[str] | None, top: int | None, case: str | None, observed: list[str] | None,
             with_software: bool):
    """--profile GROUP... | --profile all | --profile-top N (--case CASE | --observed T...) → ThreatProfile."""
    from ttpscope.analyze.profile import (DEFAULT_VIA, profile_all_groups, profile_from_groups,
                                          profile_from_ranking)

    via = set(DEFAULT_VIA) | ({"software"} if with_software else set())
    if top:
        techniques = _case_techniques(case) if case else list(observed or [])
        if not techniques:
            from ttpscope.errors import InputError

            raise InputError("--profile-top", None, "needs the evidence to attribute: --case CASE or --observed T...")
        return profile_from_ranking(kb, _attribution_ranking(kb, techniques), top, via=via)
    if groups and [g.lower() for g in groups] == ["all"]:
        return profile_all_groups(kb, via=via)
    if groups:
        return profile_from_groups(kb, groups, via=via)
    return None


def _load_rules(paths: list[str], kb):
    """Sigma rules through ttpscope.detect.rules; rules that fail to load are reported, not fatal."""
    from ttpscope.detect.rules import load_rules

    ruleset = load_rules(paths, kb=kb)
    errors = [": ".join(map(str, e)) if isinstance(e, tuple) else str(e) for e in getattr(ruleset, "errors", []) or []]
    if errors:
        note(f"{len(errors)} rules could not be loaded (first: {errors[0]})")
    return list(getattr(ruleset, "rules", ruleset)), errors


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
    loaded, errors = _load_rules(rules, kb)
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
    console.print(f"[bold]Coverage of {title}[/bold]: {report['coverage']:.1%} of {c['techniques']} techniques "
                  f"detected ({c['detected']}); observable (not PRE-only): {report['coverage_observable']:.1%}; "
                  f"weighted: {report['weighted_coverage']:.1%}. Rules: {c['rules']} "
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
def mitigate(techniques: list[str] = typer.Argument(None, help="Technique ids."),
             layer: str = typer.Option(None, "--layer", help="Techniques from a Navigator layer or text file."),
             case: str = CaseOpt, show: int = typer.Option(15, "--show"),
             domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """Mitigations covering the most techniques with the fewest M-ids, data to collect, detection strategies."""
    from ttpscope.analyze.mitigations import mitigation_plan

    kb = load(domain, bundle)
    ids = _techniques_arg(list(techniques or []) + (_case_techniques(case) if case else []), layer)
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

    from ttpscope.analyze.emulation import emulation_plan, plan_markdown
    from ttpscope.export.layers import plan_layer
    from ttpscope.kb.atomics import load_atomics
    from ttpscope.analyze.profile import DEFAULT_VIA

    kb = load(domain, bundle)
    if not group:
        if not case:
            from ttpscope.errors import InputError

            raise InputError("emulate", None, "give a GROUP or --case CASE")
        ranking = _attribution_ranking(kb, _case_techniques(case))
        if not ranking:
            from ttpscope.errors import NotFoundError

            raise NotFoundError(f"the attribution of case {case} ranked no group")
        group = ranking[0][0]
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
    maps = _mappings(mappings)
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


# ------------------------------------------------------------------ hunting and conversion
TargetOpt = typer.Option("splunk", "--target", "-t", help="splunk | elasticsearch (Lucene) | esql | kusto (KQL).")
PipelineOpt = typer.Option("default", "--pipeline", help="pySigma processing pipeline: 'default' for the "
                           "target, 'none', an installed pipeline name, or a pipeline YAML file.")


def hunt(techniques: list[str] = typer.Argument(None, help="Technique ids to hunt for."),
         rules: list[str] = typer.Option(..., "--rules", "-r", help="Sigma rule folder(s) or file(s)."),
         layer: str = typer.Option(None, "--layer", help="Techniques from a Navigator layer or text file."),
         case: str = CaseOpt, target: str = TargetOpt, pipeline: str = PipelineOpt,
         domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """Hunting leads: the Sigma rules covering each technique, as queries for your SIEM."""
    from ttpscope.analyze.coverage import hunt_leads

    kb = load(domain, bundle)
    ids = _techniques_arg(list(techniques or []) + (_case_techniques(case) if case else []), layer)
    loaded, _ = _load_rules(rules, kb)
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


def convert(rules: list[str] = typer.Argument(..., help="Sigma rule files or folders."),
            target: str = TargetOpt, pipeline: str = PipelineOpt,
            out: str = typer.Option(None, "--out", help="Write the queries to this file (one per line)."),
            json: bool = JsonOpt) -> None:
    """Convert Sigma rules to Splunk SPL, Elasticsearch Lucene / ES|QL or Microsoft KQL; failures with reasons."""
    from pathlib import Path

    from ttpscope.detect.convert import convert_rules

    loaded, errors = _load_rules(rules, None)
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
