"""Attention-logit growth and output-logit drift: logits far above the run's own early level, still rising.

Wortsman et al. 2023 ("Small-scale proxies for large-scale Transformer training instabilities")
show that without qk-layernorm the attention logits of an unstable run grow by orders of magnitude
before the loss diverges (attention entropy collapses); the output logits drift the same way, which
is what z-loss (keeping ``logsumexp`` of the output logits near 0) controls. Both are measured by
``foreshock.watch``: ``attn/<layer>/logit_max`` per attention layer, ``out/logit_max`` and
``out/lse_mean``.

Each series is judged on its own magnitude ``m = |x|`` against its own past:

- **baseline**: the lower median of ``m`` over ``baseline_points`` points after the first ``skip``
  points (the early, post-initialisation level), floored at ``min_baseline`` so that logits near 0
  at initialisation do not make any later value look huge;
- **level**: the lower median of the last ``window`` points, so that one noisy sample (the
  attention maximum is taken on a sample of positions) neither fires nor hides a trend;
- **ratio** ``level / baseline`` and **growth** ``level / (the level window points earlier)``, that
  earlier level floored at ``min_baseline`` too.

A point qualifies when ``ratio >= min_ratio`` and ``growth >= min_growth``: the logits are several
times their early level *and* still rising. Growth that has happened and stopped is not a warning.
``patience`` qualifying points in a row fire one event (``onset_step``: the first of them), with the
layer, value, level, baseline, ratio, growth and slope (log growth per 1000 steps), each beside its
threshold. A **burst**, ``growth >= burst`` (tenfold over the window by default), fires at once,
with or without a baseline (``onset_step``: the start of the window): a run whose logits explode in
its first steps would otherwise take the explosion as its early level. The evidence's ``rule``
says which test fired (``"sustained"`` or ``"burst"``). The event is re-armed by an info ``recovery``
event at the first point that is neither rising (``growth < min_growth``) nor high (``ratio <
min_ratio``, or no baseline yet). Non-finite values are skipped (the nonfinite detector reports them).

The series are chosen by name patterns (``fnmatch``: ``attn/*/logit_max`` matches every layer), so
``metrics`` is None. Both emit ``info`` by default: they are early warnings that
:mod:`foreshock.detect.health` combines.

Calibration (``bench/results/precursor_calibration.md``, ``OMP_NUM_THREADS=1 .venv/bin/python
bench/truth.py --skip-peers --min-severity info``): the shared real logs carry no logit series; on
the lab runs (``bench/lab_runs``, a small GPT with and without qk-layernorm) attention-logit growth
fires before 11/16 divergences and on 14/27 healthy runs. Without qk-layernorm the attention
logits of runs that stay healthy for their 300-900 steps grow 10- to over 100,000-fold over their
early level too (to 1e3-5e7), as those of diverging runs do, so growth alone does not tell them
apart: no setting earns ``warning``. A higher ``min_ratio`` (6: 10/16 and 13/27; 8: 8/16 and
13/27), no burst rule (10/16 and 14/27) or judging only after the loss's initial fast descent
(10/16 and 13/27) cut about as many divergences as healthy runs; judging only after the
learning-rate warm-up misses the runs that diverge during it (3/16 and 9/27). The output-drift test
fires on no lab or shared run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from foreshock.detect._pattern import PatternDetector
from foreshock.events import Event, Severity
from foreshock.series import lower_median, push, trailing_median

__all__ = ["LogitGrowthDetector", "OutputDriftDetector"]


def _layer(metric: str) -> str:
    parts = metric.split("/")
    return "/".join(parts[1:-1]) if parts[0] == "attn" and len(parts) > 2 else parts[0]


class _GrowthDetector(PatternDetector):
    """The growth test of the module docstring over every series whose name matches ``patterns``."""

    kind = "logit_growth"

    def __init__(self, patterns: tuple[str, ...], skip: int, baseline_points: int, window: int,
                 min_ratio: float, min_growth: float, patience: int, min_baseline: float, burst: float,
                 severity: Severity):
        super().__init__()
        if skip < 0 or baseline_points < 1 or window < 1 or patience < 1:
            raise ValueError(f"need skip >= 0 and baseline_points, window, patience >= 1, got {skip=}, "
                             f"{baseline_points=}, {window=}, {patience=}")
        if min_ratio <= 1 or min_growth < 1 or min_baseline <= 0 or burst <= 1:
            raise ValueError(f"need min_ratio > 1, min_growth >= 1, min_baseline > 0 and burst > 1, got "
                             f"{min_ratio=}, {min_growth=}, {min_baseline=}, {burst=}")
        self._setup(patterns, severity)
        self.skip = skip
        self.baseline_points = baseline_points
        self.window = window
        self.min_ratio = min_ratio
        self.min_growth = min_growth
        self.patience = patience
        self.min_baseline = min_baseline
        self.burst = burst

    @property
    def ratios(self) -> dict[str, float]:
        """Each series' last level over its baseline (series without a baseline yet are left out)."""
        return {m: t["ratio"] for m, t in self._tracks.items() if t["ratio"] is not None}

    # -- both paths ----------------------------------------------------------------------------
    def _new_track(self) -> dict[str, Any]:
        return {"n": 0, "base": [], "baseline": None, "values": [], "levels": [], "level_steps": [],
                "streak": 0, "streak_onset": None, "episode": None, "ratio": None}

    def _point(self, metric: str, step: int, x: float) -> list[Event]:
        """One point: :meth:`_walk` on scalars (the same float operations, less overhead)."""
        t = self._track(metric)
        w, m, index = self.window, abs(x), t["n"]
        t["n"] += 1
        last = self.skip + self.baseline_points
        if self.skip <= index < last:
            t["base"].append(m)
        if t["baseline"] is None and len(t["base"]) == self.baseline_points:
            t["baseline"] = lower_median(t["base"])
        push(t["values"], m, w)
        level = lower_median(t["values"])
        growth = span = None
        if len(t["levels"]) >= w:
            past = t["levels"][-w]
            growth = level / max(past, self.min_baseline)
            span = step - t["level_steps"][-w]
        push(t["levels"], level, w)
        push(t["level_steps"], step, w)
        ratio = level / max(t["baseline"], self.min_baseline) if t["baseline"] is not None and index >= last else None
        if ratio is not None:
            t["ratio"] = ratio
        qualifies = ratio is not None and growth is not None and ratio >= self.min_ratio and growth >= self.min_growth
        if qualifies:
            t["streak"] += 1
            if t["streak"] == 1:
                t["streak_onset"] = step
        else:
            t["streak"], t["streak_onset"] = 0, None
        ep = t["episode"]
        if ep is not None:
            if growth is not None and growth < self.min_growth and not (ratio is not None and ratio >= self.min_ratio):
                t["episode"] = None
                return [self._recovery(metric, step, x, level, ratio, growth, ep)]
            ep["peak"] = max(ep["peak"], m)
            return []
        sustained = t["streak"] >= self.patience
        if sustained or (growth is not None and growth >= self.burst):
            onset = t["streak_onset"] if sustained else step - span
            t["episode"] = {"onset": onset, "fired": step, "peak": m}
            return [self._fire(metric, step, onset, x, level, t["baseline"], ratio, growth, span, t["streak"],
                               sustained)]
        return []

    def _walk(self, metric: str, steps: np.ndarray, x: np.ndarray) -> list[Event]:
        if not len(x):
            return []
        t = self._track(metric)
        n, w = len(x), self.window
        m = np.abs(x)
        index = t["n"] + np.arange(n)  # position of each point in the whole series
        # baseline: taken in from its points as they come; judges the points after its last one
        first, last = self.skip, self.skip + self.baseline_points
        t["base"] += m[(index >= first) & (index < last)].tolist()
        if t["baseline"] is None and len(t["base"]) == self.baseline_points:
            t["baseline"] = lower_median(t["base"])
        judged = index >= last
        # level: lower median of the last `window` points; growth: over `window` points
        values = np.concatenate([np.asarray(t["values"], dtype=np.float64), m])
        level = trailing_median(values, w, 1)[len(t["values"]):]
        levels = np.concatenate([np.asarray(t["levels"], dtype=np.float64), level])
        lsteps = np.concatenate([np.asarray(t["level_steps"], dtype=np.int64), steps])
        k = len(t["levels"]) + np.arange(n)
        has_past = k >= w
        past = np.where(has_past, levels[np.maximum(k - w, 0)], np.nan)
        past_step = lsteps[np.maximum(k - w, 0)]
        with np.errstate(invalid="ignore", divide="ignore"):
            growth = np.where(has_past, level / np.maximum(past, self.min_baseline), np.nan)
            if t["baseline"] is not None:
                ratio = np.where(judged, level / max(t["baseline"], self.min_baseline), np.nan)
            else:
                ratio = np.full(n, np.nan)
            cond = (ratio >= self.min_ratio) & (growth >= self.min_growth)
            ends = (growth < self.min_growth) & ~(ratio >= self.min_ratio)
            bursts = growth >= self.burst
        # consecutive qualifying points, carried over from the last call
        falses = np.flatnonzero(~cond)
        last_false = np.full(n, -1)
        last_false[falses] = falses
        last_false = np.maximum.accumulate(last_false)
        streak = np.where(last_false >= 0, np.arange(n) - last_false, t["streak"] + np.arange(n) + 1)
        streak[~cond] = 0
        events: list[Event] = []
        ep = t["episode"]
        ready = np.flatnonzero((streak >= self.patience) | bursts)
        under = np.flatnonzero(ends)
        pos = 0
        while pos < n:
            if ep is not None:
                j = int(np.searchsorted(under, pos))
                if j == len(under):
                    ep["peak"] = max(ep["peak"], float(np.max(m[pos:])))
                    break
                i = int(under[j])
                if i > pos:
                    ep["peak"] = max(ep["peak"], float(np.max(m[pos:i])))
                events.append(self._recovery(metric, int(steps[i]), float(x[i]), float(level[i]),
                                             None if math.isnan(ratio[i]) else float(ratio[i]), float(growth[i]), ep))
                ep, pos = None, i + 1
            else:
                j = int(np.searchsorted(ready, pos))
                if j == len(ready):
                    break
                i = int(ready[j])
                sustained = bool(streak[i] >= self.patience)
                start = i - int(streak[i]) + 1
                if not sustained:
                    onset = int(past_step[i])
                else:
                    onset = int(steps[start]) if start >= 0 else int(t["streak_onset"])
                events.append(self._fire(metric, int(steps[i]), onset, float(x[i]), float(level[i]),
                                         t["baseline"] if index[i] >= last - 1 else None,  # once it exists
                                         None if math.isnan(ratio[i]) else float(ratio[i]),
                                         float(growth[i]), int(steps[i]) - int(past_step[i]), int(streak[i]),
                                         sustained))
                ep = {"onset": onset, "fired": int(steps[i]), "peak": float(m[i])}
                pos = i + 1
        # the state after the last point
        s_last = int(streak[-1])
        if s_last == 0:
            t["streak_onset"] = None
        elif s_last <= n:
            t["streak_onset"] = int(steps[n - s_last])
        t["streak"] = s_last
        t["episode"] = ep
        t["n"] += n
        t["values"] = values[-w:].tolist()
        t["levels"] = levels[-w:].tolist()
        t["level_steps"] = lsteps[-w:].tolist()
        if not math.isnan(ratio[-1]):
            t["ratio"] = float(ratio[-1])
        return events

    # -- events -------------------------------------------------------------------------------------
    def _what(self, metric: str) -> str:
        return "logits"

    def _fire(self, metric: str, step: int, onset: int, x: float, level: float, baseline: float | None,
              ratio: float | None, growth: float, span: int, streak: int, sustained: bool) -> Event:
        slope = 1000.0 * math.log(growth) / span if span > 0 and growth > 0 else None
        if sustained:
            message = (f"{metric} has grown to {ratio:.3g}x its early level {baseline:.4g} (now {level:.4g}, the "
                       f"median of its last {self.window} points) and is still rising, {growth:.3g}x over those "
                       f"points, for {streak} points since step {onset}.")
        else:
            message = (f"{metric} has grown {growth:.3g}x in {span} steps, to {level:.4g} (the median of its last "
                       f"{self.window} points): a burst of at least {self.burst:.3g}x.")
        return self._event(
            self.kind, self.severity, step, onset, message,
            metric=metric, layer=_layer(metric), rule="sustained" if sustained else "burst", value=x, level=level,
            baseline=baseline, min_baseline=self.min_baseline, ratio=ratio, min_ratio=self.min_ratio,
            growth=growth, min_growth=self.min_growth, burst=self.burst, slope=slope, window=self.window,
            points=streak, patience=self.patience)

    def _recovery(self, metric: str, step: int, x: float, level: float, ratio: float | None, growth: float,
                  ep: dict[str, Any]) -> Event:
        where = f"{ratio:.3g}x its early level" if ratio is not None else "no early level yet"
        return self._event(
            "recovery", "info", step, ep["onset"],
            f"{metric} has stopped growing at step {step} ({growth:.3g}x over its last {self.window} points, "
            f"{where}), {step - ep['fired']} steps after the growth reported at step {ep['fired']}.",
            metric=metric, layer=_layer(metric), value=x, level=level, ratio=ratio, min_ratio=self.min_ratio,
            growth=growth, min_growth=self.min_growth, peak=ep["peak"], growth_step=ep["fired"])


