"""Priors on the schedule-response parameters: units, the summary of public fits, and what they do to a fit."""

import math
import re

import numpy as np
import pytest

from foreshock.forecast import LAWS, fit_law, forecast, parse_schedule, prediction_interval
from foreshock.forecast.laws import annealing_law, design
from foreshock.forecast.prior import (
    LogNormal,
    Prior,
    anneal_time,
    default_prior,
    denormalise,
    normalise,
    prior_from_fits,
)
from foreshock.run import RunBuilder


def _run(steps, loss):
    b = RunBuilder()
    b.add_array("train/loss", steps, loss)
    return b.build("sim", source="simulated", format="test")


def test_units_do_not_depend_on_the_scale_of_the_lr():
    # a run that logs the LR and one that logs a multiplier of it must get the same normalised values
    params = {"alpha": 0.5, "C": 2.0, "L0": 3.0}
    # C * peak * anneal time: the loss an anneal from the peak to zero takes off
    assert normalise("annealing", params, 1e-3, 250.0) == {"alpha": 0.5, "C": pytest.approx(0.5)}
    assert normalise("annealing", params, 1e-3) == {"alpha": 0.5, "C": pytest.approx(2.0)}  # a full anneal: 1000
    assert denormalise("annealing", normalise("annealing", params, 1e-3, 250.0), 1e-3, 250.0) == \
        {"alpha": 0.5, "C": pytest.approx(2.0)}
    mp = {"alpha": 0.5, "B": 400.0, "C": 2.0, "beta": 0.6, "gamma": 0.5}
    back = denormalise("multi-power", normalise("multi-power", mp, 3e-4), 3e-4)
    assert back == pytest.approx(mp)
    prior = Prior("annealing", {"C": LogNormal(math.log(0.2), 0.5)}, source="test")
    assert prior.in_units_of(1e-3, 500.0)["C"] == (pytest.approx(math.log(0.4)), 0.5)


def test_anneal_time_is_the_annealing_area_per_unit_of_decay():
    # one drop of 0.5 at step 3, then constant: m = 0.5, 0.25, 0.125 (lam 0.5), S2(6) = 0.875, per 0.5 of decay
    lr = np.array([1.0, 1.0, 1.0, 0.5, 0.5, 0.5])
    assert anneal_time(lr, 6, lam=0.5) == pytest.approx(1.75)
    assert anneal_time(7 * lr, 6, lam=0.5) == pytest.approx(1.75)  # an LR multiplier: the same
    assert anneal_time(lr, 3, lam=0.5) == 2.0  # no decay yet: the full 1 / (1 - lam)
    # default momentum 0.999: a decay long over holds the full 1000 steps, a short one ending at the step less
    long_over = np.concatenate([np.ones(100), np.full(20000, 0.1)])
    assert anneal_time(long_over, 20100) == pytest.approx(1000.0, rel=1e-6)
    short = np.concatenate([np.ones(1000), np.linspace(1.0, 0.0, 201)[1:]])  # linear to 0 over 200 steps
    assert 90 < anneal_time(short, 1200) < 100.5  # about D / 2, a little less: the momentum leaks
    assert anneal_time(np.ones(50), 50) == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="step=51"):
        anneal_time(np.ones(50), 51)


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


def test_the_default_prior_holds_the_anneal_drop_so_a_shorter_decay_gets_a_larger_c():
    # the prior speaks for C * peak * anneal_time: a decay of 100 steps that ends at the target builds up
    # less annealing area than one of 800, so the same drop needs a larger C
    sched, steps, lr, theta, y = _wsd_case()
    run = _run(steps, y)
    short = parse_schedule("wsd:peak=1e-3,final=1e-4,warmup=50,decay=100,total=4000")
    medians = []
    for s in (sched, short):
        f = forecast(run, schedule=s, fit_until=1500, law="annealing", n_boot=5)
        medians.append(float(re.search(r"median ([0-9.e+-]+),", f.sources["C"]).group(1)))
        expected = default_prior("annealing").params["C"].median / (1e-3 * anneal_time(s.table(4000), 4000))
        assert medians[-1] == pytest.approx(expected, rel=1e-3)
    assert medians[1] / medians[0] == pytest.approx(anneal_time(lr, 4000) / anneal_time(short.table(4000), 4000),
                                                    rel=2e-3)
    assert medians[1] > 3 * medians[0]
