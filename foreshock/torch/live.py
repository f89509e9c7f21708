"""``foreshock.watch``: record a PyTorch training run as it trains and run the detectors on it live.

Two lines in a training loop::

    mon = foreshock.watch(model, optimizer, run="gpt-small", store="runs.db")
    for step, batch in enumerate(loader):
        loss = model(batch).loss
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        mon.step(step, loss=loss)        # after optimizer.step(): tensors welcome, never read here
    mon.close()                          # or use ``with foreshock.watch(...) as mon:``

Every step's scalars stay on the device in a :class:`~foreshock.torch.buffer.StepBuffer`; the
host gets them ``flush_every`` steps at a time, asynchronously, and only then stores them and
feeds them, in step order, to the same :class:`~foreshock.detect.monitor.Monitor` that
``foreshock analyze`` replays logs through. Beside them, a
:class:`~foreshock.detect.phases.PhaseDetector` follows the run's phase, as ``analyze`` does, and,
given the LR schedule, a worker thread refits the forecast of the final loss every few flushes.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import operator
import os
import sys
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from rich.console import Console
from rich.text import Text

from foreshock.detect.base import Detector
from foreshock.detect.health import Health, HealthChange
from foreshock.detect.monitor import Monitor
from foreshock.detect.phases import PhaseDetector, phase_timeline
from foreshock.events import Event
from foreshock.forecast.forecast import Forecast
from foreshock.forecast.live import LiveForecast, check_live_forecast, forecast_event, forecast_line
from foreshock.forecast.schedules import Schedule
from foreshock.logs.names import canonical_name
from foreshock.store import open_store
from foreshock.store.base import RunStore
from foreshock.torch.buffer import Batch, StepBuffer, check_scalar
from foreshock.torch.capture import GradStats
from foreshock.torch.console import EventPrinter
from foreshock.torch.distributed import RankReduction, active_group
from foreshock.torch.precursors import Precursors

__all__ = ["Watch", "watch"]



class Watch:
    """A live monitor of one training run. Made by :func:`watch`; see there for the parameters.

    Attributes
    ----------
    events : list of Event
        Every event fired so far, in the order the detectors emitted them.
    monitor : Monitor
        The detectors, fed the flushed steps in step order.
    health : Health
        The run's health (healthy / watch / warning / critical), moved by the events at each flush;
        ``health.state`` now, ``health.changes`` each change with the events behind it (printed as
        it happens).
    phase_events : list of Event
        The ``phase`` events of the run's :class:`~foreshock.detect.phases.PhaseDetector`, as
        :attr:`foreshock.analysis.Analysis.phase_events`: they describe the run, so they stay out of
        ``events`` (and of the health); each is printed as it fires.
    forecast : Forecast or None
        The latest forecast of the final loss (with ``schedule=``), refreshed every ``forecast_every``
        flushes; each refresh is printed and kept in ``forecast_events`` and the store.
    forecast_events : list of Event
        One info event of kind ``forecast`` per refresh (its evidence: ``Forecast.to_dict()``).
    run_id : int or None
        The run's id in the store (None with ``store=None``, and on ranks other than 0).
    rank : int
        This process's rank under ``torch.distributed`` (0 without it).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 run: str | None = None, store: str | os.PathLike | RunStore | None = "foreshock.db",
                 every: int = 1, flush_every: int = 50, on_event: Callable[[Event], Any] | None = None,
                 detectors: Sequence[Detector] | None = None, console: bool | Console = True,
                 update_ratio: bool = True, precursors: Literal["auto"] | Mapping[str, Any] | None = "auto",
                 schedule: Schedule | str | None = None, forecast_every: int | None = 10,
                 forecast_at: int | None = None):
        if every < 1 or flush_every < 1:
            raise ValueError(f"every and flush_every must be >= 1, got {every=}, {flush_every=}")
        # a schedule that cannot be read fails here, before a hook is set or a run is stored
        sched, forecast_every = check_live_forecast(schedule, forecast_every, forecast_at)
        self.every = every
        self.flush_every = flush_every
        self.on_event = on_event
        self.optimizer = optimizer
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module  # its layers' names, not the wrapper's; the hooks fire through it
        # an FSDP model stays as it is: GradStats finds its shards, and the user's names, in its parameters
        self.stats = GradStats(model, update_ratio=update_ratio and optimizer is not None)
        self.monitor = Monitor(detectors)
        # the phases, found as analyze finds them: by a PhaseDetector beside the detectors, unless
        # they include one
        has_phases = any(isinstance(d, PhaseDetector) for d in self.monitor.detectors)
        self.phase_monitor = None if has_phases else Monitor([PhaseDetector()])
        self.phase_events: list[Event] = []
        # precursors: forward hooks that measure on the steps _due() picks (see _sync_precursors);
        # made before the store, so that a module named wrong leaves no run behind
        self.precursors = _make_precursors(model, precursors)
        self.events: list[Event] = []
        self.health = Health()  # the run's one-word state, moved by the events as they fire
        self.run_name = run or f"{type(model).__name__}-{_dt.datetime.now(_dt.timezone.utc):%Y%m%d-%H%M%S}"
        # under torch.distributed every rank combines its steps with the others' at each flush and
        # runs the detectors on the combined values; rank 0 alone prints and writes to the store
        reduce = RankReduction() if active_group() else None
        self.rank = reduce.rank if reduce is not None else 0
        if self.rank != 0:
            console, store = False, None
        self.forecast: Forecast | None = None
        self.forecast_events: list[Event] = []
        # rank 0 alone fits: every rank sees the same combined values
        self._forecaster = (LiveForecast(self.run_name, sched, forecast_every, forecast_at)
                            if sched is not None and forecast_every and self.rank == 0 else None)
        self._printer = EventPrinter(console if isinstance(console, Console) else None) if console else None
        self._buffer = StepBuffer(self.stats.device, rows=flush_every, reduce=reduce)
        self._calls = 0  # step() calls so far: decides which optimizer steps are measured
        self._last_step: int | None = None
        self._lrs: list[Any] | None = None  # learning rates the last optimizer step used
        self._closed = False
        self._owns_store = isinstance(store, (str, os.PathLike))
        self._store: RunStore | None = open_store(store) if self._owns_store else store  # type: ignore[arg-type]
        self.run_id: int | None = None
        if self._store is not None:
            try:
                config = _config(model, optimizer, every, flush_every)
                if sched is not None:
                    config["watch"].update(schedule=schedule if isinstance(schedule, str) else sched.spec,
                                           forecast_every=forecast_every, forecast_at=forecast_at)
                self.run_id = self._store.create_run(self.run_name, config=config)
            except BaseException:
                if self.precursors is not None:
                    self.precursors.remove()
                if self._owns_store:
                    self._store.close()
                raise
        # a script that ends without close() must not lose the steps still in the buffer; a weak
        # reference, so that a forgotten Watch (and the model its hooks hold) can still be freed
        self._at_exit = _closer(weakref.ref(self))
        atexit.register(self._at_exit)
        self._hooks = []
        if optimizer is not None:
            # gradients are measured inside optimizer.step(), where they exist for sure (after it,
            # zero_grad() may drop them before step() is called), and the update around it
            self._hooks = [optimizer.register_step_pre_hook(self._before_optimizer_step),
                           optimizer.register_step_post_hook(self._after_optimizer_step)]

    # -- the loop's side ---------------------------------------------------------------------------
    def step(self, step: int, loss: Any = None, **metrics: Any) -> list[Event]:
        """Record one training step; returns the events that fired during this call.

        Call it after ``optimizer.step()``. ``loss`` becomes ``train/loss``; other metrics are
        named as logs name them (``val_loss`` -> ``val/loss``; ``**{"val/acc": acc}`` works too).
        Values are numbers or one-element tensors; a device tensor is copied into the buffer on
        the device and never read here. Events come from steps flushed earlier (see :func:`watch`).
        """
        if self._closed:
            raise RuntimeError(f"run {self.run_name!r} is closed: step() after close()")
        step = operator.index(step)
        if self._last_step is not None and step < self._last_step:
            raise ValueError(f"steps must not go backwards: got {step} after {self._last_step}")
        named = {} if loss is None else {"train/loss": loss}
        named.update((canonical_name(name), value) for name, value in metrics.items())
        for name, value in named.items():
            check_scalar(name, value)  # before anything is recorded: a bad call leaves no trace
        self._last_step = step
        buffer = self._buffer
        buffer.start_row(step, time.time())
        self._record_optimizer()
        for name, value in named.items():
            buffer.put(name, value)
        self._calls += 1
        self._sync_precursors()  # the forward passes before the next step() call belong to it
        fired = self._process(buffer.send()) if buffer.full else []
        # on a GPU the copy just sent is usually still running: it is read at a later step
        fired += self._process(buffer.poll())
        return fired

    def close(self, status: Literal["finished", "crashed"] = "finished") -> None:
        """Flush every step still buffered, run the detectors on it, mark the run; idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._at_exit)
        try:
            for batch in self._buffer.drain():  # the only place that waits for the device: the run is over
                self._process(batch)
            if self._forecaster is not None:  # the fit still running, if any: the last forecast
                self._take_forecast(self._forecaster.finish())
        except BaseException:
            status = "crashed"
            raise
        finally:
            if self._forecaster is not None:
                self._forecaster.stop()
            for hook in self._hooks:
                hook.remove()
            if self.precursors is not None:
                self.precursors.remove()
            if self._store is not None and self.run_id is not None:
                try:
                    self._store.set_status(self.run_id, status)
                finally:
                    if self._owns_store:
                        self._store.close()

    def _close_at_exit(self) -> None:
        # the interpreter sets sys.last_value when an uncaught exception ended the script
        self.close("crashed" if getattr(sys, "last_value", None) is not None else "finished")

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close("crashed" if exc_type is not None else "finished")

    def __repr__(self) -> str:
        return f"Watch(run={self.run_name!r}, steps_seen={self._calls}, events={len(self.events)})"

    # -- what the run is doing -----------------------------------------------------------------------
    @property
    def phase(self) -> str | None:
        """The run's phase now (``"warmup"``, ``"fast_descent"``, ...: see :data:`foreshock.detect.PHASES`)."""
        found = self._phase_events()
        return str(found[-1].evidence["phase"]) if found else None

    @property
    def phases(self) -> list[tuple[int, int, str]]:
        """The phase timeline so far, ``[(start_step, end_step, phase)]``, as
        :func:`~foreshock.detect.phases.phase_timeline` gives it (the last phase ends at the last
        flushed step)."""
        return phase_timeline(self._phase_events(), self.monitor.last_step)

    def _phase_events(self) -> list[Event]:
        found = [*self.phase_events, *(e for e in self.events if e.kind == "phase" and "phase" in e.evidence)]
        return sorted(found, key=lambda e: e.step)

    # -- optimizer hooks -----------------------------------------------------------------------------
    def _due(self) -> bool:
        return self._calls % self.every == 0  # the step() call this optimizer step belongs to

    def _before_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> Any:
        # plain Python floats in the usual case; a tensor learning rate is passed on as it is
        self._lrs = [group["lr"] for group in optimizer.param_groups]
        if not self._due():
            return None
        # args: (optimizer, *the call's positional arguments)
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if not callable(closure):
            self.stats.before_step()
            return None
        # step(closure) (Lightning, LBFGS): the gradients are made inside the step, by the closure;
        # measure them when it returns, before the update (the last call counts, for an
        # optimizer that calls it several times)
        def measured_closure() -> Any:
            loss = closure()
            self.stats.before_step()
            return loss
        return (args[0], *args[2:]), {**kwargs, "closure": measured_closure}

    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._due():
            self.stats.after_step()

    def _record_optimizer(self) -> None:
        lrs = self._lrs
        self._lrs = None
        if lrs is None and self.optimizer is not None:
            # no optimizer step since the last call (e.g. a step skipped by a gradient scaler)
            lrs = [group["lr"] for group in self.optimizer.param_groups]
        if lrs:
            self._buffer.put("opt/lr", lrs[0])
            # comparing tensors would read them on the host: with a tensor among them, keep them all
            if len(lrs) > 1 and (any(isinstance(lr, torch.Tensor) for lr in lrs) or len(set(lrs)) > 1):
                for i, lr in enumerate(lrs):
                    self._buffer.put(f"opt/group{i}/lr", lr)
        if self.optimizer is None and self._due():
            self.stats.before_step(update=False)  # no hook: the gradients are still there, or not at all
        taken = self.stats.take()
        if taken is not None:
            self._buffer.put_block(self.stats.names, *taken)
        # what the forward hooks measured since the last call (on this step's forward passes)
        taken = self.precursors.take() if self.precursors is not None else None
        if taken is not None:
            self._buffer.put_block(self.precursors.names, *taken)

    def _sync_precursors(self) -> None:
        if self.precursors is not None:
            self.precursors.active = self._due()

    # -- the host's side: a flushed batch -----------------------------------------------------------
    def _process(self, batch: Batch | None) -> list[Event]:
        if batch is None:
            return []
        points = []
        fired: list[Event] = []
        phased: list[Event] = []
        latest = self._last_step if self._last_step is not None else 0
        for step, wall, values in batch.rows():
            points.extend((step, name, value, wall) for name, value in values.items())
            found = self.monitor.update(step, values)
            phase_found = self.phase_monitor.update(step, values) if self.phase_monitor is not None else []
            for event in (*found, *phase_found):
                # how many training steps passed between the step this is about and the moment
                # the host saw it: the price of never waiting for the device
                event.evidence["flush_latency_steps"] = latest - step
                event.evidence["flush_every"] = self.flush_every
            fired += found
            phased += phase_found
            if self._forecaster is not None:
                self._forecaster.add(step, values)
        # a fit that finished since the last flush; the next one starts on the points up to here
        # (none once the run is closing: close() waits for the one still running)
        done = self._forecaster.flushed(start=not self._closed) if self._forecaster is not None else None
        if self._store is not None and self.run_id is not None:
            with self._store.atomic():  # one transaction per flush
                self._store.append_points(self.run_id, points)
                if fired:
                    self._store.add_events(self.run_id, fired)
                self._store.save_state(self.run_id, self.monitor.state_dict())
        self._take_forecast(done)
        self.events.extend(fired)
        self.phase_events.extend(phased)
        changes = self.health.update(fired, step=latest)
        if self._printer is not None:
            self._printer([e for e in fired if e.kind != "phase"])
            for change in changes:
                self._printer.console.print(_health_line(change), soft_wrap=True)
            for event in (*phased, *(e for e in fired if e.kind == "phase")):
                self._printer.console.print(_phase_line(event), soft_wrap=True)
        if self.on_event is not None:
            for event in fired:
                self.on_event(event)
        return fired

    def _take_forecast(self, found: Forecast | None) -> None:
        """Keep, store and print a forecast the worker has finished."""
        if found is None:
            return
        latest = self._last_step if self._last_step is not None else found.at_step
        event = forecast_event(found, latest - found.at_step, self.flush_every)
        if self._store is not None and self.run_id is not None:
            with self._store.atomic():
                self._store.add_events(self.run_id, [event])
                self._store.add_forecast(self.run_id, at_step=found.at_step, target_step=found.target_step,
                                         value=found.value, lo=found.lo, hi=found.hi, law=found.law,
                                         params=found.params)
        self.forecast = found
        self.forecast_events.append(event)
        if self._printer is not None:
            self._printer.console.print(forecast_line(found), soft_wrap=True)


