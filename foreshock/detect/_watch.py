"""Which of a detector's metrics it watches, when ``metrics`` is an order of preference.

A metric is watched while no metric before it in the order has been seen: with
``("train/loss", "val/loss")`` a log with only ``val/loss`` is watched through it, and a log with
both through ``train/loss`` (``val/loss`` points before the first ``train/loss`` point still count).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

__all__ = ["first_steps", "watched"]


def watched(metrics: Sequence[str], seen: dict[str, bool], values: Mapping[str, float]) -> list[str]:
    """The metrics of ``values`` to process at this step; marks every metric present as seen."""
    out: list[str] = []
    blocked = False
    for m in metrics:
        if m in values:
            seen[m] = True
            if not blocked:
                out.append(m)
        blocked = blocked or m in seen
    return out


def first_steps(metrics: Sequence[str], series: Mapping[str, tuple[np.ndarray, np.ndarray]],
                seen: dict[str, bool]) -> Iterator[tuple[str, int | None]]:
    """Each metric present with the step before which it is watched (None: to the end).

    Marks every metric present as seen, as :func:`watched` would have over the whole series.
    """
    cutoff: int | None = None
    for m in metrics:
        if m not in series or not len(series[m][0]):
            continue
        seen[m] = True
        first = int(series[m][0][0])
        if cutoff is None or first < cutoff:
            yield m, cutoff
        cutoff = first if cutoff is None else min(cutoff, first)
