"""GradStats: gradient norms and update ratios of a model, global and per layer, reduced on its device.

Around an optimizer step (its step pre- and post-hooks, or by hand without an optimizer):

- ``before_step`` takes the L2 norm of every gradient while the gradients exist (before
  ``zero_grad``), the norm of every weight, and copies the weights into a snapshot kept on the
  device (one copy of the trainable parameters, allocated once);
- ``after_step`` turns the snapshot into the update, ``W_before - W_after``, and takes its norms;
- ``take`` hands over one device vector: ``opt/grad_norm``, ``opt/update_ratio`` (``||dW|| / ||W||``
  with ``W`` before the step), then ``layer/<name>/grad_norm`` and ``layer/<name>/update_ratio`` for
  each layer, and a host mask of which of them hold a value.

All of it is a handful of fused ``torch._foreach_*`` kernels and never reads a value on the host.

Layers. A parameter belongs to the first element of an indexed container on its path (a block of
a ``ModuleList`` or ``Sequential``: ``transformer.h.3.attn.c_attn.weight`` -> ``transformer.h.3``,
``0.weight`` of an MLP -> ``0``), else to the module that owns it (``transformer.wte``,
``lm_head``), else, for a parameter of the root module, to its own name. A transformer so gets one
layer per block plus its embeddings, head and final norm; an MLP one layer per linear map. A model
wrapped by ``torch.compile``, FSDP1 or activation checkpointing gets the names of the model it wraps.

Sharded models (FSDP). Each rank measures the part of each parameter it holds
(:func:`~foreshock.torch.distributed.local_pieces`), and ``take`` hands over squared norms, scaled by
each part's share, in ``<metric>:sumsq`` columns (an update ratio as its numerator's and its
denominator's): summed over the ranks, they give the norms of the whole model (see
:mod:`foreshock.torch.distributed`).
Parameters with ``requires_grad=False`` are left out. Gradients must be dense; a sparse gradient is
left out of the norms (with a warning, once).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from foreshock.torch.distributed import SUMSQ, SUMSQ_DEN, SUMSQ_NUM, local_pieces

__all__ = ["GradStats", "layer_name"]


def layer_name(param_name: str) -> str:
    """The layer a parameter is counted in (see the module docstring).

    >>> layer_name("transformer.h.3.attn.c_attn.weight"), layer_name("0.bias"), layer_name("lm_head.weight")
    ('transformer.h.3', '0', 'lm_head')
    >>> layer_name("pos_emb")
    'pos_emb'
    """
    parts = param_name.split(".")
    owner = parts[:-1]
    for i, part in enumerate(owner):
        if part.isdigit():
            return ".".join(owner[: i + 1])
    return ".".join(owner) or param_name


def _on_device(values: list[int], device: torch.device) -> torch.Tensor:
    index = torch.tensor(values, dtype=torch.long)
    if device.type == "cuda":
        # from pinned memory the copy is queued, not waited for
        return index.pin_memory().to(device, non_blocking=True)
    return index.to(device)


class GradStats:
    """Norms of the gradients and of the updates of ``model``'s trainable parameters.

    Parameters
    ----------
    model : torch.nn.Module
    update_ratio : bool
        Also measure ``||dW|| / ||W||``; costs one copy of the trainable parameters in device memory.
    """

    def __init__(self, model: torch.nn.Module, *, update_ratio: bool = True):
        self._pieces = local_pieces(model)
        devices = {piece.param.device for piece in self._pieces}
        if len(devices) > 1:
            raise ValueError(f"the model's trainable parameters are on several devices {sorted(map(str, devices))}; "
                             "watch() reduces them on one device")
        self.device = devices.pop() if devices else torch.device("cpu")
        self.update_ratio = update_ratio
        self._params = [piece.param for piece in self._pieces]
        # norms are summed in float32 (float64 for a float64 model: a norm may not narrow its input)
        self._dtype = torch.float64 if any(p.dtype == torch.float64 for p in self._params) else torch.float32
        owners = [layer_name(piece.name) for piece in self._pieces]
        self.layers: list[str] = list(dict.fromkeys(owners))
        position = {name: i for i, name in enumerate(self.layers)}
        self._layer_of = np.array([position[o] for o in owners], dtype=np.int64)
        self.sharded = any(piece.share is not None for piece in self._pieces)
        grad, ratio = ("opt/grad_norm",), ("opt/update_ratio",)
        grad += tuple(f"layer/{name}/grad_norm" for name in self.layers)
        ratio += tuple(f"layer/{name}/update_ratio" for name in self.layers)
        if self.sharded:  # squared norms, summed over the ranks before the square root
            self.names = [*(g + SUMSQ for g in grad), *(r + SUMSQ_NUM for r in ratio), *(r + SUMSQ_DEN for r in ratio)]
            shares = [piece.share for piece in self._pieces]
            self._shares = torch.tensor(shares, dtype=self._dtype).to(self.device)
        else:
            self.names = [grad[0], ratio[0], *grad[1:], *ratio[1:]]
        self._index: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._snapshot: list[torch.Tensor | None] = [None] * len(self._params)
        self._warned_sparse = False
        self._clear()

    def _clear(self) -> None:
        self._grad: tuple[torch.Tensor, torch.Tensor] | None = None  # (global sum of squares, per layer)
        self._has_layer = np.zeros(len(self.layers), dtype=bool)
        # (idx, layers, shares, ||W||^2 per parameter)
        self._before: tuple[list[int], torch.Tensor, torch.Tensor | None, torch.Tensor] | None = None
        # (global ratio, per layer); sharded: (||dW||^2, ||W||^2, ||dW||^2 per layer, ||W||^2 per layer)
        self._update: tuple[torch.Tensor, ...] | None = None

    @torch.no_grad()
    def before_step(self, *, update: bool | None = None) -> None:
        """Measure the gradients (and, with ``update``, snapshot the weights) before the step."""
        self._clear()
        idx = self._with_grad()
        if not idx:
            return
        layers, shares = self._layer_index(idx)
        grads = [self._pieces[i].local(self._params[i].grad) for i in idx]
        # from here on, device kernels only (queued, never read back): norms, sums, a scatter-add
        squares = self._squares(grads, shares)
        self._grad = (squares.sum(), self._per_layer(squares, layers))
        self._has_layer[self._layer_of[idx]] = True
        if self.update_ratio if update is None else update:
            weights = self._weights(idx)
            torch._foreach_copy_(self._snapshots(idx), weights)
            self._before = (idx, layers, shares, self._squares(weights, shares))

    @torch.no_grad()
    def after_step(self) -> None:
        """Measure the update the step made (after ``before_step(update=True)``)."""
        if self._before is None:
            return
        idx, layers, shares, w_squares = self._before
        snapshots = self._snapshots(idx)
        torch._foreach_sub_(snapshots, self._weights(idx))  # now W_before - W_after
        d_squares = self._squares(snapshots, shares)
        d_layers, w_layers = self._per_layer(d_squares, layers), self._per_layer(w_squares, layers)
        if self.sharded:  # the ratio is taken once the ranks' squares are summed
            self._update = (d_squares.sum(), w_squares.sum(), d_layers, w_layers)
        else:
            self._update = ((d_squares.sum() / w_squares.sum()).sqrt(), (d_layers / w_layers).sqrt())
        self._before = None

    def take(self) -> tuple[torch.Tensor, np.ndarray] | None:
        """The vector for :attr:`names` and which entries hold a value; None when nothing was measured."""
        if self._grad is None:
            return None
        g_sum, g_layers = self._grad
        updated = self._update is not None
        if self.sharded:
            zero, zeros = g_sum.new_zeros(()), g_layers.new_zeros(len(self.layers))
            d_sum, w_sum, d_layers, w_layers = self._update if updated else (zero, zero, zeros, zeros)
            vector = torch.cat([g_sum.reshape(1), g_layers, d_sum.reshape(1), d_layers, w_sum.reshape(1), w_layers])
            ratio = np.concatenate([[updated], self._has_layer & updated])
            present = np.concatenate([[True], self._has_layer, ratio, ratio])
        else:
            if updated:
                u_global, u_layers = self._update
            else:
                u_global, u_layers = g_sum.new_zeros(()), g_layers.new_zeros(len(self.layers))
            vector = torch.cat([g_sum.sqrt().reshape(1), u_global.reshape(1), g_layers.sqrt(), u_layers])
            present = np.concatenate([[True, updated], self._has_layer, self._has_layer & updated])
        self._clear()
        return vector, present

    # -- helpers ------------------------------------------------------------------------------------
    def _with_grad(self) -> list[int]:
        # whether a gradient exists is an attribute on the host: no device value is read
        idx = []
        for i, p in enumerate(self._params):
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                if not self._warned_sparse:
                    warnings.warn("foreshock.watch: sparse gradients are left out of the gradient and update "
                                  "norms", stacklevel=3)
                    self._warned_sparse = True
                continue
            idx.append(i)
        return idx

    def _layer_index(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        # the same parameters have gradients step after step: one small upload per pattern, cached
        key = tuple(idx)
        index = self._index.get(key)
        if index is None:
            layers = _on_device(self._layer_of[idx].tolist(), self.device)
            shares = self._shares[_on_device(idx, self.device)] if self.sharded else None
            index = self._index[key] = (layers, shares)
        return index

    def _squares(self, tensors: list[torch.Tensor], shares: torch.Tensor | None) -> torch.Tensor:
        squares = torch.stack(torch._foreach_norm(tensors, 2, dtype=self._dtype)).square()
        return squares if shares is None else squares * shares

    def _weights(self, idx: list[int]) -> list[torch.Tensor]:
        return [self._pieces[i].local(self._params[i].detach()) for i in idx]

    def _per_layer(self, squares: torch.Tensor, layers: torch.Tensor) -> torch.Tensor:
        return squares.new_zeros(len(self.layers)).index_add_(0, layers, squares)

    def _snapshots(self, idx: list[int]) -> list[torch.Tensor]:
        out = []
        for i in idx:
            snap = self._snapshot[i]
            if snap is None:  # allocated on first use, then reused every step
                weight = self._pieces[i].local(self._params[i].detach())
                snap = self._snapshot[i] = torch.empty_like(weight, memory_format=torch.preserve_format)
            out.append(snap)
        return out
