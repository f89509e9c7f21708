"""The plotly figure of one run: its curves in panels, with the events drawn where they fired.

Panels: all losses together (log y when they are positive), then accuracies, the learning rate,
the gradient norm, and every other metric family in its own panel (``layer/*/grad_norm`` is one
family). Long series are drawn as a min/max band with the mean as the line (:mod:`.thin`), so no
spike is thinned away. Non-finite points are marked along the top of their panel. Each event is
a marker on its metric at the step it fired, whose hover text gives the message and the evidence,
and a band from its onset to that step coloured by severity; warnings and critical events also
get a dotted line at that step across all panels. The run's phases shade the loss panel in light
colours (one legend entry per phase), and each change of the run's health is a dashed line on it
with a marker whose hover text says what moved it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from foreshock.analysis import Analysis, PhaseSegment
from foreshock.events import Event
from foreshock.report.evidence import format_evidence
from foreshock.report.thin import envelope, log_display_range, nonfinite_runs
from foreshock.run import Run

__all__ = ["HEALTH_COLOR", "PHASE_COLOR", "SEVERITY_COLOR", "health_why", "panels", "run_figure"]

SEVERITY_COLOR = {"info": "#2563eb", "warning": "#d97706", "critical": "#dc2626"}
NONFINITE_COLOR = {"nan": "#7c3aed", "inf": "#be185d", "-inf": "#0f766e"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
BAND_OPACITY = {"info": 0.05, "warning": 0.12, "critical": 0.15}  # long info bands (plateaus) stay faint
# light fills behind the loss curves: the phase is context, the curve stays the figure
PHASE_COLOR = {"warmup": "#fde68a", "fast_descent": "#bbf7d0", "slow_descent": "#bfdbfe", "plateau": "#e5e7eb",
               "rising": "#fecaca", "annealing": "#e9d5ff"}
PHASE_OPACITY = 0.45
HEALTH_COLOR = {"healthy": "#15803d", "watch": "#2563eb", "warning": "#d97706", "critical": "#dc2626"}
MAX_PANELS = 12
PANEL_HEIGHT = 230


def panels(names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Group metric names into panels: ``(title, names)`` in drawing order.

    >>> panels(["opt/lr", "val/loss", "train/loss", "layer/h.0/grad_norm", "layer/h.1/grad_norm"])
    [('loss', ['train/loss', 'val/loss']), ('opt/lr', ['opt/lr']), ('layer/*/grad_norm', ['layer/h.0/grad_norm', 'layer/h.1/grad_norm'])]
    """
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(_panel_key(name), []).append(name)
    fixed = ["loss", "accuracy", "learning rate", "grad norm"]
    order = [k for k in fixed if k in groups] + sorted(k for k in groups if k not in fixed)
    titled = {"learning rate": "opt/lr", "grad norm": "opt/grad_norm"}
    return [(groups[k][0] if len(groups[k]) == 1 and k in titled else k, groups[k]) for k in order]


def _panel_key(name: str) -> str:
    parts = name.split("/")
    last = parts[-1].lower()
    if last == "loss" or last.endswith(("_loss", " loss")) or last in {"bpb", "val_bpb", "ppl", "perplexity"}:
        return "loss"
    if "acc" in last:
        return "accuracy"
    if len(parts) <= 2 and (last == "lr" or last.startswith("lr_") or last == "learning_rate"):
        return "learning rate"
    if len(parts) <= 2 and last == "grad_norm":
        return "grad norm"
    if len(parts) >= 3:
        return "/".join([parts[0], "*", *parts[2:]])
    return name


