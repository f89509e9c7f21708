"""Runs of a boolean series and the first index where a condition holds, without a Python loop per point.

Detectors test a condition at every point with numpy, then walk only the runs (maximal stretches
of consecutive True) in Python; these helpers find them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["first_true", "running_streak", "true_runs"]


def true_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and lengths of the runs of True in ``mask``.

    >>> true_runs(np.array([0, 1, 1, 0, 1], dtype=bool))
    (array([1, 4]), array([2, 1]))
    """
    m = np.asarray(mask, dtype=bool)
    edges = np.diff(np.concatenate(([False], m, [False])).astype(np.int8))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return starts, ends - starts


def running_streak(mask: np.ndarray) -> int:
    """Length of the run of True that ends at the last element (0 when it is False or empty)."""
    m = np.asarray(mask, dtype=bool)
    if not len(m) or not m[-1]:
        return 0
    false = np.flatnonzero(~m)
    return len(m) if not len(false) else len(m) - 1 - int(false[-1])


def first_true(condition: Callable[[int, int], np.ndarray], start: int, stop: int) -> int | None:
    """Smallest ``i`` in ``[start, stop)`` where the condition holds, or None.

    ``condition(lo, hi)`` returns the boolean array of the condition over indices ``lo..hi-1``. It
    is evaluated on chunks that double in size, so an answer near ``start`` costs little and a
    long search costs about twice one pass.
    """
    lo, chunk = start, 64
    while lo < stop:
        hi = min(stop, lo + chunk)
        hits = np.flatnonzero(condition(lo, hi))
        if len(hits):
            return lo + int(hits[0])
        lo, chunk = hi, chunk * 2
    return None
