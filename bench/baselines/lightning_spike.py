"""Lightning's ``SpikeDetection`` callback as a causal per-batch rule on the training loss.

Re-implemented from ``lightning.fabric.utilities.spike.SpikeDetection`` (the class that
``lightning.pytorch.callbacks.SpikeDetection`` wraps; source read at Lightning-AI/pytorch-lightning
commit 0c94c0e; the stable documentation gives the same signature and defaults). Its defaults:

- ``mode="min"``: the loss is minimised, so a loss at or below the previous one is never a spike;
- ``window=10``: the reference is the running mean of the last 10 losses it accepted
  (torchmetrics ``Running(MeanMetric(), window=10)``);
- ``warmup=1``: batches with ``batch_idx < 1`` are not checked (the first batch only feeds the mean);
- ``atol=None``: no absolute tolerance;
- ``rtol=2.0``: a spike needs ``|loss - mean| >= 2.0 * |mean|``, i.e. a loss at 3x the running mean;
- ``finite_only=True``: a non-finite loss is a spike at once (the code's behaviour; its docstring
  words it the other way round).

On a spike the callback writes the batches to skip and raises ``TrainingSpikeException``: training
stops, so the rule fires at most once per run. A batch that is not a spike enters the running mean
(with ``finite_only=False``, only when it is finite).

Replaying a log, each logged training-loss point stands for one batch and ``batch_idx`` counts the
points from 0 (the callback's ``batch_idx`` restarts each epoch; a log does not say where epochs
start, so the warm-up applies once). A log written every N batches hides the batches in between:
the rule then judges each logged point against the mean of the logged ones.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

__all__ = ["LightningSpikeDetection", "fire_steps"]


class LightningSpikeDetection:
    """The per-batch decision of Lightning's ``SpikeDetection``; ``update`` is True when it would raise.

    Parameters are those of the callback, with its defaults (``exclude_batches_path`` is only where
    it writes the skipped batches, so it is left out).
    """

    name = "lightning-SpikeDetection"

    def __init__(self, mode: str = "min", window: int = 10, warmup: int = 1, atol: float | None = None,
                 rtol: float | None = 2.0, finite_only: bool = True) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"Invalid mode. Has to be min or max, found {mode}")
        self.mode = mode
        self.window = window
        self.warmup = warmup
        self.atol = atol
        self.rtol = rtol
        self.finite_only = finite_only
        self.recent: deque[float] = deque(maxlen=window)  # what the running mean averages
        self.last_val = 0.0  # the callback starts from 0.0
        self.batch_idx = 0
        self.stopped = False

    def update(self, loss: float) -> bool:
        """Judge one batch's loss; True when the callback would stop training here."""
        if self.stopped:
            raise RuntimeError("training already stopped at a spike")
        batch_idx = self.batch_idx
        self.batch_idx += 1
        if batch_idx >= self.warmup and self._is_spike(loss):
            self.stopped = True
            return True
        if self.finite_only or math.isfinite(loss):
            self.recent.append(loss)
            self.last_val = loss
        return False

    def _is_spike(self, loss: float) -> bool:
        running = sum(self.recent) / len(self.recent) if self.recent else math.nan
        diff = loss - self.last_val
        if self.finite_only and not math.isfinite(loss):
            return True
        if (diff <= 0.0) if self.mode == "min" else (diff >= 0.0):  # no worse than the last value
            return False
        atol_ok = self.atol is None or abs(loss - running) >= abs(self.atol)
        rtol_ok = self.rtol is None or abs(loss - running) >= abs(self.rtol * running)
        return atol_ok and rtol_ok


def fire_steps(steps: Iterable[int], losses: Iterable[float], **params: Any) -> list[int]:
    """The step at which the callback stops training (a list of at most one), replaying a loss curve."""
    det = LightningSpikeDetection(**params)
    for step, loss in zip(steps, losses, strict=True):
        if det.update(float(loss)):
            return [int(step)]
    return []
