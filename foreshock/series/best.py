"""The running best of a level series, and what was true when it was set. Pure numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RunningBest", "running_best"]


@dataclass(frozen=True)
class RunningBest:
    """Per point: the lowest level so far and facts about the point where it was reached.

    ``new_best`` marks the points that set a new best; ``max_level`` is the highest level so far.
    ``at_best`` is the index of that point (-1 before any level exists); ``max_at_best`` is the highest
    level seen up to it (the series' first value counting as a level: progress is made from there);
    ``noise`` is the scale at the best, or the first scale after it when the best came before the
    scale existed (the scale of the moment is inflated by the very rise one wants to measure).
    """

    best: np.ndarray
    new_best: np.ndarray
    max_level: np.ndarray
    at_best: np.ndarray
    max_at_best: np.ndarray
    noise: np.ndarray


def running_best(level: np.ndarray, scale: np.ndarray, first_value: float) -> RunningBest:
    """The running best of ``level`` (NaN where undefined) with the scale at each best."""
    n = len(level)
    defined = ~np.isnan(level)
    max_level = np.fmax(np.fmax.accumulate(level), first_value)
    best = np.fmin.accumulate(level)
    prev_best = np.concatenate(([np.nan], best[:-1]))
    with np.errstate(invalid="ignore"):
        new_best = defined & ~(level >= prev_best)
    at_best = np.maximum.accumulate(np.where(new_best, np.arange(n), -1))
    j = np.maximum(at_best, 0)
    max_at_best = np.where(at_best >= 0, max_level[j], np.nan)
    return RunningBest(best=best, new_best=new_best, max_level=max_level, at_best=at_best, max_at_best=max_at_best, noise=_noise_at_best(scale, at_best))


def _noise_at_best(scale: np.ndarray, at_best: np.ndarray) -> np.ndarray:
    defined = np.flatnonzero(~np.isnan(scale))
    out = np.full(len(scale), np.nan)
    if len(defined):
        first = int(defined[0])  # the scale, once defined, stays defined
        out[first:] = scale[np.maximum(at_best[first:], first)]
    return out