def run_figure(analysis: Analysis) -> tuple[go.Figure, list[str]]:
    """The figure of one analysed run, and the metric names left out (beyond ``MAX_PANELS``)."""
    run = analysis.run
    groups = panels(run.names)
    left_out = [n for _, names in groups[MAX_PANELS:] for n in names]
    groups = groups[:MAX_PANELS] or [("no metrics", [])]
    layouts = [_panel_layout(run, title, names) for title, names in groups]
    fig = make_subplots(rows=len(groups), cols=1, shared_xaxes=True, vertical_spacing=0.06 / max(1, len(groups) / 4),
                        subplot_titles=[p.title for p in layouts])
    row_of: dict[str, int] = {}
    tops: dict[int, float] = {}
    for row, ((_, names), panel) in enumerate(zip(groups, layouts, strict=True), start=1):
        tops[row] = panel.top
        for name in names:
            color = PALETTE[len(row_of) % len(PALETTE)]
            row_of[name] = row
            _add_series(fig, run, name, row, color, panel.top)
        if panel.log:
            fig.update_yaxes(type="log", row=row, col=1)
        if panel.clip is not None:
            lo, hi = panel.clip
            # a log axis range is in decades; a little room below the lowest value
            fig.update_yaxes(range=[math.log10(lo) - 0.05 * math.log10(hi / lo), math.log10(hi)], row=row, col=1)
    loss_row = next((r for r, p in enumerate(layouts, start=1) if p.title.startswith("loss")), 1)
    shapes = _phase_shapes(fig, analysis.phases, loss_row)
    shapes += _add_events(fig, run, analysis.events, row_of, tops)
    shapes += _add_health(fig, analysis, loss_row, tops[loss_row])
    _add_forecast(fig, analysis, row_of.get(analysis.forecast.metric, loss_row) if analysis.forecast else loss_row)
    fig.update_layout(shapes=shapes)  # set once: adding shapes one by one revalidates the layout each time
    fig.update_xaxes(title_text="step", row=len(groups), col=1)
    # the legend sits on the right (plotly's default), where it cannot cover a panel's title
    fig.update_layout(height=PANEL_HEIGHT * len(groups) + 80, margin=dict(l=60, r=20, t=40, b=40),
                      hovermode="closest", template="plotly_white")
    return fig, left_out


@dataclass(frozen=True)
class _Panel:
    title: str
    log: bool
    top: float  # where markers for non-finite values and off-scale events are drawn
    clip: tuple[float, float] | None  # the y range shown first, when a blow-up would flatten the rest


def _panel_layout(run: Run, title: str, names: Sequence[str]) -> _Panel:
    values = np.concatenate([run[n].values for n in names]) if names else np.array([])
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return _Panel(title, False, 1.0, None)
    vmax = float(values.max())
    # accuracies stay linear: they live in [0, 1] and their rise, not their decades, is the story
    log = bool(np.all(values > 0)) and title != "accuracy" and (title == "loss" or vmax / float(values.min()) > 1e3)
    clip = log_display_range(values) if log else None
    if clip is None:
        return _Panel(title, log, vmax, None)
    # say so in the title: the values above the panel are not gone, they are off-scale
    return _Panel(f"{title} (shown up to {clip[1]:.3g}; max {vmax:.3g}: autoscale shows all)", log, clip[1], clip)


