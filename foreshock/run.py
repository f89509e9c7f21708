"""A run: named metric series over training steps, plus where they came from.

A :class:`Run` is what every reader returns, what the store keeps and what detectors replay. Each
metric is a :class:`Series`: int64 steps in increasing order, float64 values (NaN and +-Inf kept:
they are signals, not errors), and wall times when the log had them.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["Run", "RunBuilder", "Series", "Skipped"]

Status = Literal["running", "finished", "crashed", "unknown"]


@dataclass(frozen=True)
class Series:
    """One metric of a run: ``steps`` (int64, strictly increasing) and ``values`` (float64)."""

    steps: np.ndarray
    values: np.ndarray
    wall_times: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class Skipped:
    """Records a reader could not use: where they were and why."""

    line: int | None  # 1-based line (or record number) of the first skipped record in this group
    count: int
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "end of file"
        return f"{self.count} record(s) skipped at {where}: {self.reason}"


@dataclass
class Run:
    """A training run as foreshock sees it.

    Parameters
    ----------
    name : str
        Human name of the run (file stem, or the name given to ``watch``).
    metrics : dict[str, Series]
        Canonical metric name -> series (see DESIGN.md for the names).
    source : str
        ``"live"`` or the path it was read from.
    format : str
        The reader that produced it (``"csv-long"``, ``"tensorboard"``, ...), or ``"store"``/``"live"``.
    """

    name: str
    metrics: dict[str, Series] = field(default_factory=dict)
    source: str = "live"
    format: str = "live"
    config: dict[str, Any] = field(default_factory=dict)
    status: Status = "unknown"
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat())
    skipped: list[Skipped] = field(default_factory=list)
    id: int | None = None  # the store's id, once stored

    @property
    def names(self) -> list[str]:
        """Metric names present, sorted."""
        return sorted(self.metrics)

    @property
    def skipped_records(self) -> int:
        return sum(s.count for s in self.skipped)

    def __getitem__(self, name: str) -> Series:
        try:
            return self.metrics[name]
        except KeyError:
            raise KeyError(f"run {self.name!r} has no metric {name!r}; it has {self.names}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.metrics

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one metric: int64 and float64 numpy arrays in step order."""
        s = self[name]
        return s.steps, s.values

    @property
    def steps(self) -> tuple[int, int] | None:
        """First and last step over all metrics, or None for an empty run."""
        if not self.metrics:
            return None
        firsts = [int(s.steps[0]) for s in self.metrics.values() if len(s)]
        lasts = [int(s.steps[-1]) for s in self.metrics.values() if len(s)]
        return (min(firsts), max(lasts)) if firsts else None

    def __len__(self) -> int:
        return sum(len(s) for s in self.metrics.values())

    def __repr__(self) -> str:
        return (
            f"Run(name={self.name!r}, source={self.source!r}, format={self.format!r}, "
            f"metrics={self.names}, points={len(self)}, skipped_records={self.skipped_records})"
        )


class RunBuilder:
    """Collects ``(step, name, value)`` records in any order and builds a :class:`Run`.

    Records of the same metric are sorted by step; when a step repeats (a resumed run that logged
    it again), the record read last wins, as it would in the training script's own view.
    """

    def __init__(self) -> None:
        self._steps: dict[str, list[int]] = {}
        self._values: dict[str, list[float]] = {}
        self._walls: dict[str, list[float]] = {}
        # columns from add_array stay numpy arrays (no per-value Python objects); records from
        # add() are moved here before each new column, so read order, hence "last wins", holds
        self._chunks: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self.skipped: list[Skipped] = []

    def add(self, step: int, name: str, value: float, wall_time: float | None = None) -> None:
        steps = self._steps.get(name)
        if steps is None:
            steps = self._steps[name] = []
            self._values[name] = []
            self._walls[name] = []
        steps.append(step)
        self._values[name].append(value)
        self._walls[name].append(np.nan if wall_time is None else wall_time)

    def add_array(self, name: str, steps, values, wall_times=None) -> None:
        """Add a whole column at once (columnar formats)."""
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        walls = (np.full(len(steps), np.nan) if wall_times is None
                 else np.asarray(wall_times, dtype=np.float64).reshape(-1))
        if not len(steps) == len(values) == len(walls):
            raise ValueError(f"add_array({name!r}): {len(steps)} steps, {len(values)} values, {len(walls)} wall times")
        self._move_pending(name)
        self._chunks.setdefault(name, []).append((steps, values, walls))

    def _move_pending(self, name: str) -> None:
        steps = self._steps.setdefault(name, [])
        if steps:
            self._chunks.setdefault(name, []).append((
                np.asarray(steps, dtype=np.int64),
                np.asarray(self._values[name], dtype=np.float64),
                np.asarray(self._walls[name], dtype=np.float64),
            ))
            steps.clear()
            self._values[name].clear()
            self._walls[name].clear()
        else:
            self._values.setdefault(name, [])
            self._walls.setdefault(name, [])

    def skip(self, line: int | None, reason: str, count: int = 1) -> None:
        """Note unusable records; consecutive skips with the same reason are merged."""
        if self.skipped and self.skipped[-1].reason == reason and line is not None:
            last = self.skipped[-1]
            if last.line is not None and last.line + last.count == line:
                self.skipped[-1] = Skipped(last.line, last.count + count, reason)
                return
        self.skipped.append(Skipped(line, count, reason))

    def __len__(self) -> int:
        return sum(len(v) for v in self._steps.values()) + sum(
            len(c[0]) for chunks in self._chunks.values() for c in chunks)

    def build(self, name: str, *, source: str, format: str, config: dict | None = None,
              status: Status = "unknown") -> Run:
        series: dict[str, Series] = {}
        for metric in self._steps:
            self._move_pending(metric)
            chunks = self._chunks.get(metric)
            if not chunks:
                continue
            steps, values, walls = (np.concatenate([c[i] for c in chunks]) for i in range(3))
            series[metric] = _sorted_unique(steps, values, walls)
        return Run(name=name, metrics=series, source=source, format=format, config=dict(config or {}),
                   status=status, skipped=list(self.skipped))


def _sorted_unique(steps: np.ndarray, values: np.ndarray, walls: np.ndarray) -> Series:
    if len(steps) > 1 and not np.all(steps[1:] > steps[:-1]):
        order = np.argsort(steps, kind="stable")
        steps, values, walls = steps[order], values[order], walls[order]
        # keep the last record of each repeated step (stable sort keeps read order within a step)
        last = np.ones(len(steps), dtype=bool)
        last[:-1] = steps[1:] != steps[:-1]
        steps, values, walls = steps[last], values[last], walls[last]
    wall_times = None if np.all(np.isnan(walls)) else walls
    return Series(steps=steps, values=values, wall_times=wall_times)
