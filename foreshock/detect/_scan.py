"""Shared plumbing of the vectorised ``scan`` paths: the step-by-step fallback and event ordering."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from foreshock.detect.base import Detector
from foreshock.events import Event
from foreshock.run import Run, Series

__all__ = ["SeriesMap", "as_arrays", "each_positive", "is_fresh", "merge_by_step", "step_by_step"]

SeriesMap = Mapping[str, tuple[np.ndarray, np.ndarray]]


def each_positive(metrics: Sequence[str], step: int, values: Mapping[str, float],
                  point: Callable[[str, int, float], Event | None]) -> list[Event]:
    """``point(metric, step, x)`` for each of ``metrics`` present in ``values`` with a finite, positive
    value (in ``metrics``' order); the events it returned. The update of detectors that work on the
    log of a series, one series at a time."""
    events: list[Event] = []
    for metric in metrics:
        if metric in values:
            x = float(values[metric])
            if math.isfinite(x) and x > 0:
                event = point(metric, int(step), x)
                if event is not None:
                    events.append(event)
    return events


def as_arrays(series: SeriesMap, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of one metric as int64 / float64 arrays (empty when absent)."""
    if name not in series:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    steps, values = series[name]
    return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)


def is_fresh(det: Detector) -> bool:
    """True when ``det`` has seen nothing yet (its state equals that of a clone)."""
    return det.state_dict() == det.clone().state_dict()


def step_by_step(det: Detector, series: SeriesMap) -> list[Event]:
    """Feed ``series`` to ``det.update`` in step order, exactly as ``Monitor.replay(fast=False)``."""
    from foreshock.detect.monitor import iter_steps

    metrics = {n: Series(*as_arrays(series, n)) for n in series}
    run = Run(name="scan", metrics=metrics, source="scan", format="scan")
    events: list[Event] = []
    for step, values in iter_steps(run):
        events.extend(det.update(step, values))
    return events


def merge_by_step(per_metric: Sequence[list[Event]]) -> list[Event]:
    """Events of several metrics in the order ``update`` emits them: by step, then metric order.

    ``per_metric`` lists each metric's events in emission order, metrics in the order ``update``
    visits them within a step.
    """
    keyed = [(e.step, i, j) for i, evs in enumerate(per_metric) for j, e in enumerate(evs)]
    keyed.sort()
    return [per_metric[i][j] for _, i, j in keyed]
