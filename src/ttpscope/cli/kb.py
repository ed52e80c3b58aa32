"""`ttpscope kb ...`: the ATT&CK knowledge base."""

from __future__ import annotations

import typer

from ttpscope.cli.output import (BundleOpt, DomainOpt, JsonOpt, MappingsOpt, console, load, mappings_noted, note,
                                 print_json, table)

app = typer.Typer(name="kb", help="Query the ATT&CK knowledge base (tactics, techniques, groups, software, campaigns).",
                  no_args_is_help=True)


def _footer(kb) -> str:
    return f"{kb.label} ({kb.source})"


def _names(kb, kind: str) -> dict[str, tuple[str, str]]:
    """{lower-case name or alias: (id, name)} of one kind of object, for suggestions."""
    objects = {"group": kb.groups, "software": kb.software, "technique": kb.techniques,
               "campaign": kb.campaigns}[kind]
    out: dict[str, tuple[str, str]] = {}
    for oid, obj in objects.items():
        if getattr(obj, "revoked", False) or getattr(obj, "deprecated", False):
            continue
        for alias in [obj.name, *(getattr(obj, "aliases", None) or []), *(getattr(obj, "misp_aliases", None) or [])]:
            out.setdefault(str(alias).lower(), (oid, obj.name))
    return out


def did_you_mean(kb, kind: str, query: str, limit: int = 3) -> str:
    """'; did you mean 'Fancy Bear' (G0007 APT28)?' for a name that matched nothing, or ''."""
    import difflib

    names = _names(kb, kind)
    close = difflib.get_close_matches(query.strip().lower(), list(names), n=limit * 3, cutoff=0.6)
    seen, shown = set(), []
    for alias in close:
        oid, name = names[alias]
        if oid in seen:
            continue
        seen.add(oid)
        original = next((a for a in _aliases(kb, kind, oid) if a.lower() == alias), name)
        shown.append(f"'{original}' ({oid}" + (f" {name})" if original != name else ")"))
        if len(shown) == limit:
            break
    return f"; did you mean {' or '.join(shown)}?" if shown else ""


def _aliases(kb, kind: str, oid: str) -> list[str]:
    obj = {"group": kb.groups, "software": kb.software, "technique": kb.techniques, "campaign": kb.campaigns}[kind][oid]
    return [obj.name, *(getattr(obj, "aliases", None) or []), *(getattr(obj, "misp_aliases", None) or [])]


def _lookup(kb, kind: str, query: str, view):
    """``view(kb, query)``; a name that matched nothing says which close names exist."""
    from ttpscope.errors import NotFoundError

    try:
        return view(kb, query)
    except NotFoundError as exc:
        hint = did_you_mean(kb, kind, query)
        if not hint:
            raise
        raise NotFoundError(f"{exc}{hint}") from exc


