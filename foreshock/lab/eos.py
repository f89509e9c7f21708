"""The ``edge-of-stability`` lab workload: full-batch gradient descent sharpens up to 2/lr and stays there.

Cohen et al. 2021 ("Gradient descent on neural networks typically occurs at the edge of
stability"): under full-batch gradient descent with a constant learning rate ``lr``, the top
eigenvalue of the training loss's Hessian (the *sharpness*, ``lambda_max``) first rises
(progressive sharpening) until it reaches ``2 / lr``, the largest sharpness at which gradient
descent on a quadratic is stable; it then hovers just above that value while the loss keeps
falling, non-monotonically, over the long run. A run whose sharpness reaches ``2 / lr`` is "at the
edge of stability".

The run
-------
A deterministic synthetic classification set (no download, no scikit-learn): ``n_samples`` Gaussian
inputs in ``DIM`` dimensions, labelled by the arg-max of a fixed random teacher network over
``CLASSES`` classes, one-hot targets. A ``depth``-layer MLP of ``width`` units (``activation`` tanh or
ELU) is fitted by plain gradient descent (SGD, no momentum, all samples every step) to the mean
squared error ``1/(2n) sum ||f(x) - y||^2``, the loss with which Cohen et al. see progressive
sharpening most clearly. With the ``cpu`` preset (lr 0.2, 2/lr = 10) the sharpness rises from 2.6
to 0.9 * 2/lr by step 860 and then stays within 0.95 to 1.07 times 2/lr while the loss keeps
falling, in about 25 s of one CPU thread (bench/results/lab_grokking_eos_cpu.md).

What it logs
------------
Every step ``s``: ``train/loss`` and ``train/acc`` of the weights after ``s`` updates and ``opt/lr``
(watch records it). Every ``probe_every`` steps, and at the last step:
``probe/hessian/lambda_max`` of the same weights, by ``probe_iters`` steps of power iteration with
Hessian-vector products (double backward through the step's own gradient), warm-started from the
previous probe's eigenvector, so that a few iterations per probe are enough once it has converged
(the first probe, from a random vector, gets ``COLD_START_FACTOR`` times as many).

Knobs
-----
``n_samples``, ``width``, ``depth``, ``activation`` (tanh or elu): the data and the network. ``lr``,
``warmup``, ``schedule`` (constant by default, so that ``2 / lr`` is one number),
``steps``, ``batch`` (0: full batch, the setting of Cohen et al.; any other value makes it stochastic),
``seed``, ``probe_every``, ``probe_iters``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from foreshock.forecast.schedules import parse_schedule
from foreshock.lab.base import Label, Workload, register

__all__ = ["CLASSES", "DIM", "EOS", "make_data", "make_model", "power_iteration", "train"]

DIM = 32  # input dimension of the synthetic set
CLASSES = 10  # one-hot targets, as CIFAR-10's in Cohen et al.
TEACHER_WIDTH = 64
COLD_START_FACTOR = 5  # the first probe starts from a random vector: this many times probe_iters


def make_data(n_samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_samples`` inputs (float32, ``(n, DIM)``) and one-hot targets (``(n, CLASSES)``), fixed by ``seed``.

    The labels are the arg-max of a random two-layer tanh teacher, so they are a smooth, learnable
    function of the inputs that a student must bend itself to fit: that is what makes it sharpen.
    """
    rng = np.random.default_rng([seed, n_samples, 0xE05])
    x = rng.standard_normal((n_samples, DIM))
    w1 = rng.standard_normal((DIM, TEACHER_WIDTH)) / math.sqrt(DIM)
    w2 = rng.standard_normal((TEACHER_WIDTH, CLASSES)) / math.sqrt(TEACHER_WIDTH)
    labels = np.argmax(np.tanh(x @ w1) @ w2, axis=1)
    return x.astype(np.float32), np.eye(CLASSES, dtype=np.float32)[labels]


_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "elu": nn.ELU}