def _health_line(change: HealthChange) -> Text:
    detectors = f" ({', '.join(change.detectors)})" if change.detectors else ""
    return Text(f"foreshock HEALTH {change.previous} -> {change.state} at step {change.step}: {change.reason}"
                f"{detectors}", style="bold")


def _phase_line(event: Event) -> Text:
    """``foreshock PHASE warmup -> fast descent at step 90 (decided at step 120, train/loss): slope ... <= ...``."""
    ev = event.evidence
    previous = str(ev.get("previous") or "start").replace("_", " ")
    decided = f"decided at step {event.step}, " if event.step != event.onset_step else ""
    return Text(f"foreshock PHASE {previous} -> {str(ev['phase']).replace('_', ' ')} at step {event.onset_step} "
                f"({decided}{event.metric}): {_phase_reason(event)}", style="bold")


def _phase_reason(event: Event) -> str:
    """The comparison that decided a phase, from its event's evidence (its message when that is missing)."""
    ev = event.evidence

    def num(key: str) -> str:
        return f"{ev[key]:.3g}"

    try:
        phase = ev["phase"]
        if phase == "warmup":
            return str(ev["reason"])
        if phase == "annealing":
            return (f"loss {num('drop_below_trend')} decades below its trend before the LR decay (threshold "
                    f"{num('anneal_threshold')}), LR at {ev['lr'] / ev['lr_peak']:.3g} of its peak")
        slope = f"log-log slope {num('slope')}"
        if phase == "fast_descent":
            return f"{slope} <= fast threshold {num('fast_threshold')} (steepest {num('steepest_slope')})"
        if phase == "slow_descent":
            why = (f"{slope} between the fast threshold {num('fast_threshold')} and the flat threshold "
                   f"-{num('flat_threshold')}")
            if "deceleration_step" in ev:
                why += (f"; loss deceleration: the slope broke from {num('slope_before_break')} to "
                        f"{num('slope_after_break')} at step {ev['deceleration_step']}")
            return why
        if phase == "plateau":
            return f"|{slope}| <= flat threshold {num('flat_threshold')}"
        if phase == "rising":
            return f"{slope} > rise threshold {num('rise_threshold')}"
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        pass
    return event.message


