"""StepBuffer: per-step scalars kept on the device, copied to the host a batch at a time, without waiting.

A training loop that reads a GPU scalar every step (``loss.item()``) makes the CPU wait for the GPU
every step, and the GPU then idles while the CPU prepares the next one. The buffer avoids that:

- each step is a row of a preallocated device tensor (rows = steps, columns = metrics); a device
  scalar is written into its cell by a copy queued on the stream, never read;
- when ``rows`` steps are in, the whole buffer is copied into pinned host memory with
  ``non_blocking=True`` and a CUDA event is recorded after the copy; the loop goes on at once;
- the host reads the copy when the event says it is done (``poll``, which never waits), and at the
  latest at the next ``send``, ``rows`` steps later, by which time it finished long ago.

Which cells were written, the steps and the wall times are host-side facts, kept in host memory, so
a value that is NaN stays a NaN (data) and a metric not logged at a step stays absent. Python
numbers and CPU tensors, when the device is a GPU, are host values already and never go to the
device. On a CPU device the same code runs: the copy is a plain copy and is done at once.

Under ``torch.distributed`` (a ``reduce`` given, see :mod:`foreshock.torch.distributed`), ``send``
first moves the host values of the block into its columns, then hands the block, with which cells
were written and a fingerprint of its names and steps, to ``reduce``: one collective combines the
ranks' blocks, and the combined block is what is copied to the host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from foreshock.torch.distributed import fingerprint, norms_from_sums

__all__ = ["Batch", "StepBuffer", "check_scalar"]


def check_scalar(name: str, value: Any) -> None:
    """Raise unless ``value`` is a number or a one-element tensor (shape and type only: nothing is read)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"metric {name!r}: expected a scalar (a number or a one-element tensor), "
                             f"got a tensor of shape {tuple(value.shape)}")
        return
    try:
        float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric {name!r}: expected a number or a one-element tensor, "
                        f"got {type(value).__name__}") from None


@dataclass
class Batch:
    """Steps copied to the host together: the values the buffer held, and which cells were written."""

    steps: list[int]
    walls: list[float]
    names: list[str]  # column -> metric name
    values: np.ndarray  # (len(steps), >= len(names)) float64
    present: np.ndarray  # same shape, bool: written at that step
    host: list[dict[str, float]] = field(default_factory=list)  # per row: values that never left the host

    def rows(self) -> Iterator[tuple[int, float, dict[str, float]]]:
        """``(step, wall_time, {metric: value})`` per row, metrics in name order (as a replay sees them).

        Summed squares of a sharded model's norms become the norms here, after the ranks' sum.
        """
        for i, step in enumerate(self.steps):
            values = {self.names[c]: float(self.values[i, c]) for c in np.flatnonzero(self.present[i])}
            values.update(self.host[i])
            yield step, self.walls[i], dict(sorted(norms_from_sums(values).items()))


@dataclass
class _InFlight:
    batch: Batch  # values and present are filled in when the copy is read
    event: Any  # a CUDA event recorded after the copy; None when the copy was synchronous (CPU)
    reduced: torch.Tensor | None = None  # host copy of a combined block: values, present, agreement


Reduce = Callable[[Sequence[str], torch.Tensor, torch.Tensor, float], torch.Tensor]


