"""Precursors: model-internal quantities that grow before a loss spike, reduced on the device by hooks.

- **Output-logit drift**: ``out/logit_max`` (the largest output logit of the batch) and
  ``out/lse_mean`` (the mean over positions of ``logsumexp`` of the output logits: what z-loss
  pushes to 0), from a forward hook on the final projection.
- **Attention-logit growth** (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
  training instabilities"): ``attn/<layer>/logit_max``, the largest ``q . k / sqrt(d_head)`` of an
  attention layer, with the layer's causal (or given) mask applied. q and k are recomputed from the
  projections, not read from attention weights, so fused ``scaled_dot_product_attention`` is no
  obstacle. Supported: nanoGPT-style attention (a module with a ``c_attn`` Linear giving q, k, v
  concatenated and ``n_head``/``n_embd``; causal) and ``torch.nn.MultiheadAttention``.

Sampling, and its bias. The attention logits of a whole batch cost as much as attention itself, so
they are computed for the **first sequence of the batch only**, and for at most
:data:`QUERY_SAMPLE` query positions of it, evenly spaced and always including the last one,
against **all** its keys. The max over a sample is a lower bound of the max over the batch: a
spike confined to other sequences, or to query positions between the samples, is missed or seen
late. Output logits are reduced over the whole batch.

Everything is computed with torch ops under ``torch.no_grad()`` on detached tensors, and never read
on the host: :meth:`Precursors.take` hands over one device vector, as ``GradStats`` does. Hooks
only measure when :attr:`Precursors.active` is true (``Watch`` sets it on the steps it measures)
and when the forward pass trains (gradients enabled and the module in training mode): evaluation
passes are left out. With several forward passes in one step (gradient accumulation), maxima are
the max over the passes and ``out/lse_mean`` the mean over them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from foreshock.torch.capture import layer_name

__all__ = ["QUERY_SAMPLE", "Precursors", "find_attention", "find_output_head"]

QUERY_SAMPLE = 64  # query positions per sequence whose attention logits are computed
_LSE_CHUNK = 1 << 24  # logits per logsumexp chunk: bounds the float32 temporary to 64 MiB


def _unwrap(name: str) -> str:
    return name.removeprefix("_orig_mod.")  # torch.compile's wrapper names no layer


def find_output_head(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """The final projection: a Linear named ``lm_head``, else the last Linear registered if no other
    Linear has more outputs (a vocabulary projection). None when the model has neither (a regressor
    whose last layer is narrow is not a language model)."""
    # an attention module's own output projection is never the model's
    inner = {id(m) for mha in model.modules() if isinstance(mha, nn.MultiheadAttention) for m in mha.modules()}
    linears = [(_unwrap(n), m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and id(m) not in inner]
    for name, module in linears:
        if name.split(".")[-1] == "lm_head":
            return name, module
    if linears and linears[-1][1].out_features >= max(m.out_features for _, m in linears):
        return linears[-1]
    return None


def _wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 at least: half-precision sums lose digits; a float64 model keeps float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _is_nanogpt_attention(module: nn.Module) -> bool:
    c_attn = getattr(module, "c_attn", None)
    return (isinstance(c_attn, nn.Linear) and isinstance(getattr(module, "n_head", None), int)
            and isinstance(getattr(module, "n_embd", None), int) and c_attn.out_features == 3 * module.n_embd)


def find_attention(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Attention modules found, ``(layer, module)``: the layer is the block the module sits in (as
    ``layer/<name>/...`` names it), or the module's own name when a block holds several."""
    found = [(_unwrap(n), m) for n, m in model.named_modules()
             if isinstance(m, nn.MultiheadAttention) or _is_nanogpt_attention(m)]
    blocks = [layer_name(f"{n}.x") if n else type(m).__name__ for n, m in found]
    out = []
    for (name, module), block in zip(found, blocks, strict=True):
        out.append((block if blocks.count(block) == 1 else name or block, module))
    return out


def _query_positions(length: int, device: torch.device) -> torch.Tensor:
    if length <= QUERY_SAMPLE:
        return torch.arange(length, device=device)
    # evenly spaced, first and last included; a host computation, uploaded as a small index
    return torch.linspace(0, length - 1, QUERY_SAMPLE, device=device).round().long()


