"""The closing summary of `investigate` and `detect`, in the manner of Hayabusa's and Chainsaw's results
summary: what was read, detections per level, the rules, hosts and hours that stand out, in a few dozen lines
whatever the size of the evidence. Rules that fire on a large share of one source's events are named once as
noisy and kept out of the top lists, where they would hide everything else; nothing is dropped from the
workspace or the outputs, the summary only chooses what to print. Progress for a log, not a terminal, is
plain lines too (:class:`PlainProgress`).
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

import typer

LEVELS = ("informational", "low", "medium", "high", "critical")
LEVEL_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "informational": "dim"}
TOP = 5  # rows of each top list
PROBLEM_GROUPS = 2  # lines of file problems (files with the same problem share one; skipped files one in all)
NOISY_SHOWN = 2  # noisy rules named (all of them are counted)
CLUSTERS_SHOWN = 3  # clusters named when a case looks like several intrusions
NOISY_MIN_HITS = 50  # fewer hits than this on a source are never noise, whatever their share


def level_rank(level: str | None) -> int:
    """0 (informational, and rules without a level) to 4 (critical)."""
    try:
        return LEVELS.index(str(level or "").lower())
    except ValueError:
        return 0


def min_level_option(value: str) -> str:
    """Typer callback for --min-level: one of the Sigma levels."""
    level = (value or "").strip().lower()
    if level not in LEVELS:
        raise typer.BadParameter(f"{value!r} is not a rule level; one of {', '.join(LEVELS)}")
    return level


def _get(det: Any, key: str) -> Any:
    """A field of a detection, stored (a dict) or fresh from the engine (a Detection)."""
    return det.get(key) if isinstance(det, dict) else getattr(det, key, None)


def _hour(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:00")
    text = str(value)
    return f"{text[:10]} {text[11:13]}:00" if len(text) >= 13 else None


def _owner(source: str) -> str:
    """The evidence file of a detection's source (a member of an archive is ``file!member``)."""
    return source.split("!", 1)[0]


