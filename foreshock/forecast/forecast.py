"""``forecast(run, ...)``: fit a law on the observed prefix of a run, predict the loss at a later step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from foreshock.errors import NotEnoughData
from foreshock.forecast.backtest import extrapolation_error
from foreshock.forecast.fit import Fit, fit_law, prediction_interval
from foreshock.forecast.laws import LAWS, Law, design
from foreshock.forecast.schedules import Schedule, ScheduleError, parse_schedule, schedule_from_run
from foreshock.run import Run

__all__ = ["Forecast", "forecast", "default_metric"]

MIN_POINTS = 8  # fewer points than this cannot pin down even the 3-parameter power law
LEVEL_PARAMS = ("L0", "A")  # fitted on the run's own prefix when the others come from reference runs


@dataclass(frozen=True)
class Forecast:
    """A forecast of one metric: value and interval at ``target_step`` from data up to ``at_step``."""

    run: str
    metric: str
    law: str
    at_step: int  # the last step whose data the fit used
    target_step: int
    value: float
    lo: float
    hi: float
    level: float  # nominal coverage of [lo, hi]
    params: dict[str, float]
    sources: dict[str, str] = field(default_factory=dict)  # parameter -> where its value came from
    schedule: str | None = None

    @property
    def interval(self) -> tuple[float, float]:
        return self.lo, self.hi

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``foreshock forecast --json`` prints."""
        return {"law": self.law, "metric": self.metric, "fit_until": self.at_step, "at": self.target_step,
                "value": self.value, "lo": self.lo, "hi": self.hi, "params": dict(self.params),
                "level": self.level, "run": self.run, "schedule": self.schedule, "sources": dict(self.sources)}


def default_metric(run: Run) -> str:
    """``val/loss`` when the run logged it, else ``train/loss``."""
    for name in ("val/loss", "train/loss"):
        if name in run and np.isfinite(run[name].values).sum() >= MIN_POINTS:
            return name
    raise NotEnoughData(f"run {run.name!r} ({run.source}) has no 'val/loss' or 'train/loss' with "
                        f"{MIN_POINTS}+ finite points; give metric= one of {run.names}")


