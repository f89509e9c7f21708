"""gpt-instability: a byte-level GPT trained up to learning rates that break it, with or without qk-norm.

It is built to study the instabilities of Wortsman et al. (2023), "Small-scale proxies for
large-scale Transformer training instabilities": at a high learning rate the attention logits
``q . k / sqrt(d)`` grow without bound and attention collapses onto single tokens; a LayerNorm on q
and on k of each head (``qk_norm``) bounds them. ``z_loss`` adds
``z_loss * mean(logsumexp(logits)^2)`` to the objective, the paper's remedy for the other
instability, output-logit divergence.

What the cpu preset shows (``bench/results/gpt_instability_cpu.md``): without ``qk_norm`` the
attention logits reach 1e3 to 1e8 and the run trains to a clearly worse loss at every learning rate
tried; with it they stay in the tens to hundreds. At ``lr`` 0.3 after a 50-step warm-up the loss
diverges after about 100 steps of learning, with or without ``qk_norm`` (the output logits blow up
too); that high-LR run is the demo's divergence. With a long warm-up the paper's split appears just
below that: at ``lr=0.27, warmup=600, steps=900`` all 4 seeds diverge without ``qk_norm`` and none
with it (3 spike and recover); at 0.29, 4/4 against 2/4; at 0.2 both train, from 0.3 both break
(``bench/results/gpt_lr_threshold.md``). On slow ramps the LR at the divergence onset is higher with
``qk_norm`` in 10 of 13 seed-matched pairs (sign test p = 0.01): the window where it helps is narrow
at this size, about 0.27 to 0.30.

The model is nanoGPT in one file: token and position embeddings, pre-LN blocks of causal
self-attention (a ``c_attn`` Linear giving q, k and v, then ``c_proj``) and a GELU MLP, a final
LayerNorm and an untied ``lm_head``; no biases in the Linears. The text is the standard library's
source (:mod:`foreshock.lab.corpus`), one byte per token. AdamW (betas 0.9, 0.95; weight decay on
matrices only); the learning rate follows ``schedule`` (constant, cosine to a tenth, or wsd with a
linear decay to 0 over the last fifth) after a linear warm-up. No gradient clipping: clipping
hides the instability this workload exists to show. ``precision`` ``bf16`` (the default) runs the
forward pass under bfloat16 autocast, as large runs train, on the CPU too.

With ``qk_norm`` the LayerNorms sit inside ``c_attn`` (:class:`QKVProjection`), so what leaves
``c_attn`` is what attention uses, and ``foreshock.watch``'s attention hook, which recomputes the
logits from ``c_attn``'s output, measures the logits the model really has.

Logged per step through the monitor: ``train/loss`` (the cross-entropy, without the z-loss term)
and every ``eval_every`` steps ``val/loss`` on a fixed validation batch; ``watch`` adds the
optimizer and precursor metrics. Training stops early when the loss is non-finite or has stayed
above ``ln 256`` (the loss of a uniform guess, about where the run starts) for ``patience`` steps
in a row: the run has diverged and has nothing more to teach. The losses are read on the host
every :data:`CHECK_EVERY` steps only (one synchronisation per check), so a few steps past the
first bad one are always recorded.

With ``sharpness_every`` N > 0, every N steps (from step N on, once AdamW has a second moment) the
run also logs ``probe/hessian/lambda_max_precond``, the top eigenvalue of ``P^-1 H``: ``H`` the
Hessian of the step's objective on the step's own batch at the weights before the update, computed
in fp32 whatever ``precision`` says, and ``P = diag(sqrt(v_hat) + eps)`` AdamW's bias-corrected
second-moment preconditioner. It comes from ``sharpness_iters`` Lanczos steps (Hessian-vector
products by double backward) on the symmetric ``P^-1/2 H P^-1/2``, warm-started from the previous
probe's eigenvector (:func:`lanczos_top`: power iteration would find the large negative eigenvalues
this operator has early in training). Cohen et al. 2022 ("Adaptive gradient methods at the edge of
stability"): Adam is stable while it stays below ``(2 + 2 beta1) / ((1 - beta1) lr)``, so the
run logs that ratio too, ``probe/eos_ratio = lr * lambda * (1 - beta1) / (2 + 2 beta1)``. On the
slow ramps it is no precursor of the divergence: it reaches the edge early in stable and diverging
runs alike (``bench/results/gpt_sharpness_precursor.md``). A probe costs about 30 training steps.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from foreshock.forecast.schedules import parse_schedule
from foreshock.lab.base import Label, Workload, register
from foreshock.lab.corpus import VOCAB, corpus_bytes, train_val_split
from foreshock.lab.eos import COLD_START_FACTOR

__all__ = ["CPU_STABLE_LR", "CPU_UNSTABLE_LR", "CHECK_EVERY", "DEFAULTS", "GPT", "WORKLOAD", "FitResult",
           "QKVProjection", "adam_edge_ratio", "build", "fit", "lanczos_top", "lm_loss", "lr_table",
           "preconditioned_sharpness", "train"]

CHECK_EVERY = 10  # steps between host reads of the loss for the stop rule

#: every knob, with its default (the cpu preset overrides some)
DEFAULTS: dict[str, Any] = {
    "depth": 2,
    "width": 64,
    "heads": 4,
    "seq_len": 64,
    "batch": 16,
    "lr": 1e-3,
    "warmup": 0,
    "steps": 400,
    "schedule": "constant",  # constant | cosine | wsd
    "qk_norm": False,
    "z_loss": 0.0,
    "seed": 0,
    "weight_decay": 0.0,
    "eval_every": 25,
    "corpus_bytes": 2_000_000,
    "patience": 50,  # steps above ln 256 in a row that end the run as diverged
    "device": "auto",  # auto (cuda when available) | cpu | cuda
    "precision": "bf16",  # bf16 (autocast: matmuls in bfloat16, as large runs train) | fp32
    "sharpness_every": 0,  # steps between preconditioned-sharpness probes (0: off)
    "sharpness_iters": 10,  # power-iteration steps per probe (warm-started)
}

#: learning rates of the cpu preset measured in bench/gpt_lr_grid.py (bench/results/gpt_instability_cpu.md):
#: the first trains with and without qk_norm, the second diverges without it and trains with it
CPU_STABLE_LR = 1e-2
CPU_UNSTABLE_LR = 3e-1

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"depth": 2, "width": 128, "heads": 2, "seq_len": 64, "batch": 16, "steps": 300,
            "lr": CPU_UNSTABLE_LR, "warmup": 50, "schedule": "constant", "eval_every": 25},
    # GPT-2 small's shape; not run on a CPU
    "gpu": {"depth": 12, "width": 768, "heads": 12, "seq_len": 512, "batch": 32, "steps": 5000, "lr": 3e-3,
            "warmup": 200, "schedule": "cosine", "eval_every": 100, "corpus_bytes": 12_000_000},
}


# -- the model ---------------------------------------------------------------------------------


class QKVProjection(nn.Linear):
    """The ``c_attn`` projection: x -> q, k, v concatenated; with ``qk_norm``, q and k leave it normed.

    The norm is a LayerNorm over each head's ``width // heads`` features, one for q and one for k.
    """

    def __init__(self, width: int, heads: int, qk_norm: bool):
        super().__init__(width, 3 * width, bias=False)
        self.n_embd, self.n_head = width, heads
        self.q_norm = nn.LayerNorm(width // heads) if qk_norm else None
        self.k_norm = nn.LayerNorm(width // heads) if qk_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = super().forward(x)
        if self.q_norm is None or self.k_norm is None:
            return qkv
        q, k, v = qkv.split(self.n_embd, dim=-1)
        heads = (*q.shape[:-1], self.n_head, -1)
        q = self.q_norm(q.reshape(heads)).flatten(-2)
        k = self.k_norm(k.reshape(heads)).flatten(-2)
        return torch.cat([q, k, v], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, qk_norm: bool):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.n_embd, self.n_head = width, heads  # the names foreshock.watch's attention hook reads
        self.c_attn = QKVProjection(width, heads, qk_norm)
        self.c_proj = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.n_head, -1).transpose(1, 2) for z in self.c_attn(x).split(c, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width, bias=False)
        self.c_proj = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, qk_norm: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, qk_norm)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Byte-level GPT: ``model(idx)`` maps (batch, T) token ids to (batch, T, 256) logits."""

    def __init__(self, depth: int, width: int, heads: int, seq_len: int, qk_norm: bool = False,
                 vocab: int = VOCAB):
        super().__init__()
        self.seq_len = seq_len
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(seq_len, width)
        self.blocks = nn.ModuleList(Block(width, heads, qk_norm) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:  # GPT-2's init; residual projections scaled down by the depth
                std = 0.02 / math.sqrt(2 * depth) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.seq_len:
            raise ValueError(f"sequence of {t} tokens is longer than the model's {self.seq_len}")
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor,
            z_loss: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cross_entropy, objective)``: the objective adds ``z_loss * mean(logsumexp(logits)^2)``.

    The cross-entropy is what is logged as ``train/loss``, so runs with and without z-loss compare.
    """
    flat = logits.reshape(-1, logits.shape[-1]).float()
    ce = F.cross_entropy(flat, targets.reshape(-1))
    if not z_loss:
        return ce, ce
    return ce, ce + z_loss * torch.logsumexp(flat, dim=-1).pow(2).mean()


# -- training ----------------------------------------------------------------------------------


def lr_table(config: dict[str, Any]) -> np.ndarray:
    """The learning rate of every step ``0..steps-1`` (see :mod:`foreshock.forecast.schedules`)."""
    lr, warmup, steps = float(config["lr"]), int(config["warmup"]), int(config["steps"])
    name = config["schedule"]
    if name == "constant":
        spec = f"constant:peak={lr},warmup={warmup},total={steps}"
    elif name == "cosine":
        spec = f"cosine:peak={lr},final={lr / 10},warmup={warmup},total={steps}"
    elif name == "wsd":
        spec = f"wsd:peak={lr},final=0,warmup={warmup},decay={max(1, (steps - warmup) // 5)},total={steps}"
    else:
        raise ValueError(f"schedule must be constant, cosine or wsd, got {name!r}")
    return parse_schedule(spec).table(steps - 1)


def _device(config: dict[str, Any]) -> torch.device:
    name = config["device"]
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build(config: dict[str, Any]) -> tuple[GPT, torch.optim.AdamW]:
    """The model (seeded by ``config["seed"]``) and its optimizer, on the config's device."""
    torch.manual_seed(int(config["seed"]))
    model = GPT(int(config["depth"]), int(config["width"]), int(config["heads"]), int(config["seq_len"]),
                qk_norm=bool(config["qk_norm"])).to(_device(config))
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": float(config["weight_decay"])},
              {"params": others, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=float(config["lr"]), betas=(0.9, 0.95), eps=1e-8)
    return model, optimizer


