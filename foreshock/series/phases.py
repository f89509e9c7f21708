"""Slopes of a loss curve in log-log coordinates, one geometric bin at a time: the math of phases.

A loss curve read against the step on log-log axes is close to a few straight pieces: a steep one
(fast descent), a shallower one after a break of slope (the *loss deceleration* of "Training
dynamics underlying language model scaling laws: loss deceleration and zero-sum learning"), a flat
one (a plateau), a steeper one again when the learning rate is annealed. The slope
``d log L / d log t`` is scale-free: multiplying the loss or the step by a constant leaves it as it is.

Points are grouped into geometric bins of the step (``bins_per_decade`` per factor of ten of
``step + 1``), and each bin is summarised by the median of its ``log10`` losses, so a spike or
a noisy point moves nothing. Slopes are Theil-Sen fits (the median of pairwise slopes) over the
last few bins; a break of slope is the corner of the best continuous two-piece line through them.
Streaming is on a plain-dict state (:func:`new_bin_state`, :func:`bin_step`), O(1) amortised per
point: a bin's values are sorted once, when it closes.

>>> state = new_bin_state()
>>> closed = [bin_step(state, s, 10.0 / (s + 1), 10) for s in range(40)]
>>> [tuple(round(v, 2) for v in c[:2]) for c in closed if c is not None][:3]
[(0.0, 1.0), (0.3, 0.7), (0.48, 0.52)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["bin_step", "broken_line", "new_bin_state", "theil_sen"]


def new_bin_state() -> dict[str, Any]:
    """The streaming state of an empty binner: the open bin's index, its log-steps and log-values."""
    return {"index": None, "x": [], "y": [], "last_step": None, "first_step": None}


def bin_step(state: dict[str, Any], step: int, value: float,
             bins_per_decade: int) -> tuple[float, float, int, int] | None:
    """Take in one point; when it opens a new bin, return the bin it closed, else None.

    A closed bin is ``(x, y, points, last_step)``: the median of ``log10(step + 1)`` and of
    ``log10(value)`` over its points (both averaging the two middle ones of an even count, so a
    straight line in log-log stays on its line), how many there were, and the step of its last point.
    Points with a non-positive or non-finite value, or a negative step, are not data here (None).
    """
    if not (value > 0 and math.isfinite(value)) or step < 0:
        return None
    # numpy's log10, not math's: the vectorised replay computes the same numbers over whole arrays
    x = float(np.log10(step + 1.0))
    index = math.floor(bins_per_decade * x)
    closed = None
    if state["index"] is not None and index != state["index"]:
        closed = (float(np.median(state["x"])), float(np.median(state["y"])), len(state["y"]), state["last_step"])
        state["x"], state["y"] = [], []
    state["index"] = index
    state["x"].append(x)
    state["y"].append(float(np.log10(value)))
    state["last_step"] = int(step)
    if state["first_step"] is None:
        state["first_step"] = int(step)
    return closed


def theil_sen(x: Sequence[float], y: Sequence[float]) -> float:
    """The median of the pairwise slopes ``(y[j] - y[i]) / (x[j] - x[i])`` (NaN with fewer than 2 points).

    Robust: up to about 29% of the points can be anywhere without moving it much.

    >>> theil_sen([0, 1, 2, 3, 4], [0, -1, -2, 9, -4])
    -1.0
    """
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    i, j = np.triu_indices(len(xa), k=1)
    dx = xa[j] - xa[i]
    keep = dx != 0
    if not keep.any():
        return math.nan
    return float(np.median((ya[j] - ya[i])[keep] / dx[keep]))


def broken_line(x: Sequence[float], y: Sequence[float]) -> tuple[int, float, float]:
    """The best continuous two-piece line through the points: ``(k, slope_before, slope_after)``.

    The corner is at ``x[k]`` (``1 <= k <= n - 2``), chosen to minimise the squared error of the
    least-squares fit ``y = a + b * x + c * max(0, x - x[k])``; ``slope_before = b`` and
    ``slope_after = b + c``. Needs at least 3 points.

    >>> k, before, after = broken_line([0, 1, 2, 3, 4, 5], [0, -2, -4, -4.5, -5, -5.5])
    >>> k, round(before, 6), round(after, 6)
    (2, -2.0, -0.5)
    """
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(xa)
    if n < 3:
        raise ValueError(f"a broken line needs at least 3 points, got {n}")
    best: tuple[float, int, float, float] | None = None
    for k in range(1, n - 1):
        design = np.column_stack([np.ones(n), xa, np.maximum(0.0, xa - xa[k])])
        coef, *_ = np.linalg.lstsq(design, ya, rcond=None)
        sse = float(np.sum((design @ coef - ya) ** 2))
        if best is None or sse < best[0] - 1e-12:
            best = (sse, k, float(coef[1]), float(coef[1] + coef[2]))
    assert best is not None
    return best[1], best[2], best[3]
