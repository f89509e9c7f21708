"""OverfittingDetector: the validation loss rises above its best while the training loss keeps falling.

At each validation point the val level is the lower median of the last ``window`` finite val
points; its best is the lowest level so far. The rise ``level - best`` counts when it is beyond
noise (``threshold`` robust standard deviations of a single val point, measured at the best),
large in itself (``min_rise`` of the best), material (``min_progress`` of what validation had
gained from its first value or highest level before its best: a val loss that never improved is
not overfitting, it has not fitted yet) and the train
level (median of the last ``train_window`` train points) is lower than it was when val was at its
best. After ``patience`` such val points in a row the detector warns, once; a new val best ends the
episode.

Train and val logged at the same step are taken train first, so the val point sees that train point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from foreshock.detect._scan import SeriesMap, as_arrays, is_fresh, step_by_step
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
    running_best,
    running_streak,
    trailing_median,
    true_runs,
)

__all__ = ["OverfittingDetector"]


class OverfittingDetector(Detector):
    """Validation loss rising, beyond noise and for a while, while training loss falls (warning).

    Parameters
    ----------
    train, val : str
        The training and validation series (losses: bad when they go up).
    window : int
        Val points in the median that gives the val level, and in its noise scale.
    train_window : int
        Train points in the median that gives the train level.
    min_periods : int
        Points (of each series) needed before a level exists.
    threshold : float
        Rise needed, in robust standard deviations of a single val point.
    min_rise : float
        Rise needed, as a fraction of the best val level.
    min_progress : float
        Rise needed, as a fraction of what val gained before its best; that gain must be positive.
    patience : int
        Consecutive val points the rise must count before the detector warns.
    """

    name = "overfitting"

    def __init__(self, train: str = "train/loss", val: str = "val/loss", window: int = 5,
                 train_window: int = 51, min_periods: int = 5, threshold: float = 3.0,
                 min_rise: float = 0.05, min_progress: float = 0.05, patience: int = 3):
        super().__init__()
        if not 1 <= min_periods <= min(window, train_window) or patience < 1:
            raise ValueError(f"need 1 <= min_periods <= window, train_window and patience >= 1, got "
                             f"{min_periods=}, {window=}, {train_window=}, {patience=}")
        if threshold < 0 or min_rise < 0 or min_progress < 0:
            raise ValueError(f"need non-negative thresholds, got {threshold=}, {min_rise=}, {min_progress=}")
        self.train = train
        self.val = val
        self.window = window
        self.train_window = train_window
        self.min_periods = min_periods
        self.threshold = threshold
        self.min_rise = min_rise
        self.min_progress = min_progress
        self.patience = patience
        self.metrics = (train, val)
        self._signs = (sign(train), sign(val))
        self._add_state("_train", [])
        self._add_state("_val", {"band": new_band_state(), "best": None, "best_step": None, "max_level": None,
                                 "max_at_best": None, "scale_at_best": None, "train_at_best": None,
                                 "streak": 0, "episode": None})

    def _counts(self, rise, scale, best, gained, train_now, train_at_best):
        return ((rise > 0) & (rise >= self.threshold * scale) & (rise >= self.min_rise * abs(best))
                & (gained > 0) & (rise >= self.min_progress * gained) & (train_now < train_at_best))

    # -- step by step -------------------------------------------------------------------------------
    def update(self, step: int, values: Mapping[str, float]) -> list[Event]:
        if self.train in values:
            t = float(values[self.train])
            if math.isfinite(t):
                push(self._train, self._signs[0] * t, self.train_window)
        if self.val not in values:
            return []
        v = float(values[self.val])
        if not math.isfinite(v):
            return []
        track = self._val
        y = self._signs[1] * v
        if track["max_level"] is None:
            track["max_level"] = y  # the first value counts as a level: what val gains is measured from it
        _, scale = band_step(track["band"], y, self.window, self.min_periods)
        vals = track["band"]["values"]
        if len(vals) < self.min_periods:
            return []
        level = lower_median(vals)
        train_now = lower_median(self._train) if len(self._train) >= self.min_periods else None
        track["max_level"] = max(track["max_level"], level)
        if track["best"] is None or level < track["best"]:
            track.update(best=level, best_step=int(step), max_at_best=track["max_level"], scale_at_best=scale,
                         train_at_best=train_now, episode=None)
        if track["scale_at_best"] is None:  # the best came before the scale existed: take the first one
            track["scale_at_best"] = scale
        best, noise = track["best"], track["scale_at_best"]
        counts = (noise is not None and train_now is not None and track["train_at_best"] is not None
                  and bool(self._counts(level - best, noise, best, track["max_at_best"] - best,
                                        train_now, track["train_at_best"])))
        track["streak"] = track["streak"] + 1 if counts else 0
        if counts and track["episode"] is None and track["streak"] >= self.patience:
            track["episode"] = {"onset": track["best_step"], "fired": int(step)}
            return [self._overfit(int(step), level, train_now, track)]
        return []

    def _overfit(self, step: int, level: float, train_now: float, track: Mapping[str, Any]) -> Event:
        sv, st = self._signs[1], self._signs[0]
        best = track["best"]
        rise = level - best
        rel = rise / abs(best) if best != 0 else None
        shown = f"{100 * rel:.3g}% above" if rel is not None else "above"
        return self._event(
            "overfitting", "warning", step, track["best_step"],
            f"{self.val} has risen {shown} its best {sv * best:.4g} (step {track['best_step']}) for "
            f"{self.patience} evaluations while {self.train} fell from {st * track['train_at_best']:.4g} "
            f"to {st * train_now:.4g}.",
            metric=self.val, level=sv * level, best=sv * best, best_step=track["best_step"], rise=rise,
            relative_rise=rel, min_rise=self.min_rise, scale_at_best=track["scale_at_best"],
            threshold=self.threshold,
            progress_lost=rise / (track["max_at_best"] - best), min_progress=self.min_progress,
            train=self.train, train_level=st * train_now, train_level_at_best=st * track["train_at_best"],
            patience=self.patience)

    # -- vectorised replay --------------------------------------------------------------------------
    def scan(self, series: SeriesMap) -> list[Event]:
        """The events of ``update`` over whole series, computed with numpy; leaves the same state."""
        if not is_fresh(self):
            return step_by_step(self, series)
        t_steps, t_x = as_arrays(series, self.train)
        ok = np.isfinite(t_x)
        t_steps, t_y = t_steps[ok], self._signs[0] * t_x[ok]
        self._train = t_y[-self.train_window:].tolist()
        v_steps, v_x = as_arrays(series, self.val)
        ok = np.isfinite(v_x)
        steps, y = v_steps[ok], self._signs[1] * v_x[ok]
        n = len(y)
        if n == 0:
            return []
        band = robust_band(y, self.window, self.min_periods)
        level = band.level
        # the train level each val point sees: train points up to and including its step
        t_level = trailing_median(t_y, self.train_window, self.min_periods, include_current=True)
        seen = np.searchsorted(t_steps, steps, side="right") - 1
        train_now = np.where(seen >= 0, t_level[np.maximum(seen, 0)] if len(t_y) else np.nan, np.nan)
        defined = ~np.isnan(level)
        rb = running_best(level, band.scale, y[0])
        best, new_best, max_level, at_best = rb.best, rb.new_best, rb.max_level, rb.at_best
        max_at_best, noise = rb.max_at_best, rb.noise
        j = np.maximum(at_best, 0)
        train_at_best = np.where(at_best >= 0, train_now[j], np.nan)
        with np.errstate(invalid="ignore"):
            counts = self._counts(level - best, noise, best, max_at_best - best, train_now, train_at_best)
        counts &= defined & ~np.isnan(noise) & ~np.isnan(train_now) & ~np.isnan(train_at_best)

        events: list[Event] = []
        episode = None
        pos = 0
        starts, lengths = true_runs(counts)
        k = 0
        while k < len(starts):
            a, length = int(starts[k]), int(lengths[k])
            f = max(a + self.patience - 1, pos)
            if f >= a + length:
                k += 1
                continue
            b = int(at_best[f])
            snap = {"best": float(best[f]), "best_step": int(steps[b]), "max_at_best": float(max_at_best[f]),
                    "scale_at_best": float(noise[f]), "train_at_best": float(train_at_best[f])}
            events.append(self._overfit(int(steps[f]), float(level[f]), float(train_now[f]), snap))
            episode = {"onset": int(steps[b]), "fired": int(steps[f])}
            end = first_true(lambda lo, hi: new_best[lo:hi], f + 1, n)
            if end is None:
                break
            episode = None
            pos = end + 1
        last = int(at_best[-1])
        track = self._val
        track["band"] = band_state(y, band, self.window)
        track["streak"] = running_streak(counts)
        track["episode"] = episode
        track["max_level"] = float(max_level[-1])
        if last >= 0:
            tb, sb = float(train_at_best[-1]), float(noise[-1])
            track.update(best=float(best[-1]), best_step=int(steps[last]), max_at_best=float(max_at_best[-1]),
                         scale_at_best=None if math.isnan(sb) else sb,
                         train_at_best=None if math.isnan(tb) else tb)
        return events