@dataclasses.dataclass
class FitResult:
    """What a training run did: its losses as read on the host and why it stopped."""

    losses: list[float]  # train/loss of each step run, in order
    stopped: str  # "finished", "nonfinite" or "above_start"
    cpu_s: float  # process CPU time of the training loop
    wall_s: float

    @property
    def steps_run(self) -> int:
        return len(self.losses)

    @property
    def min_loss(self) -> float:
        finite = [x for x in self.losses if math.isfinite(x)]
        return min(finite) if finite else math.nan

    @property
    def final_loss(self) -> float:
        """Mean of the last 10 losses (NaN when any is not finite)."""
        return float(np.mean(self.losses[-10:])) if self.losses else math.nan

    @property
    def diverged(self) -> bool:
        return self.stopped != "finished"


def fit(config: dict[str, Any], watch: Callable[[nn.Module, torch.optim.Optimizer], Any]) -> FitResult:
    """Train the model ``config`` describes, reporting every step to ``watch(model, optimizer)``."""
    model, optimizer = build(config)
    device = next(model.parameters()).device
    seq, batch, steps = int(config["seq_len"]), int(config["batch"]), int(config["steps"])
    train_data, val_data = (torch.from_numpy(np.array(a)).to(device)
                            for a in train_val_split(corpus_bytes(int(config["corpus_bytes"]))))
    if len(val_data) <= seq + 1:
        raise ValueError(f"corpus_bytes={config['corpus_bytes']} leaves too little validation text "
                         f"for seq_len={seq}")
    offsets = torch.arange(seq + 1, device=device)
    gen = torch.Generator(device="cpu").manual_seed(int(config["seed"]))
    # the validation batch: fixed windows spread evenly over the validation text
    val_starts = torch.linspace(0, len(val_data) - seq - 2, batch).long().to(device)
    val_x, val_y = _windows(val_data, val_starts, offsets)
    lrs = lr_table(config)
    z_loss, eval_every, patience = float(config["z_loss"]), int(config["eval_every"]), int(config["patience"])
    if config["precision"] not in ("bf16", "fp32"):
        raise ValueError(f"precision must be bf16 or fp32, got {config['precision']!r}")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config["precision"] == "bf16")
    ceiling = math.log(VOCAB)  # a uniform guess: a run above it for `patience` steps has learnt nothing

    every, iters = int(config["sharpness_every"]), int(config["sharpness_iters"])
    if every < 0 or (every and iters < 1):
        raise ValueError(f"sharpness_every must be >= 0 and sharpness_iters >= 1, got {every}, {iters}")
    eigvec: torch.Tensor | None = None
    mon = watch(model, optimizer)
    losses: list[float] = []
    pending: list[torch.Tensor] = []
    above, stopped = 0, "finished"
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for t in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = float(lrs[t])
        metrics: dict[str, Any] = {}
        if t % eval_every == 0 or t == steps - 1:
            metrics["val/loss"] = _evaluate(model, val_x, val_y, autocast)
        starts = torch.randint(0, len(train_data) - seq - 1, (batch,), generator=gen).to(device)
        x, y = _windows(train_data, starts, offsets)
        if every and t >= every and t % every == 0:
            # a cold start (the first probe) gets more iterations than a warm one
            lam, eigvec = preconditioned_sharpness(model, optimizer, x, y, z_loss, eigvec,
                                                   iters if eigvec is not None else iters * COLD_START_FACTOR)
            metrics["probe/hessian/lambda_max_precond"] = lam
            metrics["probe/eos_ratio"] = adam_edge_ratio(lam, float(lrs[t]), optimizer.param_groups[0]["betas"][0])
        with autocast:
            logits = model(x)
        ce, objective = lm_loss(logits, y, z_loss)
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        loss = ce.detach()
        mon.step(t, loss=loss, **metrics)
        pending.append(loss)
        if len(pending) == CHECK_EVERY or t == steps - 1:
            for value in torch.stack(pending).tolist():  # one host read per check
                losses.append(value)
                above = above + 1 if not value <= ceiling else 0  # NaN counts as above
                if not math.isfinite(value):
                    stopped = "nonfinite"
                elif above >= patience and stopped == "finished":
                    stopped = "above_start"
            pending = []
            if stopped != "finished":
                break
    return FitResult(losses=losses, stopped=stopped, cpu_s=time.process_time() - cpu0,
                     wall_s=time.perf_counter() - wall0)


