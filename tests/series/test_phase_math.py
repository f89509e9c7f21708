"""The log-log slope math behind phases: geometric bins, Theil-Sen slopes, the break of a two-piece line."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foreshock.series.phases import bin_step, broken_line, new_bin_state, theil_sen


def closed_bins(steps, values, per_decade=10):
    state = new_bin_state()
    out = [bin_step(state, int(s), float(v), per_decade) for s, v in zip(steps, values, strict=True)]
    return [c for c in out if c is not None], state


def test_a_bin_closes_when_the_next_one_opens_with_the_lower_median_of_its_points():
    # steps 100..124 fall in one bin at 10 per decade (log10(101..125) in [2.0, 2.1))
    steps = list(range(100, 125)) + [130]
    values = [1.0] * 25 + [5.0]
    values[3] = 1e6  # one wild point does not move the bin's value
    bins, state = closed_bins(steps, values)
    assert len(bins) == 1
    x, y, points, last = bins[0]
    assert y == 0.0 and points == 25 and last == 124
    assert 2.0 <= x < 2.1
    assert state["x"] == [math.log10(131)] and state["first_step"] == 100


def test_points_that_are_not_losses_are_skipped():
    state = new_bin_state()
    for v in (0.0, -1.0, math.nan, math.inf):
        assert bin_step(state, 5, v, 10) is None
    assert state["index"] is None and state["first_step"] is None


@settings(max_examples=40, deadline=None)
@given(alpha=st.floats(0.05, 3.0), scale=st.floats(1e-6, 1e6), step_scale=st.sampled_from([1, 7, 100]))
def test_the_slope_of_a_power_law_is_its_exponent_whatever_the_units(alpha, scale, step_scale):
    steps = np.arange(1, 3000) * step_scale
    loss = scale * (steps + 1.0) ** -alpha
    bins, _ = closed_bins(steps, loss, per_decade=20)
    xs, ys = [b[0] for b in bins[-8:]], [b[1] for b in bins[-8:]]
    assert theil_sen(xs, ys) == pytest.approx(-alpha, rel=1e-6, abs=1e-9)


def test_theil_sen_ignores_a_minority_of_wild_points():
    x = np.arange(10.0)
    y = 2.0 - 0.5 * x
    y[[2, 7]] = [50.0, -40.0]
    assert theil_sen(x, y) == pytest.approx(-0.5)
    assert math.isnan(theil_sen([1.0], [2.0]))
    assert math.isnan(theil_sen([1.0, 1.0], [2.0, 3.0]))


def test_broken_line_finds_the_corner_and_both_slopes():
    x = np.linspace(0, 3, 13)
    corner = x[5]
    y = np.where(x < corner, -1.0 * x, -1.0 * corner - 0.2 * (x - corner))
    k, before, after = broken_line(x, y)
    assert k == 5
    assert before == pytest.approx(-1.0) and after == pytest.approx(-0.2)
    with pytest.raises(ValueError):
        broken_line([0.0, 1.0], [0.0, 1.0])
