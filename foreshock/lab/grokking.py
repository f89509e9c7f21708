"""The ``grokking`` lab workload: modular arithmetic learnt long after it is memorised.

The task (Power et al. 2022, "Grokking: generalization beyond overfitting on small algorithmic
datasets"): every equation ``a ∘ b = c (mod p)`` with ``a, b`` in ``0..p-1`` (``b != 0`` for
division); a fixed random fraction ``train_frac`` of them trains, the rest is held out. A small
network fits the training equations within a few hundred steps; with strong weight decay
(AdamW, ``weight_decay`` about 1, as in Nanda et al. 2023) it keeps shrinking its weights and,
thousands of steps later, the held-out accuracy jumps from chance to near 100%: grokking.

The model
---------
``model="transformer"`` (default): a nanoGPT-style decoder in this one file. The input is the three
tokens ``a, b, =`` (vocabulary ``p + 1``), the answer is read from the last position by
``lm_head`` (``p`` outputs). Attention is a ``c_attn`` (q, k, v) Linear and a ``c_proj``, so
``foreshock.watch`` finds it and records ``attn/<block>/logit_max``. ``model="mlp"``: embeddings of
``a`` and ``b``, concatenated, ``depth`` hidden ReLU layers of ``width`` units, ``lm_head``.

With the ``cpu`` preset (width 64, lr 3e-3, ``train_frac`` 0.3) the transformer fits the training
equations by step 150 and passes 90% held-out accuracy near step 1900, in about 140 s of one CPU
thread (bench/results/lab_grokking_eos_cpu.md).

The transformer's training loss spikes and recovers periodically once it is near zero (every 150
to 250 steps in the ``cpu`` preset, up to a loss of 3 to 9): real dynamics of AdamW with weight
decay on a network with LayerNorm (Lobacheva et al. 2021 describe such periodic instabilities
under normalisation and weight decay); without the LayerNorms the same settings did not grok
within 3500 steps. foreshock's detectors see the spikes. The ``cpu-mlp`` preset groks with a
smooth training loss.

What it logs
------------
Every step ``s``: ``train/loss`` and ``train/acc`` of the weights after ``s`` updates, on the
training batch (all training equations when ``batch`` is 0, the default), and ``opt/lr`` (watch
records it). Every ``eval_every`` steps, and at the last step: ``val/loss`` and ``val/acc`` on every
held-out equation and ``weight/norm``, the global L2 norm of all parameters, all of the same weights.

Knobs
-----
``p``, ``op`` (``+ - * /``), ``train_frac``: the data. ``model`` (transformer or mlp), ``depth``,
``width``, ``heads``: the network. ``lr``, ``warmup``, ``schedule`` (constant, cosine, linear),
``weight_decay``, ``steps``, ``batch`` (0: every training equation each step), ``seed`` (the split,
the initialisation and the batches), ``eval_every``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foreshock.forecast.schedules import parse_schedule
from foreshock.lab.base import Label, Workload, register

__all__ = ["GROKKING", "ModularData", "learning_rates", "make_model", "modular_data", "train"]

OPS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "+": lambda a, b, p: (a + b) % p,
    "-": lambda a, b, p: (a - b) % p,
    "*": lambda a, b, p: (a * b) % p,
    # b**(p-2) is b's inverse mod a prime p (Fermat); Python's pow does it exactly
    "/": lambda a, b, p: (a * np.array([pow(int(x), p - 2, p) for x in b], dtype=np.int64)) % p,
}


@dataclass(frozen=True)
class ModularData:
    """All equations of one operation, split once.

    ``x_*`` are token rows ``(a, b, EQ)`` with ``EQ = p`` (the operation is fixed per dataset, so no
    token names it, as in Nanda et al.); ``y_*`` are the answers.
    """

    p: int
    op: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


def modular_data(p: int, op: str = "+", train_frac: float = 0.4, seed: int = 0) -> ModularData:
    """Every ``a op b mod p`` equation, shuffled by ``seed`` and split ``train_frac`` / rest.

    The split depends only on ``(p, op, train_frac, seed)``: the same knobs always hold out the same
    equations, so runs that differ in other knobs are comparable.
    """
    if op not in OPS:
        raise ValueError(f"grokking: op must be one of {sorted(OPS)}, got {op!r}")
    if op == "/" and not _is_prime(p):
        raise ValueError(f"grokking: op '/' needs a prime p (every b != 0 invertible), got p={p}")
    if p < 2:
        raise ValueError(f"grokking: p must be >= 2, got {p}")
    if not 0.0 < train_frac < 1.0:
        raise ValueError(f"grokking: train_frac must be in (0, 1), got {train_frac}")
    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(1 if op == "/" else 0, p), indexing="ij"))
    c = OPS[op](a, b, p).astype(np.int64)
    x = np.stack([a, b, np.full_like(a, p)], axis=1).astype(np.int64)
    # a stream of its own, so the split does not move when the model's initialisation changes
    order = np.random.default_rng([seed, p, 0x6A0C]).permutation(len(c))
    n_train = min(max(1, round(train_frac * len(c))), len(c) - 1)
    tr, va = order[:n_train], order[n_train:]
    return ModularData(p=p, op=op, x_train=x[tr], y_train=c[tr], x_val=x[va], y_val=c[va])


# -- the models --------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, nanoGPT's layout: ``c_attn`` gives q, k, v; ``c_proj`` mixes."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"grokking: width {width} must be a multiple of heads {heads}")
        self.n_head, self.n_embd = heads, width
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, last: bool = False) -> torch.Tensor:
        """The attention output of every position, or of the last one only (``last``)."""
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
                   for z in self.c_attn(x).split(self.n_embd, dim=2))
        if last:  # the answer is read at the last position: the others need keys and values only
            q, t = q[:, :, -1:], 1
            y = F.scaled_dot_product_attention(q, k, v)  # the last position sees every key
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: attention, then a 4x-wide GELU MLP, each on a residual."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, last: bool = False) -> torch.Tensor:
        """Every position, or only the last one (``last``: the final block, whose other outputs are unused)."""
        a = self.attn(self.ln_1(x), last)
        x = (x[:, -1:] if last else x) + a
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """Token and position embeddings, ``depth`` blocks, final LayerNorm, ``lm_head`` on the last position."""

    def __init__(self, p: int, width: int, depth: int, heads: int):
        super().__init__()
        self.wte = nn.Embedding(p + 1, width)
        self.wpe = nn.Embedding(3, width)
        self.h = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, p, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1], device=tokens.device))
        for i, block in enumerate(self.h):
            x = block(x, last=i == len(self.h) - 1)
        return self.lm_head(self.ln_f(x[:, -1]))


class MLP(nn.Module):
    """Embeddings of ``a`` and ``b`` concatenated, ``depth`` ReLU layers, ``lm_head``."""

    def __init__(self, p: int, width: int, depth: int):
        super().__init__()
        self.embed = nn.Embedding(p, width)
        layers: list[nn.Module] = []
        for i in range(max(depth, 1)):
            layers += [nn.Linear(2 * width if i == 0 else width, width), nn.ReLU()]
        self.hidden = nn.Sequential(*layers)
        self.lm_head = nn.Linear(width, p)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.embed(tokens[:, :2])  # a and b; the '=' token carries nothing here
        return self.lm_head(self.hidden(e.flatten(1)))


def make_model(config: dict[str, Any]) -> nn.Module:
    """The network the knobs ask for (initialised from the global torch RNG)."""
    kind = config["model"]
    if kind == "transformer":
        return Transformer(config["p"], config["width"], config["depth"], config["heads"])
    if kind == "mlp":
        return MLP(config["p"], config["width"], config["depth"])
    raise ValueError(f"grokking: model must be 'transformer' or 'mlp', got {kind!r}")


def learning_rates(config: dict[str, Any]) -> np.ndarray:
    """The LR of every step: ``schedule`` (constant, cosine or linear, decaying to 0) after a linear warm-up."""
    steps = config["steps"]
    spec = f"{config['schedule']}:peak={config['lr']},warmup={config['warmup']},total={max(steps, config['warmup'] + 1)}"
    return parse_schedule(spec).table(steps)


def make_optimizer(model: nn.Module, config: dict[str, Any]) -> torch.optim.AdamW:
    """AdamW, betas (0.9, 0.98) as in Nanda et al.; weight decay on matrices and embeddings only.

    As in nanoGPT: decaying LayerNorm gains and biases towards 0 does not regularise the function,
    it only fights the normalisation, which at ``weight_decay`` 1 is a strong pull.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config["lr"], betas=(0.9, 0.98))


