"""Phases and health in the analysis: the JSON keys, the terminal line, the shaded HTML figure."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import json

import numpy as np
import pytest
from rich.console import Console

import foreshock.analysis
from foreshock.analysis import Analysis, analyze
from foreshock.report import print_analysis, render_html
from foreshock.report.figure import HEALTH_COLOR, PHASE_COLOR, run_figure
from foreshock.run import Run, Series


def lm_run(n: int = 20_000) -> Run:
    """Warm-up to step 500, a break of slope at step 1000, an LR cooldown from step 16000."""
    rng = np.random.default_rng(0)
    t = np.arange(n)
    x = np.log10(t + 1.0)
    loss = 10 ** np.where(t < 1000, 1.0 - (x - 3), 1.0 - 0.25 * (x - 3))
    loss *= (1 - 0.15 * np.clip((t - 16_000) / 4000, 0, 1)) * (1 + 0.01 * rng.standard_normal(n))
    lr = np.where(t > 16_000, 1 - (t - 16_000) / 4000, np.minimum(1.0, (t + 1) / 500)) * 3e-4
    return Run(name="lm", metrics={"train/loss": Series(t, loss), "opt/lr": Series(t, lr)},
               source="lm.csv", format="csv-long")


@dataclasses.dataclass
class Change:  # stands in for foreshock.detect.health.HealthChange: what the report relies on
    step: int
    state: str
    reason: str

    def to_dict(self):
        return dataclasses.asdict(self)


@pytest.fixture(scope="module")
def analysed():
    return analyze(lm_run())


@pytest.fixture
def with_health(monkeypatch, analysed):
    changes = [Change(0, "healthy", "start"), Change(17_000, "watch", "two early warnings")]
    monkeypatch.setattr(foreshock.analysis, "health_timeline", lambda events, last_step=None: changes)
    return analysed


def render(analysis, width=120):
    console = Console(record=True, width=width, force_terminal=False, color_system=None)
    print_analysis(analysis, console)
    return console.export_text()


def test_analyze_gives_the_phase_timeline_and_keeps_phase_changes_out_of_the_findings(analysed):
    assert [p.phase for p in analysed.phases] == ["warmup", "fast_descent", "slow_descent", "annealing"]
    assert analysed.phases[-1].end_step == 19_999
    assert all(a.end_step == b.start_step for a, b in zip(analysed.phases, analysed.phases[1:], strict=False))
    assert not any(e.kind == "phase" for e in analysed.events) and analysed.phase_events
    assert analyze(lm_run(), phases=False).phases == []


def test_json_has_the_phases_and_the_health(analysed, with_health):
    d = json.loads(json.dumps(analysed.to_dict()))
    assert d["phases"][0] == {"start_step": 0, "end_step": analysed.phases[0].end_step, "phase": "warmup"}
    assert [p["phase"] for p in d["phases"]] == [p.phase for p in analysed.phases]
    assert d["health"] == [{"step": 0, "state": "healthy", "reason": "start"},
                           {"step": 17_000, "state": "watch", "reason": "two early warnings"}]


def test_without_the_health_module_the_health_is_empty(analysed, monkeypatch):
    monkeypatch.setattr(foreshock.analysis, "health_timeline", None)
    assert analysed.health == [] and analysed.to_dict()["health"] == []


def test_terminal_prints_a_compact_phase_timeline_and_the_health(with_health):
    text = " ".join(render(with_health).split())
    assert "phases warmup 0-" in text and "> fast descent" in text and "> annealing" in text
    assert "health healthy @0 > watch @17000" in text


def test_terminal_says_when_no_phase_was_found_and_shows_no_health_without_changes(monkeypatch):
    monkeypatch.setattr(foreshock.analysis, "health_timeline", lambda events, last_step=None: [])
    quiet = " ".join(render(Analysis(Run(name="empty"), [])).split())
    assert "phases none found" in quiet and "health" not in quiet


def test_html_shades_each_phase_behind_the_loss_and_marks_health_changes(with_health):
    fig, _ = run_figure(with_health)
    rects = [s for s in fig.layout.shapes if s.type == "rect" and (s.name or "").startswith("phase: ")]
    assert [(s.x0, s.x1, s.name) for s in rects] == [(p.start_step, p.end_step, f"phase: {p.phase}")
                                                     for p in with_health.phases]
    assert all(s.fillcolor == PHASE_COLOR[s.name.removeprefix("phase: ")] and s.layer == "below" for s in rects)
    legend = {t.name for t in fig.data}
    assert {"phase: warmup", "phase: fast descent", "phase: slow descent", "phase: annealing"} <= legend
    lines = [s for s in fig.layout.shapes if s.type == "line" and s.line.dash == "dash"]
    assert [(s.x0, s.line.color) for s in lines] == [(0, HEALTH_COLOR["healthy"]), (17_000, HEALTH_COLOR["watch"])]
    html = render_html([with_health])
    assert html.count('<tr class="phase"') == len(with_health.phases)
    assert 'data-phase="annealing"' in html and "<h3>Health</h3>" in html and "two early warnings" in html


def test_docstring_examples_of_the_phase_modules():
    for name in ("foreshock.series.phases", "foreshock.detect.phases"):
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0


def test_with_the_health_module_a_warning_shows_in_the_json_and_the_figure():
    pytest.importorskip("foreshock.detect.health")
    run = lm_run(n=6000)
    run.metrics["train/loss"].values[4000] *= 2000  # a spike (the loss started at 1e4): a warning
    analysis = analyze(run)
    health = analysis.to_dict()["health"]
    assert any(h["state"] == "warning" and h["step"] == 4000 for h in health)
    fig, _ = run_figure(analysis)
    dashed = {s.x0 for s in fig.layout.shapes if s.type == "line" and s.line.dash == "dash"}
    assert dashed == {h["step"] for h in health}
