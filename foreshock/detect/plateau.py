"""PlateauDetector: the loss stopped improving, judged against the run's own earlier rate (info).

The level is the lower median of the last ``window`` finite points. Over the last ``span`` points
the run improved by ``now = level[t - span] - level[t]``; over the ``span`` points before, by
``before = level[t - 2 span] - level[t - span]``. A point counts as flat when the earlier window
made real progress (``before`` at least ``threshold`` robust standard deviations of a single point,
and at least ``min_progress`` of all the progress made up to it, from the first value or the
highest level) and the last one kept at most ``fraction`` of it. After ``patience`` flat points in a row the
detector fires once; when the improvement over the last window is back to ``resume`` times the
rate the plateau was judged against, it says so (info) and may fire again later.

Comparing each window with the one just before it is what keeps a normal slow descent quiet: late
in training both windows improve by little, the earlier one by too little to count as progress
that has stopped. The share of all progress keeps a loss that has already done its work quiet:
one that fell from 5 to 0.01 and then to 1e-4 was improving by little that matters. ``metrics`` is
an order of preference, as for the divergence detector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from foreshock.detect._scan import SeriesMap, as_arrays, is_fresh, step_by_step
from foreshock.detect._watch import first_steps, watched
from foreshock.detect.base import Detector
from foreshock.detect.metadata import sign
from foreshock.events import Event
from foreshock.series import (
    band_state,
    band_step,
    first_true,
    lower_median,
    new_band_state,
    push,
    robust_band,
    running_streak,
    true_runs,
)

__all__ = ["PlateauDetector"]


class PlateauDetector(Detector):
    """No progress relative to the run's own earlier rate of improvement (info).

    Parameters
    ----------
    metrics : tuple of str
        Series in order of preference.
    window : int
        Points in the median that gives the level, and in the noise scale.
    span : int
        Points in each of the two windows whose improvements are compared.
    min_periods : int
        Points needed before the level exists.
    threshold : float
        Improvement the earlier window needs, in robust standard deviations of a single point.
    min_progress : float
        Improvement the earlier window needs, as a fraction of all the progress made up to it.
    fraction : float
        The last window is flat when it kept at most this fraction of the earlier improvement.
    resume : float
        Progress has resumed when the last window improves by this fraction of the earlier rate.
    patience : int
        Consecutive flat points before the detector fires.
    """

    name = "plateau"

    def __init__(self, metrics: tuple[str, ...] = ("train/loss", "val/loss"), window: int = 21,
                 span: int = 50, min_periods: int = 10, threshold: float = 2.0, min_progress: float = 0.01,
                 fraction: float = 0.1, resume: float = 0.5, patience: int = 20):
        super().__init__()
        if not 1 <= min_periods <= window or span < 1 or patience < 1:
            raise ValueError(f"need 1 <= min_periods <= window, span >= 1 and patience >= 1, got "
                             f"{min_periods=}, {window=}, {span=}, {patience=}")
        if threshold < 0 or min_progress < 0 or not 0 <= fraction < resume:
            raise ValueError(f"need threshold >= 0, min_progress >= 0 and 0 <= fraction < resume, got "
                             f"{threshold=}, {min_progress=}, {fraction=}, {resume=}")
        self.metrics = tuple(metrics)
        self.window = window
        self.span = span
        self.min_periods = min_periods
        self.threshold = threshold
        self.min_progress = min_progress
        self.fraction = fraction
        self.resume = resume
        self.patience = patience
        self._signs = {m: sign(m) for m in self.metrics}
        self._add_state("_seen", {})
        self._add_state("_tracks", {})

    def _flat(self, now, before, scale, made):
        return ((before > 0) & (before >= self.threshold * scale) & (before >= self.min_progress * made)
                & (now <= self.fraction * before))

    # -- step by step -------------------------------------------------------------------------------
    def update(self, step: int, values: Mapping[str, float]) -> list[Event]:
        events: list[Event] = []
        for metric in watched(self.metrics, self._seen, values):
            events.extend(self._point(metric, int(step), float(values[metric])))
        return events

    def _point(self, metric: str, step: int, x: float) -> list[Event]:
        if not math.isfinite(x):
            return []
        track = self._tracks.get(metric)
        if track is None:
            # where the series started counts as a level: progress is made from there
            track = self._tracks[metric] = {"band": new_band_state(), "levels": [], "steps": [],
                                            "max_level": self._signs[metric] * x, "streak": 0,
                                            "episode": None}
        _, scale = band_step(track["band"], self._signs[metric] * x, self.window, self.min_periods)
        values = track["band"]["values"]
        level = lower_median(values) if len(values) >= self.min_periods else None
        if level is not None:
            track["max_level"] = max(track["max_level"], level)
        keep = 2 * self.span + 1
        push(track["levels"], level, keep)
        push(track["steps"], step, keep)
        levels = track["levels"]
        now = before = None
        if len(levels) == keep and levels[0] is not None:
            mid = levels[self.span]
            now, before = mid - level, levels[0] - mid
        flat = (now is not None and scale is not None
                and bool(self._flat(now, before, scale, track["max_level"] - levels[self.span])))
        track["streak"] = track["streak"] + 1 if flat else 0
        ep = track["episode"]
        if ep is not None:
            if now >= self.resume * ep["rate"]:
                track["episode"] = None
                return [self._resumed(metric, step, now, ep)]
            return []
        if track["streak"] >= self.patience:
            # the plateau began where the window of the first flat point began (as far back as kept)
            onset = track["steps"][max(0, self.span - track["streak"] + 1)]
            track["episode"] = {"onset": onset, "fired": step, "rate": before}
            return [self._stalled(metric, step, onset, now, before, scale)]
        return []

    def _stalled(self, metric: str, step: int, onset: int, now: float, before: float, scale: float) -> Event:
        return self._event(
            "plateau", "info", step, onset,
            f"{metric} has stopped improving: its last {self.span} points gained {now:.3g}, against "
            f"{before:.3g} over the {self.span} points before.",
            metric=metric, improvement=now, earlier_improvement=before, fraction=self.fraction,
            scale=scale, threshold=self.threshold, span=self.span, window=self.window, patience=self.patience)

    def _resumed(self, metric: str, step: int, now: float, ep: Mapping[str, float]) -> Event:
        return self._event(
            "plateau_end", "info", step, ep["onset"],
            f"{metric} is improving again at step {step} ({now:.3g} over the last {self.span} points) "
            f"after the plateau reported at step {ep['fired']}.",
            metric=metric, improvement=now, earlier_improvement=ep["rate"], resume=self.resume,
            plateau_step=ep["fired"], span=self.span)

    # -- vectorised replay --------------------------------------------------------------------------
    def scan(self, series: SeriesMap) -> list[Event]:
        """The events of ``update`` over whole series, computed with numpy; leaves the same state."""
        if not is_fresh(self):
            return step_by_step(self, series)
        events: list[Event] = []
        for metric, cutoff in first_steps(self.metrics, series, self._seen):
            events.extend(self._scan_metric(metric, *as_arrays(series, metric), cutoff))
        events.sort(key=lambda e: e.step)  # one metric is watched per step: the order is the live one
        return events

    def _scan_metric(self, metric: str, steps: np.ndarray, x: np.ndarray, cutoff: int | None) -> list[Event]:
        keep_pts = np.isfinite(x) if cutoff is None else np.isfinite(x) & (steps < cutoff)
        steps, y = steps[keep_pts], self._signs[metric] * x[keep_pts]
        n, span = len(y), self.span
        if n == 0:
            return []
        band = robust_band(y, self.window, self.min_periods)
        level = band.level
        max_level = np.fmax(np.fmax.accumulate(level), y[0])
        now = np.full(n, np.nan)
        before = np.full(n, np.nan)
        made = np.full(n, np.nan)
        if n > 2 * span:
            now[2 * span:] = level[span:-span] - level[2 * span:]
            before[2 * span:] = level[:-2 * span] - level[span:-span]
            made[2 * span:] = max_level[2 * span:] - level[span:-span]
        with np.errstate(invalid="ignore"):
            flat = self._flat(now, before, band.scale, made) & ~np.isnan(now) & ~np.isnan(band.scale)
        events: list[Event] = []
        episode = None
        pos = 0
        starts, lengths = true_runs(flat)
        k = 0
        while k < len(starts):
            a, length = int(starts[k]), int(lengths[k])
            t = max(a + self.patience - 1, pos)
            if t >= a + length:
                k += 1
                continue
            onset, rate = int(steps[max(a - span, t - 2 * span)]), float(before[t])
            episode = {"onset": onset, "fired": int(steps[t]), "rate": rate}
            events.append(self._stalled(metric, int(steps[t]), onset, float(now[t]), rate,
                                        float(band.scale[t])))
            end = first_true(lambda lo, hi, r=rate: now[lo:hi] >= self.resume * r, t + 1, n)
            if end is None:
                break
            events.append(self._resumed(metric, int(steps[end]), float(now[end]), episode))
            episode = None
            pos = end + 1
        tail = level[-(2 * span + 1):]
        self._tracks[metric] = {
            "band": band_state(y, band, self.window),
            "levels": [None if math.isnan(v) else v for v in tail.tolist()],
            "steps": steps[-(2 * span + 1):].tolist(),
            "max_level": float(max_level[-1]),
            "streak": running_streak(flat),
            "episode": episode,
        }
        return events
