"""The terminal report: what ``foreshock analyze`` prints for each run, with rich.

One block per run: where it came from, which metrics it has (and where they stop being finite),
what the reader skipped, its phases on one line, its health changes (when known), a one-line
verdict, then the events grouped by severity. A detector that
fires many times on the same metric shows its first few events and one line for the rest, so the
report stays readable on a run with dozens of spikes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from foreshock.analysis import Analysis
from foreshock.events import Event
from foreshock.report.evidence import format_evidence, group_events
from foreshock.run import Run

__all__ = ["SEVERITY_STYLE", "phases_text", "print_analyses", "print_analysis", "verdict"]

SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
SHOWN_PER_GROUP = 3  # events shown per (detector, kind, metric, severity) before the rest are summed up
SHOWN_METRICS = 12
SHOWN_PHASES = 8  # segments on the phases line; a longer timeline shows its first and last ones
SHOWN_HEALTH = 6


def print_analyses(analyses: Iterable[Analysis], console: Console | None = None) -> None:
    """Print the report of each analysis, one after the other."""
    console = console or Console()
    for i, analysis in enumerate(analyses):
        if i:
            console.print()
        print_analysis(analysis, console)


def print_analysis(analysis: Analysis, console: Console | None = None) -> None:
    """Print one run's header, metrics, skipped records, verdict and events."""
    console = console or Console()
    run = analysis.run
    console.rule(Text(f"run {run.name}", style="bold"), align="left")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="dim", no_wrap=True)
    head.add_column(overflow="fold")  # a long path wraps instead of losing its end
    head.add_row("source", run.source)
    head.add_row("format", run.format + ("" if run.status == "unknown" else f"  ({run.status})"))
    head.add_row("steps", _steps_text(run))
    head.add_row("metrics", _metrics_text(run))
    head.add_row("skipped", _skipped_text(run))
    head.add_row("phases", phases_text(analysis))
    if analysis.health:
        head.add_row("health", _health_text(analysis))
    if analysis.forecast is not None or analysis.forecast_note:
        head.add_row("forecast", forecast_text(analysis))
    head.add_row("verdict", verdict(analysis))
    console.print(head)
    if analysis.events:
        console.print(events_table(analysis.events))


def forecast_text(analysis: Analysis) -> Text:
    """One line: the forecast value and interval at its target step, the law, and the data it used."""
    f = analysis.forecast
    if f is None:
        return Text(f"none: {analysis.forecast_note}", style="dim")
    text = Text()
    text.append(f"{f.metric} at step {f.target_step}: ")
    text.append(f"{f.value:.4g}", style="bold")
    text.append(f" [{f.lo:.4g}, {f.hi:.4g}] ({f.level:.0%} interval; {f.law} law fitted up to step {f.at_step})")
    return text


def verdict(analysis: Analysis) -> Text:
    """One line: the worst severity, counts per severity and the first step at that severity."""
    events = analysis.events
    if not events:
        return Text("no events: the detectors found nothing to report", style="green")
    worst = analysis.worst()
    counts = {s: sum(e.severity == s for e in events) for s in SEVERITY_STYLE}
    parts = ", ".join(f"{n} {s}" for s, n in reversed(counts.items()) if n)
    first = min((e for e in events if e.severity == worst), key=lambda e: e.step)
    text = Text()
    text.append(str(worst).upper(), style=SEVERITY_STYLE[str(worst)])
    text.append(f"  {len(events)} event{'s' if len(events) != 1 else ''} ({parts}); first {worst}: "
                f"{first.kind} at step {first.step}")
    return text


