"""DivergenceDetector: the loss level has risen above the run's own best and stays there (critical).

The level is the lower median of the last ``window`` finite points (the current one included): a
single spike, or any burst shorter than half the window, does not move it. The run's best is the
lowest level so far. The rise ``level - best`` counts when it is, all at once,

- beyond noise: at least ``threshold`` robust standard deviations of a single point (the scale of
  :mod:`foreshock.series.robust`), measured when the run was at its best: the scale of the moment
  is inflated by the rise itself;
- large in itself: at least ``min_rise`` times the best level;
- material to the run: at least ``min_progress`` of the progress made up to the best (the highest
  level before the best, counting the first value of the series as a level, minus the best). A
  loss that has gone down to 1e-7 and creeps back to 1e-3 has risen ten-thousand-fold but undone
  nothing that matters.

When the rise has counted for ``patience`` consecutive points the detector fires, once; the
episode ends after ``patience`` consecutive points that do not count, with an info ``recovery``
event (the level then, the best, the step the divergence was reported and how long it lasted), and
a later divergence fires again.

``metrics`` is an order of preference: the first one the run reports is watched; a later one (by
default ``val/loss``) only until an earlier one (``train/loss``) shows up. A validation loss that
rises while the training loss falls is overfitting, not divergence (see
:class:`~foreshock.detect.overfitting.OverfittingDetector`); logs with only ``val/loss`` are watched
through it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from foreshock.detect._scan import SeriesMap, as_arrays, is_fresh, step_by_step
from foreshock.detect._watch import first_steps, watched
from foreshock.detect.base import Detector
from foreshock.detect.metadata import sign
from foreshock.events import Event
from foreshock.series import (
    band_state,
    band_step,
    lower_median,
    new_band_state,
    robust_band,
    running_best,
    running_streak,
    true_runs,
)

__all__ = ["DivergenceDetector"]


class DivergenceDetector(Detector):
    """A sustained rise of the loss level above its running best (critical).

    Parameters
    ----------
    metrics : tuple of str
        Series in order of preference (see the module docstring).
    window : int
        Points in the median that gives the level, and in the noise scale.
    min_periods : int
        Points needed before the level exists.
    threshold : float
        Rise needed, in robust standard deviations of a single point.
    min_rise : float
        Rise needed, as a fraction of the best level.
    min_progress : float
        Rise needed, as a fraction of the progress made up to the best.
    patience : int
        Consecutive points the rise must count before the detector fires.
    """

    name = "divergence"

    def __init__(self, metrics: tuple[str, ...] = ("train/loss", "val/loss"), window: int = 31,
                 min_periods: int = 10, threshold: float = 3.0, min_rise: float = 0.2,
                 min_progress: float = 0.1, patience: int = 10):
        super().__init__()
        if not 1 <= min_periods <= window or patience < 1:
            raise ValueError(f"need 1 <= min_periods <= window and patience >= 1, got "
                             f"{min_periods=}, {window=}, {patience=}")
        if threshold < 0 or min_rise < 0 or min_progress < 0:
            raise ValueError(f"need non-negative thresholds, got {threshold=}, {min_rise=}, {min_progress=}")
        self.metrics = tuple(metrics)
        self.window = window
        self.min_periods = min_periods
        self.threshold = threshold
        self.min_rise = min_rise
        self.min_progress = min_progress
        self.patience = patience
        self._signs = {m: sign(m) for m in self.metrics}
        self._add_state("_seen", {})
        self._add_state("_tracks", {})

    def _counts(self, rise, scale, best, progress):
        return ((rise > 0) & (rise >= self.threshold * scale) & (rise >= self.min_rise * abs(best))
                & (rise >= self.min_progress * progress))

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
            track = self._tracks[metric] = {"band": new_band_state(), "best": None, "best_step": None,
                                            "max_level": self._signs[metric] * x, "max_at_best": None,
                                            "scale_at_best": None, "streak": 0, "streak_start": None,
                                            "calm": 0, "episode": None}
        _, scale = band_step(track["band"], self._signs[metric] * x, self.window, self.min_periods)
        values = track["band"]["values"]
        counts = False
        if len(values) >= self.min_periods:
            level = lower_median(values)
            track["max_level"] = max(track["max_level"], level)
            if track["best"] is None or level < track["best"]:
                track.update(best=level, best_step=step, max_at_best=track["max_level"], scale_at_best=scale)
            if track["scale_at_best"] is None:  # the best came before the scale existed: take the first one
                track["scale_at_best"] = scale
            best, noise = track["best"], track["scale_at_best"]
            if noise is not None:
                counts = bool(self._counts(level - best, noise, best, track["max_at_best"] - best))
        if counts:
            track["streak"] += 1
            track["calm"] = 0
            if track["streak"] == 1:
                track["streak_start"] = step
        else:
            track["streak"], track["streak_start"] = 0, None
            track["calm"] += 1
        if track["episode"] is None and track["streak"] >= self.patience:
            track["episode"] = {"onset": track["streak_start"], "fired": step}
            return [self._diverged(metric, step, track["streak_start"], level, track)]
        ep = track["episode"]
        if ep is not None and track["calm"] >= self.patience:
            track["episode"] = None
            return [self._recovered(metric, step, level, track["best"], track["best_step"], ep)]
        return []

    def _diverged(self, metric: str, step: int, onset: int, level: float, track: Mapping[str, Any]) -> Event:
        sign = self._signs[metric]
        best, progress = track["best"], track["max_at_best"] - track["best"]
        rise = level - best
        ratio = level / best if best != 0 else None
        shown = f"{ratio:.3g}x its best level" if ratio is not None else "above its best level"
        return self._event(
            "divergence", "critical", step, onset,
            f"{metric} is diverging: its level {sign * level:.4g} has stayed {shown} {sign * best:.4g} "
            f"(step {track['best_step']}) for {self.patience} points.",
            metric=metric, level=sign * level, best=sign * best, best_step=track["best_step"],
            rise=rise, scale_at_best=track["scale_at_best"], threshold=self.threshold, ratio=ratio,
            min_rise=self.min_rise,
            progress_lost=rise / progress if progress > 0 else None, min_progress=self.min_progress,
            patience=self.patience, window=self.window)

    def _recovered(self, metric: str, step: int, level: float, best: float, best_step: int,
                   ep: Mapping[str, int]) -> Event:
        sign = self._signs[metric]
        lasted = step - ep["onset"]
        return self._event(
            "recovery", "info", step, ep["onset"],
            f"{metric} has recovered at step {step}, {lasted} steps after the divergence that began at "
            f"step {ep['onset']}: its level {sign * level:.4g} (best {sign * best:.4g}) has not counted "
            f"as a rise for {self.patience} points.",
            metric=metric, level=sign * level, best=sign * best, best_step=best_step,
            divergence_step=ep["fired"], steps=lasted, patience=self.patience)

    # -- vectorised replay --------------------------------------------------------------------------
    def scan(self, series: SeriesMap) -> list[Event]:
        """The events of ``update`` over whole series, computed with numpy; leaves the same state."""
        if not is_fresh(self):
            return step_by_step(self, series)
        events: list[Event] = []
        for metric, cutoff in first_steps(self.metrics, series, self._seen):
            events.extend(self._scan_metric(metric, *as_arrays(series, metric), cutoff))
        events.sort(key=lambda e: e.step)  # one metric fires per step: the order is the live one
        return events

    def _scan_metric(self, metric: str, steps: np.ndarray, x: np.ndarray, cutoff: int | None) -> list[Event]:
        keep = np.isfinite(x) if cutoff is None else np.isfinite(x) & (steps < cutoff)
        steps, y = steps[keep], self._signs[metric] * x[keep]
        n = len(y)
        if n == 0:
            return []
        band = robust_band(y, self.window, self.min_periods)
        level = band.level
        defined = ~np.isnan(level)
        rb = running_best(level, band.scale, y[0])
        best, max_level, at_best = rb.best, rb.max_level, rb.at_best
        max_at_best, noise = rb.max_at_best, rb.noise
        with np.errstate(invalid="ignore"):
            counts = self._counts(level - best, noise, best, max_at_best - best)
        counts &= defined & ~np.isnan(noise)

        def recovered(ep: dict[str, int], end: int) -> Event:
            # the episode ends on the patience-th point that does not count, counting from ``end`` (the first)
            r = end + self.patience - 1
            return self._recovered(metric, int(steps[r]), float(level[r]), float(best[r]),
                                   int(steps[at_best[r]]), ep)

        events: list[Event] = []
        episode = None
        prev_end = 0
        starts, lengths = true_runs(counts)
        for a, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            if episode is not None and a - prev_end >= self.patience:
                events.append(recovered(episode, prev_end))
                episode = None
            if episode is None and length >= self.patience:
                f = a + self.patience - 1
                episode = {"onset": int(steps[a]), "fired": int(steps[f])}
                snapshot = {"best": float(best[f]), "best_step": int(steps[at_best[f]]),
                            "max_at_best": float(max_at_best[f]), "scale_at_best": float(noise[f])}
                events.append(self._diverged(metric, int(steps[f]), int(steps[a]), float(level[f]), snapshot))
            prev_end = a + length
        if episode is not None and n - prev_end >= self.patience:
            events.append(recovered(episode, prev_end))
            episode = None
        streak = running_streak(counts)
        last_best = int(at_best[-1])
        self._tracks[metric] = {
            "band": band_state(y, band, self.window),
            "best": None if last_best < 0 else float(best[-1]),
            "best_step": None if last_best < 0 else int(steps[last_best]),
            "max_level": float(max_level[-1]),
            "max_at_best": None if last_best < 0 else float(max_at_best[-1]),
            "scale_at_best": None if last_best < 0 or math.isnan(noise[-1]) else float(noise[-1]),
            "streak": streak,
            "streak_start": int(steps[n - streak]) if streak else None,
            "calm": running_streak(~counts),
            "episode": episode,
        }
        return events
