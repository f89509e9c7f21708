"""NonFiniteDetector: NaN or +-Inf in a metric, with a severity that fits what it means.

A NaN or infinite *loss* means the run is broken: critical. In other metrics a non-finite value is
often routine: with fp16 dynamic loss scaling an overflowing step has an infinite gradient norm and
is skipped, and a metric that was not computed yet is logged as NaN. Those get an info event, once
per episode rather than once per step; an episode ends after ``reset_after`` finite points in a
row. When a metric that had been finite stays non-finite for ``persist`` points in a row, every step
is being lost, so the episode escalates to one warning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from foreshock.detect._scan import SeriesMap, as_arrays, is_fresh, merge_by_step, step_by_step
from foreshock.detect.base import Detector
from foreshock.detect.metadata import is_loss
from foreshock.events import Event, nonfinite_token
from foreshock.series import running_streak, true_runs

__all__ = ["NonFiniteDetector"]


def _spelled(x: float) -> str:
    # evidence keeps the value as text: NaN is not equal to itself, and JSON has no spelling for it
    return "NaN" if math.isnan(x) else ("+Inf" if x > 0 else "-Inf")


def _new_track() -> dict[str, Any]:
    return {"bad": 0, "good": 0, "last_finite": None, "last_finite_step": None, "episode": None}


class NonFiniteDetector(Detector):
    """NaN / Inf in any metric: critical for losses, info (then one warning if it persists) otherwise.

    Parameters
    ----------
    reset_after : int
        Finite points in a row that end an episode; a non-finite value after that is a new event.
    persist : int
        Non-finite points in a row after which a non-loss metric that had been finite escalates.

    Examples
    --------
    >>> det = NonFiniteDetector()
    >>> losses = [2.0, 1.5, float("nan")]
    >>> [(e.severity, e.step) for s, x in enumerate(losses) for e in det.update(s, {"train/loss": x})]
    [('critical', 2)]
    """

    name = "nonfinite"
    metrics = None  # every metric

    def __init__(self, reset_after: int = 100, persist: int = 10):
        super().__init__()
        if reset_after < 1 or persist < 1:
            raise ValueError(f"need reset_after >= 1 and persist >= 1, got {reset_after=}, {persist=}")
        self.reset_after = reset_after
        self.persist = persist
        self._add_state("_tracks", {})

    # -- step by step -------------------------------------------------------------------------------
    def update(self, step: int, values: Mapping[str, float]) -> list[Event]:
        events: list[Event] = []
        for metric, raw in values.items():
            x = float(raw)
            track = self._tracks.get(metric)
            if track is None:
                track = self._tracks[metric] = _new_track()
            if math.isfinite(x):
                track["good"] += 1
                track["bad"] = 0
                track["last_finite"], track["last_finite_step"] = x, int(step)
                if track["episode"] is not None and track["good"] >= self.reset_after:
                    track["episode"] = None
                continue
            track["bad"] += 1
            track["good"] = 0
            ep = track["episode"]
            if ep is None:
                track["episode"] = {"onset": int(step), "had_finite": track["last_finite"] is not None,
                                    "escalated": False}
                events.append(self._first(metric, int(step), x, track))
            elif self._escalates(metric, ep, track["bad"]):
                ep["escalated"] = True
                events.append(self._persisting(metric, int(step), x, track))
        return events

    def _escalates(self, metric: str, ep: Mapping[str, Any], bad: int) -> bool:
        return not is_loss(metric) and ep["had_finite"] and not ep["escalated"] and bad >= self.persist

    # -- events -------------------------------------------------------------------------------------
    def _first(self, metric: str, step: int, x: float, track: Mapping[str, Any]) -> Event:
        what = _spelled(x)
        last = track["last_finite"]
        before = (f" (last finite value {last:.4g} at step {track['last_finite_step']})" if last is not None
                  else " (no finite value before)")
        if is_loss(metric):
            severity, tail = "critical", ": the run is broken from here unless it recovers"
        else:
            severity, tail = "info", ": routine for a skipped step, a concern if it persists"
        return self._event("nan", severity, step, step, f"{metric} is {what} at step {step}{before}{tail}.",
                           metric=metric, value=nonfinite_token(x), last_finite=last,
                           last_finite_step=track["last_finite_step"],
                           reset_after=self.reset_after)

    def _persisting(self, metric: str, step: int, x: float, track: Mapping[str, Any]) -> Event:
        onset = track["episode"]["onset"]
        return self._event("nan", "warning", step, onset,
                           f"{metric} has been non-finite for {track['bad']} points in a row since "
                           f"step {onset}.",
                           metric=metric, value=nonfinite_token(x), points=track["bad"], persist=self.persist,
                           last_finite=track["last_finite"], last_finite_step=track["last_finite_step"])

    # -- vectorised replay --------------------------------------------------------------------------
    def scan(self, series: SeriesMap) -> list[Event]:
        """The events of ``update`` over whole series, computed with numpy; leaves the same state."""
        if not is_fresh(self):
            return step_by_step(self, series)
        return merge_by_step([self._scan_metric(m, *as_arrays(series, m)) for m in series])

    def _scan_metric(self, metric: str, steps: np.ndarray, x: np.ndarray) -> list[Event]:
        if not len(x):
            return []
        finite = np.isfinite(x)
        starts, lengths = true_runs(~finite)
        events: list[Event] = []
        track = _new_track()
        episode = None
        prev_end = 0  # index just after the previous bad run
        for a, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            if episode is not None and a - prev_end >= self.reset_after:
                episode = None
            if a > 0:
                track["last_finite"], track["last_finite_step"] = float(x[a - 1]), int(steps[a - 1])
            if episode is None:
                episode = {"onset": int(steps[a]), "had_finite": track["last_finite"] is not None,
                           "escalated": False}
                track["episode"], track["bad"] = episode, 1
                events.append(self._first(metric, int(steps[a]), float(x[a]), track))
            if length >= self.persist and self._escalates(metric, episode, length):
                f = a + max(self.persist - 1, 1 if int(steps[a]) == episode["onset"] else 0)
                if f < a + length:
                    episode["escalated"] = True
                    track["episode"], track["bad"] = episode, f - a + 1
                    events.append(self._persisting(metric, int(steps[f]), float(x[f]), track))
            prev_end = a + length
        if episode is not None and len(x) - prev_end >= self.reset_after:
            episode = None
        if finite[-1]:
            last = len(x) - 1
            track["last_finite"], track["last_finite_step"] = float(x[last]), int(steps[last])
        track["bad"] = running_streak(~finite)
        track["good"] = running_streak(finite)
        track["episode"] = episode
        self._tracks[metric] = track
        return events
