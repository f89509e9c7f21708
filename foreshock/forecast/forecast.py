"""``forecast(run, ...)``: fit a law on the observed prefix of a run, predict the loss at a later step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from foreshock.errors import NotEnoughData
from foreshock.forecast.backtest import extrapolation_error
from foreshock.forecast.fit import fit_law, prediction_interval
from foreshock.forecast.laws import LAWS, Law, design
from foreshock.forecast.prior import FULL_ANNEAL, Prior, anneal_time, default_prior, denormalise, normalise
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
    curve: tuple[tuple[int, ...], tuple[float, ...]] = ((), ())  # the fitted law from the first fitted step to the target

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
             reference: Sequence[Run | tuple[Run, Schedule]] = (), prior: Prior | str | None = "default",
             fit_from: int | None = None, n_boot: int = 100, seed: int = 0, max_points: int = 400, widen: bool = True) -> Forecast:
    """Fit ``law`` to ``metric`` up to ``fit_until`` and predict it at ``at`` with an interval.

    Parameters
    ----------
    schedule : Schedule, str or None
        The run's LR schedule: a :class:`Schedule`, a spec (``"cosine:peak=...,total=..."``), or
        ``"log"`` for the LR the run logged. None: no schedule (only the power law applies).
    law : str
        ``"power"``, ``"annealing"``, ``"multi-power"``, or ``"auto"`` (the annealing law with a
        schedule, the power law without: on the public curves of ``bench/forecast.py`` the
        annealing law is the more accurate of the two schedule-aware laws, and 10x faster).
    reference : runs
        Complete runs of the same model family under other schedules (a Run with its LR logged, or
        ``(run, schedule)``). The law is fitted on them; their schedule-response parameters and
        exponent become this run's prior (centre: their median; spread: how much these parameters
        differ between schedules of one model on public curves), and the level ``L0`` and scale
        ``A`` are fitted on this run's prefix (a prefix at constant LR shows nothing of how the
        loss answers a decay).
    prior : Prior, "default" or None
        Without reference runs: the prior on the law's schedule-response parameters and exponent
        (:mod:`foreshock.forecast.prior`). ``"default"`` is the one shipped, fitted on public curves
        of several model sizes, its ``C`` held as the loss an anneal from the peak to zero takes off
        by the target (:mod:`foreshock.forecast.prior`), so that it carries over between LR scales and
        decay lengths; None fits the prefix alone (a response it has not seen then keeps the fit's
        starting value, and ``sources`` says so).
    fit_from : int or None
        The first step fitted. The laws describe the loss after its initial transient (the first
        few hundred steps of a language model fall from ln(vocab) faster than any of them), so by
        default the first tenth of the observed steps is left out (steps below ``fit_until / 10``).
    widen : bool
        Widen the bootstrap interval by the law's extrapolation error measured on the prefix
        (:mod:`foreshock.forecast.backtest`); without it the interval holds only the noise.
    """
    metric = metric or default_metric(run)
    sched = _schedule(run, schedule)
    if law == "auto":
        law = "annealing" if sched is not None else "power"
    if law not in LAWS:
        raise ValueError(f"unknown law {law!r}; expected one of {', '.join(LAWS)} or 'auto'")
    the_law = LAWS[law]
    if the_law.needs_schedule and sched is None:
        raise ScheduleError(f"law {law!r} needs the LR schedule: give a schedule spec, or 'log' for the LR "
                            f"the run logged (or use law='power')")
    steps, y = _prefix(run, metric, fit_until, max_points, fit_from)
    last = int(steps[-1])
    target = int(at) if at is not None else (sched.total if sched is not None else None)  # type: ignore[assignment]
    if target is None:
        raise ValueError("give at= (the step to forecast): without a schedule there is no last step to default to")
    if target < 1:
        raise ValueError(f"at={target}: expected a step >= 1")
    lr_all = sched.table(max(target, last)) if sched is not None else None
    lr_fit = lr_all[: last + 1] if lr_all is not None else None

    sources = {p: f"fit on steps {int(steps[0])}-{last}" for p in the_law.params}
    peak = float(np.max(lr_all)) if lr_all is not None else 1.0
    anneal = anneal_time(lr_all, target) if lr_all is not None else FULL_ANNEAL  # the prior's units at the target
    d_fit, d_target = design(steps, lr_fit), design(np.array([target]), lr_all)
    sees_decay = d_fit.dk is not None and bool(np.any(d_fit.dk > 0))
    the_prior: dict[str, tuple[float, float]] = {}
    if reference and the_law.response:
        the_prior, names = _reference_prior(the_law, reference, metric, max_points, peak)
        for p, (mu, sd) in the_prior.items():
            sources[p] = f"reference: {names} (prior median {np.exp(mu):.4g}, log-sd {sd:.2f})"
    elif the_law.response and prior is not None:
        if isinstance(prior, str) and prior != "default":
            raise ValueError(f"prior={prior!r}: expected a Prior, 'default' or None")
        chosen = default_prior(law) if isinstance(prior, str) else prior
        if chosen is not None:
            # only the schedule response: the prefix itself shows the exponent well enough (bench/forecast.py)
            the_prior = {p: v for p, v in chosen.in_units_of(peak, anneal).items() if p in the_law.response}
            for p, (mu, sd) in the_prior.items():
                how = f"fit on steps {int(steps[0])}-{last} with the" if sees_decay else "the"
                sources[p] = f"{how} default prior (median {np.exp(mu):.4g}, log-sd {sd:.2f}; {chosen.source})"
    if the_law.response and not the_prior and not sees_decay:
        # the data cannot say how the loss answers a decay it has not seen: the fit keeps its start
        for p in the_law.response:
            sources[p] = "not identified (no LR decay up to the fitted step; its starting value; give reference runs)"
    fit = fit_law(the_law, d_fit, y, prior=the_prior)
    value, lo, hi = prediction_interval(fit, d_fit, d_target, level=level, n_boot=n_boot, seed=seed)
    if widen:  # the law's own misfit, carried to the target: see foreshock.forecast.backtest
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        extra = z * extrapolation_error(fit, steps, y, lr_fit, target)
        lo = value - float(np.hypot(value - lo, extra))
        hi = value + float(np.hypot(hi - value, extra))
    grid = np.unique(np.linspace(int(steps[0]), max(target, last), 80).round().astype(np.int64))
    curve_values = fit.predict(design(grid, lr_all))
    return Forecast(run=run.name, metric=metric, law=law, at_step=last, target_step=target, value=value, lo=lo,
                    hi=hi, level=level, params=fit.params, sources=sources,
                    schedule=sched.spec if sched is not None else None,
                    curve=(tuple(int(x) for x in grid), tuple(float(v) for v in curve_values)))


def _schedule(run: Run, schedule: Schedule | str | None) -> Schedule | None:
    if schedule is None or isinstance(schedule, Schedule):
        return schedule
    if schedule.strip().lower() in ("log", "from-log"):
        return schedule_from_run(run)
    return parse_schedule(schedule)


def _prefix(run: Run, metric: str, fit_until: int | None, max_points: int,
            fit_from: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """The finite points of ``metric`` at steps 1..fit_until, thinned evenly to ``max_points``."""
    steps, values = run.series(metric)
    keep = np.isfinite(values) & (steps >= 1)
    if fit_from is None:  # the transient: the first tenth of the observed steps
        seen = steps[keep & (steps <= fit_until)] if fit_until is not None else steps[keep]
        fit_from = int(seen[-1]) // 10 if len(seen) else 1
    keep &= steps >= fit_from
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


def _reference_prior(law: Law, reference: Sequence[Run | tuple[Run, Schedule]], metric: str,
                     max_points: int, peak: float) -> tuple[dict[str, tuple[float, float]], str]:
    """Fit ``law`` on each complete reference run; the prior is centred on their median (in LR-scale-free
    units, so a reference that logged an LR multiplier serves a run that logged the LR) with the
    between-schedule spread of the shipped prior. A reference is a run of the same model, so its ``C``
    carries over as ``C * peak``, without the default prior's anneal time (see
    :mod:`foreshock.forecast.prior`)."""
    shipped = default_prior(law.name)
    transfer = dict(shipped.transfer_sd) if shipped is not None else {}
    normalised: list[dict[str, float]] = []
    names = []
    for item in reference:
        ref, sched = item if isinstance(item, tuple) else (item, schedule_from_run(item))
        ref_metric = metric if metric in ref else default_metric(ref)
        steps, y = _prefix(ref, ref_metric, None, max_points)
        lr = sched.table(int(steps[-1]))
        fit = fit_law(law, design(steps, lr), y)
        normalised.append(normalise(law.name, fit.params, float(np.max(lr))))
        names.append(ref.name)
    shared = [p for p in law.params if p not in LEVEL_PARAMS]
    centre = denormalise(law.name, {p: float(np.median([n[p] for n in normalised])) for p in shared}, peak)
    return ({p: (float(np.log(max(v, 1e-300))), transfer.get(p, 0.1)) for p, v in centre.items()},
            ", ".join(names))
