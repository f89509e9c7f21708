import numpy as np
import pytest

from foreshock.errors import NotEnoughData
from foreshock.forecast import LAWS, ScheduleError, fit_law, forecast, parse_schedule, prediction_interval
from foreshock.forecast.laws import design, multi_power_law
from foreshock.run import RunBuilder


def _run(steps, loss, lr=None):
    b = RunBuilder()
    b.add_array("train/loss", steps, loss)
    if lr is not None:
        b.add_array("opt/lr", steps, lr)
    return b.build("sim", source="simulated", format="test")


def test_power_law_fit_recovers_parameters_despite_a_spike():
    steps = np.arange(10, 2000, 10)
    y = 2.0 + 5.0 * steps ** -0.4
    y[50] += 3.0  # one loss spike: Huber must not follow it
    fit = fit_law(LAWS["power"], design(steps, None), y)
    assert fit.params["L_inf"] == pytest.approx(2.0, abs=0.02)
    assert fit.params["alpha"] == pytest.approx(0.4, abs=0.03)


def test_multi_power_fit_predicts_a_wsd_decay_seen_in_a_sibling_run():
    # the curve's response to a decay is learned on a complete cosine run, then a WSD run's prefix
    # (constant LR only) is enough to predict its end
    theta = (2.5, 0.5, 0.5, 500.0, 2.0, 0.5, 0.6)
    cos = parse_schedule("cosine:peak=3e-4,final=3e-5,warmup=100,total=8000")
    wsd = parse_schedule("wsd:peak=3e-4,final=3e-5,warmup=100,decay=1600,total=8000")
    steps = np.arange(200, 8001, 100)
    ref = _run(steps, multi_power_law(steps, cos.table(8000), *theta))
    run = _run(steps, multi_power_law(steps, wsd.table(8000), *theta))
    f = forecast(run, schedule=wsd, fit_until=3000, law="multi-power", reference=[(ref, cos)], n_boot=20)
    truth = multi_power_law(np.array([8000]), wsd.table(8000), *theta)[0]
    assert f.value == pytest.approx(truth, rel=2e-3)
    assert f.sources["B"].startswith("reference: sim") and f.sources["L0"].startswith("fit on steps")
    alone = forecast(run, schedule=wsd, fit_until=3000, law="multi-power", n_boot=5)
    assert alone.sources["B"].startswith("not identified")


def test_interval_coverage_on_simulated_curves():
    """The nominal 90% interval covers the logged value at the target in about 90% of draws."""
    rng = np.random.default_rng(1)
    steps = np.arange(20, 2001, 20)
    truth = 1.5 + 4.0 * steps ** -0.5
    target = np.array([4000])
    d_fit, d_target = design(steps[:50], None), design(target, None)  # fit on the first half
    hits = 0
    draws = 100
    for i in range(draws):
        y = truth[:50] + rng.normal(0, 0.01, 50)
        fit = fit_law(LAWS["power"], d_fit, y)
        value, lo, hi = prediction_interval(fit, d_fit, d_target, n_boot=40, seed=i)
        logged = 1.5 + 4.0 * 4000 ** -0.5 + rng.normal(0, 0.01)
        hits += lo <= logged <= hi
        assert lo < value < hi
    assert 0.80 <= hits / draws <= 0.97, hits


def test_forecast_errors_say_what_is_missing():
    steps = np.arange(1, 50)
    run = _run(steps, 2 + steps ** -0.5)
    with pytest.raises(ScheduleError, match="needs the LR schedule"):
        forecast(run, law="multi-power", at=100)
    with pytest.raises(ValueError, match="give at="):
        forecast(run)
    with pytest.raises(NotEnoughData, match="up to step 5"):
        forecast(run, fit_until=5, at=100)
    with pytest.raises(ValueError, match="unknown law 'cubic'"):
        forecast(run, law="cubic", at=100)


def test_forecast_from_logged_lr_defaults_to_its_last_step():
    sched = parse_schedule("cosine:peak=1e-3,final=1e-4,warmup=10,total=1000")
    steps = np.arange(10, 1001, 10)
    theta = (2.0, 0.5, 0.5, 0.05)
    y = LAWS["annealing"](np.array(theta), design(steps, sched.table(1000)))
    run = _run(steps, y, sched(steps))
    f = forecast(run, schedule="log", law="annealing", fit_until=600, prior=None, n_boot=20)
    assert f.target_step == 1000 and f.at_step == 600 and f.metric == "train/loss"
    assert f.value == pytest.approx(y[-1], rel=5e-3)
    assert set(f.to_dict()) >= {"law", "metric", "fit_until", "at", "value", "lo", "hi", "params"}
