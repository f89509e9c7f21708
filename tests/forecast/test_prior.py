"""Priors on the schedule-response parameters: units, the summary of public fits, and what they do to a fit."""

import math

import numpy as np
import pytest

from foreshock.forecast import LAWS, fit_law, forecast, parse_schedule, prediction_interval
from foreshock.forecast.laws import annealing_law, design
from foreshock.forecast.prior import LogNormal, Prior, default_prior, denormalise, normalise, prior_from_fits
from foreshock.run import RunBuilder


def _run(steps, loss):
    b = RunBuilder()
    b.add_array("train/loss", steps, loss)
    return b.build("sim", source="simulated", format="test")


def test_units_do_not_depend_on_the_scale_of_the_lr():
    # a run that logs the LR and one that logs a multiplier of it must get the same normalised values
    params = {"alpha": 0.5, "C": 2.0, "L0": 3.0}
    assert normalise("annealing", params, 1e-3) == {"alpha": 0.5, "C": pytest.approx(2e-3)}
    assert denormalise("annealing", normalise("annealing", params, 1e-3), 1e-3) == {"alpha": 0.5,
                                                                                   "C": pytest.approx(2.0)}
    mp = {"alpha": 0.5, "B": 400.0, "C": 2.0, "beta": 0.6, "gamma": 0.5}
    back = denormalise("multi-power", normalise("multi-power", mp, 3e-4), 3e-4)
    assert back == pytest.approx(mp)
    prior = Prior("annealing", {"C": LogNormal(math.log(2e-3), 0.5)}, source="test")
    assert prior.in_units_of(1e-3)["C"] == (pytest.approx(math.log(2.0)), 0.5)


def test_prior_from_fits_weights_each_family_once_and_adds_both_spreads():
    fits = {"a": [{"alpha": 1.0}, {"alpha": math.e}, {"alpha": math.e ** 2}],  # log: 0, 1, 2 (median 1)
            "b": [{"alpha": math.e ** 3}]}  # log 3: one run, but a whole family
    p = prior_from_fits("annealing", fits, source="test", same_model=("a",))
    assert p.params["alpha"].mu == pytest.approx(2.0)  # mean of the family medians 1 and 3
    between = np.var([1.0, 3.0], ddof=1)  # 2
    within = 2.0 / 2  # family a: squares (1 + 0 + 1) over 2 dof
    assert p.params["alpha"].sd == pytest.approx(math.sqrt(between + within))
    assert p.transfer_sd["alpha"] == pytest.approx(1.0)


def test_shipped_prior_is_the_annealing_law_fitted_on_public_curves():
    p = default_prior("annealing")
    assert p is not None and set(p.params) == {"alpha", "C"} and "public curves" in p.source
    assert 0.1 < p.params["alpha"].median < 1.0 and 0.1 <= p.params["C"].sd < 3
    assert default_prior("power") is None


def _wsd_case():
    sched = parse_schedule("wsd:peak=1e-3,final=1e-4,warmup=50,decay=800,total=4000")
    steps = np.arange(60, 4001, 20)
    lr = sched.table(4000)
    theta = dict(L0=2.0, A=0.8, alpha=0.5, C=0.02)
    y = annealing_law(steps, lr, **theta)
    return sched, steps, lr, theta, y


def test_a_prior_sets_what_a_constant_lr_prefix_cannot_show():
    sched, steps, lr, theta, y = _wsd_case()
    keep = steps <= 1500  # constant LR only: the decay response is invisible
    d = design(steps[keep], lr[:1501])
    right = {"C": (math.log(theta["C"]), 0.05)}
    wrong = {"C": (math.log(10 * theta["C"]), 0.05)}
    target = design(np.array([4000]), lr)
    truth = y[-1]
    good = fit_law(LAWS["annealing"], d, y[keep], prior=right).predict(target)[0]
    bad = fit_law(LAWS["annealing"], d, y[keep], prior=wrong).predict(target)[0]
    assert good == pytest.approx(truth, rel=2e-3)
    assert abs(bad - truth) > 10 * abs(good - truth)


def test_the_data_overrules_a_wrong_prior_when_it_shows_the_decay():
    sched, steps, lr, theta, y = _wsd_case()
    rng = np.random.default_rng(0)
    noisy = y + rng.normal(0, 1e-3, len(y))
    fit = fit_law(LAWS["annealing"], design(steps, lr), noisy, prior={"C": (math.log(5 * theta["C"]), 0.5)})
    assert fit.params["C"] == pytest.approx(theta["C"], rel=0.1)


def test_prior_uncertainty_widens_the_interval_and_it_covers():
    """Runs whose true response is drawn from the prior: the 90% interval covers about 90% of them,
    and is wider than the same fit with the prior's centre taken as known."""
    sched, steps, lr, theta, _ = _wsd_case()
    keep = steps <= 1500
    d, target = design(steps[keep], lr[:1501]), design(np.array([4000]), lr)
    rng = np.random.default_rng(3)
    mu, sd = math.log(theta["C"]), 0.4
    hits, widths, narrow = 0, [], []
    draws = 40
    for i in range(draws):
        c = math.exp(mu + sd * rng.standard_normal())
        y = annealing_law(steps, lr, theta["L0"], theta["A"], theta["alpha"], c) + rng.normal(0, 2e-3, len(steps))
        fit = fit_law(LAWS["annealing"], d, y[keep], prior={"C": (mu, sd)})
        value, lo, hi = prediction_interval(fit, d, target, n_boot=40, seed=i)
        hits += lo <= y[-1] <= hi
        widths.append(hi - lo)
        tight = fit_law(LAWS["annealing"], d, y[keep], prior={"C": (mu, 1e-3)})
        _, tlo, thi = prediction_interval(tight, d, target, n_boot=40, seed=i)
        narrow.append(thi - tlo)
    assert 0.75 <= hits / draws <= 1.0, hits
    assert np.median(widths) > 1.4 * np.median(narrow)


def test_forecast_says_where_each_parameter_came_from():
    sched, steps, lr, theta, y = _wsd_case()
    run = _run(steps, y)
    f = forecast(run, schedule=sched, fit_until=1500, law="annealing", n_boot=10)
    assert f.sources["C"].startswith("the default prior (median") and "public curves" in f.sources["C"]
    assert f.sources["L0"].startswith("fit on steps")
    none = forecast(run, schedule=sched, fit_until=1500, law="annealing", prior=None, n_boot=5)
    assert none.sources["C"].startswith("not identified")
    seen = forecast(run, schedule=sched, fit_until=3600, law="annealing", n_boot=5)
    assert seen.sources["C"].startswith("fit on steps 360-3600 with the default prior")  # 360: the transient left out
    with pytest.raises(ValueError, match="prior='flat'"):
        forecast(run, schedule=sched, fit_until=1500, law="annealing", prior="flat")
