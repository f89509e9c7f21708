import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from foreshock.report.thin import envelope, nonfinite_runs


def bucket_bounds(n, buckets):
    starts = np.linspace(0, n, buckets + 1).astype(int)
    return list(zip(starts[:-1], starts[1:], strict=True))


def test_short_series_is_drawn_as_it_is_with_nonfinite_points_blanked():
    steps = np.arange(5)
    values = np.array([1.0, np.nan, 3.0, np.inf, 5.0])
    env = envelope(steps, values)
    assert not env.thinned
    assert env.x.tolist() == [0, 1, 2, 3, 4]
    assert np.array_equal(env.line, [1.0, np.nan, 3.0, np.nan, 5.0], equal_nan=True)
    assert np.array_equal(env.lo, env.hi, equal_nan=True)


def test_long_series_keeps_a_single_step_spike_that_averaging_would_hide():
    rng = np.random.default_rng(0)
    values = 2.0 + 0.01 * rng.standard_normal(20_000)
    values[12_345] = 9.0  # one-step spike
    env = envelope(np.arange(20_000), values)
    assert env.thinned and len(env) == 2000
    assert np.nanmax(env.hi) == 9.0
    # the mean line alone would show barely a bump (1 point in a bucket of 10): the band carries the spike
    assert np.nanmax(env.line) < 3.0
    spike_bucket = int(np.nanargmax(env.hi))
    lo_step, hi_step = spike_bucket * 10, spike_bucket * 10 + 9
    assert lo_step <= 12_345 <= hi_step and lo_step <= env.x[spike_bucket] <= hi_step


def test_every_bucket_keeps_its_exact_min_max_and_mean():
    rng = np.random.default_rng(1)
    n, buckets = 9_001, 700  # buckets of unequal size
    values = rng.standard_normal(n).cumsum()
    steps = np.arange(n) * 3 + 100
    env = envelope(steps, values, max_points=1000, buckets=buckets)
    assert len(env) == buckets
    for i, (a, b) in enumerate(bucket_bounds(n, buckets)):
        assert env.hi[i] == values[a:b].max()
        assert env.lo[i] == values[a:b].min()
        assert env.line[i] == pytest.approx(values[a:b].mean())
        assert env.x[i] == pytest.approx(steps[a:b].mean())


def test_nonfinite_values_stay_out_of_the_band_and_an_all_nan_bucket_is_a_gap():
    values = np.ones(10_000)
    values[:5] = np.nan  # the first bucket (steps 0-4) has nothing finite
    values[20] = np.inf
    values[21] = -np.inf
    values[25] = 4.0
    env = envelope(np.arange(10_000), values)
    assert np.isnan(env.lo[0]) and np.isnan(env.hi[0]) and np.isnan(env.line[0])
    assert env.hi[4] == env.lo[4] == 1.0  # steps 20-24: the infinities are not in the band
    assert env.hi[5] == 4.0 and env.lo[5] == 1.0
    assert np.all(np.isfinite(env.hi[1:])) and np.all(np.isfinite(env.line[1:]))


def test_huge_finite_values_do_not_turn_the_line_into_inf():
    values = np.full(10_000, 1e308)
    env = envelope(np.arange(10_000), values)
    assert np.all(np.isfinite(env.line)) and np.all(env.line == 1e308)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="same length"):
        envelope(np.arange(3), np.arange(4.0))
    with pytest.raises(ValueError, match=">= 1"):
        envelope(np.arange(3), np.arange(3.0), buckets=0)


finite_or_not = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([np.nan, np.inf, -np.inf]))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 3000), elements=finite_or_not), st.integers(1, 400))
def test_band_contains_every_finite_value_and_keeps_the_extremes(values, buckets):
    n = len(values)
    env = envelope(np.arange(n), values, max_points=min(buckets, n), buckets=buckets)
    finite = values[np.isfinite(values)]
    if finite.size:
        assert np.nanmax(env.hi) == finite.max()
        assert np.nanmin(env.lo) == finite.min()
    else:
        assert np.all(np.isnan(env.hi))
    if env.thinned:
        for i, (a, b) in enumerate(bucket_bounds(n, buckets)):
            chunk = values[a:b][np.isfinite(values[a:b])]
            if chunk.size:
                assert env.lo[i] <= chunk.min() and chunk.max() <= env.hi[i]
                assert env.lo[i] <= env.line[i] <= env.hi[i]


def test_nonfinite_runs_are_grouped_by_kind_and_adjacency():
    steps = np.array([0, 10, 20, 30, 40, 50, 60, 70])
    values = np.array([1.0, np.nan, np.nan, np.inf, np.inf, -np.inf, 2.0, np.nan])
    runs = nonfinite_runs(steps, values)
    assert [(r.kind, r.first_step, r.last_step, r.count) for r in runs] == [
        ("nan", 10, 20, 2), ("inf", 30, 40, 2), ("-inf", 50, 50, 1), ("nan", 70, 70, 1)]
    assert nonfinite_runs(steps, np.ones(8)) == []
    assert sum(r.count for r in runs) == int((~np.isfinite(values)).sum())
