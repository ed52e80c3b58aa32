"""`ttpscope extract REPORT...` and `ttpscope extract train --labelled FILE`: threat reports to techniques."""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from ttpscope.cli.output import BundleOpt, DomainOpt, JsonOpt, console, err_console, load, note, print_json, table


class _ReportsByDefault(TyperGroup):
    """`ttpscope extract a.pdf b.html` runs the hidden `run` command; `ttpscope extract train` trains.
    `ttpscope extract --help` shows run's own options (the reader's question), which name `train` too."""

    def parse_args(self, ctx, args):
        if not args:
            args = ["--help"]
        if args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        if name == "run":  # the usage line reads `ttpscope extract [OPTIONS] REPORTS...`, as it is typed
            cmd.context_class = _UnnamedContext
            return "", cmd, rest
        return name, cmd, rest


class _UnnamedContext(typer.Context):
    """The context of a command run without typing its name: no trailing blank in its command path."""

    @property
    def command_path(self) -> str:
        return super().command_path.rstrip()


app = typer.Typer(name="extract", cls=_ReportsByDefault, no_args_is_help=True,
                  help="Read threat reports: techniques with their evidence sentences, actors, software, IOCs, "
                       "CVEs.\n\nUsage: ttpscope extract REPORT... [--min-confidence X] [--json] "
                       "[--highlight out.html]  (REPORT: .txt .md .html .pdf, or - for stdin)")


