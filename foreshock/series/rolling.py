"""Trailing (causal) medians over a fixed number of points, whole-array and one point at a time.

The median here is the *lower* median: the element of rank ``(n - 1) // 2`` of the ``n`` sorted
values. It is always one of the values (no averaging), so the vectorised path
(:func:`trailing_median`, a rank filter) and the streaming path (:func:`lower_median` on a list)
agree bit for bit, which is what lets a detector's fast replay equal its step-by-step one.

Windows count points, not steps: a series logged every 100 steps has a window of ``window``
evaluations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["lower_median", "push", "trailing_median"]


def lower_median(values: Sequence[float]) -> float:
    """The element of rank ``(n - 1) // 2`` of ``values`` (n >= 1), as a float.

    >>> lower_median([3.0, 1.0, 2.0, 10.0])
    2.0
    """
    ordered = sorted(values)
    return float(ordered[(len(ordered) - 1) // 2])


def push(buffer: list[float], value: float, maxlen: int) -> None:
    """Append ``value`` to ``buffer`` and drop the oldest values beyond ``maxlen``."""
    buffer.append(value)
    if len(buffer) > maxlen:
        del buffer[: len(buffer) - maxlen]


def trailing_median(x: np.ndarray, window: int, min_periods: int = 1, *,
                    include_current: bool = True) -> np.ndarray:
    """Lower median of the last ``window`` points at every index; NaN where too few points.

    Parameters
    ----------
    x : 1-D float array
        Finite values (drop NaN and Inf first: they are not data for a median).
    window : int
        Points per window (>= 1).
    min_periods : int
        Fewest points a partial window at the start needs to give a value (1 <= min_periods <= window).
    include_current : bool
        True: the window ends at ``i`` (``x[i-window+1 : i+1]``). False: it ends just before ``i``
        (``x[i-window : i]``), the baseline a new point is judged against.

    Returns
    -------
    numpy.ndarray
        float64, same length as ``x``.

    Examples
    --------
    >>> trailing_median(np.array([5.0, 1.0, 4.0, 2.0, 3.0]), 3, 2, include_current=False)
    array([nan, nan,  1.,  4.,  2.])
    """
    if window < 1 or not 1 <= min_periods <= window:
        raise ValueError(f"need window >= 1 and 1 <= min_periods <= window, got {window=}, {min_periods=}")
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    out = np.full(n, np.nan)
    if n:
        rank = (window - 1) // 2
        # origin=rank puts the window at x[i-window+1 .. i]; the first window-1 outputs see padding
        # and are recomputed below from their partial windows
        full = ndimage.rank_filter(x, rank=rank, size=window, origin=rank, mode="nearest")
        out[window - 1:] = full[window - 1:]
        for i in range(min_periods - 1, min(window - 1, n)):
            out[i] = lower_median(x[: i + 1].tolist())
    if include_current:
        return out
    shifted = np.full(n, np.nan)
    shifted[1:] = out[:-1]
    return shifted
