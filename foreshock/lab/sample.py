"""The bundled sample log: a small, real training run that spikes, recovers, then diverges to NaN.

The run
-------
A two-layer tanh MLP (16 -> 128 -> 4 units, float32 weights as on a GPU) is fitted by mini-batch SGD
with momentum 0.9 (batch 64, no gradient clipping) to a regression task: 4096 Gaussian inputs whose
targets come from a fixed random "teacher" MLP (16 -> 32 -> 4) plus noise of standard deviation 0.1;
3584 examples train, 512 are held out. The loss is half the squared error summed over the 4 outputs.

The learning rate warms up linearly for 100 steps to 0.3, more than the freshly initialised network
tolerates: the training loss, about 0.3 around step 60, climbs to about 1 by step 140 (grad norm
1.4 -> 2.6), stays high while the network moves to a flatter region, and is back under 0.2 by step
300. A cosine decay then takes the rate to 0.03 at step 1200, where a warm restart ramps it over 100
steps to 1.0, far too high: the loss creeps up from about step 1220, passes 1e3 at step 1307, the
gradient norm is NaN from step 1328 and the loss from step 1329. The script stops after 50
consecutive non-finite losses (step 1378), as a training script with a NaN guard would.

The log
-------
Written in the modded-nanogpt / llm.c text style, so the quick start also exercises the text reader::

    step:0/2000 val_loss:1.8336
    step:1/2000 train_loss:1.6934 lr:3.0000e-03 grad_norm:3.6588

``train_loss``, ``lr`` and ``grad_norm`` every step, ``val_loss`` every 50 steps (the validation at
step ``s`` uses the weights after ``s`` updates). Everything is seeded, so

    python -m foreshock.lab.sample foreshock/data/sample_run.log

regenerates the shipped file; only numpy is needed. (Another BLAS or CPU may round float32 sums
differently in the last bit; the warm-up spike and the recovery come out the same, while the chaotic
blow-up can move by a few steps.)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["SampleConfig", "sample_lines", "sample_path", "write_sample"]

SAMPLE_FILE = "sample_run.log"


@dataclass(frozen=True)
class SampleConfig:
    """Hyper-parameters of the sample run; the defaults produce the shipped log."""

    seed: int = 0
    n_examples: int = 4096
    n_train: int = 3584  # the rest is the held-out set for val_loss
    d_in: int = 16
    d_hidden: int = 128  # wide enough that the warm-up spike recovers instead of diverging
    d_out: int = 4
    teacher_hidden: int = 32
    noise: float = 0.1  # target noise: the loss floor is about 2 * 0.1**2 = 0.02
    batch_size: int = 64
    momentum: float = 0.9
    warmup: int = 100  # steps of linear warm-up, also used for the restart ramp
    peak_lr: float = 0.3  # above the initial stability limit: a spike that recovers
    final_lr_ratio: float = 0.1  # cosine decays to peak_lr * this
    restart_step: int = 1200  # warm restart; the cosine phase ends here
    restart_lr: float = 1.0  # far above the stability limit: divergence
    total_steps: int = 2000  # planned steps (the "/M" of the log); the run stops earlier
    val_every: int = 50
    stop_after_nonfinite: int = 50  # the script's NaN guard


def learning_rate(cfg: SampleConfig, t: int) -> float:
    """LR used by update ``t`` (0-based): warm-up, cosine decay, then a warm restart."""
    floor = cfg.peak_lr * cfg.final_lr_ratio
    if t < cfg.restart_step:
        if t < cfg.warmup:
            return cfg.peak_lr * (t + 1) / cfg.warmup
        p = (t - cfg.warmup) / (cfg.restart_step - cfg.warmup)
        return floor + (cfg.peak_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
    t -= cfg.restart_step
    if t < cfg.warmup:
        return floor + (cfg.restart_lr - floor) * (t + 1) / cfg.warmup
    return cfg.restart_lr


def _data(cfg: SampleConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((cfg.n_examples, cfg.d_in)).astype(np.float32)
    w1 = rng.standard_normal((cfg.d_in, cfg.teacher_hidden)) / math.sqrt(cfg.d_in)
    w2 = rng.standard_normal((cfg.teacher_hidden, cfg.d_out)) / math.sqrt(cfg.teacher_hidden)
    noise = cfg.noise * rng.standard_normal((cfg.n_examples, cfg.d_out))
    y = (np.tanh(x @ w1) @ w2 + noise).astype(np.float32)
    return x, y


def _init(cfg: SampleConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "w1": (rng.standard_normal((cfg.d_in, cfg.d_hidden)) / math.sqrt(cfg.d_in)).astype(np.float32),
        "b1": np.zeros(cfg.d_hidden, np.float32),
        "w2": (rng.standard_normal((cfg.d_hidden, cfg.d_out)) / math.sqrt(cfg.d_hidden)).astype(np.float32),
        "b2": np.zeros(cfg.d_out, np.float32),
    }


def _loss(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    r = np.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"] - y
    # summed in float64 so a blown-up float32 residual still gives a finite (huge) loss for a while
    return float(0.5 * np.mean(np.sum(r.astype(np.float64) ** 2, axis=1)))


def _loss_and_grads(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    h = np.tanh(x @ p["w1"] + p["b1"])  # (batch, hidden)
    r = h @ p["w2"] + p["b2"] - y  # (batch, out)
    loss = float(0.5 * np.mean(np.sum(r.astype(np.float64) ** 2, axis=1)))
    dz = r / np.float32(len(x))
    dh = (dz @ p["w2"].T) * (1.0 - h * h)
    grads = {"w1": x.T @ dh, "b1": dh.sum(axis=0), "w2": h.T @ dz, "b2": dz.sum(axis=0)}
    return loss, grads


def sample_lines(cfg: SampleConfig | None = None) -> Iterator[str]:
    """Train the sample run and yield its log, line by line (without newlines)."""
    cfg = cfg or SampleConfig()
    # separate streams, so changing e.g. the batch order leaves the data and the init as they were
    data_rng, init_rng, batch_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(3))
    x, y = _data(cfg, data_rng)
    x_train, y_train, x_val, y_val = x[: cfg.n_train], y[: cfg.n_train], x[cfg.n_train :], y[cfg.n_train :]
    params = _init(cfg, init_rng)
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    total, nonfinite = cfg.total_steps, 0
    # the divergence overflows float32 on purpose: its inf and NaN are what the log must show
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for t in range(total):
            if t % cfg.val_every == 0:
                yield f"step:{t}/{total} val_loss:{_loss(params, x_val, y_val):.4f}"
            idx = batch_rng.integers(0, cfg.n_train, cfg.batch_size)
            loss, grads = _loss_and_grads(params, x_train[idx], y_train[idx])
            grad_norm = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
            lr = learning_rate(cfg, t)
            for k, g in grads.items():
                velocity[k] = np.float32(cfg.momentum) * velocity[k] + g
                params[k] = params[k] - np.float32(lr) * velocity[k]
            yield f"step:{t + 1}/{total} train_loss:{loss:.4f} lr:{lr:.4e} grad_norm:{grad_norm:.4f}"
            nonfinite = 0 if math.isfinite(loss) else nonfinite + 1
            if nonfinite >= cfg.stop_after_nonfinite:
                yield f"stopping at step {t + 1}: train loss not finite for {nonfinite} steps"
                return


def write_sample(path: str | Path, cfg: SampleConfig | None = None) -> Path:
    """Train the sample run and write its log to ``path``; returns the path."""
    path = Path(path)
    path.write_text("".join(line + "\n" for line in sample_lines(cfg)), encoding="utf-8")
    return path


def sample_path() -> Path:
    """Where the installed package keeps the shipped sample log."""
    return Path(str(resources.files("foreshock") / "data" / SAMPLE_FILE))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m foreshock.lab.sample OUT", file=sys.stderr)
        return 2
    out = write_sample(args[0])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
