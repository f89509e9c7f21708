"""Phases of a run: where the loss curve is (warm-up, fast or slow descent, plateau, annealing), when a
memorised task starts to generalise (grokking), and when the sharpness reaches the edge of stability.

:class:`PhaseDetector` reads the slope of log-loss against log-step (:mod:`foreshock.series.phases`):
the loss is summarised per geometric bin of the step, and at each bin's close the Theil-Sen slope
over the last ``window`` bins decides the phase. Slopes are scale-free, so one set of thresholds
serves a language model at loss 3 and a toy regression at loss 1e-3:

- ``warmup``: the learning rate is rising (when one is logged), or, when no LR is logged, the
  start of the run before there are bins enough for a slope (the early transient);
- ``fast_descent``: the slope is at least ``fast_fraction`` of the steepest slope seen so far, and
  steeper than ``-fast_min`` (a loss that loses less than 7% per doubling of the step is not fast);
- ``slow_descent``: descending, but less steeply. The change from fast to slow descent is the *loss
  deceleration*; its event reports the step of the break of slope (the corner of the best
  two-piece line through the last ``2 * window`` bins) in ``deceleration_step`` and as its onset;
- ``plateau``: the slope is within ``max(flat, flat_fraction * |steepest|)`` of zero;
- ``rising``: the loss grows with the step (slope above ``rise``);
- ``annealing``: the learning rate has decayed below ``anneal_decay`` of its peak and the loss has
  dropped below the trend it had when the decay began (the log-log line through the last
  ``window`` bins then, extrapolated), by at least ``max(anneal_margin, 3 robust SDs of the bins
  around that line)`` decades; checked at every point, so a short cooldown at the end of a long run
  is seen. It lasts while the LR keeps decaying or the loss keeps falling faster than that trend.

A phase changes after ``patience`` bin closes in a row agree on the new one; each change is an info
event of kind ``phase`` whose evidence names the phase, the slopes and the thresholds.
:func:`phase_timeline` turns those events into ``[(start_step, end_step, phase)]``.

:class:`GrokkingDetector` watches training and validation accuracy; :class:`EdgeOfStabilityDetector`
watches ``probe/hessian/lambda_max`` against ``2 / lr``. All three only look at the past.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from foreshock.detect._scan import SeriesMap, as_arrays, is_fresh, step_by_step
from foreshock.detect._watch import first_steps, watched
from foreshock.detect.base import Detector
from foreshock.events import Event
from foreshock.series.phases import bin_step, broken_line, new_bin_state, theil_sen
from foreshock.series.robust import MAD_SCALE
from foreshock.series.rolling import lower_median, push, trailing_median
from foreshock.series.runs import true_runs

__all__ = ["PHASES", "EdgeOfStabilityDetector", "GrokkingDetector", "PhaseDetector", "phase_timeline"]

#: every phase :class:`PhaseDetector` names, in the order a typical run goes through them
PHASES = ("warmup", "fast_descent", "slow_descent", "plateau", "rising", "annealing")

_LR_TOL = 1e-9  # relative: an LR that moved by less has not moved (float noise of schedules)


def _step_of(x: float) -> int:
    """The step at log10(step + 1) = x."""
    return max(0, int(round(10.0 ** x - 1.0)))


class _Names:
    """The metric of each point of a stream, looked up by index without a list of n strings."""

    def __init__(self, names: tuple[str, ...], which: np.ndarray):
        self.names, self.which = names, which

    def __getitem__(self, i: int) -> str:
        return self.names[int(self.which[i])]


class PhaseDetector(Detector):
    """The phase of the run from the slope of log-loss vs log-step (info events of kind ``phase``).

    Parameters
    ----------
    losses : tuple of str
        Loss series in order of preference (the first one logged is followed).
    lrs : tuple of str
        Learning-rate series in order of preference (``opt/lr_mult`` is proportional to the LR).
    bins_per_decade : int
        Geometric bins of ``step + 1`` per factor of ten; each bin is one robust point of the curve.
    window : int
        Bins in each slope fit (at least 3).
    fast_fraction : float
        A slope at least this fraction of the steepest one so far is fast descent...
    fast_min : float
        ...when it is also below ``-fast_min``.
    flat, flat_fraction : float
        A slope within ``max(flat, flat_fraction * |steepest|)`` of zero is a plateau.
    rise : float
        A slope above ``max(rise, flat threshold)`` is a rising loss.
    anneal_decay : float
        The LR counts as decayed below this fraction of its peak.
    anneal_margin : float
        Least drop below the pre-decay trend, in decades of the loss (0.003: 0.7%), for annealing.
    patience : int
        Consecutive bin closes that must agree on a new phase.
    """

    name = "phase"

    def __init__(self, losses: tuple[str, ...] = ("train/loss", "val/loss"),
                 lrs: tuple[str, ...] = ("opt/lr", "opt/lr_mult"), bins_per_decade: int = 20, window: int = 5,
                 fast_fraction: float = 0.5, fast_min: float = 0.1, flat: float = 0.01, flat_fraction: float = 0.1, rise: float = 0.1,
                 anneal_decay: float = 0.9, anneal_margin: float = 0.003, patience: int = 2):
        super().__init__()
        if bins_per_decade < 1 or window < 3 or patience < 1:
            raise ValueError(f"need bins_per_decade >= 1, window >= 3 and patience >= 1, got "
                             f"{bins_per_decade=}, {window=}, {patience=}")
        if not 0 < fast_fraction < 1 or not 0 <= flat_fraction < fast_fraction or min(flat, fast_min, rise) < 0:
            raise ValueError(f"need 0 < fast_fraction < 1, 0 <= flat_fraction < fast_fraction and flat, fast_min, "
                             f"rise >= 0, got {fast_fraction=}, {flat_fraction=}, {flat=}, {fast_min=}, {rise=}")
        if not 0 < anneal_decay <= 1 or anneal_margin < 0:
            raise ValueError(f"need 0 < anneal_decay <= 1 and anneal_margin >= 0, got {anneal_decay=}, {anneal_margin=}")
        self.losses = tuple(losses)
        self.lrs = tuple(lrs)
        self.bins_per_decade = bins_per_decade
        self.window = window
        self.fast_fraction = fast_fraction
        self.fast_min = fast_min
        self.flat = flat
        self.flat_fraction = flat_fraction
        self.rise = rise
        self.anneal_decay = anneal_decay
        self.anneal_margin = anneal_margin
        self.patience = patience
        self.metrics = self.losses + tuple(m for m in self.lrs if m not in self.losses)
        self._add_state("_seen", {})
        self._add_state("_bins", new_bin_state())
        self._add_state("_closed", [])  # [x, y, last_step, lr at close] of the last 2 * window + 1 bins
        self._add_state("_anneal", {"ref": None, "recent": []})  # the trend frozen when the LR began to decay
        self._add_state("_lr", {"name": None, "last": None, "peak": None})
        self._add_state("_steepest", None)
        self._add_state("_phase", {"name": None, "onset": None})
        self._add_state("_candidate", {"name": None, "count": 0, "first": None})

    # -- step by step -------------------------------------------------------------------------------
    def update(self, step: int, values: Mapping[str, float]) -> list[Event]:
        lr = self._lr
        if lr["name"] is None:  # the first LR series seen is followed (an LR and a multiplier do not mix)
            lr["name"] = next((m for m in self.lrs if m in values), None)
        if lr["name"] in values:
            v = float(values[lr["name"]])
            if math.isfinite(v):
                lr["last"] = v
                lr["peak"] = v if lr["peak"] is None else max(lr["peak"], v)
        events: list[Event] = []
        for metric in watched(self.losses, self._seen, values):
            value = float(values[metric])
            if not (value > 0 and math.isfinite(value)) or step < 0:
                continue  # not a point of a log-log curve (non-finite values are the nonfinite detector's)
            closed = bin_step(self._bins, int(step), value, self.bins_per_decade)
            if closed is not None:
                events.extend(self._close(metric, int(step), closed))
            events.extend(self._anneal_point(metric, int(step), value))
        return events

    # -- annealing: the loss drops below the trend it had when the LR began to decay ----------------
    def _low(self) -> bool:
        lr = self._lr
        return lr["last"] is not None and lr["last"] <= self.anneal_decay * lr["peak"]

    def _reference(self, step: int) -> dict[str, Any]:
        """The log-log line through the last ``window`` closed bins, frozen as the pre-decay trend."""
        pts = self._closed[-self.window:]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        slope = theil_sen(xs, ys)
        resid = np.asarray(ys) - slope * np.asarray(xs)
        intercept = float(np.median(resid))
        scale = MAD_SCALE * float(np.median(np.abs(resid - intercept)))
        return {"slope": slope, "intercept": intercept, "scale": scale, "step": step, "lr": self._lr["last"],
                "entered": False}

    def _margin(self, ref: Mapping[str, Any]) -> float:
        return max(self.anneal_margin, 3.0 * ref["scale"])

    def _anneal_point(self, metric: str, step: int, value: float) -> list[Event]:
        ann = self._anneal
        if not self._low():
            ann.update(ref=None, recent=[])
            return []
        w = self.window
        if ann["ref"] is None:
            if len(self._closed) >= w:
                ann["ref"] = self._reference(step)
            return []
        ref = ann["ref"]
        push(ann["recent"], [float(np.log10(step + 1.0)), float(np.log10(value))], w)
        if ref["entered"] or len(ann["recent"]) < w or self._phase["name"] in (None, "warmup"):
            return []
        xm = lower_median([p[0] for p in ann["recent"]])
        ym = lower_median([p[1] for p in ann["recent"]])
        drop = ref["intercept"] + ref["slope"] * xm - ym
        if drop < self._margin(ref):
            return []
        return self._enter_annealing(metric, step, drop)

    def _enter_annealing(self, metric: str, step: int, drop: float) -> list[Event]:
        lr, ref = self._lr, self._anneal["ref"]
        ref["entered"] = True
        margin = self._margin(ref)
        facts = {"drop_below_trend": drop, "anneal_threshold": margin, "trend_slope": ref["slope"],
                 "trend_scale": ref["scale"], "decay_step": ref["step"], "lr": lr["last"], "lr_peak": lr["peak"],
                 "lr_at_decay": ref["lr"]}
        what = (f" The LR is at {lr['last'] / lr['peak']:.3g} of its peak and the loss is {drop:.3g} decades "
                f"below the trend it had when the LR began to decay (threshold {margin:.3g}).")
        return self._propose("annealing", metric, step, facts, force=True, onset=ref["step"], what=what)

    # -- vectorised replay ----------------------------------------------------------------------------
    def scan(self, series: SeriesMap) -> list[Event]:
        """The events of ``update`` over whole series; leaves the same state.

        Bins, LR state and the annealing test of every point are computed with numpy; the decisions
        then run once per closed bin and once per LR-decay episode, with the methods ``update`` uses.
        """
        if not is_fresh(self):
            return step_by_step(self, series)
        lr_steps, lr_vals = self._scan_lr(series)
        steps, values, names = self._loss_stream(series)
        n, w = len(steps), self.window
        if n == 0:
            return []
        self._bins["first_step"] = int(steps[0])  # a first phase starts where the curve starts
        xs = np.log10(steps + 1.0)
        ys = np.log10(values)
        index = np.floor(self.bins_per_decade * xs)
        close_at = np.flatnonzero(np.diff(index) != 0) + 1  # a bin closes at the first point of the next
        run_starts = np.concatenate(([0], close_at))
        pos = np.searchsorted(lr_steps, steps, side="right") - 1  # the LR is taken in before the loss
        has_lr = pos >= 0
        lr_last = np.where(has_lr, lr_vals[np.maximum(pos, 0)] if len(lr_vals) else np.nan, np.nan)
        lr_peak = np.where(has_lr, np.fmax.accumulate(lr_vals)[np.maximum(pos, 0)] if len(lr_vals) else np.nan,
                           np.nan)
        with np.errstate(invalid="ignore"):
            low = has_lr & (lr_last <= self.anneal_decay * lr_peak)
        n_closed = np.searchsorted(close_at, np.arange(n), side="right")
        bins = [(float(np.median(xs[a:b])), float(np.median(ys[a:b])), int(b - a), int(steps[b - 1]))
                for a, b in zip(run_starts[:-1].tolist(), close_at.tolist(), strict=True)]
        lr_of = [None if math.isnan(v) else float(v) for v in lr_last[close_at].tolist()]
        closed_rows = [[b[0], b[1], b[3], lr] for b, lr in zip(bins, lr_of, strict=True)]
        episodes = self._scan_episodes(low, n_closed, xs, ys, steps, lr_last, closed_rows)

        def at(i: int) -> None:
            last, peak = lr_last[i], lr_peak[i]
            self._lr["last"] = None if math.isnan(last) else float(last)
            self._lr["peak"] = None if math.isnan(peak) else float(peak)

        starts = np.array([ep["start"] for ep in episodes], dtype=np.int64)
        ends = np.array([ep["end"] for ep in episodes], dtype=np.int64)

        def ref_after(i: int) -> dict[str, Any] | None:
            k = int(np.searchsorted(starts, i, side="right")) - 1
            if i < 0 or k < 0:
                return None
            ep = episodes[k]
            return ep["ref"] if ep["j"] <= i < ep["end"] else None

        events: list[Event] = []

        def anneal_between(a: int, b: int) -> None:
            if a >= b or self._phase["name"] in (None, "warmup"):
                return
            for ep in episodes[int(np.searchsorted(ends, a, side="right")):]:  # the first one that ends after a
                if ep["start"] >= b:
                    break
                if ep["ref"]["entered"]:
                    continue
                cands = ep["candidates"]
                k = int(np.searchsorted(cands, a))
                if k < len(cands) and cands[k] < b:
                    i = int(cands[k])
                    at(i)
                    self._anneal["ref"] = ep["ref"]
                    events.extend(self._enter_annealing(names[i], int(steps[i]), float(ep["drop"][i - ep["j"] - 1])))

        done = 0
        for k, c in enumerate(close_at.tolist()):
            anneal_between(done, c)
            at(c)
            self._anneal["ref"] = ref_after(c - 1)
            events.extend(self._close(names[c], int(steps[c]), bins[k]))
            done = c
        anneal_between(done, n)
        # the state update leaves behind
        self._lr["last"] = float(lr_vals[-1]) if len(lr_vals) else None
        self._lr["peak"] = float(np.max(lr_vals)) if len(lr_vals) else None
        last_run = int(run_starts[-1])
        self._bins = {"index": int(index[-1]), "x": xs[last_run:].tolist(), "y": ys[last_run:].tolist(),
                      "last_step": int(steps[-1]), "first_step": int(steps[0])}
        ref = ref_after(n - 1)
        recent: list[list[float]] = []
        if ref is not None:
            lo = max(self._episode_j(episodes, n - 1) + 1, n - w)
            recent = [[float(x), float(y)] for x, y in zip(xs[lo:n], ys[lo:n], strict=True)]
        self._anneal = {"ref": ref, "recent": recent}
        return events

    @staticmethod
    def _episode_j(episodes: list[dict[str, Any]], i: int) -> int:
        return next(ep["j"] for ep in episodes if ep["start"] <= i < ep["end"])

    def _scan_lr(self, series: SeriesMap) -> tuple[np.ndarray, np.ndarray]:
        """Choose the LR series as ``update`` does; its finite points."""
        firsts = [(int(as_arrays(series, m)[0][0]), k, m) for k, m in enumerate(self.lrs)
                  if m in series and len(as_arrays(series, m)[0])]
        if not firsts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        name = min(firsts)[2]
        self._lr["name"] = name
        st, v = as_arrays(series, name)
        ok = np.isfinite(v)
        return st[ok], v[ok]

    def _loss_stream(self, series: SeriesMap) -> tuple[np.ndarray, np.ndarray, _Names]:
        """The loss points ``update`` bins, in order, with the metric each came from."""
        parts = []
        for metric, cutoff in first_steps(self.losses, series, self._seen):
            st, v = as_arrays(series, metric)
            with np.errstate(invalid="ignore"):
                keep = (v > 0) & np.isfinite(v) & (st >= 0)
            if cutoff is not None:
                keep &= st < cutoff
            parts.append((st[keep], v[keep], self.losses.index(metric)))
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0), _Names(self.losses, np.zeros(0, dtype=np.int64))
        steps = np.concatenate([p[0] for p in parts])
        values = np.concatenate([p[1] for p in parts])
        which = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
        order = np.lexsort((which, steps))
        return steps[order], values[order], _Names(self.losses, which[order])

    def _scan_episodes(self, low: np.ndarray, n_closed: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                       steps: np.ndarray, lr_last: np.ndarray, closed_rows: list[list[Any]]) -> list[dict[str, Any]]:
        """Each stretch of decayed LR with a trend to compare against: its reference and candidate points."""
        w = self.window
        out = []
        run_starts, lengths = true_runs(low)
        for a, length in zip(run_starts.tolist(), lengths.tolist(), strict=True):
            end = a + length
            ready = np.flatnonzero(n_closed[a:end] >= w)
            if not len(ready):
                continue
            j = a + int(ready[0])
            saved_closed, saved_last = self._closed, self._lr["last"]
            self._closed, self._lr["last"] = closed_rows[: int(n_closed[j])], float(lr_last[j])
            ref = self._reference(int(steps[j]))
            self._closed, self._lr["last"] = saved_closed, saved_last
            rx, ry = xs[j + 1:end], ys[j + 1:end]
            drop = np.full(len(rx), np.nan)
            if len(rx) >= w:
                drop = ref["intercept"] + ref["slope"] * trailing_median(rx, w, w) - trailing_median(ry, w, w)
            with np.errstate(invalid="ignore"):
                cands = j + 1 + np.flatnonzero(drop >= self._margin(ref))
            out.append({"start": a, "end": end, "j": j, "ref": ref, "drop": drop, "candidates": cands})
        return out

    # -- the slope at each bin's close ----------------------------------------------------------------
    def _close(self, metric: str, step: int, closed: tuple[float, float, int, int]) -> list[Event]:
        x, y, _, _ = closed
        w = self.window
        lr = self._lr
        push(self._closed, [x, y, closed[3], lr["last"]], 2 * w + 1)
        prev_lr = self._closed[-2][3] if len(self._closed) >= 2 else None
        lr_rising = lr["last"] is not None and prev_lr is not None and lr["last"] > prev_lr * (1 + _LR_TOL)
        slope = None
        if len(self._closed) >= w:
            pts = self._closed[-w:]
            slope = theil_sen([p[0] for p in pts], [p[1] for p in pts])
        in_warmup = self._phase["name"] in (None, "warmup")
        if slope is None or (in_warmup and lr_rising):
            if not in_warmup or (lr["last"] is not None and not lr_rising):
                return []  # an LR that is logged and not rising: no warm-up to speak of
            facts = {"slope": slope, "lr": lr["last"], "lr_before": prev_lr, "lr_rising": lr_rising,
                     "reason": "LR rising" if lr_rising else "early transient: too few bins for a slope"}
            return self._propose("warmup", metric, step, facts)
        self._steepest = slope if self._steepest is None else min(self._steepest, slope)
        steepest = min(self._steepest, 0.0)
        flat_thr = max(self.flat, self.flat_fraction * abs(steepest))
        fast_thr = min(self.fast_fraction * steepest, -self.fast_min)
        lr_window_ago = self._closed[-w - 1][3] if len(self._closed) > w else None
        ref = self._anneal["ref"]
        decaying = (ref is not None and lr["last"] is not None and lr_window_ago is not None
                    and lr["last"] < lr_window_ago * (1 - _LR_TOL))
        if self._phase["name"] == "annealing" and ref is not None and (decaying or slope < ref["slope"]):
            phase = "annealing"  # still decaying, or still falling faster than before the decay
        elif slope > max(self.rise, flat_thr):
            phase = "rising"
        elif slope >= -flat_thr:
            phase = "plateau"
        elif slope <= fast_thr:
            phase = "fast_descent"
        else:
            phase = "slow_descent"
        facts = {"slope": slope, "steepest_slope": steepest, "fast_threshold": fast_thr, "flat_threshold": flat_thr,
                 "rise_threshold": max(self.rise, flat_thr), "lr": lr["last"], "lr_peak": lr["peak"],
                 "lr_window_ago": lr_window_ago, "lr_decaying": decaying}
        return self._propose(phase, metric, step, facts)

    def _propose(self, phase: str, metric: str, step: int, facts: dict[str, Any], *, force: bool = False,
                 onset: int | None = None, what: str = "") -> list[Event]:
        current = self._phase["name"]
        cand = self._candidate
        if phase == current:
            cand.update(name=None, count=0, first=None)
            return []
        if cand["name"] != phase:
            cand.update(name=phase, count=0, first=step)
        cand["count"] += 1
        if current is not None and cand["count"] < self.patience and not force:
            return []
        if onset is None:
            onset = cand["first"] if current is not None else self._bins["first_step"]
        onset = min(step, max(onset, self._phase["onset"] or 0))
        cand.update(name=None, count=0, first=None)
        extra: dict[str, Any] = {}
        if current == "fast_descent" and phase == "slow_descent" and len(self._closed) >= 3:
            pts = self._closed
            k, s_before, s_after = broken_line([p[0] for p in pts], [p[1] for p in pts])
            brk = min(step, max(_step_of(pts[k][0]), self._phase["onset"] or 0))
            extra = {"deceleration_step": brk, "slope_before_break": s_before, "slope_after_break": s_after}
            onset = brk
            what = (f" Loss deceleration: the log-log slope broke from {s_before:.3g} to {s_after:.3g} "
                    f"at step {brk}.")
        self._phase.update(name=phase, onset=onset)
        return [self._phase_event(metric, step, onset, phase, current, facts, extra, what)]

    def _phase_event(self, metric: str, step: int, onset: int, phase: str, previous: str | None,
                     facts: dict[str, Any], extra: dict[str, Any], what: str) -> Event:
        slope = facts.get("slope")
        shown = "" if slope is None else f" (log-log slope {slope:.3g})"
        came = f" after {previous.replace('_', ' ')}" if previous else ""
        return self._event(
            "phase", "info", step, onset,
            f"{metric} entered {phase.replace('_', ' ')}{came} at step {onset}{shown}.{what}",
            metric=metric, phase=phase, previous=previous, lr_metric=self._lr["name"], **facts, **extra,
            window_bins=self.window, bins_per_decade=self.bins_per_decade, patience=self.patience,
            fast_fraction=self.fast_fraction, fast_min=self.fast_min, flat=self.flat, flat_fraction=self.flat_fraction,
            anneal_decay=self.anneal_decay, anneal_margin=self.anneal_margin)


def phase_timeline(events: Iterable[Event], last_step: int | None = None) -> list[tuple[int, int, str]]:
    """The phases as segments ``(start_step, end_step, phase)``, from the ``phase`` events of a run.

    A phase starts at its event's onset (never before the phase it follows) and ends where the next
    begins; the last one ends at ``last_step`` (the run's last step) or, without it, at its event's step.

    >>> from foreshock.events import Event
    >>> evs = [Event("phase", "phase", "info", 5, 0, "", {"phase": "warmup"}),
    ...        Event("phase", "phase", "info", 120, 90, "", {"phase": "fast_descent"})]
    >>> phase_timeline(evs, last_step=1000)
    [(0, 90, 'warmup'), (90, 1000, 'fast_descent')]
    """
    starts: list[tuple[int, str, int]] = []
    for e in sorted((e for e in events if e.kind == "phase" and "phase" in e.evidence), key=lambda e: e.step):
        start = e.onset_step if not starts else max(e.onset_step, starts[-1][0])
        starts.append((start, str(e.evidence["phase"]), e.step))
    segments: list[tuple[int, int, str]] = []
    for i, (start, phase, fired) in enumerate(starts):
        if i + 1 < len(starts):
            end = starts[i + 1][0]
            if end <= start:
                continue  # a phase the next one replaced at once: nothing of it to show
        else:
            end = max(start, fired if last_step is None else max(last_step, fired))
        if segments and segments[-1][2] == phase:
            segments[-1] = (segments[-1][0], end, phase)
        else:
            segments.append((start, end, phase))
    return segments


class GrokkingDetector(Detector):
    """Memorisation, then generalisation: validation accuracy starts to rise long after training
    accuracy saturated (info: good news, kind ``grokking``).

    Training accuracy is saturated when the lower median of its last ``window`` points is at least
    ``saturation``, or when those points lie within ``plateau_tol`` of each other above
    ``plateau_min`` (its plateau). The run has memorised when that holds while the validation level
    (lower median of its last ``window`` points) is at most ``lag_level`` (validation near chance). From then on, the validation baseline is its lowest level; the
    detector fires once the level has risen by ``rise`` of the room above the baseline (a run that
    generalises right after memorising is not grokking, see ``min_delay``). The onset is the last step the level was within ``onset_rise`` of
    the room above the baseline; a rise whose onset comes before ``min_delay`` times the memorisation
    step is prompt generalisation, not grokking, and ends the watch silently.

    Parameters
    ----------
    train, val : str
        The accuracy series.
    window : int
        Points in each median.
    saturation, plateau_tol, plateau_min : float
        When training accuracy counts as saturated (see above).
    lag_level : float
        Validation accuracy at most this high while training accuracy saturates counts as lagging.
    rise : float
        Fraction of the room ``1 - baseline`` the validation level must gain.
    onset_rise : float
        Fraction of the room that still counts as the baseline, for the onset.
    min_delay : float
        The onset of the rise must be at least this multiple of the memorisation step (steps + 1).
    patience : int
        Validation points in a row with training accuracy unsaturated (and validation not risen) that
        end a memorisation. Fewer are a dip: a transformer trained with AdamW and weight decay to near
        zero training loss spikes every few hundred steps, its training accuracy falling for a few
        dozen steps (the lab's ``grokking`` cpu preset); with ``patience=1`` each dip restarted the
        memorisation clock and the later rise looked prompt, not delayed.
    """

    name = "grokking"

    def __init__(self, train: str = "train/acc", val: str = "val/acc", window: int = 3, saturation: float = 0.99,
                 plateau_tol: float = 0.005, plateau_min: float = 0.9, lag_level: float = 0.5, rise: float = 0.1,
                 onset_rise: float = 0.02, min_delay: float = 2.0, patience: int = 3):
        super().__init__()
        if (window < 1 or not 0 < saturation <= 1 or not 0 < rise < 1 or not 0 <= onset_rise < rise or min_delay < 1
                or patience < 1):
            raise ValueError(f"need window >= 1, 0 < saturation <= 1, 0 <= onset_rise < rise < 1, min_delay >= 1 "
                             f"and patience >= 1, got {window=}, {saturation=}, {onset_rise=}, {rise=}, "
                             f"{min_delay=}, {patience=}")
        self.train = train
        self.val = val
        self.window = window
        self.saturation = saturation
        self.plateau_tol = plateau_tol
        self.plateau_min = plateau_min
        self.lag_level = lag_level
        self.rise = rise
        self.onset_rise = onset_rise
        self.min_delay = min_delay
        self.patience = patience
        self.metrics = (train, val)
        self._add_state("_train", [])
        self._add_state("_val", [])
        self._add_state("_memorised", None)  # {"step", "train", "val", "baseline", "low_step"} once memorised
        self._add_state("_done", False)  # fired, or generalised without the delay of grokking

    def _saturated(self) -> bool:
        t = self._train
        if len(t) < self.window:
            return False
        med = lower_median(t)
        return med >= self.saturation or (med >= self.plateau_min and max(t) - min(t) <= self.plateau_tol)

    def update(self, step: int, values: Mapping[str, float]) -> list[Event]:
        if self._done:
            return []
        step = int(step)
        for name, buf in ((self.train, self._train), (self.val, self._val)):
            if name in values and math.isfinite(float(values[name])):
                push(buf, float(values[name]), self.window)
        if self.val not in values or len(self._val) < self.window:
            return []
        saturated = self._saturated()
        return self._decide(step, lower_median(self._val), saturated,
                            lower_median(self._train) if len(self._train) >= self.window else math.nan)

    def _decide(self, step: int, level: float, saturated: bool, train_level: float) -> list[Event]:
        """One validation point through the memorisation state machine."""
        mem = self._memorised
        if mem is None:
            if saturated and level <= self.lag_level:
                self._memorised = {"step": step, "train": train_level, "val": level, "baseline": level,
                                   "low_step": step}
            return []
        if not saturated and level <= mem["baseline"] + self.onset_rise * (1 - mem["baseline"]):
            # training accuracy fell back before validation rose: a dip of a few points (the loss spikes
            # of AdamW near zero training loss) leaves the memorisation standing; a lasting fall ends it
            mem["dips"] = mem.get("dips", 0) + 1
            if mem["dips"] >= self.patience:
                self._memorised = None
            return []
        mem["dips"] = 0
        mem["baseline"] = min(mem["baseline"], level)
        room = 1.0 - mem["baseline"]
        if level <= mem["baseline"] + self.onset_rise * room:
            mem["low_step"] = step
        needed = mem["baseline"] + self.rise * room
        if level < needed:
            return []
        self._done = True
        if (mem["low_step"] + 1) < self.min_delay * (mem["step"] + 1):
            return []  # validation followed training promptly: learning, not grokking
        return [self._grokking(step, level, needed)]

    def _grokking(self, step: int, level: float, needed: float) -> Event:
        mem = self._memorised
        return self._event(
            "grokking", "info", step, mem["low_step"],
            f"{self.val} is rising to {level:.3g} at step {step}, from {mem['baseline']:.3g} since training "
            f"accuracy saturated at step {mem['step']}: the run is generalising after memorising (grokking), "
            f"onset about step {mem['low_step']}.",
            metric=self.val, value=level, baseline=mem["baseline"], threshold=needed, rise=self.rise,
            memorised_step=mem["step"], train_acc_at_memorisation=mem["train"], val_acc_at_memorisation=mem["val"],
            saturation=self.saturation, lag_level=self.lag_level, delay_ratio=(step + 1) / (mem["step"] + 1),
            min_delay=self.min_delay, window=self.window)

    # -- replay -------------------------------------------------------------------------------------
    def scan(self, series: SeriesMap) -> list[Event]:
        """The events of ``update`` over whole series; leaves the same state.

        The medians of both buffers at every validation point come from numpy; the memorisation state
        machine then runs once per validation point on plain floats (validation is logged sparsely).
        """
        if not is_fresh(self):
            return step_by_step(self, series)
        w = self.window
        ts, tv = as_arrays(series, self.train)
        ts, tv = ts[np.isfinite(tv)], tv[np.isfinite(tv)]
        vs, vv = as_arrays(series, self.val)
        finite = np.isfinite(vv)
        fv = vv[finite]
        count = np.cumsum(finite)  # finite val points up to and including each val point
        t_med = trailing_median(tv, w, w)
        t_max = ndimage.maximum_filter1d(tv, w, origin=(w - 1) // 2, mode="nearest") if len(tv) else tv
        t_min = ndimage.minimum_filter1d(tv, w, origin=(w - 1) // 2, mode="nearest") if len(tv) else tv
        v_med = trailing_median(fv, w, w)
        k_train = np.searchsorted(ts, vs, side="right")  # train points taken in before each val point
        events: list[Event] = []
        stop_step = None
        for i in np.flatnonzero(count >= w).tolist():
            step = int(vs[i])
            k = int(k_train[i])
            if k >= w:
                med, hi, lo = float(t_med[k - 1]), float(t_max[k - 1]), float(t_min[k - 1])
                saturated = med >= self.saturation or (med >= self.plateau_min and hi - lo <= self.plateau_tol)
            else:
                med, saturated = math.nan, False
            level = float(v_med[int(count[i]) - 1])
            events.extend(self._decide(step, level, saturated, med))
            if self._done:
                stop_step, stop_val = step, int(count[i])
                break
        if stop_step is None:
            stop_val, k = (int(count[-1]) if len(count) else 0), len(ts)
        else:
            k = int(np.searchsorted(ts, stop_step, side="right"))
        self._train = tv[max(0, k - w):k].tolist()
        self._val = fv[max(0, stop_val - w):stop_val].tolist()
        return events

class EdgeOfStabilityDetector(Detector):
    """The sharpness reaches the edge of stability: ``lambda_max / edge`` near or above 1 (info).

    Gradient descent on a quadratic with curvature ``lambda`` is stable while ``lambda < 2 / lr``;
    full-batch training drives the top Hessian eigenvalue up to that edge and then hovers there
    (progressive sharpening, then the edge of stability). The ratio is the lower median of the last
    ``window`` values of ``lambda_max / edge`` (``lambda_max * lr / 2`` for gradient descent); the
    detector fires when it reaches ``threshold`` and says so again (kind ``edge_of_stability_end``)
    when the whole window falls below ``release`` (at the edge the sharpness oscillates about
    ``2 / lr`` from one step to the next).

    For Adam the edge is set by the *preconditioned* sharpness, the top eigenvalue of ``P^-1 H``
    with ``P`` Adam's diagonal second-moment preconditioner, and it lies at
    ``(2 + 2 beta1) / ((1 - beta1) lr)`` (38 / lr for ``beta1 = 0.9``; Cohen et al. 2022, "Adaptive
    gradient methods at the edge of stability"). With ``preconditioned`` the series is taken to be
    that sharpness and the ratio is ``lambda_max * lr * (1 - beta1) / (2 + 2 beta1)``; the evidence
    names the sharpness and the edge used (``edge``, ``edge_rule``).

    Parameters
    ----------
    sharpness, lr : str
        The top Hessian eigenvalue series and the learning-rate series.
    window : int
        Points in the median of the ratio.
    threshold, release : float
        The ratio that starts and the ratio that ends an episode.
    preconditioned : bool
        Whether ``sharpness`` is Adam's preconditioned sharpness (then the edge is Adam's).
    beta1 : float
        Adam's momentum coefficient, in ``[0, 1)``; used only with ``preconditioned``.
    """

    name = "edge_of_stability"

    def __init__(self, sharpness: str = "probe/hessian/lambda_max", lr: str = "opt/lr", window: int = 5,
                 threshold: float = 0.9, release: float = 0.7, preconditioned: bool = False, beta1: float = 0.9):
        super().__init__()
        if window < 1 or not 0 < release < threshold:
            raise ValueError(f"need window >= 1 and 0 < release < threshold, got {window=}, {release=}, {threshold=}")
        if not 0 <= beta1 < 1:
            raise ValueError(f"beta1 must be in [0, 1), got {beta1}")
        self.sharpness = sharpness
        self.lr = lr
        self.window = window
        self.threshold = threshold
        self.release = release
        self.preconditioned = preconditioned
        self.beta1 = beta1
        # the edge is edge_lr / lr: 2 / lr for gradient descent, Adam's (2 + 2 beta1) / ((1 - beta1) lr)
        self._edge_lr = (2 + 2 * beta1) / (1 - beta1) if preconditioned else 2.0
        self._rule = "(2 + 2 beta1) / ((1 - beta1) lr)" if preconditioned else "2 / lr"
        self.metrics = (lr, sharpness)
        self._add_state("_lr", None)
        self._add_state("_ratios", [])
        self._add_state("_steps", [])
        self._add_state("_episode", None)

    def update(self, step: int, values: Mapping[str, float]) -> list[Event]:
        if self.lr in values and math.isfinite(float(values[self.lr])) and float(values[self.lr]) > 0:
            self._lr = float(values[self.lr])
        if self.sharpness not in values or self._lr is None:
            return []
        lam = float(values[self.sharpness])
        if not math.isfinite(lam):
            return []
        step = int(step)
        raw = lam * self._lr / self._edge_lr
        push(self._ratios, raw, self.window)
        push(self._steps, step, self.window)
        if len(self._ratios) < self.window:
            return []
        ratio = lower_median(self._ratios)
        ep = self._episode
        if ep is None and ratio >= self.threshold:
            onset = self._onset(self._steps, self._ratios, step)
            self._episode = {"onset": onset, "step": step}
            return [self._eos(step, onset, ratio, lam)]
        if ep is not None and max(self._ratios) < self.release:
            self._episode = None
            return [self._end(step, ratio, lam, ep)]
        return []

    def _onset(self, steps: list[int], ratios: list[float], step: int) -> int:
        """The earliest point of the window from which the raw ratio stayed at the threshold."""
        onset = step
        for s, r in zip(reversed(steps), reversed(ratios), strict=True):
            if r < self.threshold:
                break
            onset = s
        return onset

    def _end(self, step: int, ratio: float, lam: float, ep: Mapping[str, int]) -> Event:
        return self._event(
            "edge_of_stability_end", "info", step, ep["onset"],
            f"{self.sharpness} fell back below the edge of stability at step {step}: "
            f"lambda_max / edge = {ratio:.3g}, all of the last {self.window} below {self.release}.",
            metric=self.sharpness, ratio=ratio, release=self.release, lambda_max=lam, lr=self._lr,
            episode_step=ep["step"], window=self.window, **self._edge_evidence())

    def scan(self, series: SeriesMap) -> list[Event]:
        """The events of ``update`` over whole series, computed with numpy; leaves the same state."""
        if not is_fresh(self):
            return step_by_step(self, series)
        w = self.window
        ls, lv = as_arrays(series, self.lr)
        ok = np.isfinite(lv) & (lv > 0)
        ls, lv = ls[ok], lv[ok]
        ss, sv = as_arrays(series, self.sharpness)
        pos = np.searchsorted(ls, ss, side="right") - 1  # the LR logged at the same step counts
        keep = (pos >= 0) & np.isfinite(sv)
        ss, sv, lr = ss[keep], sv[keep], lv[pos[keep]] if len(lv) else np.zeros(0)
        raw = sv * lr / self._edge_lr
        n = len(raw)
        events: list[Event] = []
        if n >= w:
            med = trailing_median(raw, w, w)
            top = np.full(n, np.nan)
            top[w - 1:] = np.lib.stride_tricks.sliding_window_view(raw, w).max(axis=1)
            enter = np.flatnonzero(med >= self.threshold)
            leave = np.flatnonzero(top < self.release)
            i = 0
            while True:
                k = int(np.searchsorted(enter, i))
                if k == len(enter):
                    break
                i = int(enter[k])
                self._lr = float(lr[i])
                step = int(ss[i])
                onset = self._onset(ss[i - w + 1:i + 1].tolist(), raw[i - w + 1:i + 1].tolist(), step)
                self._episode = {"onset": onset, "step": step}
                events.append(self._eos(step, onset, float(med[i]), float(sv[i])))
                k = int(np.searchsorted(leave, i + 1))
                if k == len(leave):
                    break
                i = int(leave[k])
                self._lr = float(lr[i])
                events.append(self._end(int(ss[i]), float(med[i]), float(sv[i]), self._episode))
                self._episode = None
                i += 1
        self._lr = float(lv[-1]) if len(lv) else None
        self._ratios = raw[-w:].tolist()
        self._steps = ss[-w:].tolist()
        return events

    def _eos(self, step: int, onset: int, ratio: float, lam: float) -> Event:
        which = ("Adam's preconditioned sharpness (top eigenvalue of P^-1 H)" if self.preconditioned else
                 "the raw Hessian's top eigenvalue; with Adam-like optimisers the preconditioned sharpness "
                 "is what sets the edge")
        return self._event(
            "edge_of_stability", "info", step, onset,
            f"{self.sharpness} = {lam:.4g} is at the edge of stability {self._rule} = "
            f"{self._edge_lr / self._lr:.4g} (lambda_max / edge = {ratio:.3g}, threshold {self.threshold}) "
            f"from step {onset}.",
            metric=self.sharpness, ratio=ratio, threshold=self.threshold, lambda_max=lam, lr=self._lr,
            sharpness_kind=which, preconditioned=self.preconditioned, window=self.window, **self._edge_evidence())

    def _edge_evidence(self) -> dict[str, Any]:
        """The edge the ratio was taken against, its rule, and (for gradient descent) ``two_over_lr``."""
        edge = self._edge_lr / self._lr
        if self.preconditioned:
            return {"edge": edge, "edge_rule": self._rule, "beta1": self.beta1}
        return {"edge": edge, "edge_rule": self._rule, "two_over_lr": edge}
