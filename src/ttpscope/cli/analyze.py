"""`ttpscope lifecycle | attribute | overlap | anticipate`: understand a case (thin shells over ttpscope.analyze)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ttpscope.cli.output import BundleOpt, DomainOpt, FeedsOpt, JsonOpt, console, load, note, print_json, table

app = typer.Typer()

TechArgs = typer.Argument(None, help="Technique ids (T1566.001 T1059.001 ...); old ids are followed.")
CaseOpt = typer.Option(None, "--case", "-c", help="A case: its name or id in the workspace, or a case JSON file.")
LayerOpt = typer.Option(None, "--layer", "--file", "-f",
                        help="A Navigator layer (JSON) or a text file of technique ids.")


def load_case(ref: str):
    """A Case from a case JSON file, else by name or id from the workspace (``ttpscope.investigate.inputs``)."""
    from ttpscope.investigate.inputs import load_case as load

    return load(ref)


def _stored_case(ref: str):
    """The workspace case of this name or id, or None (without creating anything)."""
    from ttpscope.store import Workspace, default_path

    if not default_path().exists():
        return None
    ws = Workspace()
    return ws.get_case(ref) if ws.has_case(ref) else None


def gather(techniques: list[str] | None, case: str | None, layer: Path | None, what: str = "techniques"):
    """Technique input from arguments, a layer/text file or a case; exactly one source must give some."""
    from ttpscope.errors import InputError
    from ttpscope.investigate.inputs import techniques_from

    if case:
        if techniques or layer:
            raise InputError("arguments", None, "give technique ids, --layer or --case, not several")
        return load_case(case)
    ids = techniques_from(techniques, layer)
    if not ids:
        raise InputError("arguments", None, f"no {what}: give technique ids, --layer FILE or --case CASE")
    return ids


def _notes(result) -> None:
    for n in getattr(result, "notes", []) or []:
        note(n)
    for u in getattr(result, "unresolved", []) or []:
        note(f"not a technique in the knowledge base: {u}")


@app.command("lifecycle")
def lifecycle_cmd(case: str = typer.Argument(..., help="Case name/id in the workspace, or a case JSON file."),
                  domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt,
                  steps: int = typer.Option(30, help="Timeline steps to show.")) -> None:
    """Tactics reached in matrix order, furthest stage, per-host timeline and a reading of intent."""
    from ttpscope.analyze.lifecycle import lifecycle

    kb = load(domain, bundle)
    result = lifecycle(load_case(case), kb)
    if json:
        print_json(result.to_dict())
        return
    _notes(result)
    rows = []
    for t in result.tactics:
        for tech in t["techniques"]:
            rows.append((t["name"], tech["technique_id"], tech["name"], tech["observations"], tech["placed_by"],
                         ", ".join(tech["hosts"])))
    table(f"Lifecycle of {result.case['name']}", ["tactic", "technique", "name", "obs", "placed by", "hosts"], rows,
          caption=kb.label)
    if result.timeline:
        table("Timeline", ["time", "host", "tactic", "technique"],
              [(s["time"], s["host"], s["tactic_name"], f"{s['technique_id']} {s['technique_name']}")
               for s in result.timeline[:steps]])
    console.print(result.reading)


@app.command("attribute")
def attribute_cmd(techniques: Optional[list[str]] = TechArgs, case: Optional[str] = CaseOpt,
                  layer: Optional[Path] = LayerOpt, top: int = typer.Option(10, help="Candidates to list."),
                  campaigns: bool = typer.Option(False, "--campaigns",
                                                 help="Rank ATT&CK campaigns instead of groups."),
                  full: bool = typer.Option(False, "--full", help="With --json: the whole answer (groups, "
                                            "campaigns, verdict, information) instead of the candidate list."),
                  domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt,
                  feeds: bool = FeedsOpt) -> None:
    """Rank known groups (or campaigns) by how well they explain the techniques; hunting leads for each."""
    from ttpscope.analyze.attribution import attribute

    kb = load(domain, bundle, feeds)
    result = attribute(gather(techniques, case, layer), kb, top=top)
    ranked = result.campaigns if campaigns else result.groups
    if json:
        if full:
            print_json(result.to_dict())
        else:
            print_json([{**c.to_dict(), "insufficient_evidence": result.insufficient_evidence} for c in ranked])
        return
    _notes(result)
    rows = [(c.rank, c.id, c.name, f"{c.score:.2f}", f"{c.confidence:.2f}", len(c.explained),
             c.context.get("country", "") if c.kind == "group" else (c.context.get("first_seen") or "")[:10],
             " ".join(m.technique_id for m in c.explained[:6]), c.context.get("source", "")) for c in ranked]
    kind = "Campaigns" if campaigns else "Groups"
    table(f"{kind} that best explain {len(result.observed)} techniques", ["#", "id", "name", "score", "conf",
          "explains", "country" if not campaigns else "first seen", "strongest evidence", "profile from"], rows,
          caption=kb.label)
    style = "yellow" if result.insufficient_evidence else "green"
    console.print(f"[{style}]{result.verdict}[/{style}]")
    best = ranked[0] if ranked else None
    if best and best.closest_instance:
        ci = best.closest_instance
        console.print(f"Closest past evidence for {best.name}: {ci['kind']} {ci['name']} "
                      f"(similarity {ci['similarity']:.2f})")
    if best and best.text and best.text["shared_terms"]:
        console.print(f"Evidence text shares with {best.name}'s procedures: {', '.join(best.text['shared_terms'])}")
    if best and best.missing:
        console.print(f"Hunting leads for {best.name} (known, not observed): "
                      + ", ".join(f"{m['technique_id']} {m['name']}" for m in best.missing))


@app.command("overlap")
def overlap_cmd(items: list[str] = typer.Argument(..., help="Cases (JSON file or workspace name/id), ATT&CK "
                                                  "campaigns or groups (id or name)."),
                threshold: float = typer.Option(0.75, help="Cut the dendrogram at this distance (1 - similarity)."),
                domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt,
                feeds: bool = FeedsOpt) -> None:
    """Pairwise similarity of cases, campaigns and groups, shared/distinguishing techniques, clusters."""
    from ttpscope.analyze.overlap import overlap
    from ttpscope.errors import NotFoundError

    kb = load(domain, bundle, feeds)
    resolved = []
    for ref in items:  # a case file, then a stored case, then an ATT&CK campaign or group
        if Path(ref).is_file():
            resolved.append(load_case(ref))
            continue
        stored = _stored_case(ref)
        if stored is not None:
            resolved.append(stored)
            continue
        try:
            kb.campaign(ref)
            resolved.append(ref)
            continue
        except NotFoundError:
            pass
        if kb.resolve_group(ref).id:
            resolved.append(ref)
            continue
        raise NotFoundError(f"'{ref}' is not a case file, a stored case, or an ATT&CK campaign or group "
                            f"in {kb.label}")
    result = overlap(resolved, kb, threshold=threshold)
    if json:
        print_json(result.to_dict())
        return
    keys = [it["key"] for it in result.items]
    table("Similarity (weighted Jaccard)", ["", *keys],
          [(k, *(f"{x:.2f}" for x in row)) for k, row in zip(keys, result.matrix)], caption=kb.label)
    table("Pairs", ["a", "b", "sim", "shared (rarest first)", "only a", "only b"],
          [(p["a"], p["b"], f"{p['similarity']:.2f}", " ".join(s["technique_id"] for s in p["shared"][:5]),
            " ".join(s["technique_id"] for s in p["only_a"][:3]), " ".join(s["technique_id"] for s in p["only_b"][:3]))
           for p in result.pairs[:20]])
    console.print("Clusters: " + " | ".join(", ".join(c) for c in result.clustering["clusters"]))


@app.command("anticipate")
def anticipate_cmd(techniques: Optional[list[str]] = TechArgs, case: Optional[str] = CaseOpt,
                   layer: Optional[Path] = LayerOpt, top: int = typer.Option(10, help="Predictions to list."),
                   domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt,
                   feeds: bool = FeedsOpt) -> None:
    """The techniques most likely to come next, why, and what to watch (data components, mitigations)."""
    from ttpscope.analyze.anticipate import anticipate

    kb = load(domain, bundle, feeds)
    result = anticipate(gather(techniques, case, layer), kb, top=top)
    if json:
        print_json(result.to_dict())
        return
    _notes(result)
    rows = [(i, p.technique_id, p.name, ", ".join(p.tactics), f"{p.score:.2f}", "later" if p.later_stage else "",
             " ".join(b["technique_id"] for b in p.because_of),
             "; ".join(d["name"] for d in p.watch["data_components"][:3]),
             "; ".join(m["name"] for m in p.watch["mitigations"][:2]))
            for i, p in enumerate(result.predictions, 1)]
    table(f"Likely next, after {len(result.observed)} observed techniques "
          f"(reached: {', '.join(result.reached_tactics) or 'none'})",
          ["#", "technique", "name", "tactics", "score", "stage", "because of", "watch", "mitigate"], rows,
          caption=kb.label)