def _config(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, every: int,
            flush_every: int) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),  # sizes only: no values read
        "watch": {"every": every, "flush_every": flush_every},
    }
    if optimizer is not None:
        config["optimizer"] = type(optimizer).__name__
        config["optimizer_defaults"] = {k: v for k, v in optimizer.defaults.items()
                                        if isinstance(v, (bool, int, float, str)) or v is None
                                        or (isinstance(v, tuple) and all(isinstance(x, (int, float)) for x in v))}
    return config


def _make_precursors(model: torch.nn.Module, spec: Literal["auto"] | Mapping[str, Any] | None) -> Precursors | None:
    if spec is None:
        return None
    if spec == "auto":
        spec = {}
    elif not isinstance(spec, Mapping) or set(spec) - {"output", "attention", "activations"}:
        raise ValueError(f'precursors must be "auto", None or a mapping with keys "output", "attention" and/or '
                         f'"activations", got {spec!r}')
    found = Precursors(model, output=spec.get("output"), attention=spec.get("attention"),
                       activations=spec.get("activations"))
    found.active = True  # the first step() call is measured: its forward passes come before it
    return found


def _closer(ref: weakref.ref) -> Callable[[], None]:
    def close_if_alive() -> None:
        mon = ref()
        if mon is not None:
            mon._close_at_exit()
    return close_if_alive