def make_model(width: int, depth: int, activation: str = "tanh") -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units and a linear read-out (PyTorch's default initialisation)."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"edge-of-stability: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    for i in range(max(depth, 1)):
        layers += [nn.Linear(DIM if i == 0 else width, width), _ACTIVATIONS[activation]()]
    layers.append(nn.Linear(width, CLASSES))
    return nn.Sequential(*layers)


def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1/(2n) sum_i ||out_i - target_i||^2``: half the squared error summed over classes, mean over samples."""
    return 0.5 * (out - target).pow(2).sum(dim=1).mean()


def power_iteration(grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor], v: Sequence[torch.Tensor],
                    iters: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Top Hessian eigenvalue by power iteration: ``(lambda, unit eigenvector)``.

    ``grads`` are the loss's gradients w.r.t. ``params`` made with ``create_graph=True``; each
    iteration is one Hessian-vector product, ``H v = d(g . v)/d params``, by a backward pass through
    that graph (kept for the next one). ``v`` is the starting vector (any norm, not all zero): the
    previous probe's eigenvector makes a warm start. ``lambda`` is the Rayleigh quotient ``v' H v``
    of the last unit iterate, a tensor on the parameters' device (never read here).

    Power iteration finds the eigenvalue of largest magnitude. That is ``lambda_max`` when the top
    eigenvalue outweighs the most negative one, as for a trained network's loss and throughout
    progressive sharpening; near a saddle with larger negative curvature it would return that.
    """
    if iters < 1:
        raise ValueError(f"power_iteration: iters must be >= 1, got {iters}")
    norm = torch.sqrt(sum((u * u).sum() for u in v))
    v = [u / norm for u in v]
    lam = torch.zeros((), dtype=grads[0].dtype, device=grads[0].device)
    for _ in range(iters):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        lam = sum((h * u).sum() for h, u in zip(hv, v, strict=True))
        norm = torch.sqrt(sum((h * h).sum() for h in hv))
        # a zero H v (a flat direction everywhere) leaves v as it was rather than dividing by zero
        v = [torch.where(norm > 0, h / norm.clamp_min(torch.finfo(h.dtype).tiny), u).detach()
             for h, u in zip(hv, v, strict=True)]
    return lam.detach(), v


def learning_rates(config: dict[str, Any]) -> np.ndarray:
    """The LR of every step: ``schedule`` after a linear warm-up (constant by default, as EoS needs)."""
    steps = config["steps"]
    total = max(steps, config["warmup"] + 1)
    return parse_schedule(f"{config['schedule']}:peak={config['lr']},warmup={config['warmup']},total={total}").table(steps)


def train(config: dict[str, Any], watch: Callable[[nn.Module, torch.optim.Optimizer], Any]) -> None:
    """Train the edge-of-stability workload; see the module docstring for what is logged and when."""
    if min(config["steps"], config["probe_every"], config["probe_iters"]) < 1:
        raise ValueError("edge-of-stability: steps, probe_every and probe_iters must be >= 1, got "
                         f"{config['steps']}, {config['probe_every']}, {config['probe_iters']}")
    torch.manual_seed(config["seed"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x_np, y_np = make_data(config["n_samples"], config["seed"])
    x, y = torch.as_tensor(x_np, device=device), torch.as_tensor(y_np, device=device)
    model = make_model(config["width"], config["depth"], config["activation"]).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config["lr"], momentum=0.0)
    mon = watch(model, optimizer)
    lrs = learning_rates(config)
    gen = torch.Generator(device=device).manual_seed(config["seed"])
    eigvec = [torch.randn(p.shape, generator=gen, device=device, dtype=p.dtype) for p in params]
    steps, batch, every = config["steps"], config["batch"], config["probe_every"]
    for step in range(steps):
        probe = step % every == 0 or step == steps - 1
        if batch and batch < len(x):  # stochastic: no longer the setting of the edge of stability
            idx = torch.randint(len(x), (batch,), generator=gen, device=device)
            xb, yb = x[idx], y[idx]
        else:
            xb, yb = x, y
        out = model(xb)
        loss = mse(out, yb)
        grads = torch.autograd.grad(loss, params, create_graph=probe)
        metrics: dict[str, Any] = {"train/acc": (out.detach().argmax(1) == yb.argmax(1)).float().mean()}
        if probe:
            # the Hessian of the loss just computed: the same weights as train/loss at this step
            # a cold start (the first probe) needs more iterations than a warm one
            iters = config["probe_iters"] * (COLD_START_FACTOR if step == 0 else 1)
            metrics["probe/hessian/lambda_max"], eigvec = power_iteration(grads, params, eigvec, iters)
        for p, g in zip(params, grads, strict=True):
            p.grad = g.detach()
        del grads  # frees the double-backward graph before the update
        for group in optimizer.param_groups:
            group["lr"] = float(lrs[step])
        optimizer.step()
        mon.step(step, loss=loss.detach(), **metrics)
        if probe and not math.isfinite(loss.item()):  # read on the host only at probe steps
            return


def _label(run: Any, config: dict[str, Any]) -> Label:
    from foreshock.lab import labels

    return labels.eos_label(run, config)


DEFAULTS: dict[str, Any] = {
    "n_samples": 1000, "width": 128, "depth": 2, "activation": "tanh",
    "lr": 0.2, "warmup": 0, "schedule": "constant", "steps": 2000, "batch": 0,
    "probe_every": 10, "probe_iters": 20, "seed": 0,
}

EOS = register(Workload(
    name="edge-of-stability",
    description="full-batch gradient descent on an MLP (MSE): the sharpness rises to 2/lr and hovers there",
    defaults=DEFAULTS,
    presets={
        "cpu": {},
        "gpu": {"n_samples": 5000, "width": 512, "depth": 3, "steps": 10000, "probe_every": 20},
    },
    train=train,
    label=_label,
))
