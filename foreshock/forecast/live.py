"""The live forecast: refitted on a worker thread every few flushes of a monitor, never blocking it.

:class:`LiveForecast` keeps the loss and LR series a forecast needs (appended at each flush), and
every ``every`` flushes hands a copy to one worker thread that fits :func:`foreshock.forecast` on it;
the result is taken at a later flush. :func:`check_live_forecast` validates the arguments before
anything is recorded, and :func:`forecast_event` turns a result into the ``info`` event that stores it.
"""

from __future__ import annotations

import warnings
from array import array
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

import numpy as np
from rich.text import Text

from foreshock.errors import NotEnoughData
from foreshock.events import Event
from foreshock.forecast.forecast import Forecast
from foreshock.forecast.forecast import forecast as fit_forecast
from foreshock.forecast.schedules import Schedule, ScheduleError, parse_schedule
from foreshock.run import Run, Series

__all__ = ["LIVE_MAX_POINTS", "LIVE_N_BOOT", "LIVE_SERIES", "LiveForecast", "check_live_forecast", "forecast_event",
           "forecast_line"]

LIVE_SERIES = ("train/loss", "val/loss", "opt/lr", "opt/lr_mult")  # what a live forecast fits (kept in memory)
# a live refresh's fit: fewer bootstrap refits and points than ``foreshock forecast`` uses, so that
# one refresh stays under about 2 s on one CPU core even late in a long run (see watch())
LIVE_N_BOOT = 30
LIVE_MAX_POINTS = 300


def forecast_event(found: Forecast, latency: int, flush_every: int) -> Event:
    first = found.curve[0][0] if found.curve[0] else found.at_step
    return Event("forecast", "forecast", "info", found.at_step, found.at_step,
                 f"{found.metric} is forecast at {found.value:.4g} at step {found.target_step} "
                 f"({found.level:.0%} interval {found.lo:.4g} to {found.hi:.4g}; {found.law} law fitted on steps "
                 f"{first}-{found.at_step}).",
                 {**found.to_dict(), "fit_from": first, "flush_latency_steps": latency, "flush_every": flush_every})


def forecast_line(found: Forecast) -> Text:
    first = found.curve[0][0] if found.curve[0] else found.at_step
    return Text(f"foreshock FORECAST {found.metric} at step {found.target_step}: {found.value:.4g} "
                f"({found.level:.0%} interval {found.lo:.4g} to {found.hi:.4g}), {found.law} law fitted on steps "
                f"{first}-{found.at_step}", style="bold")


def check_live_forecast(schedule: Schedule | str | None, every: int | None,
                    at: int | None) -> tuple[Schedule | Literal["log"] | None, int]:
    """The schedule to forecast under (or "log") and the flushes between refreshes (0: off)."""
    if every is None:
        every = 0
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ValueError(f"forecast_every must be an int >= 0 (flushes between refreshes; 0 or None: off), "
                         f"got {every!r}")
    if at is not None and (isinstance(at, bool) or not isinstance(at, int) or at < 1):
        raise ValueError(f"forecast_at must be a step >= 1 or None, got {at!r}")
    if schedule is None or isinstance(schedule, Schedule):
        return schedule, every
    if not isinstance(schedule, str):
        raise TypeError(f"schedule must be a Schedule, a spec such as "
                        f"'cosine:peak=6e-4,final=6e-5,warmup=700,total=20000', 'log' or None; got {schedule!r}")
    if schedule.strip().lower() in ("log", "from-log"):
        if at is None:
            raise ValueError("schedule='log' knows the LR only up to the last step seen, so it forecasts the "
                             "loss as if the LR stayed there: give forecast_at= (the step to forecast)")
        return "log", every
    return parse_schedule(schedule), every


class LiveForecast:
    """Refits the forecast on one worker thread, every ``every`` flushes, on the series kept here.

    The loss and LR series (:data:`LIVE_SERIES`) are appended at each flush,
    compactly (16 bytes a point); a refresh copies them into a :class:`~foreshock.run.Run` and hands it
    to the worker. A refresh that comes while a fit runs is skipped, and a fit's result is taken at
    the first flush after it is done: the training loop never waits for a fit.
    """

    def __init__(self, run_name: str, schedule: Schedule | Literal["log"], every: int, at: int | None):
        self.run_name = run_name
        self.schedule = schedule
        self.every = every
        self.at = at
        self.series: dict[str, tuple[array, array]] = {name: (array("q"), array("d")) for name in LIVE_SERIES}
        self.flushes = 0
        self.pending: Future | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.on = True

    def add(self, step: int, values: Mapping[str, float]) -> None:
        for name, (steps, vals) in self.series.items():
            if name in values:
                if steps and steps[-1] == step:  # a repeated step replaces, as in the store
                    vals[-1] = float(values[name])
                else:
                    steps.append(step)
                    vals.append(float(values[name]))

    def flushed(self, *, start: bool = True) -> Forecast | None:
        """One flush done: the forecast of a fit finished since the last flush, if any; start the next
        one when it is due and no fit is running."""
        done = self._collect(wait=False)
        self.flushes += 1
        if start and self.on and self.pending is None and self.flushes % self.every == 0:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foreshock-forecast")
            run = Run(self.run_name, {name: Series(np.array(steps, dtype=np.int64), np.array(vals, dtype=np.float64))
                                      for name, (steps, vals) in self.series.items() if steps})
            self.pending = self._executor.submit(self._fit, run)
        return done

    def finish(self) -> Forecast | None:
        """Wait for the fit still running, if any; its forecast."""
        return self._collect(wait=True)

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _fit(self, run: Run) -> Forecast | None:
        try:
            return fit_forecast(run, schedule=self.schedule, at=self.at, n_boot=LIVE_N_BOOT,
                                max_points=LIVE_MAX_POINTS)
        except ScheduleError:
            raise  # e.g. "log" without a logged LR: it will not get better
        except (NotEnoughData, ValueError, FloatingPointError, np.linalg.LinAlgError):
            return None  # too few points yet, or a fit that did not converge: the next refresh tries again

    def _collect(self, *, wait: bool) -> Forecast | None:
        pending = self.pending
        if pending is None or (not wait and not pending.done()):
            return None
        self.pending = None
        try:
            return pending.result()
        except Exception as e:  # training goes on without forecasts
            self.on = False
            warnings.warn(f"foreshock: the live forecast of run {self.run_name!r} failed and is turned off: "
                          f"{type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)
            return None
