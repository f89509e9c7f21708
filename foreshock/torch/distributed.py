"""RankReduction: one collective per flush combines the buffered steps of every rank of a process group.

Under ``torch.distributed`` each rank trains on its own batches: a loss spike, or a NaN, may appear
on one rank only. When :class:`~foreshock.torch.buffer.StepBuffer` sends a block of steps to the
host, every rank's block is gathered (one ``all_gather_single``, queued on the device like the
copy that follows it) and combined column by column, so every rank holds the same values:

- **maxima** (names ending in ``_max``, and ``/kurtosis``): the max over the ranks;
- **minima** (names ending in ``_min``): the min over the ranks;
- **squared norms of a sharded model** (names with ``:sumsq``, below): the sum over the ranks;
- **everything else**: the mean over the ranks that recorded it at that step (the loss of the
  global batch when the ranks' batches are the same size). Gradient and update norms of a
  data-parallel model (DDP) are the same on every rank, and stay what they are.

A NaN or an infinity on any rank survives the combination (it propagates through the sum, the max
and the min), so a non-finite value on one rank is seen by all. A value is present where any rank
recorded it. Each rank adds a fingerprint of its metric names and steps to the block; the combined
block says whether they agreed, and a flush where they did not is an error: every rank must call
``step()`` for the same steps with the same metrics (the usual data-parallel loop).

**Sharded models.** Under FSDP each rank holds a shard of each parameter and of its gradient, so a
norm one rank measures is partial. :func:`local_pieces` finds the sharding from the parameters
themselves: FSDP2 (``fully_shard``: DTensor parameters with ``Shard`` placements) and FSDP1
(``FullyShardedDataParallel``, with ``use_orig_params`` or flat parameters, whose local shard is
split back into the parameters it holds). For such a model every rank records squared norms,
each scaled by its :attr:`Piece.share` (a shard counts once over the ranks that hold it, so
hybrid sharding counts each replica group once too; a piece every rank holds whole counts
``1 / world_size`` on each), in columns named ``<metric>:sumsq`` (a norm),
``<metric>:sumsq_num`` and ``<metric>:sumsq_den`` (a ratio of two norms). The collective sums these
columns over the ranks, and the host turns them into the metrics (:func:`norms_from_sums`):
``sqrt(sum)``, and ``sqrt(sum num) / sqrt(sum den)`` for an update ratio, exact for the whole
model. A model that is not sharded (DDP) records its norms as they are, combined by the mean.

The gathered block is ``world_size`` times the buffer (a few tens of kilobytes per rank with the
default ``flush_every=50``), once per flush.
"""

from __future__ import annotations

import math
import sys
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["SUMSQ", "SUMSQ_DEN", "SUMSQ_NUM", "Piece", "RankReduction", "active_group", "column_ops", "combine",
           "fingerprint", "local_pieces", "norms_from_sums", "user_name"]

# suffixes of the columns that hold squared norms, summed over the ranks (see the module docstring)
SUMSQ, SUMSQ_NUM, SUMSQ_DEN = ":sumsq", ":sumsq_num", ":sumsq_den"
# FSDP1, activation checkpointing and torch.compile wrap modules: path segments that name no layer
_WRAPPERS = {"_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod"}


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
    if SUMSQ in name:
        return "sum"
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
    """Boolean masks over ``columns``: which are combined by max, by min, by sum (the rest by mean)."""
    kinds = [_reduction(n) for n in names] + ["mean"] * (columns - len(names))
    return tuple(torch.tensor([k == kind for k in kinds], device=device) for kind in ("max", "min", "sum"))


