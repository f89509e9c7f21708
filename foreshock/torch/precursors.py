"""Precursors: model-internal quantities that grow before a loss spike, reduced on the device by hooks.

- **Output-logit drift**: ``out/logit_max`` (the largest output logit of the batch) and
  ``out/lse_mean`` (the mean over positions of ``logsumexp`` of the output logits: what z-loss
  pushes to 0), from a forward hook on the final projection.
- **Attention-logit growth** (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
  training instabilities"): ``attn/<layer>/logit_max``, the largest ``q . k / sqrt(d_head)`` of an
  attention layer, with the layer's causal (or given) mask applied. q and k are recomputed from the
  projections, not read from attention weights, so fused ``scaled_dot_product_attention`` is no
  obstacle. Supported: nanoGPT-style attention (a module with a ``c_attn`` Linear giving q, k, v
  concatenated and ``n_head``/``n_embd``; causal), ``torch.nn.MultiheadAttention``, Hugging Face
  GPT-2 attention (a fused ``c_attn`` Conv1D split into q, k, v) and LLaMA-style attention
  (``q_proj``/``k_proj`` Linears, rotary embeddings from the ``position_embeddings`` argument applied
  to q and k as the module applies them, grouped-query attention with fewer k heads). For the Hugging
  Face modules the logits are scaled as the module scales them (its ``scaling``) and the mask it is
  given (boolean, or additive with the dtype's minimum) is applied together with causality (unless
  a LLaMA-style module says ``is_causal = False``).
- **Activation statistics** of each block (the elements of the model's outermost ``ModuleList`` of
  blocks: ``transformer.h.<i>``, ``model.layers.<i>``, ...), from a forward hook on its output:
  ``act/<layer>/rms``, the root mean square of the output, and ``act/<layer>/kurtosis``, the
  kurtosis of the per-channel RMS, ``mean_j(s_j^4) / mean_j(s_j^2)^2`` with ``s_j^2`` the mean
  square of channel ``j``: 1 when every channel carries the same energy, large when a few outlier
  channels carry most of it (outlier features, which grow before low-precision training breaks).
  Computed on at most :data:`ACT_ROWS` rows (token positions of the flattened batch, evenly
  strided), so its cost is independent of the batch size.

Sampling, and its bias. The attention logits of a whole batch cost as much as attention itself, so
they are computed for the **first sequence of the batch only**, and for at most
:data:`QUERY_SAMPLE` query positions of it, evenly spaced and always including the last one,
against **all** its keys (for the Hugging Face modules the projections of that one sequence are
recomputed: about ``1 / batch`` of the layer's projection cost). The max over a sample is a lower bound of the max over the batch: a
spike confined to other sequences, or to query positions between the samples, is missed or seen
late. Output logits are reduced over the whole batch.

Everything is computed with torch ops under ``torch.no_grad()`` on detached tensors, and never read
on the host: :meth:`Precursors.take` hands over one device vector, as ``GradStats`` does. Hooks
only measure when :attr:`Precursors.active` is true (``Watch`` sets it on the steps it measures)
and when the forward pass trains (gradients enabled and the module in training mode): evaluation
passes are left out. With several forward passes in one step (gradient accumulation), maxima are
the max over the passes, ``out/lse_mean`` the mean over them, and the activation statistics are
computed from the channels' mean squares averaged over them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from foreshock.torch.capture import layer_name
from foreshock.torch.distributed import user_name

__all__ = ["ACT_ROWS", "QUERY_SAMPLE", "Precursors", "find_attention", "find_blocks", "find_output_head"]

QUERY_SAMPLE = 64  # query positions per sequence whose attention logits are computed
ACT_ROWS = 256  # rows (token positions) of a block's output its activation statistics are computed on
_LSE_CHUNK = 1 << 24  # logits per logsumexp chunk: bounds the float32 temporary to 64 MiB


def _unwrap(name: str) -> str:
    # torch.compile, FSDP1 and activation checkpointing wrap modules: their wrappers name no layer
    return user_name(name)


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


def _is_gpt2_attention(module: nn.Module) -> bool:
    """Hugging Face GPT-2 self-attention: ``c_attn`` a Conv1D (``nf`` outputs) giving q, k, v."""
    c_attn = getattr(module, "c_attn", None)
    embed = getattr(module, "embed_dim", None)
    return (c_attn is not None and not isinstance(c_attn, nn.Linear) and isinstance(embed, int)
            and getattr(c_attn, "nf", None) == 3 * embed and isinstance(getattr(module, "head_dim", None), int)
            and not getattr(module, "is_cross_attention", False))


def _is_llama_attention(module: nn.Module) -> bool:
    """LLaMA-style attention: ``q_proj`` and ``k_proj`` Linears, whole heads of ``head_dim``."""
    q, k, d = getattr(module, "q_proj", None), getattr(module, "k_proj", None), getattr(module, "head_dim", None)
    return (isinstance(q, nn.Linear) and isinstance(k, nn.Linear) and isinstance(d, int) and d > 0
            and q.out_features % d == 0 and k.out_features % d == 0
            and (q.out_features // d) % max(1, k.out_features // d) == 0)


def _readable_attention(module: nn.Module) -> bool:
    return (isinstance(module, nn.MultiheadAttention) or _is_nanogpt_attention(module)
            or _is_gpt2_attention(module) or _is_llama_attention(module))


def find_attention(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Attention modules found, ``(layer, module)``: the layer is the block the module sits in (as
    ``layer/<name>/...`` names it), or the module's own name when a block holds several."""
    found = [(_unwrap(n), m) for n, m in model.named_modules() if _readable_attention(m)]
    blocks = [layer_name(f"{n}.x") if n else type(m).__name__ for n, m in found]
    out = []
    for (name, module), block in zip(found, blocks, strict=True):
        out.append((block if blocks.count(block) == 1 else name or block, module))
    return out


