"""``analyze``: read a run (or take one), replay it through the detectors, return what fired."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from foreshock.detect.base import Detector
from foreshock.detect.monitor import Monitor
from foreshock.events import Event, severity_rank
from foreshock.run import Run

__all__ = ["Analysis", "analyze", "read"]

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


@dataclass
class Analysis:
    """The result of :func:`analyze`: the run and the events its replay produced."""

    run: Run
    events: list[Event] = field(default_factory=list)

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
            "skipped_records": self.run.skipped_records,
            "skipped": [{"line": s.line, "count": s.count, "reason": s.reason} for s in self.run.skipped],
        }


def analyze(run: Run | PathLike, *, detectors: Sequence[Detector] | None = None, fast: bool = True) -> Analysis:
    """Replay a run (or the log at a path) through the detectors.

    Parameters
    ----------
    run : Run or path
        A run from :func:`read`, or a path that :func:`read` accepts.
    detectors : sequence of Detector, optional
        Defaults to :func:`foreshock.detect.default_detectors`.
    """
    if not isinstance(run, Run):
        run = read(run)
    monitor = Monitor(detectors)
    events = monitor.replay(run, fast=fast)
    return Analysis(run=run, events=events)