def combine(gathered: torch.Tensor, ops: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Combine ``(ranks, rows, 2 * columns + 1)`` blocks (values, present flags, fingerprint) into
    ``(rows, 2 * columns + 1)``: combined values, present anywhere, fingerprints agreed."""
    is_max, is_min, is_sum = ops
    columns = is_max.shape[0]
    vals, had = gathered[..., :columns], gathered[..., columns: 2 * columns] > 0.5
    count = had.sum(0)
    total = torch.where(had, vals, 0.0).sum(0)
    mean = total / count.clamp(min=1)
    top = torch.where(had, vals, -torch.inf).amax(0)  # amax and amin propagate NaN
    low = torch.where(had, vals, torch.inf).amin(0)
    combined = torch.where(is_max, top, torch.where(is_min, low, torch.where(is_sum, total, mean)))
    marks = gathered[..., -1]
    agree = (marks == marks[:1]).all(0).to(gathered.dtype)
    return torch.cat([combined, (count > 0).to(gathered.dtype), agree[:, None]], dim=1)


def norms_from_sums(values: dict[str, float]) -> dict[str, float]:
    """``values`` with its summed squares (``<metric>:sumsq``, ``:sumsq_num``, ``:sumsq_den``)
    replaced by the metrics they stand for: ``sqrt(sum)``, ``sqrt(num) / sqrt(den)``.

    >>> norms_from_sums({"opt/grad_norm:sumsq": 9.0, "r:sumsq_num": 1.0, "r:sumsq_den": 4.0, "x": 1.0})
    {'x': 1.0, 'opt/grad_norm': 3.0, 'r': 0.5}
    """
    if not any(SUMSQ in name for name in values):
        return values
    out = {name: value for name, value in values.items() if SUMSQ not in name}
    for name, value in values.items():
        if name.endswith(SUMSQ):
            out[name.removesuffix(SUMSQ)] = math.sqrt(value)  # NaN and infinity pass through
        elif name.endswith(SUMSQ_NUM) and (den := values.get(name.replace(SUMSQ_NUM, SUMSQ_DEN))) is not None:
            with np.errstate(divide="ignore", invalid="ignore"):  # a zero weight norm gives inf (or NaN)
                out[name.removesuffix(SUMSQ_NUM)] = float(np.sqrt(value) / np.sqrt(np.float64(den)))
    return out


@dataclass(frozen=True)
class Piece:
    """A trainable parameter as this rank holds it (see :func:`local_pieces`)."""

    name: str  # the user's name for the parameter, wrapper segments left out
    param: torch.nn.Parameter  # the tensor the optimizer steps (a DTensor, or an FSDP1 flat parameter)
    span: tuple[int, int] | None = None  # its elements in a flat parameter's local shard
    share: float | None = None  # the factor on this rank's squared norms before the sum; None: not sharded
    dtensor: bool = False

    def local(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's part of ``tensor`` (the parameter, or its gradient): no copy, no communication."""
        if self.dtensor:
            tensor = tensor.to_local()
        return tensor if self.span is None else tensor[self.span[0]: self.span[1]]


def local_pieces(model: torch.nn.Module) -> list[Piece]:
    """The trainable parameters of ``model`` as this rank holds them, with their shares when sharded.

    Without a sharded parameter, one :class:`Piece` per parameter and no shares. With one (FSDP2
    or FSDP1), every piece has a share: ``shards / world_size``, where ``shards`` is the number of
    distinct parts the parameter is cut into (the product of the mesh sizes of its ``Shard``
    placements; the size of the FSDP1 sharding group; 1 for a parameter every rank holds whole), so
    that the squared norms, summed over the ranks of the default group, count each element once.
    """
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    fsdp1 = _loaded("torch.distributed.fsdp", "FullyShardedDataParallel")
    dtensor = _loaded("torch.distributed.tensor", "DTensor")
    flat: dict[int, list[tuple[str, tuple[int, int], int]]] = {}  # FSDP1 flat parameter -> its pieces
    orig: dict[int, int] = {}  # FSDP1 use_orig_params parameter -> shards
    for module_name, module in model.named_modules():
        handle = getattr(module, "_handle", None) if fsdp1 is not None and isinstance(module, fsdp1) else None
        if handle is None:
            continue
        shards = module.process_group.size() if handle.uses_sharded_strategy else 1
        param = handle.flat_param
        if param._params is not None:  # use_orig_params: the user's parameters, each a view of its shard
            orig.update((id(p), shards) for p in param._params)
            continue
        # every parameter of the flat one, an empty span where this rank holds none of it: every
        # rank records the same layers
        prefix = f"{module_name}." if module_name else ""
        flat[id(param)] = [(prefix + fqn, _span(info), shards)
                           for fqn, info in zip(param._fqns, param._shard_param_infos, strict=True)]
    found: list[tuple[str, torch.nn.Parameter, tuple[int, int] | None, int]] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in flat:
            found.extend((fqn, p, span, shards) for fqn, span, shards in flat[id(p)])
        elif dtensor is not None and isinstance(p, dtensor):
            found.append((name, p, None, math.prod(p.device_mesh.size(d) for d, placement
                                                   in enumerate(p.placements) if placement.is_shard())))
        else:
            found.append((name, p, None, orig.get(id(p), 1)))
    sharded = bool(flat) or any(shards > 1 for *_, shards in found)
    return [Piece(user_name(name), p, span, shards / world if sharded else None,
                  dtensor is not None and isinstance(p, dtensor)) for name, p, span, shards in found]


def _span(info: Any) -> tuple[int, int]:
    return (info.offset_in_shard, info.offset_in_shard + info.numel_in_shard) if info.in_shard else (0, 0)


def user_name(name: str) -> str:
    """A module or parameter name without the segments its wrappers add (FSDP1, checkpointing, compile)."""
    return ".".join(part for part in name.split(".") if part not in _WRAPPERS)


def _loaded(module: str, name: str) -> Any:
    # a model can only be sharded by a module already imported: importing it here would cost a second
    return getattr(sys.modules.get(module), name, None)
