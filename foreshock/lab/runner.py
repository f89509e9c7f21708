"""Run a lab workload: knobs in, a stored, watched and labelled run out.

:func:`run` merges the knobs (``defaults <- presets[preset] <- overrides``), seeds Python, numpy
and torch with the ``seed`` knob, and calls the workload's ``train(config, watch)``. ``watch(model,
optimizer)`` starts :func:`foreshock.watch` on the run name and the store, with the knobs saved in
the run's config under ``"lab"`` (``{"workload", "preset", "knobs"}``), beside what ``watch``
records itself. The runner closes the monitor when training returns, or marks the run
``crashed`` and re-raises when it raises. It then loads the stored run, applies the workload's
hindsight label rule (:mod:`foreshock.lab.labels`) and stores the label as one ``info`` event of
detector ``"lab"`` and kind ``"label"``: its ``onset_step`` is the label's onset (the last step
for ``none``) and its evidence holds ``event``, ``onset_step`` and ``rule``.

torch is imported here only inside :func:`run`, so ``import foreshock.lab`` works without it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np

from foreshock.events import Event, jsonable
from foreshock.lab.base import Label, Workload, get
from foreshock.run import Run
from foreshock.store import open_store
from foreshock.store.sqlite import SQLiteStore

__all__ = ["LABEL_DETECTOR", "LabResult", "label_event", "run"]

#: the detector name of the stored label event (its kind is "label")
LABEL_DETECTOR = "lab"


@dataclasses.dataclass
class LabResult:
    """What one lab run produced.

    Attributes
    ----------
    run : str
        The run's name in the store.
    run_id : int
        Its id in the store.
    store : str
        The store's path.
    workload : str
    config : dict
        The merged knobs the run trained with.
    steps : int or None
        The last ``train/loss`` step recorded (the shared ``LABELS.csv`` counts steps this way).
    label : Label
        The hindsight label.
    events : list of Event
        What the detectors fired live, in order (the label event not included).
    """

    run: str
    run_id: int
    store: str
    workload: str
    config: dict[str, Any]
    steps: int | None
    label: Label
    events: list[Event]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: run, store, workload, config, steps, label (event, onset_step, rule), events."""
        return jsonable({"run": self.run, "store": self.store, "workload": self.workload, "config": self.config,
                         "steps": self.steps, "label": self.label.to_dict(),
                         "events": [e.to_dict() for e in self.events]})


def run(name: str, preset: str = "cpu", overrides: Mapping[str, Any] | None = None, *,
        store: str | os.PathLike = "foreshock.db", run_name: str | None = None, console: bool = True,
        threads: int | None = None) -> LabResult:
    """Train the lab workload ``name`` once, watched, stored and labelled.

    Parameters
    ----------
    name : str
        A registered workload (:func:`foreshock.lab.names`).
    preset : str
        ``"cpu"`` or ``"gpu"``: the workload's knob overrides for that machine.
    overrides : mapping, optional
        Knob values on top of the preset; an unknown knob is a ValueError before anything runs.
    store : path
        The SQLite run store (created when missing).
    run_name : str, optional
        The run's name in the store; default ``<workload>-<overrides>-<UTC time>``.
    console : bool
        Print events live as they fire.
    threads : int, optional
        ``torch.set_num_threads`` for this process (one per run when several run side by side).

    Raises
    ------
    ValueError
        Unknown workload, preset or knob.
    Exception
        Whatever training raised; the stored run is then marked ``crashed``.
    """
    workload = get(name)
    config = workload.config(preset, overrides)
    run_name = run_name or _default_name(workload, overrides)
    import torch  # only a run trains; importing foreshock.lab stays torch-free

    import foreshock

    if threads is not None:
        torch.set_num_threads(int(threads))
    seed = int(config.get("seed", 0))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    lab_config = {"workload": workload.name, "preset": preset, "knobs": config}
    with _LabStore(open_store(store), lab_config) as db:
        monitors: list[Any] = []

        def watch(model: Any, optimizer: Any = None, **options: Any) -> Any:
            if monitors:
                raise RuntimeError(f"{workload.name}: train asked for the monitor twice; one run has one")
            monitors.append(foreshock.watch(model, optimizer, run=run_name, store=db, console=console, **options))
            return monitors[0]

        try:
            workload.train(dict(config), watch)
        except BaseException:
            if monitors:
                monitors[0].close("crashed")
            raise
        if not monitors:
            raise RuntimeError(f"{workload.name}: train returned without asking for the monitor: nothing was recorded")
        mon = monitors[0]
        mon.close("finished")
        stored = db.load_run(mon.run_id)
        label = workload.label(stored, dict(config))
        db.add_events(mon.run_id, [label_event(label, stored)])
        steps = int(stored["train/loss"].steps[-1]) if "train/loss" in stored and len(stored["train/loss"]) else None
        return LabResult(run=run_name, run_id=int(mon.run_id), store=os.fspath(store), workload=workload.name,
                         config=config, steps=steps, label=label, events=list(mon.events))


def label_event(label: Label, run: Run) -> Event:
    """The info event that keeps ``label`` with its run in the store."""
    last = run.steps[1] if run.steps else 0
    onset = label.onset_step if label.onset_step is not None else last
    when = "" if label.onset_step is None else f" from step {label.onset_step}"
    return Event(detector=LABEL_DETECTOR, kind="label", severity="info", step=int(max(last, onset)),
                 onset_step=int(onset), message=f"Hindsight label: {label.event}{when}.",
                 evidence={"metric": "train/loss", **label.to_dict()})


class _LabStore:
    """The run store as ``watch`` sees it, except that the run it creates also carries the lab knobs."""

    def __init__(self, store: SQLiteStore, lab_config: dict[str, Any]):
        self._store = store
        self._lab = lab_config

    def create_run(self, name: str, *, config: dict[str, Any] | None = None, **kwargs: Any) -> int:
        return self._store.create_run(name, config={**(config or {}), "lab": self._lab}, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._store, attr)

    def __enter__(self) -> _LabStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self._store.close()


def _default_name(workload: Workload, overrides: Mapping[str, Any] | None) -> str:
    knobs = "".join(f"-{k}={v}" for k, v in sorted((overrides or {}).items()))
    return f"{workload.name}{knobs}-{_dt.datetime.now(_dt.timezone.utc):%Y%m%d-%H%M%S}"