@dataclass
class RunSummary:
    """What a run read and found; :meth:`lines` renders it."""

    detections: list[Any]
    events: dict[str, int] = field(default_factory=dict)  # accepted events per source, for the noise check
    files: int = 0
    where: str | None = None  # the folder the files share
    logs: int = 0
    reports: int = 0
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    formats: Counter = field(default_factory=Counter)
    rules: str | None = None  # one line about the rules, when the caller knows it
    min_level: str = "low"
    noisy_share: float = 0.10
    problems: list[str] = field(default_factory=list)  # files that were not (fully) read, shortest first
    more_hint: str = ""  # how to see every file
    head: bool = True  # the evidence, events and rules lines (a caller with its own header turns them off)
    sightings: dict[str, Any] | None = None  # feed indicator matching: indicators, sightings, events, top values

    def noisy(self) -> dict[str, dict[str, Any]]:
        """Rules firing on more than ``noisy_share`` of some source's accepted events (and at least
        NOISY_MIN_HITS times there): {rule key: title, level, hits in all, the worst source and its share}."""
        per_source: Counter = Counter()
        for det in self.detections:
            per_source[(_key(det), str(_get(det, "source") or ""))] += 1
        found: dict[str, dict[str, Any]] = {}
        for (rule, source), hits in per_source.items():
            events = self.events.get(source) or self.events.get(_owner(source))
            if not events or hits < NOISY_MIN_HITS or hits / events <= self.noisy_share:
                continue
            share = hits / events
            if rule not in found or share > found[rule]["share"]:
                found[rule] = {"share": share, "source": source}
        if not found:
            return {}
        totals: Counter = Counter(_key(d) for d in self.detections if _key(d) in found)
        for det in self.detections:
            info = found.get(_key(det))
            if info is not None and "title" not in info:
                info.update(title=_get(det, "title") or _key(det), level=_get(det, "level"))
        for rule, info in found.items():
            info["hits"] = totals[rule]
        return dict(sorted(found.items(), key=lambda kv: -kv[1]["hits"]))

    def lines(self) -> list[str]:
        """The summary as Rich-markup lines (:func:`print_summary` crops each to the console's width)."""
        out: list[str] = []
        if self.head:
            out += self._head()
        out += self._body()
        return out

    def _head(self) -> list[str]:
        from rich.markup import escape

        out: list[str] = []
        kinds = ", ".join(f"{n:,} {k}" for k, n in (("event logs", self.logs), ("reports", self.reports)) if n)
        out.append(f"[bold]Evidence[/bold]    {self.files:,} file(s)" + (f" ({kinds})" if kinds else "")
                   + (f" [dim]under {escape(self.where)}[/dim]" if self.where else ""))
        if self.logs or self.read:
            fmts = ", ".join(f"{k} {n:,}" for k, n in self.formats.most_common(4))
            out.append(f"[bold]Events[/bold]      {self.read:,} read · {self.accepted:,} accepted · "
                       f"{self.rejected:,} rejected" + (f"   [dim]({escape(fmts)})[/dim]" if fmts else ""))
        groups = problem_groups(self.problems)
        skips = [(why[len("skipped: "):], names) for why, names in groups if why.startswith("skipped: ")]
        if skips:  # files left out on purpose (documentation, already in the case): one line says which
            names = [n for _, ns in skips for n in ns]
            one = f"{names[0]}: skipped: {skips[0][0]}" if len(names) == 1 else (
                f"{len(names)} files skipped: " + " · ".join(f"{why} ({len(ns)})" for why, ns in skips))
            out.append(f"  [yellow]![/yellow] {escape(one)}")
        others = [g for g in groups if not g[0].startswith("skipped: ")]
        for why, names in others[:PROBLEM_GROUPS]:
            files = ", ".join(names[:3]) + (" …" if len(names) > 3 else "")
            out.append(f"  [yellow]![/yellow] {escape(f'{names[0]}: {why}' if len(names) == 1 else f'{len(names)} files {why}: {files}')}")
        hint = f" ({self.more_hint})" if self.more_hint else ""
        rest = sum(len(names) for _, names in others[PROBLEM_GROUPS:])
        if rest:
            out.append(f"  [yellow]![/yellow] … and {rest} more file(s) with problems{hint}")
        if self.rules:
            out.append(f"[bold]Rules[/bold]       {escape(self.rules)}")
        return out

    def _body(self) -> list[str]:
        from rich.markup import escape

        out: list[str] = []
        floor = level_rank(self.min_level)
        by_level = Counter(LEVELS[level_rank(_get(d, "level"))] for d in self.detections)
        shown = [d for d in self.detections if level_rank(_get(d, "level")) >= floor]
        levels = " · ".join(f"[{LEVEL_STYLE[lv]}]{lv}[/{LEVEL_STYLE[lv]}] {by_level[lv]:,}"
                            for lv in reversed(LEVELS) if by_level[lv])
        hidden = len(self.detections) - len(shown)
        out.append(f"[bold]Detections[/bold]  {len(self.detections):,}" + (f": {levels}" if levels else ""))
        if hidden:
            out.append(f"  [dim]{hidden:,} below {self.min_level} not in the lists below (the case keeps them)[/dim]")
        if self.sightings is not None:  # indicator matches: their own line, never counted as techniques
            m = self.sightings
            top = " · ".join(f"{escape(str(v))} {n:,}" for v, n in (m.get("top") or [])[:4])
            out.append(f"[bold]Sightings[/bold]   {m.get('indicators_matched', 0):,} of {m.get('indicators', 0):,} "
                       f"current feed indicators matched {m.get('events', 0):,} event(s)" + (f": {top}" if top else ""))
        if not shown:
            return out
        channels = Counter(str((_get(d, "event") or {}).get("Channel") or "") for d in shown)
        channels.pop("", None)
        if channels:
            out.append("[bold]Channels[/bold]    " + escape(" · ".join(f"{c} {n:,}" for c, n in
                                                                      channels.most_common(4)))
                       + (f" · +{len(channels) - 4} more" if len(channels) > 4 else ""))
        techniques = Counter(t for d in shown for t in (_get(d, "techniques") or ()))
        if techniques:
            out.append(f"[bold]Techniques[/bold]  {len(techniques):,}: " + " · ".join(
                f"{t} {n:,}" for t, n in techniques.most_common(8)))
        noisy = self.noisy()
        if noisy:
            out.append(f"[bold]Noisy rules[/bold] {len(noisy)} (each over {self.noisy_share:.0%} of a file's events; "
                       "not in the lists below):")
            for info in [i for i in noisy.values() if level_rank(i["level"]) >= floor][:NOISY_SHOWN]:
                where = _owner(info["source"]).replace("\\", "/").rsplit("/", 1)[-1]
                out.append(f"  {_lvl(info['level'])} {escape(str(info['title']))} [dim]({info['hits']:,} hits; "
                           f"{info['share']:.0%} of {escape(where)})[/dim]")
            if len(noisy) > NOISY_SHOWN:
                out.append(f"  … and {len(noisy) - NOISY_SHOWN} more")
        listed = [d for d in shown if _key(d) not in noisy]
        out += self._top_rules(listed)
        out += self._top_hosts(listed)
        out += self._busiest_hours(listed)
        return out

    def _top_rules(self, dets: list[Any]) -> list[str]:
        from rich.markup import escape

        rules: dict[str, dict[str, Any]] = {}
        for det in dets:
            row = rules.setdefault(_key(det), {"title": _get(det, "title") or _key(det), "level": _get(det, "level"),
                                               "hits": 0, "hosts": set(), "techniques": _get(det, "techniques")})
            row["hits"] += 1
            if _get(det, "host"):
                row["hosts"].add(_get(det, "host"))
        if not rules:
            return []
        ranked = sorted(rules.values(), key=lambda r: (-level_rank(r["level"]), -r["hits"], str(r["title"])))
        out = [f"[bold]Top rules[/bold]   {len(rules):,} rule(s) fired at {self.min_level} or above; most severe:"]
        for r in ranked[:TOP]:
            techs = ",".join((r["techniques"] or [])[:2]) or "-"
            out.append(f"  {_lvl(r['level'])} {r['hits']:>7,}  {escape(str(r['title']))} [dim]({escape(techs)}; "
                       f"{len(r['hosts'])} host(s))[/dim]")
        return out

    def _top_hosts(self, dets: list[Any]) -> list[str]:
        from rich.markup import escape

        hosts: dict[str, Counter] = {}
        for det in dets:
            hosts.setdefault(str(_get(det, "host") or "-"), Counter())[LEVELS[level_rank(_get(det, "level"))]] += 1
        if not hosts or list(hosts) == ["-"]:
            return []
        ranked = sorted(hosts.items(), key=lambda kv: (tuple(-kv[1][lv] for lv in reversed(LEVELS)), kv[0]))
        out = [f"[bold]Top hosts[/bold]   {len(hosts):,} host(s) with detections; most severe:"]
        for host, levels in ranked[:TOP]:
            parts = " ".join(f"[{LEVEL_STYLE[lv]}]{lv[:4]}[/{LEVEL_STYLE[lv]}] {levels[lv]:,}"
                             for lv in reversed(LEVELS) if levels[lv])
            out.append(f"  {escape(host):<32} {sum(levels.values()):>7,}  {parts}")
        return out

    def _busiest_hours(self, dets: list[Any]) -> list[str]:
        from rich.markup import escape

        hours: dict[str, Counter] = {}
        for det in dets:
            hour = _hour(_get(det, "time"))
            if hour:
                hours.setdefault(hour, Counter())[str(_get(det, "host") or "-")] += 1
        if not hours:
            return []
        first, last = min(hours), max(hours)
        out = [f"[bold]Busiest hours[/bold] (UTC; detections from {first[:10]} to {last[:10]}):"]
        for hour, by_host in sorted(hours.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:3]:
            top = ", ".join(h for h, _ in by_host.most_common(3)) + (" …" if len(by_host) > 3 else "")
            out.append(f"  {hour}  {sum(by_host.values()):>7,}  [dim]{escape(top)}[/dim]")
        return out


