import json

import numpy as np
import plotly.io
from report_runs import make_run

from foreshock.analysis import Analysis
from foreshock.events import Event
from foreshock.report import render_html, write_html
from foreshock.report.figure import MAX_PANELS, panels, run_figure


def test_one_self_contained_file_for_several_runs(tmp_path, analysis, long_analysis):
    out = write_html([analysis, long_analysis], tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    assert '<script src="http' not in text and "cdn.plot.ly/plotly" not in text.split("</script>")[-1]
    assert text.count("* plotly.js v") == 1  # the bundle, inlined once for all runs
    assert text.count("Plotly.newPlot(") == 2
    assert "<h2>blowup</h2>" in text and "<h2>long</h2>" in text


def test_events_table_skipped_note_and_hover_text(analysis):
    text = render_html([analysis])
    table = text[text.index('<table class="events">'):]
    assert table.count("<tr>") == 1 + len(analysis.events)
    assert "train/loss is NaN: the run has diverged." in table
    assert "ratio=4.214 median=0.5123 threshold=3" in table
    assert "2 record(s) were skipped" in text and "line 7" in text
    fig, _ = run_figure(analysis)
    hovers = [h for t in fig.data if t.hovertext is not None and "events" in (t.name or "") for h in t.hovertext]
    assert any("diverged" in h and "last_finite=1.234e+42" in h for h in hovers)


def test_events_are_lines_at_the_step_fired_and_bands_from_onset(analysis):
    fig, _ = run_figure(analysis)
    shapes = fig.layout.shapes
    n_panels = len(panels(analysis.run.names))
    lines = [s for s in shapes if s.type == "line" and s.line.dash == "dot"]  # dashed ones: health changes
    rects = [s for s in shapes if s.type == "rect" and not (s.name or "").startswith("phase: ")]
    alarms = [e for e in analysis.events if e.severity != "info"]
    assert {s.x0 for s in lines} == {e.step for e in alarms}
    assert len(lines) == n_panels * len(alarms)
    markers = [t for t in fig.data if (t.name or "").endswith(" events")]
    assert sorted(x for t in markers for x in t.x) == sorted(e.step for e in analysis.events)
    with_onset = [e for e in analysis.events if e.onset_step < e.step]
    assert {(s.x0, s.x1) for s in rects} == {(e.onset_step, e.step) for e in with_onset}
    crit = [s for s in rects if s.x0 == 280][0]
    assert crit.fillcolor == "#dc2626"  # coloured by severity


def test_nonfinite_points_are_marked_at_the_top_not_dropped(analysis):
    fig, _ = run_figure(analysis)
    marks = {t.name: t for t in fig.data if t.name and t.name.endswith(("nan", "inf"))}
    assert set(marks) == {"train/loss: inf", "train/loss: nan", "opt/grad_norm: -inf", "opt/grad_norm: nan"}
    # the top of the loss panel: the largest finite value of train/loss and val/loss
    both = np.concatenate([analysis.run["train/loss"].values, analysis.run["val/loss"].values])
    top = float(both[np.isfinite(both)].max())
    assert [x for x in marks["train/loss: nan"].x if x is not None] == [290, 299]
    assert all(y == top for y in marks["train/loss: nan"].y if y is not None)
    assert "train/loss = nan: step 290-299 (10 points)" in marks["train/loss: nan"].hovertext


def test_long_series_are_drawn_as_a_band_that_keeps_the_spike(long_analysis):
    fig, _ = run_figure(long_analysis)
    loss = [t for t in fig.data if t.legendgroup == "train/loss"]
    assert len(loss) == 3  # max, min (filled to the max), mean line
    hi, lo, line = (np.asarray(t.y, dtype=float) for t in loss)
    assert len(line) == 2000 and lo.shape == hi.shape == line.shape
    assert hi.max() == 40.0 and lo[0] <= line[0] <= hi[0]
    assert loss[1].fill == "tonexty"


def test_panels_group_losses_and_keep_lr_and_grad_norm_apart():
    got = panels(["train/loss", "val/loss", "opt/lr", "opt/grad_norm", "val/acc",
                  "layer/h.0/grad_norm", "layer/h.1/grad_norm", "probe/hessian/lambda_max", "loss_scale"])
    assert got == [("loss", ["train/loss", "val/loss"]), ("accuracy", ["val/acc"]), ("opt/lr", ["opt/lr"]),
                   ("opt/grad_norm", ["opt/grad_norm"]),
                   ("layer/*/grad_norm", ["layer/h.0/grad_norm", "layer/h.1/grad_norm"]),
                   ("loss_scale", ["loss_scale"]), ("probe/*/lambda_max", ["probe/hessian/lambda_max"])]


def test_positive_losses_get_a_log_axis_and_the_lr_a_linear_one(analysis):
    fig, _ = run_figure(analysis)
    titles = [a.text for a in fig.layout.annotations]
    axis = {t: fig.layout[f"yaxis{i + 1 if i else ''}"].type for i, t in enumerate(titles)}
    assert axis["loss"] == "log" and axis["opt/lr"] != "log"


def test_metrics_beyond_the_panel_limit_are_named_not_silently_dropped():
    extra = [f"misc_{i:02d}" for i in range(MAX_PANELS + 2)]
    a = Analysis(make_run(n=30, extra=extra), [])
    fig, left_out = run_figure(a)
    assert len(fig.layout.annotations) == MAX_PANELS
    assert left_out and set(left_out) <= set(extra)
    assert "Not drawn" in render_html([a]) and left_out[-1] in render_html([a])


def test_names_and_messages_are_escaped():
    run = make_run(n=30, name="<script>alert(1)</script>")
    ev = Event("d", "spike", "warning", 10, 10, "a <b>bold</b> claim", {"metric": "train/loss"})
    text = render_html([Analysis(run, [ev])])
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "a &lt;b&gt;bold&lt;/b&gt; claim" in text


def test_figure_json_is_strict_json(analysis):
    fig, _ = run_figure(analysis)
    payload = plotly.io.to_json(fig)

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant} in the figure")

    json.loads(payload, parse_constant=refuse)  # NaN must be written as null, not as a bare NaN


def test_a_run_without_points_still_gets_a_section():
    text = render_html([Analysis(make_run(n=0, name="empty"), [])])
    assert "<h2>empty</h2>" in text and "no metrics" in text and "No events" in text
