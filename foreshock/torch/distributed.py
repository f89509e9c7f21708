"""RankReduction: one collective per flush combines the buffered steps of every rank of a process group.

Under ``torch.distributed`` each rank trains on its own batches: a loss spike, or a NaN, may appear
on one rank only. When :class:`~foreshock.torch.buffer.StepBuffer` sends a block of steps to the
host, every rank's block is gathered (one ``all_gather_single``, queued on the device like the
copy that follows it) and combined column by column, so every rank holds the same values:

- **maxima** (names ending in ``_max``, and ``/kurtosis``): the max over the ranks;
- **minima** (names ending in ``_min``): the min over the ranks;
- **everything else**: the mean over the ranks that recorded it at that step (the loss of the
  global batch when the ranks' batches are the same size). Gradient and update norms of a
  data-parallel model (DDP) are the same on every rank, and stay what they are.

A NaN or an infinity on any rank survives the combination (it propagates through the sum, the max
and the min), so a non-finite value on one rank is seen by all. A value is present where any rank
recorded it. Each rank adds a fingerprint of its metric names and steps to the block; the combined
block says whether they agreed, and a flush where they did not is an error: every rank must call
``step()`` for the same steps with the same metrics (the usual data-parallel loop). Sharded models
(FSDP), whose ranks hold different parts of the parameters, are not combined correctly: their norms
would need a sum of squares.

The gathered block is ``world_size`` times the buffer (a few tens of kilobytes per rank with the
default ``flush_every=50``), once per flush.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["RankReduction", "active_group", "column_ops", "combine", "fingerprint"]


def active_group(group: Any = None) -> bool:
    """Whether a process group of more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def fingerprint(names: Sequence[str], steps: Sequence[int]) -> float:
    """A number that differs, almost surely, when the names or the steps differ (exact in float32)."""
    text = "\n".join(names) + "\n#" + ",".join(map(str, steps))
    return float(zlib.crc32(text.encode()) % (1 << 24))


# the ranks' blocks stacked along the first dimension (newer torch names it all_gather_single)
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def _reduction(name: str) -> str:
    if name.endswith("_max") or name.endswith("/kurtosis"):
        return "max"
    if name.endswith("_min"):
        return "min"
    return "mean"


class RankReduction:
    """Combines every rank's block of steps (see the module docstring).

    Parameters
    ----------
    group : ProcessGroup, optional
        The ranks to combine; the default group unless given.
    """

    def __init__(self, group: Any = None):
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self._ops: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        self._warned = False

    def __call__(self, names: Sequence[str], values: torch.Tensor, present: torch.Tensor,
                 mark: float) -> torch.Tensor:
        """``(rows, 2 * columns + 1)``: the combined values, where any rank had one (1.0), and
        whether the ranks' fingerprints agreed (1.0), per row.

        ``values`` and ``present`` are ``(rows, columns)`` on the buffer's device; ``names`` are
        the first ``len(names)`` columns' metrics; ``mark`` is this rank's :func:`fingerprint`.
        """
        rows, columns = values.shape
        flags = present.to(values.dtype)
        payload = torch.cat([values, flags, values.new_full((rows, 1), mark)], dim=1)
        if not active_group(self.group):
            # the group is gone (a run closed at interpreter exit, after destroy_process_group):
            # this rank's own values, rather than a collective that cannot complete
            if not self._warned:
                warnings.warn("foreshock.watch: the process group is no longer initialised; the last steps "
                              "hold this rank's values only", stacklevel=4)
                self._warned = True
            payload[:, -1] = 1.0
            return payload
        gathered = payload.new_empty((self.world_size * rows, payload.shape[1]))
        _all_gather(gathered, payload, group=self.group)  # the one collective of the flush
        return combine(gathered.view(self.world_size, rows, -1), self._column_ops(tuple(names), columns,
                                                                                   values.device))

    def _column_ops(self, names: tuple[str, ...], columns: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        key = (*names, str(columns))
        ops = self._ops.get(key)
        if ops is None:
            ops = self._ops[key] = column_ops(names, columns, device)
        return ops


def column_ops(names: Sequence[str], columns: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """Boolean masks over ``columns``: which are combined by max, which by min (the rest by mean)."""
    kinds = [_reduction(n) for n in names] + ["mean"] * (columns - len(names))
    return (torch.tensor([k == "max" for k in kinds], device=device),
            torch.tensor([k == "min" for k in kinds], device=device))


def combine(gathered: torch.Tensor, ops: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Combine ``(ranks, rows, 2 * columns + 1)`` blocks (values, present flags, fingerprint) into
    ``(rows, 2 * columns + 1)``: combined values, present anywhere, fingerprints agreed."""
    is_max, is_min = ops
    columns = is_max.shape[0]
    vals, had = gathered[..., :columns], gathered[..., columns: 2 * columns] > 0.5
    count = had.sum(0)
    mean = torch.where(had, vals, 0.0).sum(0) / count.clamp(min=1)
    top = torch.where(had, vals, -torch.inf).amax(0)  # amax and amin propagate NaN
    low = torch.where(had, vals, torch.inf).amin(0)
    combined = torch.where(is_max, top, torch.where(is_min, low, mean))
    marks = gathered[..., -1]
    agree = (marks == marks[:1]).all(0).to(gathered.dtype)
    return torch.cat([combined, (count > 0).to(gathered.dtype), agree[:, None]], dim=1)