def problem_groups(problems: list[str]) -> list[tuple[str, list[str]]]:
    """``"name: why (detail)"`` lines grouped by ``why`` (the detail dropped): [(why, names)], most files first,
    then in the order given (shortest names first)."""
    groups: dict[str, list[str]] = {}
    for text in problems:
        name, _, why = text.partition(": ")
        groups.setdefault(why.split(" (", 1)[0] or why, []).append(name)
    return sorted(groups.items(), key=lambda kv: -len(kv[1]))


def judgement_lines(analysis) -> list[str]:
    """The case's judgement in a few Rich-markup lines: the furthest stage (decisive evidence only, a later
    stage on weak evidence named apart) and the attribution, or, when the evidence falls into separate
    clusters of activity, the "more than one intrusion" warning with the largest clusters and the
    attribution of each."""
    from rich.markup import escape

    from ttpscope.export.html import cluster_attribution, cluster_hosts, intrusions_of, stage_phrase

    if analysis is None or not analysis.evidence:
        return []
    out = []
    stage = stage_phrase(analysis)
    if stage:
        out.append(f"[bold]Judgement[/bold]   {escape(stage[0].upper() + stage[1:])}")
    several = intrusions_of(analysis)
    if several is not None:
        hosts = {h.lower() for h in analysis.hosts()}
        first, last = (t[:10] for t in analysis.time_span())
        span = f"{first[:4]}–{last[:4]}" if first[:4] != last[:4] else f"{first} to {last[5:]}"
        out.append(f"  [yellow]! This looks like more than one intrusion:[/yellow] {several.count} clusters "
                   f"({len(hosts)} hosts, {span}); the largest, each attributed on its own:")
        for row in several.clusters[:CLUSTERS_SHOWN]:
            when = row["first"][:10] + ("" if row["first"][:10] == row["last"][:10] else
                                        " to " + row["last"][5 if row["first"][:4] == row["last"][:4] else 0:10])
            out.append(f"    {row['id']:<4}{escape(when):<20}{row['host_count']:>3} host(s)  "
                       f"{escape(cluster_attribution(row, short=True))} [dim]({escape(cluster_hosts(row, 2))})[/dim]")
        return out
    at = analysis.sections.get("attribution")
    if at is not None and at.ok and at.data.verdict:
        out.append(f"[bold]Attribution[/bold] {escape(at.data.verdict)}")
    return out