def watch(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, *, run: str | None = None,
          store: str | os.PathLike | RunStore | None = "foreshock.db", every: int = 1, flush_every: int = 50,
          on_event: Callable[[Event], Any] | None = None, detectors: Sequence[Detector] | None = None,
          console: bool | Console = True, update_ratio: bool = True,
          precursors: Literal["auto"] | Mapping[str, Any] | None = "auto", schedule: Schedule | str | None = None,
          forecast_every: int | None = 10, forecast_at: int | None = None) -> Watch:
    """Watch a PyTorch training run: record its metrics and run the detectors on them, live.

    Captured without further code: ``train/loss`` (from ``loss=``), ``opt/lr`` (parameter group 0,
    and ``opt/group<i>/lr`` for every group when they differ), ``opt/grad_norm`` (global L2 norm of
    the gradients), ``opt/update_ratio`` (``||W_before - W_after|| / ||W_before||``), and both per
    layer as ``layer/<name>/grad_norm`` and ``layer/<name>/update_ratio`` (a layer is a block of an
    indexed container, else the module owning the parameters; see :mod:`foreshock.torch.capture`).

    No per-step synchronisation: every per-step value is reduced on the device and written into
    a device buffer; every ``flush_every`` steps the buffer is copied to pinned host memory
    asynchronously and read when the copy is done. **Latency:** an event about step ``s`` is
    seen up to ``2 * flush_every - 1`` steps after ``s`` (up to ``flush_every - 1`` on a CPU,
    where the copy is immediate). Each event's evidence says how late it was,
    ``flush_latency_steps``, beside ``flush_every``. Lower ``flush_every`` for quicker warnings.

    **torch.distributed:** when a process group of several ranks is initialised before ``watch()``,
    each flush combines every rank's buffered steps in one collective (maxima by max, minima by
    min, the rest by the mean over the ranks; a NaN or infinity on any rank stays, see
    :mod:`foreshock.torch.distributed`), so a spike on one rank is seen by all. A sharded model
    (FSDP2 ``fully_shard``, or FSDP1 ``FullyShardedDataParallel``) is found from its parameters:
    each rank's squared norms of its shards are summed over the ranks, so gradient norms and update
    ratios are those of the whole model, under the user's layer names. Every rank runs
    the detectors on the combined values and gets the same events (``.events``, ``on_event``);
    rank 0 alone prints them and writes the run to the store. Every rank must call ``step()``
    for the same steps with the same metrics, and ``close()``.

    **Phases:** a :class:`~foreshock.detect.phases.PhaseDetector` runs beside the detectors on the
    same flushed points, as ``foreshock analyze`` runs one on a log, so the live phases are those
    of the offline replay. ``.phase`` is the phase now, ``.phases`` the timeline so far, and each
    change is printed with the comparison that decided it::

        foreshock PHASE fast descent -> slow descent at step 105 (decided at step 199, train/loss): log-log
        slope -0.43 between the fast threshold -0.551 and the flat threshold -0.11; loss deceleration: the
        slope broke from -0.893 to -0.447 at step 105

    **Forecast:** with ``schedule=``, every ``forecast_every`` flushes the forecast of the loss
    (``val/loss`` once it has 8 points, else ``train/loss``) at the schedule's last step
    (:func:`foreshock.forecast.forecast`, the annealing law) is refitted on the points seen so far,
    kept in memory, on one worker thread: a refresh due while a fit runs is skipped, and a
    result is taken at the flush after it is done (``close()`` waits for the fit still running).
    Each refresh is printed, kept in ``.forecast`` / ``.forecast_events`` and stored (an info event
    of kind ``forecast``, and the store's forecast table). Too few points (a fit needs 8 loss points
    after the first tenth of the steps seen) or a fit that fails leave the last forecast as it is; any other error turns the refresh off with a ``RuntimeWarning``, never stopping training.
    **Cost:** one refresh (30 bootstrap refits on at most 300 points, against 100 on 400 for
    ``foreshock forecast``) took 0.33 s at 2,000 observed steps and 0.64 s at 20,000 (against 0.43 s
    and 1.15 s with the defaults), on one CPU core of a shared 2-core machine, on the first steps of a
    real 20,344-step modded-nanogpt run (``bench/results/forecast_live_cost.md``). The loop never waits for a fit, but a fit shares the
    process with it (the GIL, and a core where cores are few): on that machine a CPU model of 11-21
    ms a step ran 18-40% slower with a refresh every 500 steps (the defaults, ``flush_every=50``),
    fits then running a good part of the time. The cost follows the share of time a fit runs: with
    quick steps, raise ``forecast_every``.

    Parameters
    ----------
    model : torch.nn.Module
        Its trainable parameters, all on one device.
    optimizer : torch.optim.Optimizer, optional
        Gives the learning rates, and hooks its ``step()`` to measure gradients before and the
        update after (with ``step(closure)``, as Lightning calls it, gradients are measured when
        the closure that makes them returns). Without it, gradients are measured in
        :meth:`Watch.step` if they still exist.
    run : str, optional
        The run's name in the store (default: the model's class and the UTC time).
    store : path, RunStore or None
        Where points, events and detector state go, one transaction per flush. ``None``: nothing on
        disk, the events are still printed, passed to ``on_event`` and kept in ``.events``.
    every : int
        Measure gradients and updates at every ``every``-th :meth:`Watch.step` call; loss, learning
        rate and the metrics passed in are recorded at every call.
    flush_every : int
        Steps per device-to-host copy (and per store transaction).
    on_event : callable, optional
        Called with each event as it fires.
    detectors : sequence of Detector, optional
        Defaults to :func:`foreshock.detect.default_detectors`, as ``foreshock analyze`` uses.
    console : bool or rich.console.Console
        Print each event as it fires (to standard error, or to the console given); info events
        that fire together are cut to the first three and a count. False is silent.
    update_ratio : bool
        Measure update ratios; costs one copy of the trainable parameters in device memory.
    precursors : "auto", mapping or None
        Model-internal precursors of a spike, measured by forward hooks on the training forward
        passes of the steps ``every`` picks (see :mod:`foreshock.torch.precursors`):
        ``out/logit_max`` and ``out/lse_mean`` from the final projection, and
        ``attn/<layer>/logit_max`` per attention layer (on a sample of query positions of the
        first sequence: a lower bound; nanoGPT-style, ``nn.MultiheadAttention``, Hugging Face
        GPT-2 and LLaMA-style), ``act/<layer>/rms`` and ``act/<layer>/kurtosis`` per block (on a
        sample of rows of its output). ``"auto"`` finds the modules; ``{"output": "head",
        "attention": ["blocks.0.attn", ...], "activations": ["blocks.0", ...]}`` names them (a key
        left out is found, an empty list is none); None: none.
    schedule : Schedule, str or None
        The run's LR schedule, for the live forecast: a :class:`~foreshock.forecast.Schedule`, or a
        spec such as ``"cosine:peak=6e-4,final=6e-5,warmup=700,total=20000"`` (a bad spec raises
        here, before the run is stored). ``"log"`` uses the LR the run logs (``opt/lr``); the log
        does not know the LR to come, so it forecasts the loss at ``forecast_at`` *if the LR stays
        at its last value*: for a run whose schedule will still decay, give the schedule itself.
        None (default): no forecast.
    forecast_every : int or None
        Flushes between two refreshes of the forecast; 0 or None: no forecast.
    forecast_at : int, optional
        The step to forecast: by default the schedule's ``total``; needed with ``"log"``.

    Returns
    -------
    Watch
        Call ``.step(step, loss=..., **metrics)`` once per training step, then ``.close()``; or use
        it as a context manager, which marks the run ``finished``, or ``crashed`` on an exception.
    """
    return Watch(model, optimizer, run=run, store=store, every=every, flush_every=flush_every, on_event=on_event,
                 detectors=detectors, console=console, update_ratio=update_ratio, precursors=precursors,
                 schedule=schedule, forecast_every=forecast_every, forecast_at=forecast_at)