def find_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's blocks, ``(name, module)``: the elements of each outermost ``nn.ModuleList`` whose
    elements are of one class and hold parameters (a transformer's layers; not a list of heads
    inside a block, nor a ``Sequential`` of single layers)."""
    lists = [(_unwrap(n), m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)
             and len({type(e) for e in m}) == 1 and any(True for _ in m[0].parameters())]
    out: list[tuple[str, nn.Module]] = []
    for name, blocks in lists:
        if any(name.startswith(f"{outer}.") or not outer for outer, _ in lists if outer != name):
            continue  # inside another list's element
        out.extend((f"{name}.{i}" if name else str(i), block) for i, block in enumerate(blocks))
    return out


def _query_positions(length: int, device: torch.device) -> torch.Tensor:
    if length <= QUERY_SAMPLE:
        return torch.arange(length, device=device)
    # evenly spaced, first and last included; a host computation, uploaded as a small index
    return torch.linspace(0, length - 1, QUERY_SAMPLE, device=device).round().long()


def attention_logit_max(q: torch.Tensor, k: torch.Tensor, allowed: torch.Tensor | None,
                        scale: float | None = None) -> torch.Tensor:
    """Max of ``q . k * scale`` over heads and allowed (query, key) pairs, a scalar (float32 at least).

    ``q``: (heads, queries, d); ``k``: (heads, keys, d); ``allowed``: bool, (queries, keys) or
    (heads, queries, keys), or None; ``scale``: ``1 / sqrt(d)`` unless given.
    """
    logits = _wide(q @ k.transpose(-1, -2)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    return logits.amax()


class Precursors:
    """Forward hooks measuring output-logit drift, attention-logit growth and activation statistics.

    Parameters
    ----------
    model : torch.nn.Module
    output : str or None
        Name of the final projection; default: found by :func:`find_output_head`.
    attention : sequence of str or None
        Names of the attention modules; default: found by :func:`find_attention`.
    activations : sequence of str or None
        Names of the blocks whose outputs are measured; default: found by :func:`find_blocks`.
    """

    def __init__(self, model: nn.Module, *, output: str | None = None, attention: Sequence[str] | None = None,
                 activations: Sequence[str] | None = None):
        modules = {_unwrap(n): m for n, m in model.named_modules()}
        if output is not None:
            if output not in modules:
                raise ValueError(f"no module named {output!r} in {type(model).__name__}")
            head: tuple[str, nn.Module] | None = (output, modules[output])
        else:
            head = find_output_head(model)
        attn = find_attention(model) if attention is None else _named(modules, attention, model)
        blocks = find_blocks(model) if activations is None else _named(modules, activations, model)
        self.output = head[0] if head else None
        self.attention = [name for name, _ in attn]
        self.blocks = [name for name, _ in blocks]
        self.names: list[str] = ((["out/logit_max", "out/lse_mean"] if head else [])
                                 + [f"attn/{name}/logit_max" for name in self.attention]
                                 + [f"act/{name}/{stat}" for name in self.blocks for stat in ("rms", "kurtosis")])
        for name, module in attn:  # every check before the first hook: an error leaves the model as it was
            if not _readable_attention(module):
                raise ValueError(f"{name!r} is a {type(module).__name__}: not an attention module foreshock "
                                 "can read (nanoGPT-style, nn.MultiheadAttention, Hugging Face GPT-2 or "
                                 "LLaMA-style)")
        self.active = False
        self._handles: list[Any] = []
        if head is not None:
            self._handles.append(head[1].register_forward_hook(self._on_output))
        for i, (_, module) in enumerate(attn):
            if isinstance(module, nn.MultiheadAttention):
                self._handles.append(module.register_forward_pre_hook(self._mha_hook(i), with_kwargs=True))
            elif _is_nanogpt_attention(module):
                self._handles.append(module.c_attn.register_forward_hook(self._nanogpt_hook(i, module)))
            else:  # Hugging Face: the module's inputs, the projections recomputed on one sequence
                self._handles.append(module.register_forward_pre_hook(self._hf_hook(i), with_kwargs=True))
        for i, (_, module) in enumerate(blocks):
            self._handles.append(module.register_forward_hook(self._block_hook(i)))
        self._clear()

    def _clear(self) -> None:
        self._out_max: torch.Tensor | None = None
        self._lse_sum: torch.Tensor | None = None
        self._lse_passes = 0
        self._attn: list[torch.Tensor | None] = [None] * len(self.attention)
        self._act: list[torch.Tensor | None] = [None] * len(self.blocks)  # per-channel mean squares, summed
        self._act_passes = [0] * len(self.blocks)

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
                self._keep(i, _fused_qkv_logit_max(output.detach()[0], n_embd, n_head, None, None))
        return hook

    def _mha_hook(self, i: int):
        def hook(module: nn.MultiheadAttention, args: tuple, kwargs: dict) -> None:
            query = _mha_arg(args, kwargs, "query", 0)
            if not self._measuring(module) or not isinstance(query, torch.Tensor) or query.is_nested:
                return
            with torch.no_grad():
                self._keep(i, _mha_logit_max(module, args, kwargs))
        return hook

    def _hf_hook(self, i: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            hidden = _mha_arg(args, kwargs, "hidden_states", 0)
            if (not self._measuring(module) or not isinstance(hidden, torch.Tensor) or hidden.dim() != 3
                    or kwargs.get("encoder_hidden_states") is not None):
                return
            mask = _mha_arg(args, kwargs, "attention_mask", 2)  # third for GPT-2 and LLaMA alike
            with torch.no_grad():
                if _is_gpt2_attention(module):
                    qkv = module.c_attn(hidden.detach()[0])  # (T, 3E): the first sequence only
                    value = _fused_qkv_logit_max(qkv, module.embed_dim, module.embed_dim // module.head_dim,
                                                 mask, getattr(module, "scaling", None))  # self-attention: causal
                else:
                    rotary = _mha_arg(args, kwargs, "position_embeddings", 1)
                    if not (isinstance(rotary, (tuple, list)) and len(rotary) == 2):
                        return  # a version that applies rotary embeddings elsewhere: nothing to read
                    value = _llama_logit_max(module, hidden.detach()[0], rotary, mask)
                self._keep(i, value)
        return hook

    def _block_hook(self, i: int):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) and output else output
            if not self._measuring(module) or not isinstance(out, torch.Tensor) or out.dim() < 2:
                return
            with torch.no_grad():
                rows = out.detach().reshape(-1, out.shape[-1])
                stride = -(-rows.shape[0] // ACT_ROWS)
                squares = _wide(rows[::stride]).square().mean(0)  # (channels,): each channel's mean square
                old = self._act[i]
                self._act[i] = squares if old is None else old + squares
                self._act_passes[i] += 1
        return hook

    # -- the step's vector ---------------------------------------------------------------------------
    def take(self) -> tuple[torch.Tensor, np.ndarray] | None:
        """The vector for :attr:`names` and which entries hold a value; None when nothing was measured."""
        values: list[torch.Tensor | None] = []
        if self.output is not None:
            lse = None if self._lse_sum is None else self._lse_sum / self._lse_passes
            values += [self._out_max, lse]
        values += self._attn
        for squares, passes in zip(self._act, self._act_passes, strict=True):
            if squares is None:
                values += [None, None]
                continue
            squares = squares / passes
            mean = squares.mean()
            values += [mean.sqrt(), squares.square().mean() / mean.square()]
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


def _named(modules: dict[str, nn.Module], names: Sequence[str] | str, model: nn.Module) -> list[tuple[str, nn.Module]]:
    names = [names] if isinstance(names, str) else list(names)
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"no module named {missing} in {type(model).__name__}")
    return [(n, modules[n]) for n in names]


def _causal(pos: torch.Tensor, keys: int) -> torch.Tensor:
    return torch.arange(keys, device=pos.device)[None, :] <= pos[:, None]  # (queries, keys)


def _given_mask(mask: Any, pos: torch.Tensor, keys: int) -> torch.Tensor | None:
    """The allowed (query, key) pairs of the first sequence from a Hugging Face attention mask:
    4-D, boolean (True: attended to) or additive (the dtype's minimum, or -inf: not attended to),
    or 2-D ``(batch, keys)`` padding (1: a token, 0: padding), as flash attention is given it."""
    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 4) or mask.shape[-1] != keys:
        return None  # no mask (fused causal attention), or a kind not read here: causality alone
    if mask.dim() == 2:
        return mask.detach()[0].bool()[None, :]  # (1, keys)
    mask = mask.detach()[0][:, pos]  # (1 or heads, queries, keys)
    if mask.dtype == torch.bool:
        return mask
    return mask > torch.finfo(mask.dtype).min / 2


def _allowed(pos: torch.Tensor, keys: int, causal: bool, mask: Any) -> torch.Tensor | None:
    allowed = _causal(pos, keys) if causal else None
    given = _given_mask(mask, pos, keys)
    if given is None:
        return allowed
    return given if allowed is None else allowed & given


def _fused_qkv_logit_max(qkv: torch.Tensor, embd: int, heads: int, mask: Any, scale: float | None,
                         causal: bool = True) -> torch.Tensor:
    """Logit max of one sequence from its fused ``(T, 3 * embd)`` q, k, v projection."""
    length = qkv.shape[0]
    q, k, _ = qkv.split(embd, dim=-1)
    pos = _query_positions(length, qkv.device)
    q = q[pos].reshape(len(pos), heads, -1).transpose(0, 1)  # (heads, sample, d)
    k = k.reshape(length, heads, -1).transpose(0, 1)  # (heads, T, d)
    return attention_logit_max(q, k, _allowed(pos, length, causal, mask), scale)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _llama_logit_max(attn: nn.Module, hidden: torch.Tensor, rotary: Sequence[torch.Tensor], mask: Any) -> torch.Tensor:
    """Logit max of one sequence ``(T, E)`` of LLaMA-style attention, q and k after rotary."""
    length, d = hidden.shape[0], attn.head_dim
    pos = _query_positions(length, hidden.device)
    q = attn.q_proj(hidden[pos]).reshape(len(pos), -1, d)  # (sample, heads, d)
    k = attn.k_proj(hidden).reshape(length, -1, d)  # (T, k heads, d)
    q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
    if isinstance(q_norm, nn.Module) and isinstance(k_norm, nn.Module):  # per-head norms before rotary (Qwen3)
        q, k = q_norm(q), k_norm(k)
    cos, sin = (t.detach() for t in rotary)
    cos, sin = (cos[0] if cos.dim() == 3 else cos), (sin[0] if sin.dim() == 3 else sin)  # (T, d)
    q = q * cos[pos, None] + _rotate_half(q) * sin[pos, None]
    k = k * cos[:, None] + _rotate_half(k) * sin[:, None]
    q, k = q.transpose(0, 1), k.transpose(0, 1)  # (heads, sample, d), (k heads, T, d)
    k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)  # query head h reads k head h // groups
    allowed = _allowed(pos, length, getattr(attn, "is_causal", True) is not False, mask)
    return attention_logit_max(q, k, allowed, getattr(attn, "scaling", None))


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