def _add_series(fig: go.Figure, run: Run, name: str, row: int, color: str, top: float) -> None:
    steps, values = run.series(name)
    env = envelope(steps, values)
    if env.thinned:
        # the band first (max, then min filled up to it), then the mean line on top
        fig.add_trace(go.Scatter(x=env.x, y=env.hi, mode="lines", line=dict(width=0, color=color),
                                 legendgroup=name, showlegend=False, hoverinfo="skip"), row=row, col=1)
        fig.add_trace(go.Scatter(x=env.x, y=env.lo, mode="lines", line=dict(width=0, color=color),
                                 fill="tonexty", fillcolor=_rgba(color, 0.3), legendgroup=name, showlegend=False,
                                 customdata=env.hi, name=f"{name} min-max",
                                 hovertemplate="step %{x:.0f}<br>min %{y:.4g}, max %{customdata:.4g}"),
                      row=row, col=1)
        label = f"{name} (mean of {len(steps) / len(env):.0f}-point buckets)"
    else:
        label = name
    fig.add_trace(go.Scatter(x=env.x, y=env.line, mode="lines+markers" if len(env) <= 60 else "lines",
                             line=dict(width=1.3, color=color), marker=dict(size=4), name=label, legendgroup=name,
                             hovertemplate=f"{html.escape(name)}<br>step %{{x:.0f}}: %{{y:.4g}}<extra></extra>"),
                  row=row, col=1)
    for kind in ("nan", "inf", "-inf"):
        spans = [r for r in nonfinite_runs(steps, values) if r.kind == kind]
        if not spans:
            continue
        # each stretch is a bar along the top of the panel, from its first to its last step
        xs: list[float | None] = []
        texts: list[str | None] = []
        for r in spans:
            xs += [r.first_step, r.last_step, None]
            what = f"{name} = {kind}: step {r.first_step}" + (f"-{r.last_step} ({r.count} points)" if r.count > 1 else "")
            texts += [what, what, None]
        fig.add_trace(go.Scatter(x=xs, y=[top if x is not None else None for x in xs], mode="lines+markers",
                                 marker=dict(symbol="x", size=8, color=NONFINITE_COLOR[kind]),
                                 line=dict(width=3, color=NONFINITE_COLOR[kind]), name=f"{name}: {kind}",
                                 legendgroup=name, hovertext=texts, hoverinfo="text"), row=row, col=1)


def _refs(row: int) -> tuple[str, str]:
    return ("x", "y domain") if row == 1 else (f"x{row}", f"y{row} domain")


def _phase_shapes(fig: go.Figure, segments: Sequence[PhaseSegment], row: int) -> list[dict]:
    """Light rectangles behind the loss panel, one per phase segment, and a legend entry per phase."""
    xref, yref = _refs(row)
    shapes = [dict(type="rect", x0=seg.start_step, x1=seg.end_step, y0=0, y1=1, xref=xref, yref=yref,
                   fillcolor=PHASE_COLOR.get(seg.phase, "#f3f4f6"), opacity=PHASE_OPACITY, line_width=0,
                   layer="below", name=f"phase: {seg.phase}") for seg in segments]
    for phase in dict.fromkeys(seg.phase for seg in segments):
        # shapes have no legend: an invisible point with a square marker of the same colour stands in
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"phase: {phase.replace('_', ' ')}",
                                 legendgroup="phases", marker=dict(symbol="square", size=12,
                                                                   color=PHASE_COLOR.get(phase, "#f3f4f6")),
                                 hoverinfo="skip"), row=row, col=1)
    return shapes


def health_why(change: dict) -> str:
    """What moved a health change, in one line: its reason and the detectors behind it."""
    why = str(change.get("reason", ""))
    detectors = change.get("detectors") or []
    return why + (f" ({', '.join(map(str, detectors))})" if detectors else "")


def _add_health(fig: go.Figure, analysis: Analysis, row: int, top: float) -> list[dict]:
    """A dashed line on the loss panel at each health change, and a marker with what moved it."""
    changes = [h.to_dict() for h in analysis.health]
    changes = [h for h in changes if h.get("step") is not None]
    if not changes:
        return []
    xref, yref = _refs(row)
    shapes = []
    for h in changes:
        color = HEALTH_COLOR.get(str(h.get("state")), "#444444")
        shapes.append(dict(type="line", x0=h["step"], x1=h["step"], y0=0, y1=1, xref=xref, yref=yref,
                           line=dict(color=color, width=1.5, dash="dash")))
    hover = ["<b>health: " + html.escape(str(h.get("state"))) + f"</b> at step {h['step']}<br>"
             + html.escape(health_why(h)) for h in changes]
    fig.add_trace(go.Scatter(x=[h["step"] for h in changes], y=[top] * len(changes), mode="markers",
                             name="health changes", legendgroup="health",
                             marker=dict(symbol="diamond", size=11,
                                         color=[HEALTH_COLOR.get(str(h.get("state")), "#444444") for h in changes]),
                             hovertext=hover, hoverinfo="text"), row=row, col=1)
    return shapes


