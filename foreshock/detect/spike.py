"""SpikeDetector: a point far outside the run's own robust band, one event per spike, and its recovery.

Each point is judged against the band of the points before it (:mod:`foreshock.series.robust`):
the lower median of the last ``window`` finite points and a MAD-style scale of their residuals.
A point starts a spike when its excess over that median is, all at once,

- beyond noise: at least ``threshold`` robust standard deviations;
- large in itself: at least ``min_ratio - 1`` times the median (a 1.5x jump by default);
- material to the run: at least ``min_progress`` of the progress made so far (the highest baseline
  seen, or the first value of the series if higher, minus the current baseline). A loss that has
  reached 1e-7 and jumps to 1e-2 has multiplied by 1e5 and is far outside its band, yet lost 0.2%
  of what the run learnt: not a spike worth a warning.

The band is a pure function of past values, so a spike's own points do not have to be kept out of
it by a decision: a median ignores up to half its window, so one spike (or a few) moves neither the
baseline nor the scale, and the next spike is judged against clean statistics. While a spike lasts,
it is judged against the band frozen at its onset; it ends when a point is back inside that band
(an info ``recovery`` event with the peak and the duration), or silently when the rise has lasted
long enough to become the new baseline (a level shift, which is the divergence detector's business).

On a steep descent the baseline lags the curve by about half a window, and the scale takes in
that lag as well as the noise: the detector is then more conservative (it needs a bigger jump),
never more eager. The spike event's evidence holds the value, the baseline ``median``, ``mad`` (the
median absolute residual) and ``scale`` (``1.4826 * mad``, a robust standard deviation), the
``score`` (the excess in those units), the ``ratio`` to the median and the ``progress_lost``, each
beside its threshold. Non-finite values are skipped here (see
:class:`~foreshock.detect.nonfinite.NonFiniteDetector`). Windows count points: with ``val/loss``
every 250 steps the window spans ``250 * window`` steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from foreshock.detect._scan import SeriesMap, as_arrays, is_fresh, merge_by_step, step_by_step
from foreshock.detect.base import Detector
from foreshock.detect.metadata import sign
from foreshock.events import Event
from foreshock.series import MAD_SCALE, band_state, band_step, first_true, new_band_state, robust_band

__all__ = ["SpikeDetector"]


def _score(excess: float, scale: float) -> float:
    if scale > 0:
        return excess / scale
    return 0.0 if excess == 0 else math.copysign(math.inf, excess)


class SpikeDetector(Detector):
    """Loss spikes: a point far above the robust band of the recent points (warning).

    Parameters
    ----------
    metrics : tuple of str
        Series to watch, each on its own; the bad direction comes from the name (up for losses).
    window : int
        Points in the trailing window of the baseline and of the noise scale.
    min_periods : int
        Points needed before the baseline exists (the scale needs as many residuals after that).
    threshold : float
        Excess over the baseline, in robust standard deviations, needed to start a spike.
    min_ratio : float
        The excess must be at least ``min_ratio - 1`` times the baseline: a loss at 1.5x its median,
        an accuracy down to half of it, by default.
    min_progress : float
        The excess must be at least this fraction of the progress made so far.

    Examples
    --------
    >>> det = SpikeDetector(metrics=("train/loss",))
    >>> curve = [3.0 + 0.05 * ((i * 7) % 5) for i in range(60)] + [6.0, 3.1]
    >>> [(e.kind, e.step) for i, x in enumerate(curve) for e in det.update(i, {"train/loss": x})]
    [('spike', 60), ('recovery', 61)]
    """

    name = "spike"

    def __init__(self, metrics: tuple[str, ...] = ("train/loss", "val/loss"), window: int = 51,
                 min_periods: int = 10, threshold: float = 5.0, min_ratio: float = 1.5,
                 min_progress: float = 0.05):
        super().__init__()
        if not 1 <= min_periods <= window:
            raise ValueError(f"need 1 <= min_periods <= window, got {min_periods=}, {window=}")
        if threshold < 0 or min_ratio < 1 or min_progress < 0:
            raise ValueError("need threshold >= 0, min_ratio >= 1 and min_progress >= 0, got "
                             f"{threshold=}, {min_ratio=}, {min_progress=}")
        self.metrics = tuple(metrics)
        self.window = window
        self.min_periods = min_periods
        self.threshold = threshold
        self.min_ratio = min_ratio
        self.min_progress = min_progress
        self._signs = {m: sign(m) for m in self.metrics}
        self._add_state("_tracks", {})

    @property
    def scores(self) -> dict[str, float]:
        """Each metric's last excess over its baseline, in robust standard deviations."""
        return {m: t["score"] for m, t in self._tracks.items() if t["score"] is not None}

    # -- the test, once for scalars and arrays (same float operations in the same order) ---------
    def _in_spike(self, excess, median, scale, peak):
        return ((excess > 0) & (excess >= self.threshold * scale)
                & (excess >= (self.min_ratio - 1.0) * abs(median))
                & (excess >= self.min_progress * (peak - median)))

    # -- step by step -------------------------------------------------------------------------------
    def update(self, step: int, values: Mapping[str, float]) -> list[Event]:
        events: list[Event] = []
        for metric in self.metrics:
            if metric in values:
                events.extend(self._point(metric, int(step), float(values[metric])))
        return events

    def _point(self, metric: str, step: int, x: float) -> list[Event]:
        if not math.isfinite(x):
            return []
        sign = self._signs[metric]
        y = sign * x
        track = self._tracks.get(metric)
        if track is None:
            track = self._tracks[metric] = {"band": new_band_state(), "peak": None, "episode": None,
                                            "score": None}
        if track["peak"] is None:
            track["peak"] = y  # where the series started counts as a level: progress is made from there
        med, scale = band_step(track["band"], y, self.window, self.min_periods)
        if med is not None:
            track["peak"] = max(track["peak"], med)
        if med is None or scale is None:
            return []
        track["score"] = _score(y - med, scale)
        ep = track["episode"]
        if ep is not None:
            if not self._in_spike(y - ep["median"], ep["median"], ep["scale"], ep["peak_ref"]):
                track["episode"] = None
                return [self._recovery(metric, step, x, ep)]
            if self._in_spike(med - ep["median"], ep["median"], ep["scale"], ep["peak_ref"]):
                track["episode"] = None  # the new level became the baseline: no recovery to report
                return []
            ep["points"] += 1
            ep["high"] = max(ep["high"], y)
            return []
        if self._in_spike(y - med, med, scale, track["peak"]):
            track["episode"] = {"onset": step, "median": med, "scale": scale, "peak_ref": track["peak"],
                                "high": y, "points": 1}
            return [self._spike(metric, step, x, med, scale, track["peak"])]
        return []

    # -- events -------------------------------------------------------------------------------------
    def _spike(self, metric: str, step: int, x: float, med: float, scale: float, peak: float) -> Event:
        sign = self._signs[metric]
        excess = sign * x - med
        median = sign * med
        ratio = x / median if median != 0 else None
        progress = peak - med
        lost = excess / progress if progress > 0 else None
        score = _score(excess, scale)
        verb = "spiked to" if sign > 0 else "dropped to"
        shown = f"{ratio:.3g}x" if ratio is not None else f"{excess:.3g} above"
        return self._event(
            "spike", "warning", step, step,
            f"{metric} {verb} {x:.4g} at step {step}: {shown} its recent median {median:.4g}, "
            f"{score:.3g} robust SDs outside its band.",
            metric=metric, value=x, median=median, mad=scale / MAD_SCALE, scale=scale, score=score,
            threshold=self.threshold,
            ratio=ratio, min_ratio=self.min_ratio, progress_lost=lost, min_progress=self.min_progress,
            window=self.window)

    def _recovery(self, metric: str, step: int, x: float, ep: dict[str, Any]) -> Event:
        sign = self._signs[metric]
        return self._event(
            "recovery", "info", step, ep["onset"],
            f"{metric} is back inside its band at step {step}, {step - ep['onset']} steps after the "
            f"spike that began at step {ep['onset']} (peak {sign * ep['high']:.4g}).",
            metric=metric, value=x, median_before=sign * ep["median"], peak=sign * ep["high"],
            spike_step=ep["onset"], points_outside=ep["points"], steps=step - ep["onset"])

    # -- vectorised replay --------------------------------------------------------------------------
    def scan(self, series: SeriesMap) -> list[Event]:
        """The events of ``update`` over whole series, computed with numpy; leaves the same state."""
        if not is_fresh(self):
            return step_by_step(self, series)
        return merge_by_step([self._scan_metric(m, *as_arrays(series, m)) if m in series else []
                              for m in self.metrics])

    def _scan_metric(self, metric: str, steps: np.ndarray, x: np.ndarray) -> list[Event]:
        finite = np.isfinite(x)
        steps, x = steps[finite], x[finite]
        n = len(x)
        if n == 0:
            return []
        y = self._signs[metric] * x
        band = robust_band(y, self.window, self.min_periods)
        med, scale = band.median, band.scale
        peak = np.fmax(np.fmax.accumulate(med), y[0])
        with np.errstate(invalid="ignore"):
            candidates = np.flatnonzero(self._in_spike(y - med, med, scale, peak))
        events: list[Event] = []
        episode = None
        pos = 0
        while True:
            k = int(np.searchsorted(candidates, pos))
            if k == len(candidates):
                break
            i = int(candidates[k])
            m0, s0, p0 = float(med[i]), float(scale[i]), float(peak[i])
            events.append(self._spike(metric, int(steps[i]), float(x[i]), m0, s0, p0))

            def ends(lo: int, hi: int, m0=m0, s0=s0, p0=p0) -> np.ndarray:
                back = ~self._in_spike(y[lo:hi] - m0, m0, s0, p0)
                return back | self._in_spike(med[lo:hi] - m0, m0, s0, p0)

            end = first_true(ends, i + 1, n)
            stop = n if end is None else end
            ep = {"onset": int(steps[i]), "median": m0, "scale": s0, "peak_ref": p0,
                  "high": float(np.max(y[i:stop])), "points": stop - i}
            if end is None:
                episode = ep
                break
            if not self._in_spike(float(y[end]) - m0, m0, s0, p0):
                events.append(self._recovery(metric, int(steps[end]), float(x[end]), ep))
            pos = end + 1
        has_scale = not math.isnan(scale[-1])
        self._tracks[metric] = {
            "band": band_state(y, band, self.window),
            "peak": float(peak[-1]),
            "episode": episode,
            "score": _score(float(y[-1] - med[-1]), float(scale[-1])) if has_scale else None,
        }
        return events
