"""Early-warning indicators of critical slowing down: variance, lag-1 autocorrelation, skewness, trend.

A system drifting towards a tipping point recovers ever more slowly from small perturbations
(Scheffer et al. 2009; Dakos et al. 2012): the fluctuations around its slow trend grow (variance),
become more persistent (lag-1 autocorrelation towards 1, or towards -1 before a period-doubling
oscillation such as an optimiser at the edge of stability) and lopsided (skewness). The indicators are
computed on the *residuals* of the series around a smooth trend, and a warning rests on their trend
over time, measured by Kendall's tau (rank correlation with time), not on their level.

Detrending follows ewstools' ``detrend(method="Gaussian", bandwidth=b)``: a Gaussian kernel smoother
whose quartiles sit at +/- ``b / 4`` points (``sigma = 0.25 / 0.675 * b``), reflected at the edges,
residual = value - smoothing. ewstools smooths the whole series at once, so a residual in the middle
of a run uses points from its future. :class:`EarlyWarning` is causal instead: every ``stride`` points
it smooths only the trailing ``window`` points seen so far and computes the indicators over that
window, which is exactly what ewstools returns for the last point of that window when given it
alone. The price is the one-sided edge at the newest point, where the smoothing sees only the past;
the gain is that a warning at step t uses nothing after t. A one-sided exponential filter was the
alternative; it lags a descending loss by its whole width and turns the descent into residual
variance, which a symmetric kernel over the window does not.

Definitions match ewstools (and pandas, which it uses): variance with ``ddof=1``; lag-1
autocorrelation as the Pearson correlation of ``r[:-1]`` and ``r[1:]``; skewness as the adjusted
Fisher-Pearson coefficient G1; Kendall's tau-b against time.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = ["EarlyWarning", "Indicators", "gaussian_residuals", "indicator_rows", "indicators", "kendall_rows",
           "kendall_tau", "kernel_sigma"]


def kernel_sigma(bandwidth: float) -> float:
    """Standard deviation of the Gaussian kernel whose quartiles are at +/- ``bandwidth / 4`` points."""
    return 0.25 / 0.675 * bandwidth


def gaussian_residuals(x: np.ndarray, bandwidth: float) -> np.ndarray:
    """``x`` minus its Gaussian-kernel smoothing along the last axis (ewstools' convention, reflected ends).

    A 2-D ``x`` is a stack of windows, each detrended on its own, with the same arithmetic as one window.

    Examples
    --------
    >>> r = gaussian_residuals(np.linspace(0.0, 1.0, 50), bandwidth=10)
    >>> bool(np.abs(r[20:-20]).max() < 1e-12)  # a straight line has no residuals away from the edges
    True
    """
    x = np.asarray(x, dtype=np.float64)
    return x - gaussian_filter1d(x, sigma=kernel_sigma(bandwidth), axis=-1, mode="reflect", truncate=4.0)


@dataclass(frozen=True)
class Indicators:
    """The critical-slowing-down indicators of one window of residuals (NaN where undefined)."""

    variance: float
    ac1: float
    skew: float


def indicator_rows(residuals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Variance (ddof=1), lag-1 autocorrelation and skewness (G1) of each row of a 2-D array.

    Rows are windows of residuals (at least 3 columns); NaN where a statistic is undefined (a constant
    window has no autocorrelation and no skewness). One row or many give the same numbers, bit for bit.
    """
    r = np.asarray(residuals, dtype=np.float64)
    n = r.shape[-1]
    if r.ndim != 2 or n < 3:
        raise ValueError(f"need a 2-D array of windows of at least 3 residuals, got shape {r.shape}")
    d = r - r.sum(axis=1, keepdims=True) / n
    m2 = (d * d).sum(axis=1)
    variance = m2 / (n - 1)
    a = r[:, :-1] - r[:, :-1].sum(axis=1, keepdims=True) / (n - 1)
    b = r[:, 1:] - r[:, 1:].sum(axis=1, keepdims=True) / (n - 1)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        ac1 = np.where(den > 0, (a * b).sum(axis=1) / den, np.nan)
        g1 = (d * d * d).sum(axis=1) / n / (m2 / n) ** 1.5
        skew = np.where(m2 > 0, g1 * math.sqrt(n * (n - 1)) / (n - 2), np.nan)
    return variance, ac1, skew


def indicators(residuals: np.ndarray) -> Indicators:
    """Variance (ddof=1), lag-1 autocorrelation and skewness (G1) of one window of residuals."""
    variance, ac1, skew = indicator_rows(np.asarray(residuals, dtype=np.float64)[None, :])
    return Indicators(variance=float(variance[0]), ac1=float(ac1[0]), skew=float(skew[0]))


def kendall_rows(y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row of a 2-D array against its column index (time); rows without NaN.

    Integer counts, so one row or many give the same numbers. NaN for a row of equal values.
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[-1]
    upper = np.triu_indices(n, 1)
    s = np.sign(y[:, None, :] - y[:, :, None])[:, upper[0], upper[1]]
    concordance = s.sum(axis=1)
    untied = np.count_nonzero(s, axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return concordance / np.sqrt(n * (n - 1) / 2.0 * untied)


def kendall_tau(y: np.ndarray) -> float:
    """Kendall's tau-b of ``y`` against its index (time): +1 for a strictly rising series.

    NaN values are dropped first; NaN when fewer than 3 values remain or all are equal. O(n^2) in
    memory and time, meant for the short histories of indicators.

    Examples
    --------
    >>> kendall_tau(np.array([1.0, 2.0, 3.0, 5.0])), kendall_tau(np.array([3.0, 2.0, 1.0]))
    (1.0, -1.0)
    """
    y = np.asarray(y, dtype=np.float64)
    y = y[~np.isnan(y)]
    if len(y) < 3:
        return math.nan
    return float(kendall_rows(y[None, :])[0])


class EarlyWarning:
    """Causal rolling early-warning indicators of one series and the Kendall trend of each.

    Every ``stride`` points, once ``window`` points exist, the last ``window`` points are detrended
    (:func:`gaussian_residuals`, ``bandwidth`` points) and their :func:`indicators` appended to a
    history of the last ``history`` evaluations; the trend of each indicator is the Kendall tau of
    that history (:func:`kendall_tau`). Memory is ``window + 3 * history`` floats.

    Parameters
    ----------
    window : int
        Points per indicator window (>= 3).
    bandwidth : float
        Gaussian detrending bandwidth in points (ewstools' definition).
    stride : int
        Points between evaluations.
    history : int
        Evaluations in the Kendall-tau trend (>= 3).

    Examples
    --------
    >>> ew = EarlyWarning(window=50, bandwidth=10, stride=5, history=10)
    >>> rng = np.random.default_rng(0)
    >>> for i in range(300):
    ...     _ = ew.update(rng.standard_normal() * np.exp(i / 50))  # fluctuations that keep growing
    >>> bool(ew.taus["variance"] > 0.8)
    True
    """

    def __init__(self, window: int = 100, bandwidth: float = 20.0, stride: int = 10, history: int = 20):
        if window < 3 or history < 3 or stride < 1 or bandwidth <= 0:
            raise ValueError(f"need window >= 3, history >= 3, stride >= 1 and bandwidth > 0, got "
                             f"{window=}, {history=}, {stride=}, {bandwidth=}")
        self.window = window
        self.bandwidth = bandwidth
        self.stride = stride
        self.history = history
        self.buffer: deque[float] = deque(maxlen=window)
        self.count = 0
        self.series: dict[str, deque[float]] = {k: deque(maxlen=history) for k in ("variance", "ac1", "skew")}
        self.evaluated = False

    def update(self, x: float) -> EarlyWarning:
        """Take one finite value; ``evaluated`` says whether the indicators were recomputed."""
        self.buffer.append(float(x))
        self.count += 1
        self.evaluated = self.count >= self.window and (self.count - self.window) % self.stride == 0
        if self.evaluated:
            ind = indicators(gaussian_residuals(np.fromiter(self.buffer, np.float64, len(self.buffer)),
                                                self.bandwidth))
            for k in self.series:
                self.series[k].append(getattr(ind, k))
        return self

    @property
    def current(self) -> Indicators | None:
        """The latest indicators (None before the first window is full)."""
        if not self.series["variance"]:
            return None
        return Indicators(**{k: v[-1] for k, v in self.series.items()})

    @property
    def taus(self) -> dict[str, float]:
        """Kendall tau of each indicator's history (NaN until ``history`` evaluations exist)."""
        return {k: kendall_tau(np.fromiter(v, np.float64, len(v))) if len(v) == self.history else math.nan
                for k, v in self.series.items()}