class LogitGrowthDetector(_GrowthDetector):
    """Attention-logit growth: ``attn/<layer>/logit_max`` several times its early level and rising.

    Parameters
    ----------
    patterns : tuple of str
        ``fnmatch`` patterns of the series to watch, each on its own.
    skip : int
        First points left out of the baseline (initialisation and the first steps).
    baseline_points : int
        Points whose lower median is the baseline; nothing is judged before they are in.
    window : int
        Points in the level (a trailing lower median) and the span of the growth test.
    min_ratio : float
        Level over baseline needed to qualify.
    min_growth : float
        Level over the level ``window`` points earlier needed to qualify ("still rising").
    patience : int
        Qualifying points in a row needed to fire.
    min_baseline : float
        Floor of the baseline, in the series' units (logits of about 1 are ordinary).
    burst : float
        Growth over ``window`` points that fires on its own, at once, baseline or not: an explosion in
        the first steps, before (or while) the baseline is taken, would otherwise be its own baseline.
    severity : {"info", "warning", "critical"}
        Severity of the growth event.

    Examples
    --------
    >>> det = LogitGrowthDetector()
    >>> curve = [5.0 + (i % 3) for i in range(100)] + [6.0 * 1.05 ** i for i in range(80)]
    >>> [(e.kind, e.step) for i, x in enumerate(curve) for e in det.update(i, {"attn/h.0/logit_max": x})]
    [('logit_growth', 143)]
    """

    name = "logit_growth"
    kind = "logit_growth"

    def __init__(self, patterns: tuple[str, ...] = ("attn/*/logit_max",), skip: int = 20, baseline_points: int = 50,
                 window: int = 10, min_ratio: float = 4.0, min_growth: float = 1.25, patience: int = 10,
                 min_baseline: float = 1.0, burst: float = 10.0, severity: Severity = "info"):
        super().__init__(patterns, skip, baseline_points, window, min_ratio, min_growth, patience, min_baseline,
                         burst, severity)


class OutputDriftDetector(_GrowthDetector):
    """Output-logit drift: ``out/logit_max`` or ``|out/lse_mean|`` several times its early level and rising.

    The parameters are those of :class:`LogitGrowthDetector`. ``out/lse_mean`` starts near
    ``log(vocabulary size)`` and is what z-loss pulls to 0; its magnitude drifting far from its early
    level is the drift z-loss prevents.
    """

    name = "output_drift"
    kind = "logit_drift"

    def __init__(self, patterns: tuple[str, ...] = ("out/logit_max", "out/lse_mean"), skip: int = 20,
                 baseline_points: int = 50, window: int = 10, min_ratio: float = 4.0, min_growth: float = 1.25,
                 patience: int = 10, min_baseline: float = 1.0, burst: float = 10.0,
                 severity: Severity = "info"):
        super().__init__(patterns, skip, baseline_points, window, min_ratio, min_growth, patience, min_baseline,
                         burst, severity)