def print_judgement(analysis, console) -> None:
    """:func:`judgement_lines`, each cropped to the console width like the summary."""
    for line in judgement_lines(analysis):
        console.print(line, overflow="ellipsis", no_wrap=True, crop=True, soft_wrap=False)


def _key(det: Any) -> str:
    return str(_get(det, "rule_id") or _get(det, "title"))


def _lvl(level: str | None) -> str:
    name = LEVELS[level_rank(level)]
    return f"[{LEVEL_STYLE[name]}]{name[:4]:<4}[/{LEVEL_STYLE[name]}]"


def print_summary(summary: RunSummary, console) -> None:
    """Print the summary lines, each cropped to the console width: a line never wraps into two."""
    for line in summary.lines():
        console.print(line, overflow="ellipsis", no_wrap=True, crop=True, soft_wrap=False)


class PlainProgress:
    """Progress as plain log lines (stderr is a file or a pipe): a line when a stage ends, nothing redrawn.

    ``update(stage, done, total, detail)`` remembers the latest state; a new stage (or :meth:`close`) prints
    the finished one as ``ttpscope: <label>: <done>/<total> <detail>``.
    """

    def __init__(self, labels: dict[str, str] | None = None, stream=None, prefix: str = "ttpscope"):
        self.labels = labels or {}
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.current: tuple[str, int, int | None, str] | None = None
        self.started: dict[str, float] = {}

    def update(self, stage: str, done: int, total: int | None, detail: str = "") -> None:
        import time

        if self.current is not None and self.current[0] != stage:
            self._emit()
        self.started.setdefault(stage, time.monotonic())
        self.current = (stage, done, total, detail)

    def _emit(self) -> None:
        import time

        stage, done, total, detail = self.current
        count = f"{done:,}/{total:,}" if total else (f"{done:,}" if done else "")
        secs = time.monotonic() - self.started.get(stage, time.monotonic())
        text = " ".join(x for x in (count, detail) if x)
        print(f"{self.prefix}: {self.labels.get(stage, stage)}: {text} ({secs:.1f} s)".replace(":  (", ": ("),
              file=self.stream, flush=True)
        self.current = None

    def close(self) -> None:
        if self.current is not None:
            self._emit()


def shorten(text: str, limit: int = 40) -> str:
    """A progress detail that fits its column: long paths keep their end."""
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def sources_of(items: Iterable[Any]) -> dict[str, int]:
    """{source: accepted events} of ingest statistics or per-file reports."""
    out: dict[str, int] = {}
    for item in items:
        source = str(_get(item, "source") or _get(item, "path") or "")
        accepted = _get(item, "accepted") or 0
        if source:
            out[source] = out.get(source, 0) + accepted
    return out