def forecast(run: Run, *, schedule: Schedule | str | None = None, metric: str | None = None,
             fit_until: int | None = None, at: int | None = None, law: str = "auto", level: float = 0.9,
             reference: Sequence[Run | tuple[Run, Schedule]] = (), n_boot: int = 100, seed: int = 0,
             max_points: int = 400, widen: bool = True) -> Forecast:
    """Fit ``law`` to ``metric`` up to ``fit_until`` and predict it at ``at`` with an interval.

    Parameters
    ----------
    schedule : Schedule, str or None
        The run's LR schedule: a :class:`Schedule`, a spec (``"cosine:peak=...,total=..."``), or
        ``"log"`` for the LR the run logged. None: no schedule (only the power law applies).
    law : str
        ``"power"``, ``"annealing"``, ``"multi-power"``, or ``"auto"`` (multi-power with a
        schedule, power without).
    reference : runs
        Complete runs of the same model family under other schedules (a Run with its LR logged, or
        ``(run, schedule)``). The law is fitted on them; only the level ``L0`` and scale ``A`` are
        then fitted on this run's prefix (a prefix at constant LR shows nothing of how the loss
        answers a decay). With several, each shared parameter is their median.
    widen : bool
        Widen the bootstrap interval by the law's extrapolation error measured on the prefix
        (:mod:`foreshock.forecast.backtest`); without it the interval holds only the noise.
    """
    metric = metric or default_metric(run)
    sched = _schedule(run, schedule)
    if law == "auto":
        law = "multi-power" if sched is not None else "power"
    if law not in LAWS:
        raise ValueError(f"unknown law {law!r}; expected one of {', '.join(LAWS)} or 'auto'")
    the_law = LAWS[law]
    if the_law.needs_schedule and sched is None:
        raise ScheduleError(f"law {law!r} needs the LR schedule: give a schedule spec, or 'log' for the LR "
                            f"the run logged (or use law='power')")
    steps, y = _prefix(run, metric, fit_until, max_points)
    last = int(steps[-1])
    target = int(at) if at is not None else (sched.total if sched is not None else None)  # type: ignore[assignment]
    if target is None:
        raise ValueError("give at= (the step to forecast): without a schedule there is no last step to default to")
    if target < 1:
        raise ValueError(f"at={target}: expected a step >= 1")
    lr_all = sched.table(max(target, last)) if sched is not None else None
    lr_fit = lr_all[: last + 1] if lr_all is not None else None

    fixed: dict[str, float] = {}
    sources = {p: f"fit on steps {int(steps[0])}-{last}" for p in the_law.params}
    if reference and the_law.response:
        fixed, names = _reference_params(the_law, reference, metric, max_points)
        for p in fixed:
            sources[p] = f"reference: {names}"
    d_fit, d_target = design(steps, lr_fit), design(np.array([target]), lr_all)
    if the_law.response and not fixed and (d_fit.dk is None or not np.any(d_fit.dk > 0)):
        # the data cannot say how the loss answers a decay it has not seen: the fit keeps its start
        for p in the_law.response:
            sources[p] = "not identified (no LR decay up to the fitted step; its starting value; give reference runs)"
    fit = fit_law(the_law, d_fit, y, fixed=fixed)
    value, lo, hi = prediction_interval(fit, d_fit, d_target, level=level, n_boot=n_boot, seed=seed)
    if widen:  # the law's own misfit, carried to the target: see foreshock.forecast.backtest
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        extra = z * extrapolation_error(fit, steps, y, lr_fit, target)
        lo = value - float(np.hypot(value - lo, extra))
        hi = value + float(np.hypot(hi - value, extra))
    return Forecast(run=run.name, metric=metric, law=law, at_step=last, target_step=target, value=value, lo=lo,
                    hi=hi, level=level, params=fit.params, sources=sources,
                    schedule=sched.spec if sched is not None else None)


def _schedule(run: Run, schedule: Schedule | str | None) -> Schedule | None:
    if schedule is None or isinstance(schedule, Schedule):
        return schedule
    if schedule.strip().lower() in ("log", "from-log"):
        return schedule_from_run(run)
    return parse_schedule(schedule)


def _prefix(run: Run, metric: str, fit_until: int | None, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The finite points of ``metric`` at steps 1..fit_until, thinned evenly to ``max_points``."""
    steps, values = run.series(metric)
    keep = np.isfinite(values) & (steps >= 1)
    if fit_until is not None:
        keep &= steps <= fit_until
    steps, values = steps[keep], values[keep]
    if len(steps) < MIN_POINTS:
        upto = "" if fit_until is None else f" up to step {fit_until}"
        raise NotEnoughData(f"run {run.name!r}: '{metric}' has {len(steps)} finite point(s){upto}; a forecast "
                            f"needs {MIN_POINTS} or more")
    if len(steps) > max_points:  # evenly spaced in index, always keeping the last point seen
        idx = np.unique(np.linspace(0, len(steps) - 1, max_points).round().astype(np.int64))
        steps, values = steps[idx], values[idx]
    return steps, values


def _reference_params(law: Law, reference: Sequence[Run | tuple[Run, Schedule]], metric: str,
                      max_points: int) -> tuple[dict[str, float], str]:
    """Fit ``law`` on each complete reference run; the shared parameters are their medians."""
    fits: list[Fit] = []
    names = []
    for item in reference:
        ref, sched = item if isinstance(item, tuple) else (item, schedule_from_run(item))
        ref_metric = metric if metric in ref else default_metric(ref)
        steps, y = _prefix(ref, ref_metric, None, max_points)
        fits.append(fit_law(law, design(steps, sched.table(int(steps[-1]))), y))
        names.append(ref.name)
    shared = [p for p in law.params if p not in LEVEL_PARAMS]
    return {p: float(np.median([f.params[p] for f in fits])) for p in shared}, ", ".join(names)
