"""Hindsight labels: what a whole finished run shows, by simple rules a reader can check on the curve.

The rules may look at the whole run (they label it after the fact); detectors may not. Each rule
returns a :class:`~foreshock.lab.base.Label` whose ``rule`` text gives the numbers that decided it.
The loss rules mean what the ``event`` column of the shared real-log ``LABELS.csv`` means:

nan
    ``train/loss`` is non-finite (NaN or +-Inf) at some step. Onset: the first such step.
divergence
    From some step to the end of the run (at least ``min_points`` points), every loss is at least
    ``ratio`` times the best loss before that step, by a material amount: the excess over the best
    is at least ``min_progress`` of the progress the run had made (the highest loss up to where
    the best was reached, minus the best). The best is the lowest median of ``SMOOTH`` consecutive
    points, so one unusually easy batch does not make the rest of the run look diverged. Onset:
    the first step of that stretch. A loss that has reached 1e-7 and sits at 1e-6 has multiplied
    by ten yet lost nothing the run learnt: not a divergence.
spike
    A loss at least ``ratio`` times the median of the ``window`` finite points before it (so a
    spike needs that much history), by a material amount as above, after which the loss comes
    back under ``ratio`` times that median. Onset: the first such point.
none
    None of the above.

On the shared real logs with a ``train/loss`` (93 runs), these rules give the shared label's event
for every run but two: the one ``plateau`` (not a label here) and a 9-point fragment the shared
labels call a spike by hand. Spike onsets agree within 7 steps; divergence onsets can differ where
a noisy loss makes "from where on" a matter of rule (``tests/lab/test_labels.py`` checks a few).

The precedence is nan, then divergence, then spike: a run that spiked and later diverged is a
divergence. :func:`grokking_label` and :func:`eos_label` put their own event between divergence
and spike (a loss that blew up says more than a phase reached before it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from foreshock.lab.base import Label
from foreshock.run import Run

__all__ = ["RATIO", "WINDOW", "eos_label", "grokking_label", "loss_label"]

#: a loss this many times its reference (best so far, or recent median) is a jump (shared labels: 1.5x)
RATIO = 1.5
#: points of history a spike is judged against (the shared labels' 50-point rule)
WINDOW = 50
#: an excess smaller than this share of the progress made so far does not count
MIN_PROGRESS = 0.05
#: a divergence must last this many points to the end of the run
MIN_DIVERGENCE_POINTS = 3
#: the best loss is taken on the median of this many points, so one lucky batch does not set it
SMOOTH = 5


def loss_label(run: Run, config: Mapping[str, Any] | None = None, *, metric: str = "train/loss",
               ratio: float = RATIO, window: int = WINDOW, min_progress: float = MIN_PROGRESS,
               min_points: int = MIN_DIVERGENCE_POINTS) -> Label:
    """Label a run none, spike, divergence or nan from its loss (see the module docstring).

    Parameters
    ----------
    run : Run
        The whole run; needs ``metric``.
    config : mapping, optional
        The run's knobs; unused by this rule (it is in the signature every label rule has).
    metric : str
        The loss series the rule reads.
    ratio, window, min_progress, min_points : see the module docstring.
    """
    if metric not in run:
        raise ValueError(f"run {run.name!r} has no {metric!r}: cannot label its loss; it has {run.names}")
    steps, values = run.series(metric)
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(steps[np.argmax(bad)])
        before = _divergence(steps[: np.argmax(bad)], values[: np.argmax(bad)], ratio, min_progress, min_points)
        grew = f"; the loss had diverged from step {before[0]} ({before[1]})" if before else ""
        return Label("nan", first, f"{metric} non-finite ({_fmt(values[np.argmax(bad)])}) first at step {first}, "
                                   f"{int(bad.sum())} of {len(values)} points non-finite{grew}")
    if len(values) < 2:
        return Label("none", None, f"too short to judge: {len(values)} {metric} point(s)")
    div = _divergence(steps, values, ratio, min_progress, min_points)
    if div is not None:
        return Label("divergence", div[0], f"divergence: {div[1]}")
    spike = _first_spike(steps, values, ratio, window, min_progress)
    if spike is not None:
        return Label("spike", spike[0], f"spike: {spike[1]}")
    note = f" (fewer than {window + 1} points: no spike can be judged)" if len(values) <= window else ""
    return Label("none", None, f"none: {metric} never {ratio:g}x its best to the end nor {ratio:g}x the median "
                               f"of its last {window} points, over {len(values)} points{note}")


def grokking_label(run: Run, config: Mapping[str, Any] | None = None, *, train_acc: float = 0.99,
                   val_acc: float = 0.9, rise: float = 0.1, delay: float = 2.0) -> Label:
    """Label grokking: validation accuracy that rises long after training accuracy saturated.

    Let ``t_fit`` be the first step with ``train/acc >= train_acc`` and ``t_gen`` the first with
    ``val/acc >= val_acc`` (the shared labels' 0.99 and 0.9). The run grokked when both exist and
    ``t_gen > delay * t_fit`` (it took at least as long again to generalise as to fit; otherwise
    the two came together and nothing was delayed). The onset is the start of the rise that
    reached ``val_acc``: with ``base`` the median ``val/acc`` up to ``t_fit`` (the plateau when
    training fitted) and ``level = base + rise * (val_acc - base)``, the first logged step after the
    last step before ``t_gen`` at which ``val/acc <= level``. (The shared labels put grokking at
    ``t_gen``; the rule text gives it too. On the 25 shared grokking runs the onset is 400 to
    12,200 steps earlier: the rise a detector should see coming.)

    A loss that went non-finite or diverged (:func:`loss_label`) takes precedence; a run that did
    not grok gets its loss label (spike or none).
    """
    loss = loss_label(run, config)
    if loss.event in ("nan", "divergence"):
        return loss
    missing = [m for m in ("train/acc", "val/acc") if m not in run]
    if missing:
        return Label(loss.event, loss.onset_step, f"{loss.rule}; no grokking possible: no {', '.join(missing)}")
    ts, ta = run.series("train/acc")
    vs, va = run.series("val/acc")
    t_fit = _first_at_least(ts, ta, train_acc)
    t_gen = _first_at_least(vs, va, val_acc)
    seen = f"train/acc>={train_acc:g}@{t_fit} val/acc>={val_acc:g}@{t_gen}"
    if t_fit is None or t_gen is None or t_gen <= delay * t_fit:
        why = "never" if t_fit is None or t_gen is None else f"not after {delay:g}x the fitting step"
        return Label(loss.event, loss.onset_step, f"{loss.rule}; no grokking ({seen}: generalised {why})")
    fitted = vs <= t_fit
    base = float(np.nanmedian(va[fitted])) if fitted.any() else float(va[0])
    level = base + rise * (val_acc - base)
    before = np.flatnonzero((vs < t_gen) & ~(va > level))  # NaN counts as not risen
    onset = int(vs[before[-1] + 1]) if len(before) else int(vs[0])
    return Label("grokking", onset, f"grokking: {seen}; val/acc base {base:.3g} at fit, rise above "
                                    f"{level:.3g} (base + {rise:g} of the way to {val_acc:g}) from step {onset}")


def eos_label(run: Run, config: Mapping[str, Any] | None = None, *, threshold: float = 0.9,
              probes: int = 3) -> Label:
    """Label the edge of stability: sharpness at the gradient-descent limit ``2 / lr``.

    At each ``probe/hessian/lambda_max`` point the learning rate is the last ``opt/lr`` logged at
    or before that step (or ``config["lr"]`` when the run logged none). The run reached the edge
    of stability at the first of ``probes`` consecutive probes with
    ``lambda_max * lr / 2 >= threshold``. A loss that went non-finite or diverged
    (:func:`loss_label`) takes precedence; a run that never reached the edge gets its loss label.
    """
    loss = loss_label(run, config)
    if loss.event in ("nan", "divergence"):
        return loss
    metric = "probe/hessian/lambda_max"
    if metric not in run:
        return Label(loss.event, loss.onset_step, f"{loss.rule}; no edge of stability possible: no {metric}")
    ps, lam = run.series(metric)
    if "opt/lr" in run:
        ls, lv = run.series("opt/lr")
        at = np.searchsorted(ls, ps, side="right") - 1
        lr = np.where(at >= 0, lv[np.maximum(at, 0)], np.nan)
    elif config and "lr" in config:
        lr = np.full(len(ps), float(config["lr"]))
    else:
        return Label(loss.event, loss.onset_step, f"{loss.rule}; no edge of stability possible: no opt/lr")
    with np.errstate(invalid="ignore"):
        edge = lam * lr / 2.0
        hit = edge >= threshold  # NaN is False
    start = _first_run(hit, probes)
    if start is None:
        top = float(np.nanmax(edge)) if np.isfinite(edge).any() else float("nan")
        return Label(loss.event, loss.onset_step, f"{loss.rule}; no edge of stability: lambda_max*lr/2 peaked at "
                                                  f"{_fmt(top)}, never >= {threshold:g} for {probes} probes")
    s = int(ps[start])
    return Label("edge_of_stability", s, f"edge_of_stability: lambda_max*lr/2 >= {threshold:g} for {probes} "
                                         f"consecutive probes from step {s} (lambda_max {_fmt(lam[start])}, "
                                         f"lr {_fmt(lr[start])}, ratio {_fmt(edge[start])})")


# -- the loss rules ------------------------------------------------------------------------------


def _divergence(steps: np.ndarray, values: np.ndarray, ratio: float, min_progress: float,
                min_points: int) -> tuple[int, str] | None:
    """(onset step, reason) of a rise that lasts to the end of finite ``values``, or None."""
    n = len(values)
    if n < min_points + 1:
        return None
    smooth = _trailing_median(values, SMOOTH)
    best = np.minimum.accumulate(smooth)[:-1]  # best[i - 1]: the best before point i
    high = _high_before_best(smooth)[:-1]
    v = values[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        up = (best > 0) & (v >= ratio * best) & (v - best >= min_progress * (high - best))
    if not up[-1]:
        return None
    # the stretch of "up" points that reaches the end of the run
    down = np.flatnonzero(~up)
    i = int(down[-1]) + 1 if len(down) else 0
    if len(up) - i < min_points:
        return None
    return int(steps[i + 1]), (f"train loss {_fmt(v[i])} at step {steps[i + 1]} = {v[i] / best[i]:.2f}x the best "
                               f"{SMOOTH}-point median {_fmt(best[i])} before it, and at least {ratio:g}x it for all {len(up) - i} "
                               f"points to the end (last {_fmt(v[-1])})")


def _first_spike(steps: np.ndarray, values: np.ndarray, ratio: float, window: int,
                 min_progress: float) -> tuple[int, str] | None:
    """(onset step, reason) of the first recovered spike over the median of the ``window`` points before."""
    n = len(values)
    if n <= window:
        return None
    med = np.median(np.lib.stride_tricks.sliding_window_view(values, window)[:-1], axis=1)  # med[j]: before j+window
    high = _high_before_best(values)[window - 1:-1]
    v = values[window:]
    with np.errstate(invalid="ignore"):
        hit = (med > 0) & (v >= ratio * med) & (v - med >= min_progress * (high - med))
    # a spike comes back: some later point is under the threshold it crossed
    later_min = np.minimum.accumulate(v[::-1])[::-1]
    later_min = np.append(later_min[1:], np.inf)  # later_min[j]: the lowest point after j
    spikes = hit & (later_min < ratio * med)
    if not spikes.any():
        return None
    j = int(np.argmax(spikes))
    i = j + window
    r = i + 1 + int(np.argmax(values[i + 1:] < ratio * med[j]))
    episodes = int(np.sum(spikes & ~np.append(False, spikes[:-1])))
    return int(steps[i]), (f"train loss {_fmt(values[i])} at step {steps[i]} = {v[j] / med[j]:.2f}x the median "
                           f"{_fmt(med[j])} of the {window} points before; back under {ratio:g}x at step "
                           f"{steps[r]}; {episodes} spike(s) in all")


# -- helpers ---------------------------------------------------------------------------------------


def _high_before_best(values: np.ndarray) -> np.ndarray:
    """At each point, the highest value up to where the best so far was reached: what the run had learnt
    from. Later highs (the blow-up itself) do not count, or a divergence would hide behind its own peak."""
    n = len(values)
    at_best = np.maximum.accumulate(np.where(values <= np.minimum.accumulate(values), np.arange(n), 0))
    return np.maximum.accumulate(values)[at_best]


def _trailing_median(values: np.ndarray, k: int) -> np.ndarray:
    """Median of each point and the ``k - 1`` before it (fewer at the start)."""
    out = np.empty(len(values))
    head = min(k - 1, len(values))
    for i in range(head):
        out[i] = np.median(values[: i + 1])
    if len(values) >= k:
        out[k - 1:] = np.median(np.lib.stride_tricks.sliding_window_view(values, k), axis=1)
    return out


def _first_at_least(steps: np.ndarray, values: np.ndarray, level: float) -> int | None:
    with np.errstate(invalid="ignore"):
        hit = np.flatnonzero(values >= level)
    return int(steps[hit[0]]) if len(hit) else None


def _first_run(hit: np.ndarray, k: int) -> int | None:
    """Index of the first of ``k`` consecutive True values, or None."""
    run = 0
    for i, h in enumerate(hit):
        run = run + 1 if h else 0
        if run >= k:
            return i - k + 1
    return None


def _fmt(x: float) -> str:
    return f"{float(x):.4g}"
