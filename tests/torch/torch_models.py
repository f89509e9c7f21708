"""Tiny models and a synchronous reference for the live-capture tests (CPU, a few hundred parameters)."""

from __future__ import annotations

import math

import torch

LAYERS = ("0", "2", "4")  # the linear maps of ``mlp()``: the layers watch() reports


def mlp(seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, 2))


def data(seed: int = 1, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = torch.stack([x[:, 0] * x[:, 1], x.sum(1)], dim=1)
    return x, y


def loss_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(x), y)


def _norm(tensors) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))


def reference_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x, y) -> tuple[torch.Tensor, dict]:
    """One training step measured synchronously by hand, in float64; returns the loss tensor and the values."""
    loss = loss_of(model, x, y)
    loss.backward()
    named = dict(model.named_parameters())
    by_layer = {layer: [n for n in named if n.split(".")[0] == layer] for layer in LAYERS}
    ref = {"train/loss": loss.item(), "opt/lr": optimizer.param_groups[0]["lr"],
           "opt/grad_norm": _norm(p.grad for p in named.values())}
    for layer, names in by_layer.items():
        ref[f"layer/{layer}/grad_norm"] = _norm(named[n].grad for n in names)
    before = {n: p.detach().clone() for n, p in named.items()}
    optimizer.step()
    delta = {n: p.detach() - before[n] for n, p in named.items()}
    optimizer.zero_grad()
    ref["opt/update_ratio"] = _norm(delta.values()) / _norm(before.values())
    for layer, names in by_layer.items():
        ref[f"layer/{layer}/update_ratio"] = _norm(delta[n] for n in names) / _norm(before[n] for n in names)
    return loss, ref