class StepBuffer:
    """Rows of per-step scalars on ``device``, handed to the host in batches of ``rows`` steps.

    Parameters
    ----------
    device : torch.device
        Where the values are reduced (the model's device).
    rows : int
        Steps per batch (``flush_every``).
    columns : int
        Metric columns allocated at first; the buffer doubles them when more metrics appear.
    reduce : callable, optional
        Combines the ranks' blocks at each send (a :class:`~foreshock.torch.distributed.RankReduction`).
    """

    def __init__(self, device: torch.device | str, rows: int, *, columns: int = 64, reduce: Reduce | None = None):
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        self.device = torch.device(device)
        self.rows = rows
        self._cuda = self.device.type == "cuda"
        # float64, as the store keeps values: a float32 or a float64 loss goes in and comes out exact
        # (the buffer is a few kilobytes, and is only ever copied into, never computed on); Apple's
        # MPS has no float64
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self._dev = torch.zeros((rows, columns), dtype=dtype, device=self.device)
        self._host_buf = self._new_host_buffer()
        self._names: list[str] = []
        self._columns: dict[str, int] = {}
        self._blocks: dict[tuple[str, ...], slice] = {}
        self._new_event: Callable[[], Any] = torch.cuda.Event if self._cuda else (lambda: None)
        self._inflight: _InFlight | None = None
        self._reduce = reduce
        self._reduced_host: torch.Tensor | None = None  # pinned, reused while its shape holds
        self._reset_rows()

    # -- writing a row ------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Rows written since the last send."""
        return len(self._steps)

    @property
    def full(self) -> bool:
        return self.n == self.rows

    def start_row(self, step: int, wall: float) -> None:
        """Begin the row of ``step``; a second call with the same step adds to the same row."""
        if self._steps and self._steps[-1] == step:
            return
        if self.full:
            raise RuntimeError("the buffer is full: send() it before starting another row")
        self._steps.append(step)
        self._walls.append(wall)
        self._host.append({})

    def put(self, name: str, value: Any) -> None:
        """Record one scalar (a number or a one-element tensor) in the current row."""
        row = self._row()
        check_scalar(name, value)
        if isinstance(value, torch.Tensor):
            value = value.detach().reshape(())
            if value.device != self.device and "cpu" not in (value.device.type, self.device.type):
                # another accelerator: a device-to-device copy, queued like any other kernel
                value = value.to(self.device, non_blocking=True)
            if value.device == self.device:
                col = self._column(name)
                # a copy kernel queued on the stream: the value is never read here, so nothing waits
                self._dev[row, col] = value
                self._present[row, col] = True
                self._host[row].pop(name, None)
                return
            # a CPU tensor while the buffer is on a GPU: it is in host memory already, and reading
            # it waits for no device (sending it to the GPU and back would). The one case that
            # waits is a GPU tensor logged beside a model that lives on the CPU: then the loop
            # reads GPU results on the CPU anyway.
        self._host[row][name] = float(value)
        col = self._columns.get(name)
        if col is not None:
            self._present[row, col] = False  # the later value of this step wins

    def put_block(self, names: Sequence[str], values: torch.Tensor, present: np.ndarray) -> None:
        """Record a vector of scalars already on the device (one copy kernel) in the current row.

        ``present`` (host booleans) says which of them hold a value at this step.
        """
        row = self._row()
        block = self._block(tuple(names))
        self._dev[row, block] = values  # one copy queued on the stream: nothing waits
        self._present[row, block] = present
        for name, here in zip(names, present, strict=True):
            if here:
                self._host[row].pop(name, None)

    # -- moving rows to the host --------------------------------------------------------------------
    def send(self) -> Batch | None:
        """Start copying the rows written so far to the host; returns the batch sent before, if any.

        The batch sent before is read first: its copy was queued ``rows`` steps ago and is done
        unless the device runs that far behind the host, so this does not wait in practice.
        """
        done = self._complete() if self._inflight is not None else None
        if not self._steps:
            return done
        if self._reduce is not None:
            self._send_reduced()
            return done
        if self._host_buf.shape != self._dev.shape:
            self._host_buf = self._new_host_buffer()
        # asynchronous from pinned memory: queued after every write above on the same stream, and
        # the writes of the next rows are queued after it, so they cannot overtake the copy
        self._host_buf.copy_(self._dev, non_blocking=self._cuda)
        event = self._new_event()
        if event is not None:
            event.record()  # marks the point in the stream after the copy; the host does not wait here
        batch = Batch(steps=self._steps, walls=self._walls, names=list(self._names),
                      values=np.empty((0, 0)), present=self._present[: self.n].copy(), host=self._host)
        self._inflight = _InFlight(batch, event)
        self._reset_rows()
        return done

    def poll(self) -> Batch | None:
        """The batch in flight if its copy has finished, else None. Never waits."""
        if self._inflight is None:
            return None
        event = self._inflight.event
        # query() asks the driver whether the copy is done and returns at once
        if event is not None and not event.query():
            return None
        return self._complete()

    def drain(self) -> list[Batch]:
        """Send what is left and read everything back, waiting for the copy (at the end of a run)."""
        out = [self.send()]
        if self._inflight is not None:
            out.append(self._complete())  # the one place that may wait: the run is over
        return [b for b in out if b is not None]

    # -- internals ----------------------------------------------------------------------------------
    def _complete(self) -> Batch:
        assert self._inflight is not None
        inflight, self._inflight = self._inflight, None
        if inflight.event is not None and not inflight.event.query():
            # the copy was queued a whole batch of steps ago: only a device that far behind the
            # host gets here, and then the host must wait for it (or lose the steps)
            inflight.event.synchronize()
        batch = inflight.batch
        if inflight.reduced is not None:
            block = inflight.reduced.numpy().astype(np.float64)  # a copy: the pinned buffer is reused
            columns = (block.shape[1] - 1) // 2
            if not (block[:, -1] == 1.0).all():
                raise RuntimeError("foreshock.watch: the ranks of the process group recorded different metrics or "
                                   f"steps in one flush (steps {batch.steps[0]}..{batch.steps[-1]}); every rank must "
                                   "call step() for the same steps with the same metrics")
            batch.values, batch.present = block[:, :columns], block[:, columns: 2 * columns] > 0.5
            return batch
        # the pinned buffer is reused by the next send: copy out of it now
        batch.values = self._host_buf[: len(batch.steps)].numpy().astype(np.float64)  # a copy
        return batch

    def _send_reduced(self) -> None:
        """Combine the ranks' blocks (one collective) and start copying the result to the host."""
        n = self.n
        for host in self._host:  # host values get columns: every rank's values meet in the collective
            for name in host:
                self._column(name)
        host_values = np.zeros((n, self._dev.shape[1]))
        host_present = np.zeros((n, self._dev.shape[1]), dtype=bool)
        for row, host in enumerate(self._host):
            for name, value in host.items():
                host_values[row, self._columns[name]] = value
                host_present[row, self._columns[name]] = True
        values = self._dev[:n]
        if host_present.any():
            values = torch.where(self._upload(host_present), self._upload(host_values).to(values.dtype), values)
        present = self._upload(self._present[:n] | host_present)
        combined = self._reduce(list(self._names), values, present, fingerprint(self._names, self._steps))
        if self._reduced_host is None or self._reduced_host.shape != combined.shape:
            self._reduced_host = torch.empty(combined.shape, dtype=combined.dtype, pin_memory=self._cuda)
        self._reduced_host.copy_(combined, non_blocking=self._cuda)
        event = self._new_event()
        if event is not None:
            event.record()
        batch = Batch(steps=self._steps, walls=self._walls, names=list(self._names), values=np.empty((0, 0)),
                      present=np.empty((0, 0), dtype=bool), host=[{} for _ in self._steps])
        self._inflight = _InFlight(batch, event, reduced=self._reduced_host)
        self._reset_rows()

    def _upload(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self._cuda:
            return tensor.pin_memory().to(self.device, non_blocking=True)  # queued, not waited for
        return tensor.to(self.device)

    def _row(self) -> int:
        if not self._steps:
            raise RuntimeError("start_row() must come before put()")
        return len(self._steps) - 1

    def _reset_rows(self) -> None:
        self._steps: list[int] = []
        self._walls: list[float] = []
        self._host: list[dict[str, float]] = []
        self._present = np.zeros(self._dev.shape, dtype=bool)

    def _column(self, name: str) -> int:
        col = self._columns.get(name)
        if col is None:
            col = self._add_columns((name,)).start
        return col

    def _block(self, names: tuple[str, ...]) -> slice:
        block = self._blocks.get(names)
        if block is None:
            taken = [n for n in names if n in self._columns]
            if taken:
                raise ValueError(f"metrics {taken} are already recorded on their own; a block needs new names")
            block = self._blocks[names] = self._add_columns(names)
        return block

    def _add_columns(self, names: tuple[str, ...]) -> slice:
        start = len(self._names)
        while start + len(names) > self._dev.shape[1]:
            self._grow()
        for i, name in enumerate(names):
            self._columns[name] = start + i
        self._names.extend(names)
        return slice(start, start + len(names))

    def _grow(self) -> None:
        old = self._dev
        self._dev = torch.zeros((self.rows, 2 * old.shape[1]), dtype=old.dtype, device=self.device)
        self._dev[:, : old.shape[1]] = old  # a device copy, queued: the old buffer is never read here
        present = np.zeros(self._dev.shape, dtype=bool)
        present[:, : old.shape[1]] = self._present
        self._present = present

    def _new_host_buffer(self) -> torch.Tensor:
        # pinned (page-locked) memory is what lets a device-to-host copy run asynchronously; it is
        # allocated here, when the buffer is made or grows, never in a step
        return torch.empty(self._dev.shape, dtype=self._dev.dtype, pin_memory=self._cuda)
