"""``ForeshockCallback`` for the Hugging Face ``Trainer``: :func:`foreshock.watch`, no loop code.

    from foreshock.integrations.hf import ForeshockCallback
    trainer = Trainer(model, args, train_dataset=..., callbacks=[ForeshockCallback(run="gpt-small")])

- the watch starts when training begins, on the ``model`` and ``optimizer`` the Trainer passes to
  its callbacks (an Accelerate wrapper is unwrapped to the torch optimizer it drives), and is
  closed when training ends;
- ``train/loss`` at every optimizer step: the ``loss`` of the model's own output (what the Trainer
  back-propagates when the model computes the loss), kept on the device by a forward hook, so no
  step waits for it. With gradient accumulation, the mean over the step's forward passes; or
  their sum when the Trainer passed ``num_items_in_batch`` (each pass's loss is then already
  divided by the token count of the whole step). A model whose output has no
  ``loss`` gets the Trainer's logged ``loss`` instead (an average over ``logging_steps``);
- the other numbers the Trainer logs are recorded at the step they belong to, except
  ``learning_rate`` and ``grad_norm``, which ``watch`` measures itself (``opt/lr``, and
  ``opt/grad_norm`` after clipping where the Trainer logs it before), and the end-of-training
  summary (``train_runtime``, ...);
- evaluation metrics (``on_evaluate``) become ``val/*``: ``eval_loss`` -> ``val/loss``,
  ``eval_accuracy`` -> ``val/acc``, ``eval_<x>`` -> ``val/<x>``; timings are left out.

A step is written when the next one begins (or training ends): by then the Trainer has logged and
evaluated what belongs to it.

The Trainer has no callback for an exception. A callback given to the Trainer it watches
(``Trainer(..., callbacks=[ForeshockCallback()])``) finds that Trainer when it is made
(``on_init_end``, called from its constructor) and wraps its ``train``: when ``train()`` raises, the
steps done are written and the run is marked ``crashed`` at once, and the exception goes on. A
callback added later (``trainer.add_callback``) has no such moment: its run is marked ``crashed``
when the interpreter exits (see :func:`foreshock.watch`).
"""

from __future__ import annotations

import functools
import numbers
import sys
from typing import TYPE_CHECKING, Any

try:
    from transformers import TrainerCallback
except ImportError:
    raise ImportError("foreshock.integrations.hf needs Hugging Face transformers: pip install transformers") from None

from foreshock.logs.names import canonical_name

if TYPE_CHECKING:
    from transformers import Trainer

__all__ = ["ForeshockCallback"]

_MEASURED = {"learning_rate", "grad_norm"}  # watch measures these itself
_TIMINGS = ("_runtime", "_per_second", "total_flos")


def _unwrap_optimizer(optimizer: Any) -> Any:
    # Accelerate's AcceleratedOptimizer (and similar wrappers) keep the torch optimizer in .optimizer
    while optimizer is not None and hasattr(optimizer, "optimizer") and hasattr(optimizer.optimizer, "param_groups"):
        optimizer = optimizer.optimizer
    return optimizer


def _numbers(logs: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in logs.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool) and not k.endswith(_TIMINGS)}


class ForeshockCallback(TrainerCallback):
    """Watch a ``transformers.Trainer`` run (see the module docstring).

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
        self._pending: tuple[int, dict[str, Any]] | None = None  # the step not yet written
        self._loss_hook: Any = None
        self._loss_sum: Any = None  # device tensor: the step's training losses, summed
        self._loss_passes = 0
        self._loss_summed = False  # the passes' losses add up to the step's (see the module docstring)

    # -- the Trainer's events -------------------------------------------------------------------------
    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        trainer = _constructing_trainer(self)
        if trainer is not None:
            _mark_crash_of(trainer, self)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        if self.watch is not None or model is None:
            return
        from foreshock.torch import watch

        self.watch = watch(model, _unwrap_optimizer(optimizer), run=self.run, store=self.store,
                           **self.watch_options)
        self._loss_hook = model.register_forward_hook(self._keep_loss, with_kwargs=True)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._write_pending()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.watch is None:
            return
        self._write_pending()
        metrics: dict[str, Any] = {}
        if self._loss_sum is not None:
            metrics["train/loss"] = self._loss_sum if self._loss_summed else self._loss_sum / self._loss_passes
        self._loss_sum, self._loss_passes = None, 0
        self._pending = (state.global_step, metrics)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if self.watch is None or not logs or "train_runtime" in logs:
            return  # the end-of-training summary averages the whole run: not a step's value
        values = {k: v for k, v in _numbers(logs).items() if k not in _MEASURED and not k.startswith("eval_")}
        metrics = self._metrics_of(state.global_step)
        if "train/loss" in metrics:
            values.pop("loss", None)  # the step's own loss is already there
        metrics.update((canonical_name(k), v) for k, v in values.items())

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kwargs: Any) -> None:
        if self.watch is None or not metrics:
            return
        out = self._metrics_of(state.global_step)
        for name, value in _numbers(metrics).items():
            if name.startswith("eval_"):
                canonical = canonical_name(name)
                out[canonical if canonical.startswith("val/") else f"val/{name.removeprefix('eval_')}"] = value

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close("finished")

    def _close(self, status: str) -> None:
        """Write the step still pending, close the watch and mark the run ``status``."""
        if self.watch is None:
            return
        try:
            self._write_pending()
        except BaseException:
            status = "crashed"
            raise
        finally:
            if self._loss_hook is not None:
                self._loss_hook.remove()
                self._loss_hook = None
            watch, self.watch = self.watch, None
            watch.close(status)

    # -- helpers --------------------------------------------------------------------------------------
    def _keep_loss(self, module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if not (module.training and _grad_enabled()):
            return  # an evaluation pass
        loss = output.get("loss") if hasattr(output, "get") else getattr(output, "loss", None)
        if loss is None or not hasattr(loss, "detach") or loss.numel() != 1:
            return
        loss = loss.detach().reshape(())
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        self._loss_passes += 1
        self._loss_summed = kwargs.get("num_items_in_batch") is not None

    def _metrics_of(self, step: int) -> dict[str, Any]:
        """The metrics of ``step``: the pending step's, or a new pending step (evaluation before training)."""
        if self._pending is None or self._pending[0] != step:
            self._write_pending()
            self._pending = (step, {})
        return self._pending[1]

    def _write_pending(self) -> None:
        if self._pending is not None and self.watch is not None:
            step, metrics = self._pending
            self._pending = None
            self.watch.step(step, **metrics)


def _constructing_trainer(callback: ForeshockCallback) -> Trainer | None:
    """The Trainer whose constructor is calling ``callback.on_init_end``, found up the call stack."""
    from transformers import Trainer  # loaded already: a Trainer is being made

    frame = sys._getframe(1)
    while frame is not None:
        found = frame.f_locals.get("self")
        handler = getattr(found, "callback_handler", None)
        if isinstance(found, Trainer) and handler is not None and callback in handler.callbacks:
            return found
        frame = frame.f_back
    return None


def _mark_crash_of(trainer: Trainer, callback: ForeshockCallback) -> None:
    """Wrap ``trainer.train`` (on this instance): an exception out of it marks the watched run crashed."""
    train = trainer.train

    @functools.wraps(train)
    def train_or_crash(*args: Any, **kwargs: Any) -> Any:
        try:
            return train(*args, **kwargs)
        except BaseException:
            callback._close("crashed")  # the run is over: the steps done are kept
            raise

    trainer.train = train_or_crash


def _grad_enabled() -> bool:
    import torch

    return torch.is_grad_enabled()
