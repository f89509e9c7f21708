"""Early-warning indicators: the same numbers as ewstools, causal streaming, Kendall tau as scipy's."""

import math

import numpy as np
import pytest
from scipy import stats

from foreshock.series.ews import (
    EarlyWarning,
    gaussian_residuals,
    indicator_rows,
    indicators,
    kendall_rows,
    kendall_tau,
    kernel_sigma,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                        "ignore:The inplace keyword")


def tipping_series(n=400, seed=1):
    """A slow decline whose fluctuations grow and redden: the textbook approach to a transition."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for i in range(1, n):
        phi = 0.2 + 0.75 * i / n  # recovery rate falls: lag-1 autocorrelation rises
        x[i] = phi * x[i - 1] + rng.standard_normal() * (0.1 + i / n)
    return np.linspace(5.0, 2.0, n) + x


@pytest.mark.parametrize("bandwidth,window", [(40, 100), (10, 50), (0.2, 0.25)])
def test_rolling_indicators_and_kendall_taus_equal_ewstools(bandwidth, window):
    ewstools = pytest.importorskip("ewstools")  # a test-only dependency
    x = tipping_series()
    ts = ewstools.TimeSeries(x)
    ts.detrend(method="Gaussian", bandwidth=bandwidth)
    ts.compute_var(rolling_window=window)
    ts.compute_auto(rolling_window=window, lag=1)
    ts.compute_skew(rolling_window=window)
    ts.compute_ktau()
    bw = bandwidth * len(x) if bandwidth <= 1 else bandwidth
    w = int(window * len(x)) if window <= 1 else window
    r = gaussian_residuals(x, bw)
    np.testing.assert_allclose(r, ts.state["residuals"].to_numpy(), rtol=0, atol=1e-12)
    ours = np.array([astuple(indicators(r[i - w + 1:i + 1])) for i in range(w - 1, len(x))])
    theirs = ts.ews[["variance", "ac1", "skew"]].to_numpy()[w - 1:]
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    for j, name in enumerate(("variance", "ac1", "skew")):
        assert kendall_tau(ours[:, j]) == pytest.approx(ts.ktau[name], abs=1e-12)
    assert ts.ktau["variance"] > 0.7  # the fluctuations do grow


def astuple(ind):
    return ind.variance, ind.ac1, ind.skew


def test_streaming_indicators_are_ewstools_on_the_trailing_window_only():
    ewstools = pytest.importorskip("ewstools")
    # causal: at each evaluation, exactly what ewstools gives for the last point of the window seen so far
    x = tipping_series(300, seed=4)
    ew = EarlyWarning(window=60, bandwidth=15, stride=7, history=5)
    got = []
    for v in x:
        if ew.update(v).evaluated:
            got.append(astuple(ew.current))
    ends = range(59, 300, 7)
    assert len(got) == len(ends)
    for (var, ac1, skew), end in zip(got, ends, strict=True):
        ts = ewstools.TimeSeries(x[end - 59:end + 1])
        ts.detrend(method="Gaussian", bandwidth=15)
        ts.compute_var(rolling_window=60)
        ts.compute_auto(rolling_window=60, lag=1)
        ts.compute_skew(rolling_window=60)
        ref = ts.ews.iloc[-1]
        assert (var, ac1, skew) == pytest.approx((ref["variance"], ref["ac1"], ref["skew"]), rel=1e-9, abs=1e-12)
    # the future never enters: feeding more points does not change what was computed
    again = EarlyWarning(window=60, bandwidth=15, stride=7, history=5)
    firsts = [astuple(again.current) for v in x[:150] if again.update(v).evaluated]
    assert firsts == got[:len(firsts)]


def test_taus_rise_before_a_transition_and_stay_flat_on_stationary_noise():
    ew = EarlyWarning(window=80, bandwidth=20, stride=10, history=20)
    for v in tipping_series(600, seed=2):
        ew.update(v)
    assert ew.taus["variance"] > 0.7
    flat = EarlyWarning(window=80, bandwidth=20, stride=10, history=20)
    for v in np.random.default_rng(3).standard_normal(600) * 1e-6 + 7.0:
        flat.update(v)
    assert abs(flat.taus["variance"]) < 0.5
    assert len(flat.buffer) == 80 and all(len(s) == 20 for s in flat.series.values())  # bounded memory


def test_kendall_tau_is_scipys_tau_b_with_ties_and_nans_dropped():
    rng = np.random.default_rng(0)
    for n in (3, 5, 20, 57):
        y = np.round(rng.standard_normal(n), 1)  # ties
        assert kendall_tau(y) == pytest.approx(stats.kendalltau(np.arange(n), y).statistic, abs=1e-12)
    y = np.array([1.0, np.nan, 2.0, 3.0, np.nan])
    assert kendall_tau(y) == 1.0
    assert math.isnan(kendall_tau(np.array([2.0, 2.0, 2.0])))
    assert math.isnan(kendall_tau(np.array([1.0, np.nan, 2.0])))


def test_rows_give_the_numbers_of_single_windows_bit_for_bit():
    # the detector's vectorised replay relies on this
    rng = np.random.default_rng(5)
    windows = np.exp(rng.standard_normal((300, 40)) * rng.uniform(1e-4, 2, (300, 1)))
    res = gaussian_residuals(np.log(windows), 9.0)
    rows = indicator_rows(res)
    for i in (0, 17, 299):
        one = indicator_rows(gaussian_residuals(np.log(windows[i].copy())[None, :], 9.0))
        assert [r[i] for r in rows] == [o[0] for o in one]
    taus = kendall_rows(rows[0][:200].reshape(10, 20))
    assert taus.tolist() == [kendall_rows(rows[0][20 * k:20 * k + 20][None, :])[0] for k in range(10)]


def test_constant_windows_have_zero_variance_and_undefined_shape():
    ind = indicators(np.zeros(10))
    assert ind.variance == 0.0 and math.isnan(ind.ac1) and math.isnan(ind.skew)
    with pytest.raises(ValueError):
        indicators(np.zeros(2))
    with pytest.raises(ValueError):
        EarlyWarning(window=2)
    assert kernel_sigma(0.675 * 4) == pytest.approx(1.0)
