"""The HTML report: one self-contained file for one or more analysed runs.

The plotly JavaScript is embedded once in the page, so the file opens offline and can be mailed or
attached to a CI run as it is. Per run: a header (source, format, steps, verdict), the figure
(:mod:`.figure`, phases shaded behind the loss), the phase timeline and the health changes, the
table of events and the note of records the reader skipped.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable
from html import escape
from pathlib import Path

from plotly.offline import get_plotlyjs

from foreshock.analysis import Analysis
from foreshock.report.evidence import format_evidence, group_events
from foreshock.report.figure import HEALTH_COLOR, PHASE_COLOR, SEVERITY_COLOR, health_why, run_figure

__all__ = ["render_html", "write_html"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1f2937; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #d1d5db; padding-bottom: .2em; margin-top: 2em; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .15em 1em; }
dl.meta dt { color: #6b7280; } dl.meta dd { margin: 0; }
table.events { border-collapse: collapse; width: 100%; font-size: .9em; }
table.events th, table.events td { border-bottom: 1px solid #e5e7eb; padding: .3em .5em; text-align: left;
                                   vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } td.evidence { color: #4b5563;
         font-family: ui-monospace, monospace; font-size: .9em; }
span.swatch { display: inline-block; width: .9em; height: .9em; vertical-align: middle; margin-right: .3em;
               border: 1px solid #d1d5db; }
.sev { font-weight: 600; } .note { color: #92400e; } .ok { color: #15803d; }
"""


def write_html(analyses: Iterable[Analysis], path: str | os.PathLike, *, title: str = "foreshock report") -> Path:
    """Write the report of ``analyses`` to ``path`` (one file, works offline); returns the path."""
    path = Path(path)
    path.write_text(render_html(analyses, title=title), encoding="utf-8")
    return path


def render_html(analyses: Iterable[Analysis], *, title: str = "foreshock report") -> str:
    """The report as one HTML string with the plotly JavaScript inlined."""
    analyses = list(analyses)
    sections = [_section(a, i) for i, a in enumerate(analyses)]
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        # inlined, never a CDN link: the report must open without a network
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{len(analyses)} run(s), written {when}. Markers show the step each event fired (dotted lines "
        "for warnings and critical events), bands its estimated onset; hover a marker for the message and the evidence. Long curves are drawn as a "
        "min-max band around the bucket mean, so single-step spikes stay visible; non-finite points are "
        "marked along the top of their panel. The run's phases shade the loss panel; dashed lines on it "
        "mark changes of the run's health.</p>",
        *sections,
        "</body></html>",
    ])


def _section(analysis: Analysis, index: int) -> str:
    run = analysis.run
    fig, left_out = run_figure(analysis)
    span = run.steps
    steps = "none" if span is None else f"{span[0]} - {span[1]} ({len(run)} points)"
    meta = [("source", run.source), ("format", run.format), ("steps", steps),
            ("metrics", ", ".join(run.names) or "none")]
    if run.status != "unknown":
        meta.append(("status", run.status))
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in meta)
    parts = [f'<section id="run-{index}">', f"<h2>{escape(run.name)}</h2>", f'<dl class="meta">{rows}</dl>',
             _verdict(analysis),
             fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"run-{index}-plot",
                         config={"displaylogo": False, "responsive": True})]
    if left_out:
        parts.append(f'<p class="note">Not drawn (more than the panel limit): {escape(", ".join(left_out))}</p>')
    parts += ["<h3>Phases</h3>", _phases_table(analysis)]
    if analysis.health:
        parts += ["<h3>Health</h3>", _health_table(analysis)]
    parts += ["<h3>Events</h3>", _events_table(analysis), "<h3>Skipped records</h3>", _skipped(analysis),
              "</section>"]
    return "\n".join(parts)


def _verdict(analysis: Analysis) -> str:
    if not analysis.events:
        return '<p class="ok">No events: the detectors found nothing to report.</p>'
    worst = analysis.worst() or "info"
    counts = ", ".join(f"{sum(e.severity == s for e in analysis.events)} {s}" for s in ("critical", "warning", "info")
                       if any(e.severity == s for e in analysis.events))
    first = min((e for e in analysis.events if e.severity == worst), key=lambda e: e.step)
    return (f'<p><span class="sev" style="color:{SEVERITY_COLOR[worst]}">{escape(worst.upper())}</span> '
            f"{len(analysis.events)} event(s) ({escape(counts)}); first {escape(worst)}: "
            f"{escape(first.kind)} at step {first.step}.</p>")


def _events_table(analysis: Analysis) -> str:
    if not analysis.events:
        return "<p>None.</p>"
    head = "".join(f"<th>{h}</th>" for h in
                   ("severity", "kind", "step", "onset", "metric", "detector", "message", "evidence"))
    rows = []
    for group in group_events(analysis.events):
        for e in group:
            color = SEVERITY_COLOR.get(e.severity, "#444")
            rows.append(
                f'<tr><td class="sev" style="color:{color}">{escape(e.severity)}</td><td>{escape(e.kind)}</td>'
                f'<td class="num">{e.step}</td><td class="num">{e.onset_step}</td>'
                f"<td>{escape(e.metric or '')}</td><td>{escape(e.detector)}</td><td>{escape(e.message)}</td>"
                f'<td class="evidence">{escape(format_evidence(e.evidence))}</td></tr>')
    return f'<table class="events"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _phases_table(analysis: Analysis) -> str:
    segments = analysis.phases
    if not segments:
        return "<p>None found: too few loss points for a log-log slope.</p>"
    rows = "".join(
        f'<tr class="phase" data-phase="{escape(seg.phase)}"><td><span class="swatch" '
        f'style="background:{PHASE_COLOR.get(seg.phase, "#f3f4f6")}"></span>{escape(seg.phase.replace("_", " "))}'
        f'</td><td class="num">{seg.start_step}</td><td class="num">{seg.end_step}</td></tr>' for seg in segments)
    return ('<table class="events phases"><thead><tr><th>phase</th><th>from step</th><th>to step</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _health_table(analysis: Analysis) -> str:
    rows = []
    for h in (h.to_dict() for h in analysis.health):
        state = str(h.get("state", ""))
        rows.append(f'<tr><td class="sev" style="color:{HEALTH_COLOR.get(state, "#444")}">{escape(state)}</td>'
                    f'<td class="num">{escape(str(h.get("step", "")))}</td><td>{escape(health_why(h))}</td></tr>')
    return ('<table class="events health"><thead><tr><th>state</th><th>step</th><th>why</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _skipped(analysis: Analysis) -> str:
    run = analysis.run
    if not run.skipped:
        return "<p>None: every record of the log was read.</p>"
    items = "".join(f"<li>{escape(str(s))}</li>" for s in run.skipped)
    return f'<p class="note">{run.skipped_records} record(s) were skipped:</p><ul>{items}</ul>'
