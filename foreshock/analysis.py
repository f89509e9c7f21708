"""``analyze``: read a run (or take one), replay it through the detectors, return what fired.

Besides the events, an analysis holds the run's phase timeline (warm-up, fast and slow descent,
plateau, annealing: :mod:`foreshock.detect.phases`) and, where :mod:`foreshock.detect.health` is
installed, the run's health over time, both derived from events so they show what a live run
would have shown, and when.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from foreshock.detect.base import Detector
from foreshock.detect.monitor import Monitor
from foreshock.detect.phases import EdgeOfStabilityDetector, GrokkingDetector, PhaseDetector, phase_timeline
from foreshock.events import Event, severity_rank
from foreshock.run import Run

try:  # the run-health module is optional here: the analysis carries its timeline when it is installed
    from foreshock.detect.health import health_timeline
except ImportError:  # pragma: no cover - depends on the installed version
    health_timeline = None

__all__ = ["Analysis", "PhaseSegment", "analyze", "read"]

PathLike = str | os.PathLike


def read(path: PathLike, *, run: str | int | None = None, format: str | None = None) -> Run:
    """Read a run from a log file or directory in any supported format, or from a run store.

    Parameters
    ----------
    path : path
        A training log (CSV, JSONL, ``trainer_state.json``, TensorBoard events, text log; ``.gz``
        welcome) or a foreshock SQLite store.
    run : str or int, optional
        With a store: the run's name or id (the latest run when omitted).
    format : str, optional
        Force a reader by name instead of detecting the format.
    """
    from foreshock.store import is_store, open_store

    if is_store(path):
        with open_store(path) as store:
            return store.load_run(run)
    if run is not None:
        raise ValueError(f"{os.fspath(path)} is a log file, not a store; 'run=' applies to stores only")
    from foreshock.logs import read_log

    return read_log(path, format=format)


@dataclass(frozen=True)
class PhaseSegment:
    """One stretch of the phase timeline: ``phase`` from ``start_step`` to ``end_step``."""

    start_step: int
    end_step: int
    phase: str

    def to_dict(self) -> dict[str, Any]:
        return {"start_step": self.start_step, "end_step": self.end_step, "phase": self.phase}


@dataclass
class Analysis:
    """The result of :func:`analyze`: the run, the events its replay produced and its phase events.

    ``phase_events`` are the ``phase`` events of a :class:`~foreshock.detect.phases.PhaseDetector`
    run beside the detectors: they describe the run rather than find something in it, so they stay
    out of ``events`` (and of the verdict). ``phase`` events among ``events`` count as well.
    """

    run: Run
    events: list[Event] = field(default_factory=list)
    phase_events: list[Event] = field(default_factory=list)
    forecast: Any = None  # a foreshock.forecast.Forecast when a schedule was given and a fit was possible
    forecast_note: str | None = None  # why there is no forecast although a schedule was given

    @property
    def phases(self) -> list[PhaseSegment]:
        """The phase timeline, from the first phase to the run's last step."""
        span = self.run.steps
        evs = [*self.phase_events, *(e for e in self.events if e.kind == "phase")]
        return [PhaseSegment(a, b, p) for a, b, p in phase_timeline(evs, span[1] if span else None)]

    @property
    def health(self) -> list[Any]:
        """The run's health changes (``foreshock.detect.health``), empty when that module is absent."""
        if health_timeline is None:
            return []
        span = self.run.steps
        return list(health_timeline(self.events, last_step=span[1] if span else None))

    def worst(self) -> str | None:
        """Highest severity among the events, or None when nothing fired."""
        if not self.events:
            return None
        return max((e.severity for e in self.events), key=severity_rank)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``foreshock analyze --json`` prints for this run."""
        steps = self.run.steps
        return {
            "run": self.run.name,
            "source": self.run.source,
            "format": self.run.format,
            "steps": list(steps) if steps is not None else None,
            "metrics": self.run.names,
            "events": [e.to_dict() for e in self.events],
            "phases": [p.to_dict() for p in self.phases],
            "health": [h.to_dict() for h in self.health],
            "forecast": self.forecast.to_dict() if self.forecast is not None else None,
            "skipped_records": self.run.skipped_records,
            "skipped": [{"line": s.line, "count": s.count, "reason": s.reason} for s in self.run.skipped],
        }


def analyze(run: Run | PathLike, *, detectors: Sequence[Detector] | None = None, fast: bool = True,
            phases: bool = True, schedule: Any = None, forecast_at: int | None = None) -> Analysis:
    """Replay a run (or the log at a path) through the detectors, and find its phases.

    Parameters
    ----------
    run : Run or path
        A run from :func:`read`, or a path that :func:`read` accepts.
    detectors : sequence of Detector, optional
        Defaults to :func:`foreshock.detect.default_detectors`, with the grokking and the
        edge-of-stability detectors.
    phases : bool
        Also replay a :class:`~foreshock.detect.phases.PhaseDetector` (unless ``detectors`` has one)
        for the phase timeline.
    schedule : Schedule, str or None
        The run's LR schedule (a spec such as ``"cosine:peak=6e-4,final=6e-5,warmup=700,total=20000"``,
        or ``"log"`` for the LR the run logged): then the analysis also forecasts the loss at
        ``forecast_at`` (default: the schedule's last step) with :func:`foreshock.forecast.forecast`
        and its defaults. A forecast that cannot be made leaves ``forecast_note`` saying why.
    """
    if not isinstance(run, Run):
        run = read(run)
    if detectors is None:
        from foreshock.detect import default_detectors

        detectors = default_detectors()
        names = {d.name for d in detectors}
        detectors += [d for d in (GrokkingDetector(), EdgeOfStabilityDetector()) if d.name not in names]
    events = Monitor(detectors).replay(run, fast=fast)
    phase_events: list[Event] = []
    if phases and not any(isinstance(d, PhaseDetector) for d in detectors):
        phase_events = Monitor([PhaseDetector()]).replay(run, fast=fast)
    result = Analysis(run=run, events=events, phase_events=phase_events)
    if schedule is not None:
        from foreshock.errors import ForeshockError
        from foreshock.forecast import forecast

        try:
            result.forecast = forecast(run, schedule=schedule, at=forecast_at)
        except (ForeshockError, ValueError) as e:
            result.forecast_note = str(e)
    return result
