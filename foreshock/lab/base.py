"""What a lab workload is: a named training recipe with knobs, presets and a hindsight label rule.

A workload module defines one :class:`Workload` and registers it with :func:`register`. Running it
(:func:`foreshock.lab.run`) merges the knobs ``defaults <- presets[preset] <- overrides``, calls
``train(config, watch)`` and labels the stored run in hindsight.

``train`` builds its model and optimizer from ``config`` and asks ``watch(model, optimizer)`` for
the live monitor (a :class:`foreshock.torch.Watch` already bound to the run name and the store);
it calls ``mon.step(step, loss=..., **metrics)`` once per optimizer step and returns. It does not
close the monitor: the runner does, also when training raises. A workload that stops early on a
non-finite loss says so by returning normally; the label rule sees the NaN in the stored run.

Knob names are shared where they mean the same thing: ``lr``, ``warmup``, ``steps``, ``schedule``,
``seed``, ``batch``, ``width``, ``depth``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Label", "Workload", "get", "names", "register"]

#: the hindsight labels a lab run can get (DESIGN's event kinds that a whole run can be said to show)
LABEL_EVENTS = ("none", "spike", "divergence", "nan", "grokking", "edge_of_stability")


@dataclasses.dataclass(frozen=True)
class Label:
    """A run's hindsight label: what happened (one of :data:`LABEL_EVENTS`) and from which step.

    ``onset_step`` is None exactly when ``event`` is ``"none"``. ``rule`` says in words which rule
    gave the label and with which numbers, so a reader can check it against the curve.
    """

    event: str
    onset_step: int | None
    rule: str = ""

    def __post_init__(self) -> None:
        if self.event not in LABEL_EVENTS:
            raise ValueError(f"label event must be one of {LABEL_EVENTS}, got {self.event!r}")
        if (self.event == "none") != (self.onset_step is None):
            raise ValueError(f"label {self.event!r}: onset_step must be None exactly for 'none'")

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "onset_step": self.onset_step, "rule": self.rule}


@dataclasses.dataclass(frozen=True)
class Workload:
    """A lab training recipe.

    Attributes
    ----------
    name : str
        The name ``foreshock lab run NAME`` takes (``gpt-instability``, ``grokking``, ...).
    description : str
        One line for ``foreshock lab list``.
    defaults : mapping
        Every knob with its default value and type; ``--set`` may only name these.
    presets : mapping of str to mapping
        ``cpu`` (minutes on 2 cores) and ``gpu``: knob overrides on top of ``defaults``.
    train : callable
        ``train(config, watch) -> None``; see the module docstring.
    label : callable
        ``label(run, config) -> Label``: the hindsight rule, applied to the whole stored run
        (a :class:`foreshock.run.Run`).
    """

    name: str
    description: str
    defaults: Mapping[str, Any]
    presets: Mapping[str, Mapping[str, Any]]
    train: Callable[..., None]
    label: Callable[..., Label]

    def config(self, preset: str = "cpu", overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The knobs of a run: defaults, then the preset, then ``overrides`` (each checked by name)."""
        if preset not in self.presets:
            raise ValueError(f"{self.name}: unknown preset {preset!r}; presets: {sorted(self.presets)}")
        config = dict(self.defaults)
        for source, values in ((f"preset {preset!r}", self.presets[preset]), ("--set", overrides or {})):
            unknown = sorted(set(values) - set(self.defaults))
            if unknown:
                raise ValueError(f"{self.name}: unknown knob(s) {unknown} in {source}; knobs: {sorted(self.defaults)}")
            config.update(values)
        return config


_REGISTRY: dict[str, Workload] = {}


def register(workload: Workload) -> Workload:
    """Make ``workload`` runnable by name; returns it (so a module can write ``W = register(...)``)."""
    _REGISTRY[workload.name] = workload
    return workload


def get(name: str) -> Workload:
    """The workload called ``name`` (importing the built-in workload modules on first use)."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown lab workload {name!r}; workloads: {names()}") from None


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def _load_builtins() -> None:
    import importlib

    for module in ("gpt", "grokking", "eos"):
        try:
            importlib.import_module(f"foreshock.lab.{module}")
        except ModuleNotFoundError as err:  # torch missing: the workload is simply not offered
            if err.name not in ("torch", f"foreshock.lab.{module}"):
                raise
