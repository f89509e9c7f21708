"""Live capture in PyTorch: :func:`watch` records a training run as it trains, without per-step syncs.

This package is the only part of foreshock that imports torch; ``import foreshock`` does not
(``foreshock.watch`` imports it on first use).

    >>> mon = foreshock.watch(model, optimizer, run="gpt-small", store="runs.db")   # doctest: +SKIP
    >>> mon.step(step, loss=loss)                                                  # doctest: +SKIP
"""

from foreshock.torch.buffer import Batch, StepBuffer
from foreshock.torch.capture import GradStats, layer_name
from foreshock.torch.live import Watch, watch

__all__ = ["Batch", "GradStats", "StepBuffer", "Watch", "layer_name", "watch"]
