"""Thinning long series for drawing without hiding a spike, and finding their non-finite stretches.

A plot of 20,000 points is slow and no clearer than one of 2,000; but thinning by taking every
tenth point, or by averaging, can remove exactly the one-step spike a reader is looking for. So a
long series is cut into buckets of consecutive points and each bucket keeps its minimum and its
maximum (drawn as a band) and its mean (drawn as the line). NaN and +-Inf take no part in the
band: :func:`nonfinite_runs` reports them separately, so the report can mark every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Envelope", "NonFiniteRun", "envelope", "log_display_range", "nonfinite_runs"]


@dataclass(frozen=True)
class Envelope:
    """A series ready to draw: one x per bucket and the bucket's min, max and mean.

    When the series was short enough to draw as it is, ``thinned`` is False, each bucket is one
    point and ``lo == hi == line`` (NaN where the value was not finite).
    """

    x: np.ndarray  # float64: the mean step of each bucket
    lo: np.ndarray  # smallest finite value in the bucket, NaN when it has none
    hi: np.ndarray  # largest finite value in the bucket, NaN when it has none
    line: np.ndarray  # mean of the bucket's finite values, NaN when it has none
    thinned: bool

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class NonFiniteRun:
    """Consecutive points of a series with the same non-finite value (``kind``: nan, inf, -inf)."""

    kind: str
    first_step: int
    last_step: int
    count: int


def envelope(steps: np.ndarray, values: np.ndarray, *, max_points: int = 4000, buckets: int = 2000) -> Envelope:
    """Min/max/mean envelope of a series, in ``buckets`` groups when it has more than ``max_points``.

    Buckets hold consecutive points, as equal in number as possible. Every finite value lies within
    its bucket's ``[lo, hi]``, and the largest and smallest finite values of the series are kept
    exactly, so no spike is lost to thinning.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.ones(10_000); v[5_000] = 50.0
    >>> env = envelope(np.arange(10_000), v)
    >>> len(env), float(np.nanmax(env.hi)), float(np.nanmax(env.line))
    (2000, 50.0, 10.8)
    """
    if max_points < 1 or buckets < 1:
        raise ValueError(f"max_points and buckets must be >= 1, got {max_points} and {buckets}")
    steps = np.asarray(steps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if steps.shape != values.shape or steps.ndim != 1:
        raise ValueError(f"steps and values must be 1-D of the same length, got {steps.shape} and {values.shape}")
    finite = np.isfinite(values)
    n = len(values)
    if n <= max_points or n <= buckets:
        shown = np.where(finite, values, np.nan)
        return Envelope(x=steps.copy(), lo=shown, hi=shown.copy(), line=shown.copy(), thinned=False)
    starts = np.linspace(0, n, buckets + 1).astype(np.int64)[:-1]  # strictly increasing since buckets < n
    sizes = np.diff(np.append(starts, n))
    count = np.add.reduceat(finite.astype(np.int64), starts)
    lo = np.minimum.reduceat(np.where(finite, values, np.inf), starts)
    hi = np.maximum.reduceat(np.where(finite, values, -np.inf), starts)
    empty = count == 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        line = np.add.reduceat(np.where(finite, values, 0.0), starts) / count
        # a sum of huge finite values can overflow to inf; the midpoint of the band is a fair line then
        bad = ~np.isfinite(line) & ~empty
        line[bad] = lo[bad] / 2 + hi[bad] / 2
    line = np.clip(line, lo, hi)  # a rounded mean can overshoot a constant bucket by one ulp
    lo[empty] = hi[empty] = line[empty] = np.nan
    x = np.add.reduceat(steps, starts) / sizes
    return Envelope(x=x, lo=lo, hi=hi, line=line, thinned=True)


def nonfinite_runs(steps: np.ndarray, values: np.ndarray) -> list[NonFiniteRun]:
    """The stretches of consecutive NaN, +Inf or -Inf values of a series, in step order.

    Examples
    --------
    >>> nonfinite_runs(np.arange(6), np.array([1.0, np.nan, np.nan, np.inf, 2.0, np.nan]))
    [NonFiniteRun(kind='nan', first_step=1, last_step=2, count=2), NonFiniteRun(kind='inf', first_step=3, last_step=3, count=1), NonFiniteRun(kind='nan', first_step=5, last_step=5, count=1)]
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64)
    # 0 finite, 1 nan, 2 +inf, 3 -inf: a run ends where this code changes
    code = np.where(np.isnan(values), 1, np.where(values == np.inf, 2, np.where(values == -np.inf, 3, 0)))
    if not code.any():
        return []
    change = np.flatnonzero(np.diff(code)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [len(code)])) - 1
    names = {1: "nan", 2: "inf", 3: "-inf"}
    return [
        NonFiniteRun(kind=names[int(code[s])], first_step=int(steps[s]), last_step=int(steps[e]), count=int(e - s + 1))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        if code[s]
    ]


def log_display_range(values: np.ndarray, *, outlier_ratio: float = 100.0,
                      headroom: float = 10.0) -> tuple[float, float] | None:
    """A y range for a log axis that shows the bulk of the values when a few are far beyond it.

    A run that diverges logs losses of 1e40 for a few steps; drawn to scale, its whole healthy
    history is a flat line at the bottom of the panel. When the largest finite value exceeds
    ``outlier_ratio`` times the 95th percentile, the range is ``(min, headroom * p95)``; the curve
    then leaves the top of the panel where it blows up (the report says so, and plotly's
    autoscale shows everything). None when the full range is fine or there is nothing positive.

    >>> v = np.concatenate([np.linspace(3.0, 1.0, 1000), [1e5, 1e20, 1e40]])
    >>> lo, hi = log_display_range(v)
    >>> round(lo, 3), round(hi, 1)
    (1.0, 29.1)
    >>> log_display_range(np.linspace(3.0, 1.0, 1000)) is None
    True
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) == 0:
        return None
    p95 = float(np.quantile(v, 0.95))
    if float(v.max()) <= outlier_ratio * p95:
        return None
    return float(v.min()), headroom * p95
