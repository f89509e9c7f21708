"""Gradient-norm spikes against their moving second moment (SPAM), and update-ratio excursions.

Both watch many series at once, chosen by name patterns (``fnmatch`` style, ``*`` matches a layer
name), so ``metrics`` is None and each detector picks its series from whatever a step logs:

- :class:`GradSpikeDetector`: ``opt/grad_norm`` and ``layer/*/grad_norm``. A point ``g`` is a spike
  when ``g**2 > theta * v``, ``v`` the exponential moving average of ``g**2`` over the points before
  it, with spikes clipped to ``theta * v`` before they enter it (SPAM, Huang et al. 2025; see
  :mod:`foreshock.series.moment`). The default ``theta = 25`` is a norm five times its running RMS.
- :class:`UpdateRatioDetector`: ``opt/update_ratio`` and ``layer/*/update_ratio``
  (``||dW|| / ||W||``). A point is an excursion when it is more than ``factor`` times the lower median
  of the ``window`` points before it: the run's own typical ratio.

Both tests are ratios of a series to its own past, so they are scale-free: the same settings serve
a gradient norm of 1e-3 and of 1e3. Each excursion gives one event at its first point and an info
``recovery`` event at the first point back under the threshold; the points in between extend it.
Non-finite values are skipped (the nonfinite detector reports them). Windows and averages count
points, not steps.

Both emit ``info`` by default: they are early warnings to be combined (see
:mod:`foreshock.detect.health`), not alarms on their own; ``severity`` raises them where a user
has calibrated the thresholds on runs of their own.

Calibration (``bench/results/precursor_calibration.md``, ``OMP_NUM_THREADS=1 .venv/bin/python
bench/truth.py --skip-peers --min-severity info``; lab runs ``bench/lab_runs``, shared real logs):
alone, the default gradient-spike test fires before 15/16 lab divergences and on 13/27 healthy lab
runs (shared: 3/75 runs labelled none); no setting earns ``warning``. Raising ``theta`` trades one for
the other (36: 13/16 and 12/27; 49: 9/16 and 10/27; 100: 5/16 and 9/27), and so does judging only
after the initial transient (``min_periods`` 50: 13/16 and 11/27; only after the learning-rate
warm-up: 4/16 and 11/27, since these runs diverge during their warm-up). A median/MAD threshold on
``log g`` over a trailing window, the usual robust alternative, fires more on heavy tails, not less:
on the healthy synthetic log of ``bench/make_log.py`` (Student-t noise on the log gradient norm)
1.3 events per 1000 steps at 8 MADs over a 100-point window, where the second moment, inflated by
the tails it has seen, gives 0.44 (438 on 1,000,000 steps; ``theta`` 49: 0.29, 100: 0.16; the 5
planted spikes caught at each); on the lab runs it is no better (8 MADs: 4/16 and 7/27). The
update-ratio test fires before 2/16 lab divergences and on no healthy run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from foreshock.detect._pattern import PatternDetector
from foreshock.events import Event, Severity
from foreshock.series import lower_median, push, trailing_median, true_runs
from foreshock.series.moment import moment_step, new_moment_state, second_moment_ratios

__all__ = ["GradSpikeDetector", "UpdateRatioDetector"]


class _EpisodeDetector(PatternDetector):
    """One excursion episode per metric: the episode walk here is shared by the step-by-step and the
    vectorised path, so both emit the same events.

    Subclasses give ``_judge(track, x) -> (mask, context)`` over a finite array (advancing the
    track's statistics), ``_judge_one`` for one point, and the two event builders.
    """

    def _new_track(self) -> dict[str, Any]:
        raise NotImplementedError

    def _judge(self, track: dict[str, Any], x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError

    def _judge_one(self, track: dict[str, Any], x: float) -> tuple[bool, dict[str, float]]:
        raise NotImplementedError

    def _onset(self, metric: str, step: int, x: float, ctx: dict[str, float]) -> Event:
        raise NotImplementedError

    def _recovery(self, metric: str, step: int, x: float, ep: dict[str, Any]) -> Event:
        raise NotImplementedError

    # -- both paths ----------------------------------------------------------------------------
    def _point(self, metric: str, step: int, x: float) -> list[Event]:
        """One point: the episode walk of :meth:`_walk` on scalars (the same decisions, less overhead)."""
        track = self._track(metric)
        hit, ctx = self._judge_one(track, x)
        ep = track["episode"]
        if ep is not None:
            if hit:
                ep["high"] = max(ep["high"], x)
                ep["points"] += 1
                return []
            track["episode"] = None
            return [self._recovery(metric, step, x, ep)]
        if hit:
            track["episode"] = {"onset": step, "high": x, "points": 1, **ctx}
            return [self._onset(metric, step, x, ctx)]
        return []

    def _walk(self, metric: str, steps: np.ndarray, x: np.ndarray) -> list[Event]:
        if not len(x):
            return []
        track = self._track(metric)
        mask, ctx = self._judge(track, x)
        starts, lengths = true_runs(mask)
        events: list[Event] = []
        ep = track["episode"]
        runs = list(zip(starts.tolist(), lengths.tolist(), strict=True))
        if ep is not None:
            if runs and runs[0][0] == 0:  # the episode goes on
                _, length = runs.pop(0)
                ep["high"] = max(ep["high"], float(np.max(x[:length])))
                ep["points"] += length
                end = length
            else:
                end = 0
            if end < len(x):
                events.append(self._recovery(metric, int(steps[end]), float(x[end]), ep))
                ep = None
        for start, length in runs:
            at = {k: float(v[start]) for k, v in ctx.items()}
            events.append(self._onset(metric, int(steps[start]), float(x[start]), at))
            ep = {"onset": int(steps[start]), "high": float(np.max(x[start:start + length])),
                  "points": length, **at}
            end = start + length
            if end < len(x):
                events.append(self._recovery(metric, int(steps[end]), float(x[end]), ep))
                ep = None
        track["episode"] = ep
        return events

    def _recovered(self, metric: str, step: int, x: float, ep: dict[str, Any], what: str) -> Event:
        return self._event(
            "recovery", "info", step, ep["onset"],
            f"{metric} is back under its {what} at step {step}, {step - ep['onset']} steps after the "
            f"excursion that began at step {ep['onset']} (peak {ep['high']:.4g}).",
            metric=metric, value=x, peak=ep["high"], excursion_step=ep["onset"],
            points_outside=ep["points"], steps=step - ep["onset"])


class GradSpikeDetector(_EpisodeDetector):
    """Gradient-norm spikes: ``g**2 > theta * EMA(g**2)``, the average clipped at spikes (SPAM).

    Parameters
    ----------
    patterns : tuple of str
        ``fnmatch`` patterns of the series to watch, each on its own.
    beta : float
        Weight of the old average per point: ``1 / (1 - beta)`` points of memory (100 by default).
    theta : float
        A spike is ``g**2`` above ``theta`` times the average (a norm ``sqrt(theta)`` times its RMS).
    min_periods : int
        Points taken into the average before a point is judged.
    severity : {"info", "warning", "critical"}
        Severity of a spike event.

    Examples
    --------
    >>> det = GradSpikeDetector()
    >>> norms = [1.0 + 0.1 * ((i * 7) % 5) for i in range(40)] + [9.0, 1.1]
    >>> [(e.kind, e.step) for i, g in enumerate(norms) for e in det.update(i, {"opt/grad_norm": g})]
    [('grad_spike', 40), ('recovery', 41)]
    """

    name = "grad_spike"
    metrics = None

    def __init__(self, patterns: tuple[str, ...] = ("opt/grad_norm", "layer/*/grad_norm"), beta: float = 0.99,
                 theta: float = 25.0, min_periods: int = 20, severity: Severity = "info"):
        super().__init__()
        if not 0 < beta < 1 or theta <= 1 or min_periods < 1:
            raise ValueError(f"need 0 < beta < 1, theta > 1 and min_periods >= 1, got {beta=}, {theta=}, "
                             f"{min_periods=}")
        self.beta = beta
        self.theta = theta
        self.min_periods = min_periods
        self._setup(patterns, severity)

    def _new_track(self) -> dict[str, Any]:
        return {"moment": new_moment_state(), "episode": None}

    def _judge(self, track: dict[str, Any], x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        ratios, ema = second_moment_ratios(x, track["moment"], self.beta, self.theta, self.min_periods)
        with np.errstate(invalid="ignore"):
            mask = ratios > self.theta
        return mask, {"ratio_sq": ratios, "ema_sq": ema}

    def _judge_one(self, track: dict[str, Any], x: float) -> tuple[bool, dict[str, float]]:
        ratio, ema = moment_step(track["moment"], x, self.beta, self.theta, self.min_periods)
        if ratio is None or not ratio > self.theta:
            return False, {}
        return True, {"ratio_sq": ratio, "ema_sq": ema}

    def _onset(self, metric: str, step: int, x: float, ctx: dict[str, float]) -> Event:
        rms = math.sqrt(ctx["ema_sq"])
        ratio = x / rms if rms > 0 else math.inf
        return self._event(
            "grad_spike", self.severity, step, step,
            f"{metric} jumped to {x:.4g} at step {step}: {ratio:.3g}x its running RMS {rms:.4g}, its square "
            f"{ctx['ratio_sq']:.3g}x the moving average (threshold {self.theta:.3g}x).",
            metric=metric, value=x, rms=rms, ratio=ratio, ratio_sq=ctx["ratio_sq"], theta=self.theta,
            beta=self.beta, min_periods=self.min_periods)

    def _recovery(self, metric: str, step: int, x: float, ep: dict[str, Any]) -> Event:
        return self._recovered(metric, step, x, ep, "spike threshold")


class UpdateRatioDetector(_EpisodeDetector):
    """Update/weight-ratio excursions: a ratio above ``factor`` times its trailing lower median.

    Parameters
    ----------
    patterns : tuple of str
        ``fnmatch`` patterns of the series to watch, each on its own.
    window : int
        Points in the trailing median (the run's own typical ratio), the current one excluded.
    min_periods : int
        Points needed before the median exists.
    factor : float
        An excursion is a ratio above ``factor`` times that median.
    severity : {"info", "warning", "critical"}
        Severity of an excursion event.

    Examples
    --------
    >>> det = UpdateRatioDetector()
    >>> ratios = [1e-3 * (1.0 + 0.1 * ((i * 7) % 5)) for i in range(30)] + [1e-2, 1.1e-3]
    >>> [(e.kind, e.step) for i, r in enumerate(ratios) for e in det.update(i, {"opt/update_ratio": r})]
    [('update_excursion', 30), ('recovery', 31)]
    """

    name = "update_ratio"
    metrics = None

    def __init__(self, patterns: tuple[str, ...] = ("opt/update_ratio", "layer/*/update_ratio"), window: int = 51,
                 min_periods: int = 20, factor: float = 5.0, severity: Severity = "info"):
        super().__init__()
        if not 1 <= min_periods <= window or factor <= 1:
            raise ValueError(f"need 1 <= min_periods <= window and factor > 1, got {min_periods=}, {window=}, "
                             f"{factor=}")
        self.window = window
        self.min_periods = min_periods
        self.factor = factor
        self._setup(patterns, severity)

    def _new_track(self) -> dict[str, Any]:
        return {"values": [], "episode": None}

    def _judge(self, track: dict[str, Any], x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        past = track["values"]
        both = np.concatenate([np.asarray(past, dtype=np.float64), x])
        med = trailing_median(both, self.window, self.min_periods, include_current=False)[len(past):]
        track["values"] = both[-self.window:].tolist()
        with np.errstate(invalid="ignore"):
            mask = (med > 0) & (x > self.factor * med)
        return mask, {"median": med}

    def _judge_one(self, track: dict[str, Any], x: float) -> tuple[bool, dict[str, float]]:
        past = track["values"]
        med = lower_median(past) if len(past) >= self.min_periods else None
        push(past, x, self.window)
        if med is None or not (med > 0 and x > self.factor * med):
            return False, {}
        return True, {"median": med}

    def _onset(self, metric: str, step: int, x: float, ctx: dict[str, float]) -> Event:
        med = ctx["median"]
        ratio = x / med
        return self._event(
            "update_excursion", self.severity, step, step,
            f"{metric} jumped to {x:.4g} at step {step}: {ratio:.3g}x its trailing median {med:.4g} "
            f"(threshold {self.factor:.3g}x).",
            metric=metric, value=x, median=med, ratio=ratio, factor=self.factor, window=self.window)

    def _recovery(self, metric: str, step: int, x: float, ep: dict[str, Any]) -> Event:
        return self._recovered(metric, step, x, ep, "excursion threshold")
