"""A clipped exponentially weighted second moment, and how far each new point sits above it (SPAM).

SPAM (Huang et al. 2025, "SPAM: Spike-Aware Adam with Momentum Reset") calls a gradient component a
spike when ``g**2 > theta * v``, ``v`` being the exponential moving average of ``g**2``, and clips
the spike to ``sqrt(theta * v)`` before it enters the average. The clipping is what keeps one
hundredfold spike from inflating ``v`` for hundreds of steps and hiding the spikes after it; a
lasting rise still lifts ``v`` by a factor ``beta + (1 - beta) * theta`` per point until the new
level is the normal one. The ratio ``x**2 / v`` is scale-free: it reads the same on a gradient
norm of 1e-3 and of 1e3.

:func:`second_moment_ratios` walks an array once and carries its state in a plain dict, so a
detector can call it on one point at a time (live) or on a whole series (replay): both run the
same float operations in the same order and agree bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["moment_step", "new_moment_state", "second_moment_ratios"]


def new_moment_state() -> dict[str, Any]:
    """The state before any point: no average yet, no point seen."""
    return {"ema": None, "n": 0}


def second_moment_ratios(x: np.ndarray, state: dict[str, Any], beta: float, theta: float,
                         min_periods: int) -> tuple[np.ndarray, np.ndarray]:
    """``x[i]**2 / v`` for each point against the clipped average ``v`` of the points before it.

    Parameters
    ----------
    x : 1-D float array
        Finite values, in order.
    state : dict
        From :func:`new_moment_state` or an earlier call; advanced in place past ``x``.
    beta : float
        Weight of the old average per point (``1 - beta`` goes to the new point).
    theta : float
        A point with ``x**2 > theta * v`` is a spike and enters the average as ``theta * v``.
    min_periods : int
        Points taken in before the first ratio is given; the first point starts the average.

    Returns
    -------
    ratios, ema : numpy.ndarray
        The ratio of each point (NaN before ``min_periods`` points; ``inf`` for a non-zero point over
        an average of 0) and the average ``v`` it was judged against (NaN where none).

    Examples
    --------
    >>> st = new_moment_state()
    >>> r, v = second_moment_ratios(np.array([1.0, 1.0, 1.0, 10.0, 1.0]), st, 0.5, 25.0, 2)
    >>> r.tolist()
    [nan, nan, 1.0, 100.0, 0.07692307692307693]
    """
    xs = np.asarray(x, dtype=np.float64).tolist()
    ratios = np.full(len(xs), np.nan)
    emas = np.full(len(xs), np.nan)
    ema, n = state["ema"], state["n"]
    keep = 1.0 - beta
    # moment_step inlined (a function call per point would double the cost); same operations
    for i, v in enumerate(xs):
        sq = v * v
        if ema is None:
            ema, n = sq, 1
            continue
        if n >= min_periods:
            r = sq / ema if ema > 0 else (0.0 if sq == 0 else math.inf)
            ratios[i], emas[i] = r, ema
            if r > theta and ema > 0:
                sq = theta * ema
        ema = beta * ema + keep * sq
        n += 1
    state["ema"], state["n"] = ema, n
    return ratios, emas


def moment_step(state: dict[str, Any], x: float, beta: float, theta: float,
                min_periods: int) -> tuple[float | None, float | None]:
    """One point of :func:`second_moment_ratios`: ``(ratio, average)`` (None, None before
    ``min_periods`` points), then ``x`` taken into the average of ``state``."""
    sq = x * x
    ema = state["ema"]
    if ema is None:
        state["ema"], state["n"] = sq, 1
        return None, None
    r = None
    if state["n"] >= min_periods:
        r = sq / ema if ema > 0 else (0.0 if sq == 0 else math.inf)
        if r > theta and ema > 0:  # over an average of 0 there is no level to clip to
            sq = theta * ema
    state["ema"] = beta * ema + (1.0 - beta) * sq
    state["n"] += 1
    return r, (ema if r is not None else None)
