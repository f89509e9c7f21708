"""Trailing medians: the vectorised and the streaming path give the same numbers, bit for bit."""

import numpy as np
import pytest

from foreshock.series import lower_median, push, trailing_median


def brute(x, window, min_periods, include_current):
    out = []
    for i in range(len(x)):
        lo, hi = (i - window + 1, i + 1) if include_current else (i - window, i)
        w = x[max(lo, 0):hi]
        out.append(np.sort(w)[(len(w) - 1) // 2] if len(w) >= min_periods else np.nan)
    return np.array(out)


def test_lower_median_is_an_element_of_rank_n_minus_1_over_2():
    assert lower_median([4.0]) == 4.0
    assert lower_median([4.0, 1.0]) == 1.0
    assert lower_median([5.0, 1.0, 3.0, 2.0]) == 2.0
    assert lower_median([5.0, 1.0, 3.0, 2.0, 4.0]) == 3.0


@pytest.mark.parametrize("window,min_periods", [(1, 1), (2, 1), (5, 3), (6, 6), (21, 10), (50, 1)])
@pytest.mark.parametrize("include_current", [True, False])
def test_trailing_median_matches_brute_force(window, min_periods, include_current):
    rng = np.random.default_rng(window * 100 + min_periods)
    for n in (0, 1, window - 1, window, window + 1, 300):
        x = rng.standard_normal(max(n, 0)) * 10 ** rng.uniform(-8, 8)
        got = trailing_median(x, window, min_periods, include_current=include_current)
        assert np.array_equal(got, brute(x, window, min_periods, include_current), equal_nan=True)


def test_trailing_median_equals_streaming_lower_median_exactly():
    rng = np.random.default_rng(7)
    x = np.cumsum(rng.standard_normal(2000)) + 1e-9 * rng.standard_normal(2000)
    got = trailing_median(x, 51, 10)
    buf: list[float] = []
    for i, v in enumerate(x.tolist()):
        push(buf, v, 51)
        want = lower_median(buf) if len(buf) >= 10 else np.nan
        assert got[i] == want or (np.isnan(got[i]) and np.isnan(want))


def test_push_keeps_the_last_values():
    buf: list[float] = []
    for v in range(7):
        push(buf, float(v), 3)
    assert buf == [4.0, 5.0, 6.0]


def test_trailing_median_rejects_bad_windows():
    with pytest.raises(ValueError, match="min_periods <= window"):
        trailing_median(np.zeros(3), 3, 4)
    with pytest.raises(ValueError, match="window >= 1"):
        trailing_median(np.zeros(3), 0, 1)