class _Progress:
    """Progress on stderr: a Rich bar on a terminal, a line per 10 % otherwise (logs, CI, pipes)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.tty = err_console.is_terminal
        self.bar = None
        self.tasks: dict[str, int] = {}
        self.last: dict[str, int] = {}

    def __enter__(self):
        if self.enabled and self.tty:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                TimeRemainingColumn(), console=err_console, transient=True)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        if self.bar is not None:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(stage, total=total)
            self.bar.update(self.tasks[stage], completed=done, total=total)
            return
        step = int(10 * done / total)
        if step > self.last.get(stage, -1):
            self.last[stage] = step
            print(f"ttpscope: {stage}: {min(100, step * 10)}%", file=sys.stderr, flush=True)


def _cve_mappings(sources: list[str] | None):
    """CTID CVE mappings from --cve-mappings or TTPSCOPE_CVE_MAPPINGS; None (CVEs listed unlinked) if neither."""
    from ttpscope.kb.vulns import configured_mappings

    return configured_mappings(sources)


REPORT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst", ".html", ".htm", ".xhtml", ".pdf")


def _expand(reports: list[str]) -> list[str]:
    """Report files, with each folder replaced by the report files inside it (sorted, hidden ones skipped).
    A folder holding none is a usage error naming it."""
    from pathlib import Path

    from ttpscope.errors import InputError

    out: list[str] = []
    for item in reports:
        path = Path(item)
        if item == "-" or not path.is_dir():
            out.append(item)
            continue
        found = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in REPORT_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not found:
            raise InputError(item, None, "no report files in this folder (" + " ".join(REPORT_SUFFIXES) + ")")
        out += found
    return out


class _LibraryWarnings:
    """Warnings the PDF and HTML libraries print on their own (pypdf's "Ignoring wrong pointing object"...),
    caught while one report is read and then given as one ttpscope line per kind, with a count."""

    LOGGERS = ("pypdf", "PyPDF2", "bs4", "readability", "trafilatura")

    def __init__(self, name: str):
        import logging

        self.name = name
        self.seen: dict[str, int] = {}
        outer = self

        class _Collect(logging.Handler):
            def emit(self, record):
                outer._add(f"{record.name.split('.')[0]}: {record.getMessage()}")

        self.handler = _Collect(level=logging.WARNING)

    def _add(self, message: str) -> None:
        key = " ".join(str(message).split())[:160]
        self.seen[key] = self.seen.get(key, 0) + 1

    def __enter__(self):
        import logging
        import warnings

        self.saved = []
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            self.saved.append((logger, logger.propagate, list(logger.handlers)))
            logger.handlers = [self.handler]
            logger.propagate = False
        self.catch = warnings.catch_warnings(record=True)
        self.caught = self.catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self.catch.__exit__(*exc)
        for logger, propagate, handlers in self.saved:
            logger.handlers, logger.propagate = handlers, propagate
        for w in self.caught:
            self._add(f"{w.category.__name__}: {w.message}")
        for message, count in self.seen.items():
            note(f"{self.name}: {message}" + (f" (×{count})" if count > 1 else ""))
        return False


@app.command("run", hidden=True)
def run(reports: list[str] = typer.Argument(..., help="Report files (.txt .md .html .pdf), folders of them, "
                                            "or - for stdin."),
        min_confidence: float = typer.Option(None, "--min-confidence", min=0.0, max=1.0,
                                             help="Claims below this confidence are dropped (default: the "
                                                  "model's calibrated threshold)."),
        highlight: str = typer.Option(None, "--highlight", help="Write the report as HTML with every evidence "
                                      "sentence marked (one report; with several, NAME is suffixed)."),
        cve_mappings: list[str] = typer.Option(None, "--cve-mappings", help="CTID CVE→ATT&CK mapping files or "
                                               "folders (default: TTPSCOPE_CVE_MAPPINGS if set)."),
        no_iocs: bool = typer.Option(False, "--no-iocs", help="Skip indicator extraction."),
        time_budget: float = typer.Option(900.0, "--time-budget", min=0.0, help="Seconds each long stage of one "
                                          "report (sentences, indicators) may take; then what was read is kept, "
                                          "with a warning (0: no limit)."),
        all_evidence: bool = typer.Option(False, "--all-evidence", help="JSON: every evidence sentence, not the "
                                          "best five per technique."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
        case: str = typer.Option(None, "--case", help="Add the observations (and the documents) to this "
                                 "workspace case, created if needed."),
        domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """Read threat reports: techniques with the sentences that support them; actors, software, IOCs, CVEs.

    Train the classifier on your own labelled sentences with 'ttpscope extract train --help'."""
    from pathlib import Path

    from ttpscope.errors import TtpscopeError
    from ttpscope.extract import extract_file
    from rich.markup import escape

    from ttpscope.extract.highlight import render_highlight

    reports = _expand(reports)
    kb = load(domain, bundle)
    mappings = _cve_mappings(cve_mappings)
    results, failed = [], 0
    with _Progress(not quiet) as progress:
        for report in reports:
            try:
                with _LibraryWarnings(report):
                    results.append(extract_file(report, kb, min_confidence, progress=progress,
                                                with_iocs=not no_iocs, cve_mappings=mappings,
                                                time_budget=time_budget or None))
                for line in results[-1].warnings:  # a budget hit: said, what was extracted is kept
                    err_console.print(f"[yellow]ttpscope: warning:[/yellow] {escape(line)}", highlight=False)
            except TtpscopeError as exc:
                if len(reports) == 1:
                    raise
                failed += 1
                err_console.print(f"[red]ttpscope: error:[/red] {exc}")  # one bad file never loses the others
    if highlight:
        for i, res in enumerate(results):
            out = Path(highlight) if len(results) == 1 else \
                Path(highlight).with_name(f"{Path(highlight).stem}-{i + 1}{Path(highlight).suffix or '.html'}")
            out.write_text(render_highlight(res), encoding="utf-8")
            if not json:
                note(f"highlighted report written to {out}")
    if case and results:
        from ttpscope.store.workspace import Workspace

        saved = Workspace().add_to_case(case, [o for r in results for o in r.observations],
                                        documents=[_case_document(r) for r in results])
        if not json:
            note(f"{sum(len(r.observations) for r in results)} observations added to case '{saved.name}' "
                 f"({saved.id})")
    if json:
        docs = [r.to_dict(None if all_evidence else 5) for r in results]
        print_json(docs[0] if len(reports) == 1 else {"reports": docs, "read": len(reports),
                                                       "accepted": len(results), "rejected": failed})
    else:
        for res in results:
            _print_result(res)
        if len(reports) > 1:
            console.print(f"{len(reports)} reports read: {len(results)} extracted, {failed} rejected")
    if failed and not results:
        raise typer.Exit(2)


def _case_document(res):
    """A report as the workspace keeps it beside its case (the record ``investigate`` stores too)."""
    import hashlib

    from ttpscope.investigate.stages import report_document

    return report_document(res, res.document.name, hashlib.sha256(res.document.text.encode()).hexdigest())


def _short(text: str, n: int = 140) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _print_result(res) -> None:
    doc = res.document
    rows = [(t.id, t.name, f"{t.confidence:.2f}", len(t.evidence), t.evidence[0].method, _short(t.evidence[0].sentence))
            for t in res.techniques]
    table(f"{doc.title or doc.name}: {len(res.techniques)} techniques", ["id", "name", "conf", "sent", "method",
                                                                         "best evidence"], rows,
          caption=f"{doc.name} · {res.sentences} sentences · {res.kb['domain']} ATT&CK v{res.kb['attack_version']} "
                  f"· confidence ≥ {res.min_confidence:.2f}")
    if res.groups:
        console.print("[bold]Groups:[/bold] " + ", ".join(
            f"{g['name']} ({g['id']}, {g['count']}×; {len(g['also_observed'])}/{g['known_techniques']} known "
            f"techniques seen here)" for g in res.groups))
    if res.software:
        console.print("[bold]Software:[/bold] " + ", ".join(f"{s['name']} ({s['id']}, {s['count']}×)"
                                                           for s in res.software))
    if res.iocs:
        console.print("[bold]Indicators:[/bold] " + ", ".join(f"{k} {len(v)}" for k, v in res.iocs.items()))
    if res.cves:
        parts = []
        for c in res.cves:
            techs = ", ".join(f"{t['id']}" for t in c.get("techniques", []))
            parts.append(f"{c['id']}" + (f" → {techs}" if techs else ""))
        console.print("[bold]CVEs:[/bold] " + "; ".join(parts))


@app.command("train")
def train(labelled: list[str] = typer.Option(..., "--labelled", "-l", help="Labelled sentences: TRAM/MAT "
                                             "annotated reports (.mjson, or a folder of them), TRAM single-label "
                                             "JSON, a sentence table, or JSON lines {text, labels}."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
          domain: str = DomainOpt, bundle: str = BundleOpt, json: bool = JsonOpt) -> None:
    """Train the technique classifier on the KB plus your labelled sentences; it becomes the default."""
    from ttpscope.errors import InputError
    from ttpscope.extract.classifier import train_custom
    from ttpscope.extract.labelled import read_labelled

    kb = load(domain, bundle)
    sentences, counts = [], []
    for path in labelled:
        ls = read_labelled(path, kb)
        sentences += ls.sentences
        counts.append({"source": path, "read": ls.read, "accepted": ls.accepted, "rejected": ls.rejected,
                       "problems": ls.problems[:10]})
        for p in ls.problems[:5]:
            note(p)
    if not sentences:
        raise InputError(", ".join(labelled), None, "no labelled sentences accepted")
    with _Progress(not quiet) as progress:
        model = train_custom(kb, sentences, progress=progress, source=", ".join(labelled))
    info = {k: model.info[k] for k in ("kb", "examples", "report_sentences", "techniques", "threshold",
                                        "calibration", "train_seconds", "labelled_sentences")}
    if json:
        print_json({"inputs": counts, "model": info, **kb.provenance()})
        return
    for c in counts:
        console.print(f"{c['source']}: read {c['read']}, accepted {c['accepted']}, rejected {c['rejected']}")
    console.print(f"trained on {info['examples']} sentences ({info['report_sentences']} from labelled reports) "
                  f"over {info['techniques']} techniques of {info['kb']} in {info['train_seconds']} s; "
                  f"threshold {info['threshold']:.2f} (held-out F1 {info['calibration'].get('held_out_f1')})")