def weight_norm(model: nn.Module) -> torch.Tensor:
    """Global L2 norm of all parameters, on their device (weight decay shrinks it before grokking)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach()) for p in model.parameters()]))


# -- training ----------------------------------------------------------------------------------


def train(config: dict[str, Any], watch: Callable[[nn.Module, torch.optim.Optimizer], Any]) -> None:
    """Train the grokking workload; see the module docstring for what is logged and when."""
    if config["eval_every"] < 1 or config["steps"] < 1:
        raise ValueError(f"grokking: steps and eval_every must be >= 1, got {config['steps']}, {config['eval_every']}")
    torch.manual_seed(config["seed"])
    data = modular_data(config["p"], config["op"], config["train_frac"], config["seed"])
    model = make_model(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    x_train, y_train = (torch.as_tensor(a, device=device) for a in (data.x_train, data.y_train))
    x_val, y_val = (torch.as_tensor(a, device=device) for a in (data.x_val, data.y_val))
    optimizer = make_optimizer(model, config)
    mon = watch(model, optimizer)
    lrs = learning_rates(config)
    batch, n_train = config["batch"], len(y_train)
    gen = torch.Generator(device=device).manual_seed(config["seed"])
    steps, eval_every = config["steps"], config["eval_every"]
    for step in range(steps):
        metrics: dict[str, Any] = {}
        if step % eval_every == 0 or step == steps - 1:
            model.eval()
            with torch.no_grad():  # the weights after `step` updates, like the training loss below
                logits = model(x_val)
                metrics["val/loss"] = F.cross_entropy(logits, y_val)
                metrics["val/acc"] = (logits.argmax(-1) == y_val).float().mean()
                metrics["weight/norm"] = weight_norm(model)
            model.train()
        if batch and batch < n_train:
            idx = torch.randint(n_train, (batch,), device=device, generator=gen)
            x, y = x_train[idx], y_train[idx]
        else:
            x, y = x_train, y_train
        for group in optimizer.param_groups:
            group["lr"] = float(lrs[step])
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        metrics["train/acc"] = (logits.detach().argmax(-1) == y).float().mean()
        mon.step(step, loss=loss.detach(), **metrics)
        # read on the host only at evaluation steps: a diverged run stops, a healthy one never waits
        if "val/loss" in metrics and not math.isfinite(loss.item()):
            return


def _label(run: Any, config: dict[str, Any]) -> Label:
    from foreshock.lab import labels

    return labels.grokking_label(run, config)


DEFAULTS: dict[str, Any] = {
    "p": 97, "op": "+", "train_frac": 0.4, "model": "transformer",
    "depth": 1, "width": 128, "heads": 4,
    "lr": 1e-3, "weight_decay": 1.0, "warmup": 10, "schedule": "constant",
    "steps": 10000, "batch": 0, "eval_every": 50, "seed": 0,
}

GROKKING = register(Workload(
    name="grokking",
    description="modular arithmetic (a+b mod p) with AdamW and weight decay: memorises, then generalises late",
    defaults=DEFAULTS,
    presets={
        # half the width (a quarter of the cost per step), a smaller training set and a higher LR:
        # the held-out accuracy still jumps late, within a few CPU minutes (bench/results)
        "cpu": {"width": 64, "lr": 3e-3, "train_frac": 0.3, "steps": 3000},
        # the MLP groks with a smooth training loss (the transformer's spikes periodically, see above)
        "cpu-mlp": {"model": "mlp", "train_frac": 0.4, "steps": 6000},
        "gpu": {"p": 113, "train_frac": 0.3, "depth": 1, "width": 128, "heads": 4, "steps": 20000,
                "eval_every": 100},
    },
    train=train,
    label=_label,
))
