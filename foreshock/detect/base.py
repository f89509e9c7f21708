"""The Detector protocol: a causal state machine over training steps.

A detector sees one step at a time, ``update(step, values) -> events``, where ``values`` maps the
canonical metric names logged at that step to floats. It never sees the future, so replaying a log
through it shows exactly what would have fired live, and when.

State is declared (``self._add_state(name, default)``), which gives ``reset``, ``state_dict`` and
``load_state_dict`` for free: a monitor that is checkpointed and resumed continues exactly.
Constructor arguments are stored under the same names, which gives ``clone`` and ``repr``.
"""

from __future__ import annotations

import copy
import inspect
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from foreshock.events import Event, Severity

__all__ = ["Detector"]


class Detector:
    """Base class of all detectors.

    Subclasses set ``name`` (the detector id that appears in events), take only keyword-able
    parameters in ``__init__`` (stored under the same names), declare running state with
    ``_add_state`` and implement ``update``. ``metrics`` lists the series the detector reads
    (``None``: all of them); the monitor only routes those.

    A subclass may add ``scan(series) -> list[Event]``, a vectorised replay over whole arrays,
    ``series`` mapping each metric it reads to ``(steps, values)``. It must emit the same events as
    calling ``update`` step by step and leave the same state behind; the contract tests check both.
    """

    name: ClassVar[str] = "detector"
    metrics: tuple[str, ...] | None = None

    def __init__(self) -> None:
        self._defaults: dict[str, Any] = {}

    # -- declared state -----------------------------------------------------------------------
    def _add_state(self, name: str, default: Any) -> None:
        if "_defaults" not in self.__dict__:
            self._defaults = {}
        self._defaults[name] = default
        setattr(self, name, copy.deepcopy(default))

    def reset(self) -> None:
        """Forget everything seen; keep the parameters."""
        for name, default in self._defaults.items():
            setattr(self, name, copy.deepcopy(default))

    def state_dict(self) -> dict[str, Any]:
        """The running state as plain JSON-able values (deques and arrays become lists)."""
        return {name: _plain(getattr(self, name)) for name in self._defaults}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        unknown = set(state) - set(self._defaults)
        if unknown:
            raise KeyError(f"{type(self).__name__}: unknown state {sorted(unknown)}")
        for name, default in self._defaults.items():
            if name in state:
                setattr(self, name, _like(default, state[name]))

    # -- parameters -----------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def clone(self) -> Detector:
        """A fresh detector with the same parameters and no state."""
        return type(self)(**copy.deepcopy(self._params()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    # -- the protocol -------------------------------------------------------------------------
    def update(self, step: int, values: Mapping[str, float]) -> list[Event]:
        raise NotImplementedError

    def _event(self, kind: str, severity: Severity, step: int, onset_step: int, message: str,
               **evidence: Any) -> Event:
        return Event(detector=self.name, kind=kind, severity=severity, step=int(step),
                     onset_step=int(onset_step), message=message, evidence=evidence)


def _plain(x: Any) -> Any:
    if isinstance(x, deque):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, np.generic):
        return x.item()
    return copy.deepcopy(x)


def _like(default: Any, value: Any) -> Any:
    if isinstance(default, deque):
        return deque(value, maxlen=default.maxlen)
    if isinstance(default, np.ndarray):
        return np.asarray(value, dtype=default.dtype)
    if isinstance(default, tuple):
        return tuple(value)
    return copy.deepcopy(value)
