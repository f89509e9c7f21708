"""PatternDetector: a detector over every metric whose name matches a pattern, each series on its own."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from foreshock.detect._scan import SeriesMap, as_arrays, merge_by_step
from foreshock.detect.base import Detector
from foreshock.events import Event, Severity, severity_rank

__all__ = ["PatternDetector"]


class PatternDetector(Detector):
    """Watches every metric whose name matches one of ``patterns`` (``*`` matches a layer name).

    One track of state per metric, made by ``_new_track()``. Subclasses give ``_point(metric, step,
    x)`` for one finite point and ``_walk(metric, steps, x)`` for finite arrays; both must make the
    same decisions (the contract tests check it). Non-finite points are left to the non-finite detector.
    """

    metrics = None
    patterns: tuple[str, ...]
    severity: Severity

    def _setup(self, patterns: tuple[str, ...], severity: Severity) -> None:
        if not patterns:
            raise ValueError("need at least one metric name pattern")
        severity_rank(severity)
        self.patterns = tuple(patterns)
        self.severity = severity
        self._matches: dict[str, bool] = {}  # a cache of the name test, not state
        self._add_state("_tracks", {})

    def watches(self, name: str) -> bool:
        """True when ``name`` matches one of the patterns."""
        hit = self._matches.get(name)
        if hit is None:
            hit = self._matches[name] = any(fnmatchcase(name, p) for p in self.patterns)
        return hit

    def _track(self, metric: str) -> dict[str, Any]:
        """The metric's track, made on its first point."""
        track = self._tracks.get(metric)
        if track is None:
            track = self._tracks[metric] = self._new_track()
        return track

    def _new_track(self) -> dict[str, Any]:
        raise NotImplementedError

    def _point(self, metric: str, step: int, x: float) -> list[Event]:
        raise NotImplementedError

    def _walk(self, metric: str, steps: np.ndarray, x: np.ndarray) -> list[Event]:
        raise NotImplementedError

    def update(self, step: int, values: Mapping[str, float]) -> list[Event]:
        events: list[Event] = []
        for metric in sorted(m for m in values if self.watches(m)):
            x = float(values[metric])
            if math.isfinite(x):
                events.extend(self._point(metric, int(step), x))
        return events

    def scan(self, series: SeriesMap) -> list[Event]:
        """The events of ``update`` over whole series (the same arithmetic, array at a time)."""
        per_metric = []
        for metric in sorted(m for m in series if self.watches(m)):
            steps, x = as_arrays(series, metric)
            finite = np.isfinite(x)
            per_metric.append(self._walk(metric, steps[finite], x[finite]))
        return merge_by_step(per_metric)
