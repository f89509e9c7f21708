"""A long, realistic, seeded synthetic training log for the replay benchmark.

The run is what a long language-model pre-training log looks like, one record per step:

- ``train_loss``: a power law in the step, ``L(t) = floor + a * (t + t0) ** -alpha``, with noise whose
  scale follows the loss (``noise * L(t)``), so early steps are noisier than late ones;
- ``lr``: a linear warm-up, then a cosine decay to a tenth of the peak;
- ``grad_norm``: decays with the loss, heavy-tailed (Student-t with 3 degrees of freedom);
- ``train_acc``: rises as the loss falls;
- ``val_loss``: every ``val_every`` steps, a little above the train loss and much less noisy;
- a few single-step spikes: the loss jumps several-fold and the gradient norm tens-fold, for one step.

Names are those of the logs in ``shared/data`` (``train_loss``, ``val_loss``, ``lr``, ``grad_norm``,
``train_acc``), which every tool compared in ``bench/replay.py`` maps onto its own vocabulary.

Writers give the same run as the long CSV ``step,name,value`` (``.csv`` or ``.csv.gz``) and as a wide
CSV (``step`` plus one column per metric, blank where a metric was not logged at that step).

    python bench/make_log.py --steps 1000000 --out /tmp/foreshock-bench
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["SyntheticRun", "make_run", "write_long_csv", "write_wide_csv"]

# column order of the wide CSV and, within a step, of the long CSV
NAMES = ("train_loss", "val_loss", "lr", "grad_norm", "train_acc")


@dataclass
class SyntheticRun:
    """Metric name -> (steps, values), plus the steps where single-step spikes were planted."""

    metrics: dict[str, tuple[np.ndarray, np.ndarray]]
    spikes: list[int] = field(default_factory=list)
    params: dict[str, float | int] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return len(self.metrics["train_loss"][0])

    @property
    def n_points(self) -> int:
        return sum(len(s) for s, _ in self.metrics.values())


def make_run(steps: int = 1_000_000, *, seed: int = 0, val_every: int = 100, n_spikes: int = 5,
             warmup: int = 2000, peak_lr: float = 6e-4) -> SyntheticRun:
    """Build the synthetic run in memory (deterministic for a given ``seed``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps, dtype=np.int64)
    tf = t.astype(np.float64)

    floor, a, t0, alpha, noise = 1.9, 9.0, 200.0, 0.32, 0.015
    clean = floor + a * (tf + t0) ** -alpha
    # float32, like ``loss.item()`` of a float32 loss in a training loop
    loss = (clean * (1.0 + noise * rng.standard_normal(steps))).astype(np.float32).astype(np.float64)

    warm = np.minimum(1.0, (tf + 1) / warmup)
    progress = np.clip((tf - warmup) / max(1, steps - warmup), 0.0, 1.0)
    cosine = 0.1 + 0.9 * 0.5 * (1.0 + np.cos(math.pi * progress))
    lr = peak_lr * np.where(tf < warmup, warm, cosine)

    excess = (clean - floor) / (clean[0] - floor)  # 1 at the start, -> 0
    grad = (0.25 + 1.5 * excess) * np.exp(0.12 * rng.standard_t(3, steps).clip(-20, 20))
    grad = grad.astype(np.float32).astype(np.float64)

    acc = np.clip(0.62 - 0.5 * excess + 0.01 * rng.standard_normal(steps), 0.0, 1.0)
    acc = acc.astype(np.float32).astype(np.float64)

    spikes: list[int] = []
    if n_spikes and steps > 10 * warmup:
        # spread over the run after warm-up, away from each other and from the ends
        edges = np.linspace(2 * warmup, steps - warmup, n_spikes + 1)
        spikes = sorted(int(rng.integers(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True))
        for s in spikes:
            loss[s] = float(np.float32(loss[s] * rng.uniform(3.0, 6.0)))
            grad[s] = float(np.float32(grad[s] * rng.uniform(10.0, 30.0)))

    vt = t[val_every - 1::val_every] if val_every else t[:0]
    val = clean[vt] + 0.06 + 0.002 * clean[vt] * rng.standard_normal(len(vt))
    val = val.astype(np.float32).astype(np.float64)

    metrics = {"train_loss": (t, loss), "val_loss": (vt, val), "lr": (t, lr), "grad_norm": (t, grad),
               "train_acc": (t, acc)}
    params = {"steps": steps, "seed": seed, "val_every": val_every, "warmup": warmup, "peak_lr": peak_lr,
              "floor": floor, "a": a, "t0": t0, "alpha": alpha, "noise": noise}
    return SyntheticRun(metrics=metrics, spikes=spikes, params=params)


def _open(path: Path):
    if path.suffix == ".gz":
        # level 6 is gzip's default; reading speed hardly depends on the level
        return gzip.open(path, "wt", encoding="utf-8", newline="", compresslevel=6)
    return path.open("w", encoding="utf-8", newline="")


def _long_lines(run: SyntheticRun, chunk: int = 100_000) -> Iterator[str]:
    """Rows ``step,name,value`` sorted by step, then in :data:`NAMES` order; a chunk at a time."""
    order = [n for n in NAMES if n in run.metrics]
    steps = np.concatenate([run.metrics[n][0] for n in order])
    which = np.concatenate([np.full(len(run.metrics[n][0]), i) for i, n in enumerate(order)])
    values = np.concatenate([run.metrics[n][1] for n in order])
    idx = np.lexsort((which, steps))
    for lo in range(0, len(idx), chunk):
        part = idx[lo:lo + chunk]
        rows = zip(steps[part].tolist(), which[part].tolist(), values[part].tolist(), strict=True)
        yield "".join(f"{s},{order[w]},{v!r}\n" for s, w, v in rows)


def write_long_csv(run: SyntheticRun, path: str | Path) -> Path:
    """The long format of ``shared/data``: header ``step,name,value``, one value per row."""
    path = Path(path)
    with _open(path) as fh:
        fh.write("step,name,value\n")
        for text in _long_lines(run):
            fh.write(text)
    return path


def write_wide_csv(run: SyntheticRun, path: str | Path, chunk: int = 100_000) -> Path:
    """One row per step: ``step`` then one column per metric, blank where it was not logged."""
    path = Path(path)
    names = [n for n in NAMES if n in run.metrics]
    all_steps = np.unique(np.concatenate([run.metrics[n][0] for n in names]))
    cols: list[list[str]] = []
    for n in names:
        s, v = run.metrics[n]
        cells = np.full(len(all_steps), "", dtype=object)
        cells[np.searchsorted(all_steps, s)] = [repr(x) for x in v.tolist()]
        cols.append(cells.tolist())
    with _open(path) as fh:
        fh.write(",".join(["step", *names]) + "\n")
        steps = all_steps.tolist()
        for lo in range(0, len(steps), chunk):
            rows = zip(steps[lo:lo + chunk], *(c[lo:lo + chunk] for c in cols), strict=True)
            fh.write("".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def ensure_logs(out: str | Path, steps: int = 1_000_000, seed: int = 0) -> dict[str, Path]:
    """Write (or reuse, when already there for the same parameters) the benchmark's files in ``out``.

    Returns the paths by kind: ``long_gz``, ``long_csv``, ``wide_csv`` and ``meta`` (JSON with the
    parameters, the planted spike steps and the point count).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"synthetic_{steps}_seed{seed}"
    paths = {"long_gz": out / f"{stem}.csv.gz", "long_csv": out / f"{stem}.long.csv",
             "wide_csv": out / f"{stem}.wide.csv", "meta": out / f"{stem}.json"}
    if all(p.exists() for p in paths.values()):
        return paths
    run = make_run(steps, seed=seed)
    write_long_csv(run, paths["long_gz"])
    write_long_csv(run, paths["long_csv"])
    write_wide_csv(run, paths["wide_csv"])
    meta = {"params": run.params, "spikes": run.spikes, "points": run.n_points,
            "metrics": {n: len(s) for n, (s, _) in run.metrics.items()}}
    # written last: its presence says the other files are complete
    paths["meta"].write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/foreshock-bench", help="directory for the files (not the repository)")
    args = p.parse_args(argv)
    for kind, path in ensure_logs(args.out, args.steps, args.seed).items():
        print(f"{kind:9s} {path}  {path.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