def attention_logit_max(q: torch.Tensor, k: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Max of ``q . k / sqrt(d)`` over heads and allowed (query, key) pairs, a scalar (float32 at least).

    ``q``: (heads, queries, d); ``k``: (heads, keys, d); ``allowed``: bool, (queries, keys) or
    (heads, queries, keys), or None.
    """
    logits = _wide(q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    return logits.amax()


class Precursors:
    """Forward hooks measuring output-logit drift and attention-logit growth of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
    output : str or None
        Name of the final projection; default: found by :func:`find_output_head`.
    attention : sequence of str or None
        Names of the attention modules; default: found by :func:`find_attention`.
    """

    def __init__(self, model: nn.Module, *, output: str | None = None, attention: Sequence[str] | None = None):
        modules = {_unwrap(n): m for n, m in model.named_modules()}
        if output is not None:
            if output not in modules:
                raise ValueError(f"no module named {output!r} in {type(model).__name__}")
            head: tuple[str, nn.Module] | None = (output, modules[output])
        else:
            head = find_output_head(model)
        if isinstance(attention, str):
            attention = [attention]
        if attention is not None:
            missing = [n for n in attention if n not in modules]
            if missing:
                raise ValueError(f"no module named {missing} in {type(model).__name__}")
            attn = [(n, modules[n]) for n in attention]
        else:
            attn = find_attention(model)
        self.output = head[0] if head else None
        self.attention = [name for name, _ in attn]
        self.names: list[str] = ((["out/logit_max", "out/lse_mean"] if head else [])
                                 + [f"attn/{name}/logit_max" for name in self.attention])
        for name, module in attn:  # every check before the first hook: an error leaves the model as it was
            if not (isinstance(module, nn.MultiheadAttention) or _is_nanogpt_attention(module)):
                raise ValueError(f"{name!r} is a {type(module).__name__}: not an attention module foreshock "
                                 "can read (nanoGPT-style or nn.MultiheadAttention)")
        self.active = False
        self._handles: list[Any] = []
        if head is not None:
            self._handles.append(head[1].register_forward_hook(self._on_output))
        for i, (_, module) in enumerate(attn):
            if isinstance(module, nn.MultiheadAttention):
                self._handles.append(module.register_forward_pre_hook(self._mha_hook(i), with_kwargs=True))
            else:
                self._handles.append(module.c_attn.register_forward_hook(self._nanogpt_hook(i, module)))
        self._clear()

    def _clear(self) -> None:
        self._out_max: torch.Tensor | None = None
        self._lse_sum: torch.Tensor | None = None
        self._lse_passes = 0
        self._attn: list[torch.Tensor | None] = [None] * len(self.attention)

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _measuring(self, module: nn.Module) -> bool:
        return self.active and module.training and torch.is_grad_enabled()

    # -- hooks ---------------------------------------------------------------------------------------
    def _on_output(self, module: nn.Module, args: Any, output: Any) -> None:
        if not self._measuring(module) or not isinstance(output, torch.Tensor):
            return
        with torch.no_grad():
            logits = output.detach()
            top = _wide(logits.amax())
            rows = logits.reshape(-1, logits.shape[-1])
            step = max(1, _LSE_CHUNK // max(1, rows.shape[1]))
            # chunked, in float32: a bfloat16 logsumexp loses digits, a whole float32 copy of the
            # logits would double the largest tensor of the step
            lse = sum(torch.logsumexp(_wide(rows[i: i + step]), dim=-1).sum() for i in range(0, rows.shape[0], step))
            mean = lse / rows.shape[0]
            self._out_max = top if self._out_max is None else torch.maximum(self._out_max, top)
            self._lse_sum = mean if self._lse_sum is None else self._lse_sum + mean
            self._lse_passes += 1

    def _keep(self, i: int, value: torch.Tensor) -> None:
        old = self._attn[i]
        self._attn[i] = value if old is None else torch.maximum(old, value)

    def _nanogpt_hook(self, i: int, attn: nn.Module):
        n_head, n_embd = attn.n_head, attn.n_embd

        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            if not self._measuring(attn) or output.dim() != 3:  # (batch, T, 3C) as nanoGPT calls it
                return
            with torch.no_grad():
                qkv = output.detach()[0]  # (T, 3C): the first sequence of the batch
                length = qkv.shape[0]
                q, k, _ = qkv.split(n_embd, dim=-1)
                pos = _query_positions(length, qkv.device)
                q = q[pos].reshape(len(pos), n_head, -1).transpose(0, 1)  # (heads, sample, d)
                k = k.reshape(length, n_head, -1).transpose(0, 1)  # (heads, T, d)
                allowed = torch.arange(length, device=qkv.device)[None, :] <= pos[:, None]  # causal
                self._keep(i, attention_logit_max(q, k, allowed))
        return hook

    def _mha_hook(self, i: int):
        def hook(module: nn.MultiheadAttention, args: tuple, kwargs: dict) -> None:
            query = _mha_arg(args, kwargs, "query", 0)
            if not self._measuring(module) or not isinstance(query, torch.Tensor) or query.is_nested:
                return
            with torch.no_grad():
                self._keep(i, _mha_logit_max(module, args, kwargs))
        return hook

    # -- the step's vector ---------------------------------------------------------------------------
    def take(self) -> tuple[torch.Tensor, np.ndarray] | None:
        """The vector for :attr:`names` and which entries hold a value; None when nothing was measured."""
        values: list[torch.Tensor | None] = []
        if self.output is not None:
            lse = None if self._lse_sum is None else self._lse_sum / self._lse_passes
            values += [self._out_max, lse]
        values += self._attn
        self._clear()
        present = np.array([v is not None for v in values], dtype=bool)
        if not present.any():
            return None
        kept = [v for v in values if v is not None]
        dtype = kept[0].dtype
        for v in kept[1:]:
            dtype = torch.promote_types(dtype, v.dtype)
        zero = kept[0].new_zeros((), dtype=dtype)
        vector = torch.stack([zero if v is None else v.to(zero.device, dtype) for v in values])
        return vector, present


def _mha_arg(args: tuple, kwargs: dict, name: str, index: int) -> Any:
    return kwargs[name] if name in kwargs else (args[index] if len(args) > index else None)


def _mha_logit_max(mha: nn.MultiheadAttention, args: tuple, kwargs: dict) -> torch.Tensor:
    """``q . k / sqrt(d)`` max of the first sequence, recomputed from the inputs as MHA projects them."""
    query, key = _mha_arg(args, kwargs, "query", 0), _mha_arg(args, kwargs, "key", 1)
    key_padding_mask = _mha_arg(args, kwargs, "key_padding_mask", 3)
    attn_mask = _mha_arg(args, kwargs, "attn_mask", 5)
    is_causal = bool(_mha_arg(args, kwargs, "is_causal", 7))
    batched = query.dim() == 3
    if batched and not mha.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    query, key = (query.detach()[0], key.detach()[0]) if batched else (query.detach(), key.detach())
    e, heads = mha.embed_dim, mha.num_heads
    bias = mha.in_proj_bias
    if mha._qkv_same_embed_dim:
        w_q, w_k = mha.in_proj_weight[:e], mha.in_proj_weight[e: 2 * e]
    else:
        w_q, w_k = mha.q_proj_weight, mha.k_proj_weight
    b_q, b_k = (None, None) if bias is None else (bias[:e], bias[e: 2 * e])
    pos = _query_positions(query.shape[0], query.device)
    q = nn.functional.linear(query[pos], w_q.detach(), None if b_q is None else b_q.detach())
    k = nn.functional.linear(key, w_k.detach(), None if b_k is None else b_k.detach())
    q = q.reshape(len(pos), heads, -1).transpose(0, 1)
    k = k.reshape(key.shape[0], heads, -1).transpose(0, 1)
    allowed = None
    if attn_mask is not None:
        mask = attn_mask.detach()
        # (L, S), or (batch * heads, L, S) of which the first sequence's heads; True or -inf (a float
        # mask) marks what may not be attended to; other float values are not added to the logits
        mask = mask[:heads, pos] if mask.dim() == 3 else mask[pos]
        allowed = ~mask if mask.dtype == torch.bool else ~torch.isneginf(mask)
    elif is_causal:
        allowed = torch.arange(key.shape[0], device=key.device)[None, :] <= pos[:, None]
    if key_padding_mask is not None:
        kpm = key_padding_mask.detach()
        kpm = kpm[0] if kpm.dim() == 2 else kpm
        keep = ~kpm if kpm.dtype == torch.bool else ~torch.isneginf(kpm)
        allowed = keep.expand(len(pos), -1) if allowed is None else allowed & keep
    return attention_logit_max(q, k, allowed)
