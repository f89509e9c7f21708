"""The Monitor: routes each step's values to its detectors and collects their events.

Live, a training loop (or ``foreshock.watch``) calls ``monitor.update(step, values)``. Offline,
``monitor.replay(run)`` feeds a whole run through the same detectors in step order, so a report
shows what would have fired live. Detectors with a vectorised ``scan`` use it in replay; the
contract tests prove each gives the events and end state of the step-by-step path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from foreshock.detect.base import Detector
from foreshock.events import Event
from foreshock.run import Run

__all__ = ["Monitor", "iter_steps", "replay"]


class Monitor:
    """Routes values to detectors; keeps every event they emit.

    Parameters
    ----------
    detectors : sequence of Detector, optional
        Defaults to :func:`foreshock.detect.default_detectors`.
    on_event : callable, optional
        Called with each event as it fires (after it is recorded).
    """

    def __init__(self, detectors: Sequence[Detector] | None = None, *,
                 on_event: Callable[[Event], Any] | None = None):
        if detectors is None:
            from foreshock.detect import default_detectors

            detectors = default_detectors()
        names = [d.name for d in detectors]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"detector names must be unique (they key the state dict), repeated: {sorted(dupes)}")
        self.detectors: list[Detector] = list(detectors)
        self.on_event = on_event
        self.events: list[Event] = []
        self.last_step: int | None = None

    def update(self, step: int, values: Mapping[str, float]) -> list[Event]:
        """Feed one step; returns the events that fired at it."""
        if self.last_step is not None and step < self.last_step:
            raise ValueError(f"steps must not go backwards: got {step} after {self.last_step}")
        self.last_step = step
        fired: list[Event] = []
        for det in self.detectors:
            want = det.metrics
            if want is not None:
                sub = {k: values[k] for k in want if k in values}
                if not sub:
                    continue
            else:
                sub = values
            fired.extend(det.update(step, sub))
        self._record(fired)
        return fired

    def replay(self, run: Run, *, fast: bool = True) -> list[Event]:
        """Feed a whole run through the detectors in step order; returns the new events.

        With ``fast=True`` detectors that have a vectorised ``scan`` use it; the result is the same.
        """
        per_detector: list[list[Event]] = []
        for det in self.detectors:
            names = [n for n in (det.metrics if det.metrics is not None else run.names) if n in run]
            if not names:
                per_detector.append([])
                continue
            scan = getattr(det, "scan", None) if fast else None
            if scan is not None:
                per_detector.append(scan({n: run.series(n) for n in names}))
            else:
                evs: list[Event] = []
                for step, values in iter_steps(run, names):
                    evs.extend(det.update(step, values))
                per_detector.append(evs)
        # interleave as the live path would: by step, then detector order, then emission order
        order = sorted(
            ((e.step, i, j) for i, evs in enumerate(per_detector) for j, e in enumerate(evs))
        )
        fired = [per_detector[i][j] for _, i, j in order]
        last = run.steps
        if last is not None:
            self.last_step = last[1] if self.last_step is None else max(self.last_step, last[1])
        self._record(fired)
        return fired

    def _record(self, fired: Iterable[Event]) -> None:
        for e in fired:
            self.events.append(e)
            if self.on_event is not None:
                self.on_event(e)

    def reset(self) -> None:
        for d in self.detectors:
            d.reset()
        self.events.clear()
        self.last_step = None

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step,
                "detectors": {d.name: d.state_dict() for d in self.detectors}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last_step = state.get("last_step")
        for d in self.detectors:
            if d.name in state["detectors"]:
                d.load_state_dict(state["detectors"][d.name])


def iter_steps(run: Run, names: Sequence[str] | None = None) -> Iterator[tuple[int, dict[str, float]]]:
    """Yield ``(step, {metric: value})`` over the union of the metrics' steps, in step order."""
    names = list(run.names if names is None else names)
    if not names:
        return
    steps = np.concatenate([run[n].steps for n in names])
    which = np.concatenate([np.full(len(run[n]), i, dtype=np.int32) for i, n in enumerate(names)])
    values = np.concatenate([run[n].values for n in names])
    order = np.argsort(steps, kind="stable")
    steps, which, values = steps[order].tolist(), which[order].tolist(), values[order].tolist()
    current: dict[str, float] = {}
    prev = None
    for s, w, v in zip(steps, which, values, strict=True):
        if s != prev and prev is not None:
            yield prev, current
            current = {}
        current[names[w]] = v
        prev = s
    if prev is not None:
        yield prev, current


def replay(run: Run, detectors: Sequence[Detector] | None = None, *, fast: bool = True) -> list[Event]:
    """Replay ``run`` through fresh ``detectors`` (the defaults when None); returns the events."""
    return Monitor(detectors).replay(run, fast=fast)
