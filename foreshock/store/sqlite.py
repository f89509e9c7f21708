"""SQLiteStore: the embedded run store, one SQLite file (or ``":memory:"``).

Several processes may write to one file at once: the store runs in WAL mode, where readers never
block, and writers take the write lock up front (``BEGIN IMMEDIATE``) and wait up to ``timeout``
seconds for it instead of failing. Each write method is one transaction, so a crash (even SIGKILL)
leaves every committed batch intact and nothing of the batch in flight.

``synchronous=NORMAL`` under WAL: a killed process loses nothing it committed; a power cut may lose
the last transactions (never the database). Schema: see :mod:`foreshock.store.schema`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from foreshock.errors import StoreError
from foreshock.events import Event
from foreshock.run import Run, Series, Skipped, Status
from foreshock.store.base import STATUSES, ForecastRecord, Point, RunInfo
from foreshock.store.schema import applied_versions, migrate

__all__ = ["SQLITE_HEADER", "SQLiteStore"]

SQLITE_HEADER = b"SQLite format 3\x00"
_RANK = "CASE severity WHEN 'critical' THEN 2 WHEN 'warning' THEN 1 ELSE 0 END"
_SEVERITY = {0: "info", 1: "warning", 2: "critical"}


class SQLiteStore:
    """A run store in one SQLite file.

    Parameters
    ----------
    path : path or ":memory:"
        The database file; created (with its schema) when missing.
    timeout : float
        Seconds a write waits for another process's write to finish before failing.
    tracer : callable, optional
        Called with every SQL statement executed (for debugging).

    Examples
    --------
    >>> with SQLiteStore(":memory:") as store:
    ...     rid = store.create_run("demo")
    ...     store.append_points(rid, [(0, "train/loss", 2.5, None), (1, "train/loss", 2.1, None)])
    ...     store.load_run("demo")["train/loss"].values.tolist()
    2
    [2.5, 2.1]
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 30.0,
                 tracer: Callable[[str], Any] | None = None):
        self.path = os.fspath(path)
        if self.path != ":memory:":
            _check_file(Path(self.path))
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open as a foreshock run store: {e}") from e
        if tracer is not None:
            self._conn.set_trace_callback(tracer)
        self._metric_ids: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._setup()
                break
            except sqlite3.OperationalError as e:
                # switching a new file to WAL while other processes open it too fails at once with
                # "locked" (SQLite skips the busy handler there); every setup step is idempotent
                if "locked" in str(e) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                self._conn.close()
                raise StoreError(f"{self.path}: expected a foreshock run store: {e}") from e
            except (sqlite3.Error, StoreError) as e:
                self._conn.close()
                raise StoreError(f"{self.path}: expected a foreshock run store: {e}") from e

    def _setup(self) -> None:
        conn = self._conn
        applied_versions(conn)  # refuse a database that is not a store before changing anything in it
        # larger pages: fewer b-tree pages per million points; only takes effect on a new file
        conn.execute("PRAGMA page_size = 16384")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] not in ("wal", "memory"):
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One write transaction; nested, a savepoint. On any error everything in it is undone."""
        conn = self._conn
        if conn.in_transaction:
            conn.execute("SAVEPOINT nested")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
                self._metric_ids.clear()  # names interned inside the savepoint are gone
                raise
            conn.execute("RELEASE nested")
            return
        try:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now: waits (busy timeout) if held
            yield
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._metric_ids.clear()  # ids interned in the rolled-back transaction are gone
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"{self.path}: write failed, nothing of it was kept: {e}") from e
            raise

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one consistent state."""
        if self._conn.in_transaction:
            yield self._conn
            return
        self._conn.execute("BEGIN")
        try:
            yield self._conn
        finally:
            self._conn.execute("COMMIT")

    # -- runs and points --------------------------------------------------------------------------
    def create_run(self, name: str, *, source: str = "live", format: str = "live",
                   config: dict[str, Any] | None = None, status: Status = "running",
                   created_at: str | None = None) -> int:
        """Add an empty run; returns its id."""
        _check_status(status)
        created_at = created_at or _dt.datetime.now(_dt.timezone.utc).isoformat()
        with self.atomic():
            cur = self._conn.execute(
                "INSERT INTO runs (name, created_at, config, status, source, format) VALUES (?, ?, ?, ?, ?, ?)",
                (name, created_at, _dumps(config or {}, f"config of run {name!r}"), status, source, format))
        return int(cur.lastrowid)

    def append_points(self, run_id: int, points: Iterable[Point]) -> int:
        """Add ``(step, name, value, wall_time)`` points in one transaction; returns how many.

        A point at a step the metric already has replaces it (the later record wins).
        """
        count = 0

        def rows() -> Iterator[tuple[int, int, int, float, float | None]]:
            nonlocal count
            for step, name, value, wall in points:
                count += 1
                # a new name is interned between two rows: executemany has reset its statement
                yield run_id, self._metric_id(name), step, value, wall

        with self.atomic():
            self._require(run_id)
            # streamed: a batch is never copied, and a crash mid-batch leaves nothing of it
            self._conn.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?)", rows())
        return count

    def save_run(self, run: Run, *, replace: bool = True) -> int:
        """Store a whole run (metadata, series, skipped records) in one transaction; sets ``run.id``.

        With ``replace=True``, runs with the same name and source are removed in the same
        transaction, with everything attached to them: reading the same log twice keeps one copy.
        """
        with self.atomic():
            if replace:
                for (old,) in self._conn.execute("SELECT id FROM runs WHERE name = ? AND source = ?",
                                                 (run.name, run.source)).fetchall():
                    self._delete(old)
            run_id = self.create_run(run.name, source=run.source, format=run.format, config=run.config,
                                     status=run.status, created_at=run.created_at)
            ids = {name: self._metric_id(name) for name in run.names}
            for name in sorted(run.names, key=ids.__getitem__):  # insert in primary-key order
                # run and metric are ints the store made: as literals they are not bound again on
                # every row, which halves the time of this loop (the cost of a bulk save)
                s, head = run.metrics[name], f"INSERT INTO points VALUES ({int(run_id)}, {int(ids[name])}, ?, ?"
                if s.wall_times is None:
                    self._conn.executemany(head + ", NULL)", zip(s.steps.tolist(), s.values.tolist(), strict=True))
                else:
                    self._conn.executemany(head + ", ?)", zip(s.steps.tolist(), s.values.tolist(),
                                                              s.wall_times.tolist(), strict=True))
            self._conn.executemany("INSERT INTO skipped VALUES (?, ?, ?, ?, ?)",
                                   [(run_id, i, k.line, k.count, k.reason) for i, k in enumerate(run.skipped)])
        run.id = run_id
        return run_id

    def load_run(self, name_or_id: str | int | None = None) -> Run:
        """A stored run by id, by name (the most recent of that name) or, with None, the most recent.

        The run keeps the ``source`` and ``format`` it was stored with (the reader that first read
        it); ``run.id`` tells that it came from the store. A string of digits that is no run's
        name is taken as an id.
        """
        with self._snapshot() as conn:
            run_id = self._resolve(name_or_id)
            name, created_at, config, status, source, fmt = conn.execute(
                "SELECT name, created_at, config, status, source, format FROM runs WHERE id = ?",
                (run_id,)).fetchone()
            # one primary-key probe per known name, not a scan of the run's points
            metrics = conn.execute("SELECT id, name FROM metrics m WHERE EXISTS "
                                   "(SELECT 1 FROM points WHERE run = ? AND metric = m.id)", (run_id,)).fetchall()
            series = {name_: self._series(run_id, mid) for mid, name_ in metrics}
            skipped = [Skipped(line, count, reason) for line, count, reason in conn.execute(
                "SELECT line, count, reason FROM skipped WHERE run = ? ORDER BY seq", (run_id,))]
        return Run(name=name, metrics=dict(sorted(series.items())), source=source, format=fmt,
                   config=json.loads(config), status=status, created_at=created_at, skipped=skipped,
                   id=run_id)

    def _series(self, run_id: int, metric_id: int) -> Series:
        key = (run_id, metric_id)
        has_walls = self._conn.execute("SELECT 1 FROM points WHERE run = ? AND metric = ? AND wall_time "
                                       "IS NOT NULL LIMIT 1", key).fetchone() is not None
        columns = "step, value, wall_time" if has_walls else "step, value"  # fetching is the cost here
        rows = self._conn.execute(f"SELECT {columns} FROM points WHERE run = ? AND metric = ? ORDER BY step",
                                  key).fetchall()
        steps = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        # None -> NaN: SQLite stores NaN as NULL (see schema), and a missing wall time is NaN in a Series
        values = np.array([r[1] for r in rows], dtype=np.float64)
        walls = np.array([r[2] for r in rows], dtype=np.float64) if has_walls else None
        return Series(steps=steps, values=values, wall_times=walls)

    def runs(self) -> list[RunInfo]:
        """Every stored run, oldest first, with its number of points, step range and events."""
        with self._snapshot() as conn:
            per_metric: dict[int, list[tuple[str, int, int, int]]] = {}
            for run_id, name, n, lo, hi in conn.execute(
                    "SELECT p.run, m.name, count(*), min(p.step), max(p.step) FROM points p "
                    "JOIN metrics m ON m.id = p.metric GROUP BY p.run, p.metric"):
                per_metric.setdefault(run_id, []).append((name, n, lo, hi))
            events = {r[0]: (r[1], r[2]) for r in conn.execute(
                f"SELECT run, count(*), max({_RANK}) FROM events GROUP BY run")}
            out = []
            for run_id, name, source, fmt, status, created_at, config in conn.execute(
                    "SELECT id, name, source, format, status, created_at, config FROM runs ORDER BY id"):
                ms = per_metric.get(run_id, [])
                n_events, rank = events.get(run_id, (0, None))
                out.append(RunInfo(
                    id=run_id, name=name, source=source, format=fmt, status=status, created_at=created_at,
                    config=json.loads(config), n_points=sum(m[1] for m in ms),
                    first_step=min((m[2] for m in ms), default=None),
                    last_step=max((m[3] for m in ms), default=None),
                    metrics=tuple(sorted(m[0] for m in ms)), n_events=n_events,
                    worst_severity=_SEVERITY.get(rank) if rank is not None else None))
        return out

    def set_status(self, run_id: int, status: Status) -> None:
        _check_status(status)
        with self.atomic():
            self._require(run_id)
            self._conn.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def delete_run(self, run_id: int) -> None:
        """Remove a run and everything attached to it (points, events, forecasts, state)."""
        with self.atomic():
            self._require(run_id)
            self._delete(run_id)

    # -- events, forecasts, monitor state ---------------------------------------------------------
    def add_events(self, run_id: int, events: Iterable[Event]) -> None:
        with self.atomic():
            self._require(run_id)
            self._conn.executemany(
                "INSERT INTO events (run, detector, kind, severity, step, onset_step, message, evidence) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, e.detector, e.kind, e.severity, int(e.step), int(e.onset_step), e.message,
                  _dumps(e.evidence, f"evidence of a {e.detector} event")) for e in events])

    def replace_events(self, run_id: int, events: Iterable[Event]) -> None:
        """Swap a run's events for these, in one transaction (a re-analysis)."""
        with self.atomic():
            self._conn.execute("DELETE FROM events WHERE run = ?", (run_id,))
            self.add_events(run_id, events)

    def events(self, run_id: int) -> list[Event]:
        """A run's events in the order they were added."""
        return [Event(detector=d, kind=k, severity=s, step=st, onset_step=on, message=m, evidence=json.loads(ev))
                for d, k, s, st, on, m, ev in self._conn.execute(
                    "SELECT detector, kind, severity, step, onset_step, message, evidence FROM events "
                    "WHERE run = ? ORDER BY id", (run_id,))]

    def add_forecast(self, run_id: int, *, at_step: int, target_step: int, value: float, lo: float,
                     hi: float, law: str, params: dict[str, Any] | None = None) -> int:
        with self.atomic():
            self._require(run_id)
            cur = self._conn.execute(
                "INSERT INTO forecasts (run, at_step, target_step, value, lo, hi, law, params) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, int(at_step), int(target_step), float(value), float(lo), float(hi), law,
                 _dumps(params or {}, f"params of forecast law {law!r}")))
        return int(cur.lastrowid)

    def forecasts(self, run_id: int) -> list[ForecastRecord]:
        return [ForecastRecord(id=i, run_id=run_id, at_step=a, target_step=t, value=_float(v), lo=_float(lo),
                               hi=_float(hi), law=law, params=json.loads(p))
                for i, a, t, v, lo, hi, law, p in self._conn.execute(
                    "SELECT id, at_step, target_step, value, lo, hi, law, params FROM forecasts "
                    "WHERE run = ? ORDER BY id", (run_id,))]

    def save_state(self, run_id: int, state: dict[str, Any]) -> None:
        """Keep a monitor's ``state_dict()`` for this run, replacing the one saved before."""
        with self.atomic():
            self._require(run_id)
            self._conn.execute("INSERT OR REPLACE INTO monitor_state VALUES (?, ?, ?)",
                               (run_id, _dumps(state, "monitor state"),
                                _dt.datetime.now(_dt.timezone.utc).isoformat()))

    def load_state(self, run_id: int) -> dict[str, Any] | None:
        """The state saved last for this run, or None."""
        row = self._conn.execute("SELECT state FROM monitor_state WHERE run = ?", (run_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    # -- helpers ----------------------------------------------------------------------------------
    def _metric_id(self, name: str) -> int:
        mid = self._metric_ids.get(name)
        if mid is None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a metric name must be a non-empty string, got {name!r}")
            self._conn.execute("INSERT OR IGNORE INTO metrics (name) VALUES (?)", (name,))
            mid = self._conn.execute("SELECT id FROM metrics WHERE name = ?", (name,)).fetchone()[0]
            self._metric_ids[name] = mid
        return mid

    def _delete(self, run_id: int) -> None:
        # points first, by primary-key range: several times faster than the cascade doing it
        self._conn.execute("DELETE FROM points WHERE run = ?", (run_id,))
        self._conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def _require(self, run_id: int) -> None:
        if self._conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise StoreError(f"{self.path}: no run with id {run_id!r}; {self._known()}")

    def _resolve(self, name_or_id: str | int | None) -> int:
        conn = self._conn
        if name_or_id is None:
            row = conn.execute("SELECT max(id) FROM runs").fetchone()
            if row[0] is None:
                raise StoreError(f"{self.path}: expected a stored run, but the store holds none")
            return row[0]
        if isinstance(name_or_id, str):
            row = conn.execute("SELECT max(id) FROM runs WHERE name = ?", (name_or_id,)).fetchone()
            if row[0] is not None:
                return row[0]
            if not name_or_id.isdigit():
                raise StoreError(f"{self.path}: no run named {name_or_id!r}; {self._known()}")
            name_or_id = int(name_or_id)
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (name_or_id,)).fetchone() is None:
            raise StoreError(f"{self.path}: no run named or numbered {name_or_id!r}; {self._known()}")
        return int(name_or_id)

    def _known(self, limit: int = 5) -> str:
        rows = self._conn.execute("SELECT id, name FROM runs ORDER BY id DESC LIMIT ?", (limit + 1,)).fetchall()
        if not rows:
            return "the store holds no runs"
        total = self._conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        shown = ", ".join(f"{n!r} (id {i})" for i, n in rows[:limit])
        more = f" and {total - limit} more" if total > limit else ""
        return f"known runs, most recent first: {shown}{more}"


def _check_file(path: Path) -> None:
    """Refuse, before SQLite sees it, anything that is not a SQLite database or a new file."""
    if path.is_dir():
        raise StoreError(f"{path}: expected a foreshock run store (a SQLite database file), got a directory")
    if not path.exists():
        if not path.parent.is_dir():
            raise StoreError(f"{path}: cannot create a run store: directory {path.parent} does not exist")
        return
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_HEADER))
    if head and head != SQLITE_HEADER:  # an empty file is an empty database
        raise StoreError(f"{path}: expected a foreshock run store (a SQLite database file starting with "
                         f"{SQLITE_HEADER!r}), got a file starting with {head!r}")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")


def _float(x: float | None) -> float:
    return float("nan") if x is None else float(x)  # NULL is how SQLite stores NaN


def _dumps(obj: Any, what: str) -> str:
    """JSON for config, evidence, params and state.

    Python's json writes NaN and +-Infinity as bare literals and reads them back, so non-finite
    values in evidence or detector state survive the round trip exactly.
    """
    try:
        return json.dumps(obj, default=_plain)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{what} is not JSON-serialisable: {e}") from e


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    raise TypeError(f"Object of type {type(x).__name__} is not JSON serializable")
