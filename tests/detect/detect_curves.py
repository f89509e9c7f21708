"""Seeded synthetic training runs for the detector tests: what can go wrong, planted at known steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foreshock.run import Run, Series

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def descent(n: int, seed: int = 0, *, start: float = 6.0, floor: float = 2.0, tau: float = 60.0,
            alpha: float = 0.6, noise: float = 0.03) -> np.ndarray:
    """A noisy power law: ``floor + (start - floor) * (1 + t / tau) ** -alpha``, times ``1 + noise * z``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    clean = floor + (start - floor) * (1.0 + t / tau) ** -alpha
    return clean * (1.0 + noise * rng.standard_normal(n))


def run_of(series: dict[str, tuple], name: str = "synthetic") -> Run:
    """A Run from ``{metric: (steps, values)}``."""
    return Run(name=name, metrics={k: Series(np.asarray(s, dtype=np.int64), np.asarray(v, dtype=np.float64))
                                   for k, (s, v) in series.items()})


def messy_run(seed: int, n: int = 1200) -> Run:
    """A run with a seed-chosen mix of spikes, NaNs, a divergence, a plateau, overfitting, irregular steps."""
    rng = np.random.default_rng(1000 + seed)
    step_gaps = rng.integers(1, 6, n) if rng.random() < 0.4 else np.ones(n, dtype=np.int64)
    steps = np.cumsum(step_gaps) - step_gaps[0]
    loss = descent(n, seed, noise=rng.uniform(0.005, 0.08), alpha=rng.uniform(0.3, 1.0))
    if rng.random() < 0.5:  # plateau: the curve stops improving for a while, then resumes
        a = int(rng.integers(200, n // 2))
        b = int(min(n, a + rng.integers(150, 400)))
        loss[a:b] = loss[a] * (1 + 0.01 * rng.standard_normal(b - a))
        loss[b:] *= np.linspace(1.0, 0.8, n - b)
    for i in rng.choice(np.arange(60, n), size=int(rng.integers(0, 6)), replace=False):
        loss[i:i + int(rng.integers(1, 4))] *= rng.uniform(1.6, 8.0)  # spikes, one to three points
    if rng.random() < 0.35:  # divergence: the level jumps and stays
        d = int(rng.integers(n // 2, n - 50))
        loss[d:] *= np.linspace(2.0, 4.0, n - d)
    if rng.random() < 0.3:  # non-finite losses, single or a burst
        for i in rng.choice(np.arange(n), size=int(rng.integers(1, 4)), replace=False):
            loss[i:i + int(rng.integers(1, 3))] = rng.choice([np.nan, np.inf])
    if rng.random() < 0.1:
        loss[-30:] = np.nan  # ends broken
    grad = np.exp(0.3 * rng.standard_normal(n)) * (1 + loss / 4)
    grad[rng.random(n) < rng.uniform(0, 0.01)] = np.inf  # skipped fp16 steps
    if rng.random() < 0.3:
        grad[int(rng.integers(100, n - 40)):][:int(rng.integers(5, 40))] = np.nan  # a persistent one
    acc = np.clip(1.0 - loss / 8.0 + 0.01 * rng.standard_normal(n), 0, 1)
    every = int(rng.choice([10, 25, 100]))
    vi = np.arange(0, n, every)
    val = descent(n, seed + 1, noise=0.01, alpha=0.5)[vi] * 1.1
    if rng.random() < 0.4:  # overfitting: val turns up after a point while train keeps falling
        turn = len(vi) // 3
        val[turn:] = val[turn] * (1 + 0.03 * np.arange(len(vi) - turn))
    metrics = {"train/loss": (steps, loss), "val/loss": (steps[vi], val), "opt/grad_norm": (steps, grad),
               "train/acc": (steps, acc), "opt/lr": (steps, np.full(n, 3e-4))}
    if rng.random() < 0.2:  # a log with only val/loss
        metrics = {"val/loss": (steps[vi], val), "opt/lr": (steps, np.full(n, 3e-4))}
    extra = np.random.default_rng(5000 + seed)  # its own stream: the series above stay as they were
    if extra.random() < 0.6:  # memorisation (train accuracy saturates), validation rising late or promptly
        t = steps.astype(np.float64)
        sat = np.clip(1 / (1 + np.exp(-(t - t[n // 20]) / 10)) + 0.004 * extra.standard_normal(n), 0, 1)
        rise = t[int(extra.integers(n // 10, n - 100))]
        vacc = 0.02 + 0.97 / (1 + np.exp(-(t[vi] - rise) / (5 * every))) + 0.01 * extra.standard_normal(len(vi))
        metrics["train/acc"] = (steps, sat)  # memorised: train accuracy saturates
        metrics["val/acc"] = (steps[vi], np.clip(vacc, 0, 1))
    if extra.random() < 0.6:  # sharpness rising to 2 / lr, oscillating at the edge, sometimes falling back
        lam = (2 / 3e-4) * np.minimum(1.0, np.linspace(0.3, 1.4, n)) * (1 + 0.05 * (-1.0) ** np.arange(n))
        if extra.random() < 0.5:
            lam[int(extra.integers(n // 2, n - 20)):] *= 0.4
        lam[extra.random(n) < 0.01] = np.nan
        metrics["probe/hessian/lambda_max"] = (steps, lam)
    inner = np.random.default_rng(9000 + seed)  # model internals, on their own stream as well
    if inner.random() < 0.7:  # attention and output logits: flat, or growing from a seed-chosen step
        t = np.arange(n, dtype=np.float64)
        logit = 6.0 * np.exp(0.05 * inner.standard_normal(n))
        lse = 5.5 + 0.05 * inner.standard_normal(n)
        if inner.random() < 0.6:
            g = int(inner.integers(150, n - 100))
            logit[g:] *= np.exp((t[g:] - g) / inner.uniform(20, 200))
            lse[g:] += (t[g:] - g) / inner.uniform(5, 50)
        if inner.random() < 0.3:  # a burst
            b = int(inner.integers(20, n - 20))
            logit[b:b + 5] *= 30.0
        metrics["attn/blocks.0/logit_max"] = (steps, logit)
        metrics["out/logit_max"] = (steps, 2 * logit)
        metrics["out/lse_mean"] = (steps, lse)
        ratio = 1e-3 * np.exp(0.2 * inner.standard_normal(n))
        ratio[inner.random(n) < 0.01] *= 20.0  # update excursions
        metrics["opt/update_ratio"] = (steps, ratio)
    return run_of(metrics, name=f"messy-{seed}")


def shared_runs(names: list[str] | None = None) -> list[Run]:
    """Real runs from ``shared/data`` (all, or those whose file name starts with one of ``names``)."""
    import foreshock

    files = sorted(DATA.glob("*/*.csv.gz"))
    if names is not None:
        files = [f for f in files if any(f.name.startswith(n) for n in names)]
    return [foreshock.read(f) for f in files]
