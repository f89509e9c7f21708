"""llm-foundry's ``KillLossSpike`` callback as a causal per-batch rule on the training loss.

Re-implemented from ``llmfoundry/callbacks/kill_loss_spike_callback.py`` (mosaicml/llm-foundry at
commit 56891fc, the form with the run-length window; the class is marked experimental). Its
defaults:

- ``log_only=True``: it logs a message and training goes on (``False`` raises ``LossSpikeError`` /
  ``HighLossError`` and stops the run);
- ``patience=4``: a loss spike is declared on the 5th consecutive outlier;
- ``outlier_multiplier=2``: an outlier is a loss ``>= 2 x`` the mean of the loss window;
- ``window_size=100`` (``_MIN_WINDOW_SIZE``): nothing is judged before the window holds 100 losses;
  when it first does, the window grows to ``max(100, round(0.05 * total batches))`` (total from the
  trainer's ``max_duration``), and judging starts once the grown window is full;
- ``loss_cap=10`` (``_MAX_LOSS_CAP``): "high losses" fire when, from batch ``2 x window_size`` on,
  at least half of the window is above the cap. The code lowers the cap to the largest loss of the
  first window only ``if current_step == window_size`` at the moment the window is full; Composer
  counts the batch before ``BATCH_END`` runs, so at that moment ``current_step`` is
  ``window_size + 1`` and the cap stays at 10. This module keeps that behaviour.

Each batch first judges the new loss against the window, then appends it: the new loss is not in
its own reference mean. A NaN loss is never an outlier (comparisons with NaN are false), enters the
window, and from then on the mean is NaN, so the callback stays silent for the rest of the run.

Replaying a log, each logged training-loss point stands for one batch (``current_step`` = points
seen so far) and the total is the number of logged points, which a trainer knows up front from its
``max_duration``. A log written every N batches makes the window span ``100 x N`` batches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["KillLossSpike", "fire_steps"]

MIN_WINDOW_SIZE = 100
MAX_LOSS_CAP = 10.0
WINDOW_FRACTION = 0.05


class KillLossSpike:
    """The per-batch decisions of llm-foundry's ``KillLossSpike``.

    Parameters
    ----------
    total_batches : int or None
        The run's planned length in batches (``max_duration``); None when the trainer has none.
    log_only, patience, outlier_multiplier, window_size, loss_cap
        The callback's own parameters, with its defaults.
    """

    name = "llm-foundry-KillLossSpike"

    def __init__(self, total_batches: int | None = None, *, log_only: bool = True, patience: int = 4,
                 outlier_multiplier: float = 2, window_size: int = MIN_WINDOW_SIZE,
                 loss_cap: float = MAX_LOSS_CAP) -> None:
        self.total_batches = total_batches
        self.log_only = log_only
        self.patience = patience
        self.outlier_multiplier = outlier_multiplier
        self.window_size = window_size
        self.loss_cap = loss_cap
        self.outlier_counter = 0
        self.loss_window: deque[float] = deque()  # unbounded until the window size is set, as upstream
        self.window_size_set = window_size != MIN_WINDOW_SIZE
        self.loss_cap_set = loss_cap != MAX_LOSS_CAP
        self.batch = 0  # Composer's state.timestamp.batch at BATCH_END: already counts this batch
        self.stopped = False

    def update(self, loss: float) -> str | None:
        """Judge one batch's loss: ``"loss_spike"``, ``"high_loss"`` when the callback fires, else None."""
        if self.stopped:
            raise RuntimeError("training already stopped")
        self.batch += 1
        fired: str | None = None
        if len(self.loss_window) == self.window_size:
            current_step = self.batch
            if not self.window_size_set:
                self._set_window_size()
                if self.window_size > MIN_WINDOW_SIZE:  # grown: fill it before judging
                    self.loss_window.append(loss)
                    return None
            if not self.loss_cap_set and current_step == self.window_size:
                self.loss_cap = min(max(self.loss_window), self.loss_cap)
                self.loss_cap_set = True
            running_loss_avg = float(np.mean(self.loss_window))
            if self._detect_loss_spike(loss, running_loss_avg):
                fired = "loss_spike"
            elif self._detect_high_losses(current_step):
                fired = "high_loss"
            if fired is not None and not self.log_only:
                self.stopped = True
        self.loss_window.append(loss)
        return fired

    def _detect_loss_spike(self, train_loss: float, running_loss_avg: float) -> bool:
        if train_loss >= running_loss_avg * self.outlier_multiplier:
            self.outlier_counter += 1
            return self.outlier_counter > self.patience
        if self.outlier_counter > 0:  # not a persistent spike: start counting again
            self.outlier_counter = 0
        return False

    def _detect_high_losses(self, current_step: int) -> bool:
        if current_step < self.window_size * 2:
            return False
        high = sum(1 for x in self.loss_window if x > self.loss_cap)
        return high >= self.window_size / 2

    def _set_window_size(self) -> None:
        if self.total_batches is not None:
            self.window_size = max(self.window_size, round(float(self.total_batches * WINDOW_FRACTION)))
        self.loss_window = deque(self.loss_window, maxlen=self.window_size)
        self.window_size_set = True


def fire_steps(steps: Iterable[int], losses: Iterable[float], **params: Any) -> list[tuple[int, str]]:
    """Every ``(step, "loss_spike" | "high_loss")`` at which the callback fires, replaying a loss curve.

    The planned length is the number of points unless ``total_batches`` is given.
    """
    steps = [int(s) for s in steps]
    losses = [float(x) for x in losses]
    params.setdefault("total_batches", len(losses))
    det = KillLossSpike(**params)
    out: list[tuple[int, str]] = []
    for step, loss in zip(steps, losses, strict=True):
        fired = det.update(loss)
        if fired is not None:
            out.append((step, fired))
        if det.stopped:
            break
    return out