def events_table(events: Sequence[Event]) -> Table:
    """Events grouped by severity (worst first), repeats of one detector/kind/metric summed up.

    Kind and metric share a column, and so do message and evidence (on a dim second line), so the
    message keeps most of the width of an 80-column terminal.
    """
    table = Table(box=box.SIMPLE_HEAD, show_header=True, header_style="bold", pad_edge=False, expand=False)
    table.add_column("severity", no_wrap=True)
    table.add_column("step", justify="right", no_wrap=True)
    table.add_column("onset", justify="right", no_wrap=True)
    table.add_column("kind / metric", no_wrap=True)
    table.add_column("message / evidence")
    for group in group_events(events):
        for e in group[:SHOWN_PER_GROUP]:
            what = Text(e.kind, style="bold")
            if e.metric:
                what.append(f"\n{e.metric}", style="not bold dim")
            details = Text(e.message)
            evidence = format_evidence(e.evidence, limit=4)
            if evidence:
                details.append(f"\n{evidence}", style="dim")
            table.add_row(Text(e.severity, style=SEVERITY_STYLE.get(e.severity, "")), str(e.step),
                          str(e.onset_step), what, details)
        rest = group[SHOWN_PER_GROUP:]
        if rest:
            e = rest[0]
            table.add_row(Text(e.severity, style="dim"), Text(f"+{len(rest)}", style="dim"), "",
                          Text(e.kind, style="dim"),
                          Text(f"{len(rest)} more {e.kind} event(s) from {e.detector}"
                               f"{' on ' + e.metric if e.metric else ''}, steps {rest[0].step}-{rest[-1].step}",
                               style="dim"))
    return table


def _steps_text(run: Run) -> str:
    span = run.steps
    if span is None:
        return "none (the run has no points)"
    return f"{span[0]} - {span[1]}  ({len(run)} points)"


def _metrics_text(run: Run) -> Text:
    if not run.metrics:
        return Text("none", style="yellow")
    text = Text()
    names = run.names
    for i, name in enumerate(names[:SHOWN_METRICS]):
        steps, values = run.series(name)
        if i:
            text.append("  ")
        text.append(name, style="bold")
        text.append(f" {len(steps)}")
        bad = ~np.isfinite(values)
        if bad.any():
            text.append(f" ({int(bad.sum())} non-finite from step {int(steps[np.argmax(bad)])})", style="red")
    if len(names) > SHOWN_METRICS:
        text.append(f"  (+{len(names) - SHOWN_METRICS} more)", style="dim")
    return text


def _skipped_text(run: Run) -> Text:
    if not run.skipped:
        return Text("nothing", style="dim")
    shown = "; ".join(f"{s.count} at {'line ' + str(s.line) if s.line is not None else 'end of file'}: "
                      f"{s.reason}" for s in run.skipped[:3])
    more = f"; and {len(run.skipped) - 3} more group(s)" if len(run.skipped) > 3 else ""
    return Text(f"{run.skipped_records} record(s): {shown}{more}", style="yellow")


def phases_text(analysis: Analysis) -> Text:
    """The phase timeline on one line: ``warmup 0-500 > fast descent 500-3200 > ...``."""
    segments = analysis.phases
    if not segments:
        return Text("none found (too few loss points for a log-log slope)", style="dim")
    if len(segments) > SHOWN_PHASES:
        half = SHOWN_PHASES // 2
        shown: list = [*segments[:half], None, *segments[-half:]]
    else:
        shown = list(segments)
    text = Text()
    for i, seg in enumerate(shown):
        if i:
            text.append(" > ", style="dim")
        if seg is None:
            text.append(f"({len(segments) - 2 * (SHOWN_PHASES // 2)} more)", style="dim")
            continue
        text.append(seg.phase.replace("_", " "), style="bold")
        text.append(f" {seg.start_step}-{seg.end_step}")
    return text


def _health_text(analysis: Analysis) -> Text:
    """The run's health changes: ``healthy @0 > watch @1200 > ...`` (the last few when there are many)."""
    changes = [h.to_dict() for h in analysis.health]
    text = Text()
    if len(changes) > SHOWN_HEALTH:
        text.append(f"({len(changes) - SHOWN_HEALTH} earlier) ", style="dim")
        changes = changes[-SHOWN_HEALTH:]
    for i, h in enumerate(changes):
        if i:
            text.append(" > ", style="dim")
        state = str(h.get("state", h.get("to", "?")))
        text.append(state, style=HEALTH_STYLE.get(state, "bold"))
        if h.get("step") is not None:
            text.append(f" @{h['step']}")
    return text


HEALTH_STYLE = {"healthy": "green", "watch": "cyan", "warning": "yellow", "critical": "bold red"}
