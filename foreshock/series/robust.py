"""A robust band around a series: trailing median and a MAD-style noise scale of past residuals.

For each point ``y[i]`` the band gives

- ``median[i]``: the lower median of the ``window`` finite points before ``i`` (the baseline ``y[i]``
  is judged against; ``y[i]`` itself is not in it);
- ``level[i]``: the lower median of the window that ends at ``y[i]``, which ``y[i]`` joins;
- ``scale[i]``: ``MAD_SCALE`` times the lower median of the last ``window`` absolute residuals
  ``|y[j] - median[j]|``, ``j < i``: the run's own typical deviation from its baseline, in the
  units of a standard deviation when the noise is normal.

Both are pure functions of past values, robust by construction: a median ignores up to half its
window, so a few spike points in the window move neither the baseline nor the scale. That is how
the band protects its baseline from the anomalies it is used to find without needing to know
which points were anomalies (decision-free, hence vectorisable).

:func:`robust_band` computes the band for a whole array; :func:`band_step` advances it by one point
on a plain-dict state, and :func:`band_state` rebuilds that state from arrays so a streaming
detector can continue after a vectorised replay. The three agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from foreshock.series.rolling import lower_median, push, trailing_median

__all__ = ["MAD_SCALE", "Band", "band_state", "band_step", "new_band_state", "robust_band"]

# 1 / Phi^-1(3/4): makes a median absolute deviation estimate the standard deviation of normal noise
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class Band:
    """Per-point baseline and noise scale (NaN until enough past points); see the module docstring."""

    median: np.ndarray
    scale: np.ndarray
    residual: np.ndarray  # |y[i] - median[i]|, NaN where the median is undefined
    level: np.ndarray  # lower median of the window that ends at (and includes) y[i]


def robust_band(y: np.ndarray, window: int, min_periods: int) -> Band:
    """The band of every point of ``y`` (finite float array).

    ``median[i]`` needs ``min_periods`` past points, ``scale[i]`` as many past residuals, so the
    first scale comes at index ``2 * min_periods``.
    """
    y = np.asarray(y, dtype=np.float64)
    level = trailing_median(y, window, min_periods, include_current=True)
    med = np.full(len(y), np.nan)
    med[1:] = level[:-1]  # the window before y[i] is the one that ended at y[i-1]
    resid = np.abs(y - med)
    scale = np.full(len(y), np.nan)
    first = min_periods  # first index with a median (y is all finite)
    if len(y) > first:
        scale[first:] = MAD_SCALE * trailing_median(resid[first:], window, min_periods, include_current=False)
    return Band(median=med, scale=scale, residual=resid, level=level)


def new_band_state() -> dict[str, list[float]]:
    """The streaming state of an empty band: the last values and the last residuals."""
    return {"values": [], "resid": []}


def band_step(state: dict[str, Any], y: float, window: int,
              min_periods: int) -> tuple[float | None, float | None]:
    """The band at a new point ``y`` (``(median, scale)``, None while undefined), then take ``y`` in."""
    values, resid = state["values"], state["resid"]
    med = lower_median(values) if len(values) >= min_periods else None
    scale = MAD_SCALE * lower_median(resid) if len(resid) >= min_periods else None
    if med is not None:
        push(resid, abs(y - med), window)
    push(values, y, window)
    return med, scale


def band_state(y: np.ndarray, band: Band, window: int) -> dict[str, list[float]]:
    """The streaming state after :func:`band_step` has taken in every point of ``y``."""
    resid = band.residual[~np.isnan(band.residual)]
    return {"values": np.asarray(y[-window:], dtype=np.float64).tolist() if len(y) else [],
            "resid": resid[-window:].tolist()}