def preconditioned_sharpness(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                             y: torch.Tensor, z_loss: float = 0.0, start: torch.Tensor | None = None,
                             iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Top eigenvalue of ``P^-1 H`` on the batch ``(x, y)``: ``(lambda, unit eigenvector of P^-1/2 H P^-1/2)``.

    ``H`` is the Hessian of the objective (:func:`lm_loss` with ``z_loss``) in fp32, ``P`` the
    optimizer's ``diag(sqrt(exp_avg_sq / (1 - beta2^t)) + eps)``; every parameter must have Adam
    state (take at least one step first). ``start`` is the previous eigenvector, flat over the
    parameters in the optimizer's order (a random one when None). The forward pass runs in
    evaluation mode (the model has no dropout, so the loss is the same), which keeps it out of the
    monitor's training-forward hooks.
    """
    params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    scale = []
    for group in optimizer.param_groups:
        beta2, eps = group["betas"][1], group["eps"]
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if "exp_avg_sq" not in state:
                raise ValueError("preconditioned_sharpness: the optimizer has no second moment for a parameter "
                                 "yet; take an optimizer step first")
            v_hat = state["exp_avg_sq"] / (1 - beta2 ** float(state["step"]))
            scale.append((v_hat.sqrt() + eps).rsqrt().flatten())
    d = torch.cat(scale)
    was_training = model.training
    model.eval()
    try:
        # the fused attention kernels have no double backward: the math one is plain autograd ops
        with torch.autocast(x.device.type, enabled=False), sdpa_kernel(SDPBackend.MATH):
            objective = lm_loss(model(x), y, z_loss)[1]
        grads = torch.autograd.grad(objective, params, create_graph=True)
    finally:
        model.train(was_training)
    sizes = [p.numel() for p in params]

    def matvec(v: torch.Tensor) -> torch.Tensor:  # P^-1/2 H P^-1/2 v, one Hessian-vector product
        u = [c.view_as(p) for c, p in zip((d * v).split(sizes), params, strict=True)]
        hv = torch.autograd.grad(grads, params, grad_outputs=u, retain_graph=True)
        return d * torch.cat([h.flatten() for h in hv])

    v0 = torch.randn(len(d), device=d.device) if start is None else start
    return lanczos_top(matvec, v0, iters)


def lanczos_top(matvec: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor,
                iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest eigenvalue of a symmetric operator by ``iters`` Lanczos steps: ``(lambda, unit Ritz vector)``.

    Unlike power iteration, which finds the eigenvalue of largest *magnitude*, Lanczos gives the
    algebraically largest one: the preconditioned Hessian of a network early in training has
    negative eigenvalues far larger in size than its top one (directions with a tiny second moment
    are scaled up by ``1 / sqrt(eps)``), and power iteration would return those. Each step is one
    ``matvec``; the Krylov basis is re-orthogonalised in full (``iters`` vectors are kept). ``v0``
    (any norm, not zero) is the start: the previous probe's Ritz vector makes a warm one. A
    ``matvec`` that gives NaN or Inf (a diverged model) gives a NaN eigenvalue and ``v0`` back, unit.
    """
    if iters < 1:
        raise ValueError(f"lanczos_top: iters must be >= 1, got {iters}")
    basis = [v0 / v0.norm()]
    alpha: list[torch.Tensor] = []
    beta: list[torch.Tensor] = []
    for j in range(iters):
        w = matvec(basis[j])
        alpha.append(w @ basis[j])
        for q in basis:  # full re-orthogonalisation, twice is enough (Kahan)
            w = w - (w @ q) * q
        for q in basis:
            w = w - (w @ q) * q
        b = w.norm()
        if j == iters - 1 or not b > 1e-6 * alpha[0].abs().clamp_min(1e-30):  # the Krylov space is invariant
            break
        beta.append(b)
        basis.append(w / b)
    k = len(alpha)
    t = torch.diag(torch.stack(alpha).double())
    if k > 1:
        off = torch.stack(beta[:k - 1]).double()
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    if not torch.isfinite(t).all():  # a diverged run: NaN is the measurement; the start stays for the next probe
        return torch.tensor(math.nan, dtype=v0.dtype, device=v0.device), basis[0]
    evals, evecs = torch.linalg.eigh(t.cpu())
    coef = evecs[:, -1].to(v0.device, v0.dtype)
    vec = sum(c * q for c, q in zip(coef, basis, strict=False))
    return evals[-1].to(v0.dtype), vec / vec.norm()


def adam_edge_ratio(sharpness: Any, lr: float, beta1: float = 0.9) -> Any:
    """``sharpness`` over Adam's edge of stability ``(2 + 2 beta1) / ((1 - beta1) lr)``: 1 is the edge."""
    return sharpness * lr * (1 - beta1) / (2 + 2 * beta1)


def _windows(data: torch.Tensor, starts: torch.Tensor,
             offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    chunk = data[starts[:, None] + offsets].long()
    return chunk[:, :-1], chunk[:, 1:]


def _evaluate(model: GPT, x: torch.Tensor, y: torch.Tensor, autocast: torch.autocast) -> torch.Tensor:
    was_training = model.training
    model.eval()  # the precursor hooks skip evaluation passes
    try:
        with torch.no_grad(), autocast:
            return lm_loss(model(x), y)[0]
    finally:
        model.train(was_training)


def train(config: dict[str, Any], watch: Callable[[nn.Module, torch.optim.Optimizer], Any]) -> None:
    """The :class:`~foreshock.lab.base.Workload` entry point: :func:`fit`, its result left to the store."""
    fit(config, watch)


def _label(run: Any, config: dict[str, Any]) -> Label:
    from foreshock.lab import labels  # the label rules import the detectors: loaded when needed

    return labels.loss_label(run, config)


WORKLOAD = register(Workload(
    name="gpt-instability",
    description="byte-level GPT on the stdlib sources: a high learning rate diverges (knobs qk_norm, z_loss)",
    defaults=DEFAULTS,
    presets=PRESETS,
    train=train,
    label=_label,
))
