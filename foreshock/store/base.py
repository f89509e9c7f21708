"""The RunStore protocol: what any run store offers, and the small records it returns.

SQLite (:class:`foreshock.store.SQLiteStore`) is the embedded default; a server database will
implement the same methods. Points go in as ``(step, name, value, wall_time)``; runs come out as
:class:`foreshock.run.Run`, events as :class:`foreshock.events.Event`.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from foreshock.events import Event, Severity
from foreshock.run import Run, Status

__all__ = ["ForecastRecord", "Point", "RunInfo", "RunStore", "STATUSES"]

STATUSES: tuple[Status, ...] = ("running", "finished", "crashed", "unknown")

Point = tuple[int, str, float, "float | None"]  # (step, metric name, value, wall_time or None)


@dataclass(frozen=True)
class RunInfo:
    """A stored run at a glance: its metadata and a summary of what it holds (no points)."""

    id: int
    name: str
    source: str
    format: str
    status: Status
    created_at: str
    config: dict[str, Any] = field(default_factory=dict)
    n_points: int = 0
    first_step: int | None = None
    last_step: int | None = None
    metrics: tuple[str, ...] = ()  # metric names, sorted
    n_events: int = 0
    worst_severity: Severity | None = None  # highest severity among the run's events


@dataclass(frozen=True)
class ForecastRecord:
    """A stored forecast: the value of a metric expected at ``target_step``, made at ``at_step``.

    ``lo``/``hi`` bound the interval; ``law`` names the fitted curve and ``params`` its parameters.
    """

    id: int
    run_id: int
    at_step: int
    target_step: int
    value: float
    lo: float
    hi: float
    law: str
    params: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class RunStore(Protocol):
    """Runs, their points, events, forecasts and monitor state, kept transactionally.

    Every write method is one transaction: it happens completely or not at all. Ids are ints
    handed out by the store. "Most recent" means the run created (or replaced) last.
    """

    def __enter__(self) -> RunStore: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None: ...

    def atomic(self) -> AbstractContextManager[None]:
        """Group several writes into one transaction (nested calls become savepoints)."""
        ...

    # -- runs -------------------------------------------------------------------------------------
    def create_run(self, name: str, *, source: str = "live", format: str = "live",
                   config: dict[str, Any] | None = None, status: Status = "running") -> int: ...

    def append_points(self, run_id: int, points: Iterable[Point]) -> int:
        """Add a batch of points in one transaction; returns how many. A repeated step replaces."""
        ...

    def save_run(self, run: Run, *, replace: bool = True) -> int: ...

    def load_run(self, name_or_id: str | int | None = None) -> Run: ...

    def runs(self) -> list[RunInfo]: ...

    def set_status(self, run_id: int, status: Status) -> None: ...

    def delete_run(self, run_id: int) -> None: ...

    # -- events, forecasts, state -----------------------------------------------------------------
    def add_events(self, run_id: int, events: Iterable[Event]) -> None: ...

    def replace_events(self, run_id: int, events: Iterable[Event]) -> None: ...

    def events(self, run_id: int) -> list[Event]: ...

    def add_forecast(self, run_id: int, *, at_step: int, target_step: int, value: float, lo: float,
                     hi: float, law: str, params: dict[str, Any] | None = None) -> int: ...

    def forecasts(self, run_id: int) -> list[ForecastRecord]: ...

    def save_state(self, run_id: int, state: dict[str, Any]) -> None: ...

    def load_state(self, run_id: int) -> dict[str, Any] | None: ...

