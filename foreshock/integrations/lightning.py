"""``ForeshockCallback`` for Lightning: :func:`foreshock.watch` on a ``LightningModule``, no loop code.

    from foreshock.integrations.lightning import ForeshockCallback
    trainer = lightning.Trainer(callbacks=[ForeshockCallback(run="gpt-small", store="runs.db")])

- the watch starts when training starts (on the module and its first optimizer, as
  :func:`foreshock.watch` takes them) and is closed when fitting ends, ``finished``, or when an
  exception stops it, ``crashed``;
- after each training batch that ended with an optimizer step, the loss the ``training_step``
  returned (its ``"loss"``, or the tensor itself) is recorded as ``train/loss`` at
  ``trainer.global_step``; with gradient accumulation, the loss of the batch that stepped;
- after each validation run (not the sanity check), the metrics the module logged whose names
  start with ``val`` (``val_loss`` -> ``val/loss``) are recorded at the same step.

Works with ``lightning`` (``lightning.pytorch``) and with the older ``pytorch_lightning``; when both
are installed, :class:`ForeshockCallback` is for ``lightning`` and :class:`PLForeshockCallback`
for ``pytorch_lightning`` (each Trainer accepts only its own package's callbacks).
"""

from __future__ import annotations

import numbers
from typing import Any

from foreshock.errors import ForeshockError

try:
    import lightning.pytorch as _lightning
except ImportError:
    _lightning = None
try:
    import pytorch_lightning as _pytorch_lightning
except ImportError:
    _pytorch_lightning = None
if _lightning is None and _pytorch_lightning is None:
    raise ImportError("foreshock.integrations.lightning needs Lightning: pip install lightning "
                      "(or the older pytorch_lightning)")

__all__ = ["ForeshockCallback", "PLForeshockCallback"]


class _Callback:
    """The callback's behaviour, on either Lightning package's ``Callback`` (see the module docstring).

    Parameters
    ----------
    run, store, every, flush_every, on_event, detectors, console, update_ratio, precursors
        As :func:`foreshock.watch` takes them.
    """

    def __init__(self, run: str | None = None, store: Any = "foreshock.db", **watch_options: Any):
        self.run = run
        self.store = store
        self.watch_options = watch_options
        self.watch: Any = None  # the foreshock Watch, while training
        self._last_step: int | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.watch is not None:
            return  # a second fit() on the same callback goes on with the same run
        from foreshock.torch import watch

        self._last_step = trainer.global_step  # no optimizer step yet at this global step
        optimizers = [getattr(opt, "optimizer", opt) for opt in trainer.optimizers]  # LightningOptimizer wraps
        self.watch = watch(pl_module, optimizers[0] if optimizers else None, run=self.run, store=self.store,
                           **self.watch_options)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.watch is None:
            return
        step = trainer.global_step
        if step == self._last_step:
            return  # an accumulation batch: the optimizer has not stepped since the last record
        self._last_step = step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.watch.step(step, loss=loss if _is_scalar(loss) else None)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.watch is None or trainer.sanity_checking:
            return
        metrics = {name: value for name, value in trainer.callback_metrics.items()
                   if name.startswith("val") and _is_scalar(value)}
        if metrics:
            step = max(trainer.global_step, self._last_step or 0)
            self.watch.step(step, **metrics)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._close("finished")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._close("crashed")

    def _close(self, status: str) -> None:
        if self.watch is not None:
            watch, self.watch = self.watch, None
            watch.close(status)


def _is_scalar(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    numel = getattr(value, "numel", None)
    return callable(numel) and numel() == 1


if _lightning is not None:
    class ForeshockCallback(_Callback, _lightning.Callback):
        __doc__ = _Callback.__doc__

if _pytorch_lightning is not None:
    class PLForeshockCallback(_Callback, _pytorch_lightning.Callback):
        __doc__ = _Callback.__doc__

    if _lightning is None:
        ForeshockCallback = PLForeshockCallback  # type: ignore[misc]
else:
    def PLForeshockCallback(*args: Any, **kwargs: Any) -> Any:  # noqa: N802
        raise ForeshockError("PLForeshockCallback needs pytorch_lightning: pip install pytorch_lightning")