def _add_forecast(fig: go.Figure, analysis: Analysis, row: int) -> None:
    """The fitted law as a dashed line beyond the data, and the forecast with its interval at the target."""
    f = analysis.forecast
    if f is None or not f.curve[0]:
        return
    steps, values = f.curve
    fig.add_trace(go.Scatter(x=list(steps), y=list(values), mode="lines", name=f"forecast ({f.law} law)",
                             legendgroup="forecast", line=dict(color="#6b7280", dash="dash", width=1.5),
                             hovertemplate="law %{y:.4g} at step %{x}<extra></extra>"), row=row, col=1)
    hover = (f"<b>forecast</b> of {html.escape(f.metric)} at step {f.target_step}: {f.value:.4g}<br>"
             f"{f.level:.0%} interval [{f.lo:.4g}, {f.hi:.4g}]<br>{html.escape(f.law)} law, data up to step "
             f"{f.at_step}")
    fig.add_trace(go.Scatter(x=[f.target_step], y=[f.value], mode="markers", name="forecast", legendgroup="forecast",
                             showlegend=False, marker=dict(color="#111827", size=9, symbol="diamond"),
                             error_y=dict(type="data", symmetric=False, array=[f.hi - f.value],
                                          arrayminus=[f.value - f.lo], color="#111827", thickness=1.5, width=6),
                             hovertemplate=hover + "<extra></extra>"), row=row, col=1)


def _add_events(fig: go.Figure, run: Run, events: Sequence[Event], row_of: dict[str, int],
                tops: dict[int, float]) -> list[dict]:
    # shapes are built as plain dicts and set once by the caller: plotly's add_vline(row="all")
    # revalidates the whole layout per call, which takes seconds per event on a long run
    shapes = []
    for row in range(1, len(tops) + 1):
        xref, yref = _refs(row)
        for e in events:
            color = SEVERITY_COLOR.get(e.severity, "#444444")
            if e.onset_step < e.step:
                shapes.append(dict(type="rect", x0=e.onset_step, x1=e.step, y0=0, y1=1, xref=xref, yref=yref,
                                   fillcolor=color, opacity=BAND_OPACITY.get(e.severity, 0.1), line_width=0,
                                   layer="below"))
            if e.severity != "info":  # info events (a recovery, a phase) get their marker only: less clutter
                shapes.append(dict(type="line", x0=e.step, x1=e.step, y0=0, y1=1, xref=xref, yref=yref,
                                   line=dict(color=color, width=1, dash="dot")))
    for severity, color in SEVERITY_COLOR.items():
        chosen = [e for e in events if e.severity == severity]
        by_row: dict[int, list[Event]] = {}
        for e in chosen:
            by_row.setdefault(row_of.get(e.metric or "", 1), []).append(e)
        for row, evs in by_row.items():
            ys = [_value_at(run, e.metric, e.step, tops[row]) for e in evs]
            fig.add_trace(go.Scatter(x=[e.step for e in evs], y=ys, mode="markers", name=f"{severity} events",
                                     legendgroup=f"events-{severity}", showlegend=row == min(by_row),
                                     marker=dict(symbol="triangle-down", size=12, color=color,
                                                 line=dict(width=1, color="white")),
                                     hovertext=[_hover(e) for e in evs], hoverinfo="text"), row=row, col=1)
    return shapes


def _value_at(run: Run, metric: str | None, step: int, top: float) -> float:
    """The metric's value at (or just before) the step, at most the panel top (also used when it is missing)."""
    if metric is None or metric not in run:
        return top
    steps, values = run.series(metric)
    i = int(np.searchsorted(steps, step, side="right")) - 1
    if i < 0 or not np.isfinite(values[i]):
        return top
    return min(float(values[i]), top)


def _hover(e: Event) -> str:
    evidence = html.escape(format_evidence(e.evidence))
    onset = f" (onset {e.onset_step})" if e.onset_step != e.step else ""
    return (f"<b>{html.escape(e.severity)} {html.escape(e.kind)}</b> at step {e.step}{onset}"
            f"<br>{html.escape(e.message)}<br>{html.escape(e.metric or '')} {evidence}")


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"
