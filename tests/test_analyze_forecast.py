"""analyze with a known schedule also forecasts, and the reports show it."""

import json

import numpy as np
import pytest

import foreshock
from foreshock.cli import main
from foreshock.forecast import parse_schedule
from foreshock.forecast.laws import annealing_law
from foreshock.logs.csv_long import write_csv
from foreshock.report import write_html
from foreshock.run import RunBuilder

SPEC = "wsd:peak=1e-3,final=1e-4,warmup=50,decay=800,total=4000"


def _prefix_run(until=1500):
    sched = parse_schedule(SPEC)
    steps = np.arange(60, until + 1, 20)
    # a response typical of public curves (C * peak * anneal time near the default prior's median)
    y = annealing_law(steps, sched.table(4000), 2.0, 0.8, 0.5, 0.45)
    y = y * (1 + 0.002 * np.random.default_rng(0).standard_normal(len(y)))
    b = RunBuilder()
    b.add_array("train/loss", steps, y)
    return b.build("prefix", source="test", format="test"), annealing_law(np.array([4000]), sched.table(4000),
                                                                          2.0, 0.8, 0.5, 0.45)[0]


def test_a_schedule_adds_a_forecast_to_the_analysis():
    run, truth = _prefix_run()
    a = foreshock.analyze(run, schedule=SPEC)
    f = a.forecast
    assert f is not None and f.target_step == 4000 and f.at_step == 1500 and f.law == "annealing"
    assert f.lo < f.value < f.hi and f.lo <= truth <= f.hi
    assert f.curve[0][-1] == 4000 and len(f.curve[0]) == len(f.curve[1])
    d = a.to_dict()
    assert d["forecast"]["at"] == 4000 and d["forecast"]["value"] == pytest.approx(f.value)
    assert foreshock.analyze(run).to_dict()["forecast"] is None


def test_a_forecast_that_cannot_be_made_says_why_and_the_analysis_goes_on():
    run, _ = _prefix_run(until=160)  # 6 points: too few to fit
    a = foreshock.analyze(run, schedule=SPEC)
    assert a.forecast is None and "8+ finite points" in a.forecast_note
    assert a.to_dict()["forecast"] is None


def test_html_draws_the_forecast_and_the_cli_prints_it(tmp_path, capsys):
    run, _ = _prefix_run()
    write_html([foreshock.analyze(run, schedule=SPEC)], tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "forecast (annealing law)" in page and "90% interval" in page
    path = tmp_path / "prefix.csv"
    write_csv(run, path)
    assert main(["analyze", str(path), "--schedule", SPEC, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["forecast"]["at"] == 4000 and out["forecast"]["law"] == "annealing"
    assert main(["analyze", str(path), "--schedule", SPEC]) == 0
    assert "forecast" in capsys.readouterr().out