@app.command()
def info(domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """Domain, ATT&CK version and counts per object type."""
    kb = load(domain, bundle)
    data = kb.info()
    if json:
        print_json(data)
        return
    table(f"ATT&CK knowledge base: {kb.label}", ["object", "count"], data["counts"].items(),
          caption=f"source: {kb.source}")
    console.print("tactics: " + " → ".join(data["tactics"]))
    for w in kb.warnings[:5]:
        note(w)


@app.command()
def technique(technique_id: str = typer.Argument(..., help="T1059.001, an old (revoked) id, or a name."),
              domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt,
              procedures: int = typer.Option(10, help="How many procedure examples to show.")) -> None:
    """A technique: tactics, platforms, parent/subs, mitigations, detections, who uses it and how."""
    from ttpscope.kb.views import technique_view

    kb = load(domain, bundle)
    v = _lookup(kb, "technique", technique_id,
                lambda k, q: technique_view(k, q, procedures=None if json else procedures))
    if v["note"]:
        note(v["note"])
    if json:
        print_json(v)
        return
    console.print(f"[bold]{v['id']} {v['name']}[/bold]  tactics: {', '.join(v['tactics'])}  "
                  f"platforms: {', '.join(v['platforms'])}")
    if v["parent"]:
        console.print(f"sub-technique of {v['parent']['id']} {v['parent']['name']}")
    if v["subtechniques"]:
        console.print("sub-techniques: " + ", ".join(f"{s['id']} {s['name']}" for s in v["subtechniques"]))
    console.print(v["description"][:800])
    table("Mitigations", ["id", "name"], [(m["id"], m["name"]) for m in v["mitigations"]])
    table("Detection: data components", ["id", "name", "data source"],
          [(d["id"], d["name"], d["data_source"]) for d in v["data_components"]])
    if v["detection_strategies"]:
        table("Detection strategies", ["id", "name"], [(d["id"], d["name"]) for d in v["detection_strategies"]])
    table(f"Procedure examples ({len(kb.procedures_for(technique_id=v['id']))} in all)", ["by", "procedure"],
          [(f"{p['source']['id']} {p['source']['name']}", p["description"]) for p in v["procedures"]],
          caption=_footer(kb))


@app.command()
def group(name: str = typer.Argument(..., help="G-id, name or any alias (ATT&CK or MISP)."),
          domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """A threat group: aliases, techniques with provenance (direct / software / campaign), software, campaigns."""
    from ttpscope.kb.views import group_view

    kb = load(domain, bundle)
    v = _lookup(kb, "group", name, group_view)
    if v["note"]:
        note(v["note"])
    if json:
        print_json(v)
        return
    console.print(f"[bold]{v['id']} {v['name']}[/bold]  aliases: {', '.join(v['aliases'])}")
    if v["misp_aliases"]:
        console.print(f"MISP aliases: {', '.join(v['misp_aliases'][:15])}")
    if v["context"]:
        console.print("context: " + "; ".join(f"{k}: {', '.join(x) if isinstance(x, list) else x}"
                                              for k, x in v["context"].items()))
    table(f"Techniques ({len(v['techniques'])})", ["id", "name", "via"],
          [(t["id"], t["name"], ", ".join(t["via"][:3]) + (" …" if len(t["via"]) > 3 else ""))
           for t in v["techniques"]])
    console.print("software: " + ", ".join(f"{s['id']} {s['name']}" for s in v["software"]))
    console.print("campaigns: " + (", ".join(f"{c['id']} {c['name']}" for c in v["campaigns"]) or "none"))
    console.print(f"[dim]{_footer(kb)}[/dim]")


@app.command()
def software(name: str = typer.Argument(..., help="S-id, name or alias."),
             domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """A malware or tool: aliases, techniques with procedure text, groups and campaigns using it."""
    from ttpscope.kb.views import software_view

    kb = load(domain, bundle)
    v = _lookup(kb, "software", name, software_view)
    if json:
        print_json(v)
        return
    console.print(f"[bold]{v['id']} {v['name']}[/bold] ({v['type']})  aliases: {', '.join(v['aliases'])}")
    table(f"Techniques ({len(v['techniques'])})", ["id", "name", "procedure"],
          [(t["id"], t["name"], t["procedure"][:160]) for t in v["techniques"]])
    console.print("used by: " + ", ".join(f"{g['id']} {g['name']}" for g in v["groups"]))
    console.print(f"[dim]{_footer(kb)}[/dim]")


@app.command()
def campaign(name: str = typer.Argument(..., help="C-id or campaign name."),
             domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """A campaign: dates, attributed group, techniques, software."""
    from ttpscope.kb.views import campaign_view

    kb = load(domain, bundle)
    v = _lookup(kb, "campaign", name, campaign_view)
    if json:
        print_json(v)
        return
    console.print(f"[bold]{v['id']} {v['name']}[/bold]  {v['first_seen'] or '?'} → {v['last_seen'] or '?'}  "
                  f"attributed to: {', '.join(g['id'] + ' ' + g['name'] for g in v['groups']) or 'nobody'}")
    table(f"Techniques ({len(v['techniques'])})", ["id", "name", "procedure"],
          [(t["id"], t["name"], t["procedure"][:160]) for t in v["techniques"]], caption=_footer(kb))


@app.command()
def tactic(name: str = typer.Argument(..., help="TA-id, shortname (credential-access) or name."),
           domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """A tactic and its techniques."""
    from ttpscope.kb.views import tactic_view

    kb = load(domain, bundle)
    v = tactic_view(kb, name)
    if v["note"]:
        note(v["note"])
    if json:
        print_json(v)
        return
    console.print(f"[bold]{v['id']} {v['name']}[/bold] ({v['shortname']}, #{v['order'] + 1} in the matrix)")
    table(f"Techniques ({len(v['techniques'])})", ["id", "name"],
          [(t["id"], t["name"]) for t in v["techniques"]], caption=_footer(kb))


@app.command()
def search(query: str = typer.Argument(..., help="Free text, e.g. 'credential dumping'."),
           kind: list[str] = typer.Option(None, "--kind", help="technique, group, software, campaign, mitigation."),
           limit: int = typer.Option(20, help="How many results."),
           domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """Ranked search over names, aliases and descriptions."""
    kb = load(domain, bundle)
    hits = kb.search(query, kinds=kind or None, limit=limit)
    if json:
        print_json({"query": query, "results": hits, **kb.provenance()})
        return
    table(f"Search: {query}", ["kind", "id", "name", "score"],
          [(h["kind"], h["id"], h["name"], h["score"]) for h in hits], caption=_footer(kb))


@app.command()
def diff(old: str = typer.Argument(..., help="Older bundle: path, URL or 'embedded'."),
         new: str = typer.Argument(..., help="Newer bundle: path, URL or 'embedded'."),
         domain: str = DomainOpt, json: bool = JsonOpt) -> None:
    """What changed between two releases: techniques added/revoked/deprecated/renamed/moved, groups."""
    from ttpscope.kb import load_kb
    from ttpscope.kb.diff import diff_kb

    a, b = load_kb(domain, old), load_kb(domain, new)
    d = diff_kb(a, b)
    if json:
        print_json(d)
        return
    console.print(f"[bold]{a.label}[/bold] → [bold]{b.label}[/bold]")
    if d["tactics"]["added"] or d["tactics"]["removed"]:
        console.print(f"tactics added: {d['tactics']['added']}  removed: {d['tactics']['removed']}")
    table("Summary", ["change", "count"], d["summary"].items())
    t = d["techniques"]
    table("Techniques added", ["id", "name", "tactics"], [(x["id"], x["name"], ", ".join(x["tactics"])) for x in t["added"]])
    table("Techniques revoked", ["id", "name", "replaced by"],
          [(x["id"], x["name"], f"{x['replaced_by'] or '-'} {x['replacement_name'] or ''}") for x in t["revoked"]])
    table("Techniques deprecated", ["id", "name"], [(x["id"], x["name"]) for x in t["deprecated"]])
    table("Techniques renamed", ["id", "old name", "new name"], [(x["id"], x["old_name"], x["new_name"]) for x in t["renamed"]])
    table("Techniques moved between tactics", ["id", "name", "from", "to"],
          [(x["id"], x["name"], ", ".join(x["old_tactics"]), ", ".join(x["new_tactics"])) for x in t["moved"]])
    table("Groups added", ["id", "name"], [(x["id"], x["name"]) for x in d["groups"]["added"]])
    table("Group profile changes", ["id", "name", "gained", "lost"],
          [(x["id"], x["name"], " ".join(x["gained"]), " ".join(x["lost"])) for x in d["groups"]["profile_changes"]])


@app.command()
def update(domain: list[str] = typer.Option(None, "--domain", "-d", help="Domains to fetch (default: all three)."),
           mirror: str = typer.Option(None, help="Base URL of an attack-stix-data mirror."),
           index_url: str = typer.Option(None, help="URL of the collection index.json."),
           json: bool = JsonOpt) -> None:
    """Fetch the newest Enterprise/Mobile/ICS release from the official attack-stix-data repository."""
    from ttpscope.kb.base import DOMAINS
    from ttpscope.kb.sources import update as do_update

    done = do_update(tuple(domain) if domain else DOMAINS, index_url=index_url, mirror=mirror)
    if json:
        print_json(done)
        return
    table("ATT&CK releases now in use", ["domain", "version", "file"],
          [(d, v["version"], v["path"]) for d, v in done.items()])


@app.command()
def cve(cve_id: str = typer.Argument(..., help="CVE id, e.g. CVE-2021-44228."),
        mappings: list[str] = MappingsOpt, domain: str = DomainOpt, bundle: str = BundleOpt,
        json: bool = JsonOpt) -> None:
    """The ATT&CK techniques a CVE enables, by mapping type (exploitation, primary / secondary impact)."""
    from ttpscope.kb.vulns import cve_view

    maps = mappings_noted(mappings)
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
