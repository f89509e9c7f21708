"""Does Adam's preconditioned sharpness warn of a gpt-instability divergence ahead of time? Read off LR ramps.

The runs are gpt-instability LR ramps made by ``bench/lab_sweep.py`` with the ``sharpness_every``
knob, which logs ``probe/eos_ratio`` = ``lr * lambda_max(P^-1 H) * (1 - beta1) / (2 + 2 beta1)``
(1 is Adam's edge of stability, Cohen et al. 2022). For each run the ratio is smoothed causally by
the median of the last ``--median`` probes; the table gives the first step at which it reached each
threshold, the labelled divergence onset (``foreshock.lab.labels.loss_label``, as in
``bench/gpt_lr_threshold.py``) and the largest smoothed ratio before the onset (the whole run when
it trained). The sweep then asks, for every threshold: how many diverging runs would have been
warned at least ``--lead`` steps before their onset, and how many runs that trained would have
been warned at all (from step ``--skip`` on)::

    python bench/gpt_sharpness.py --runs /tmp/e/runs --baseline bench/lab_runs

``--diagnose LR STEP`` instead trains the cpu preset's ramp to peak ``LR`` (``warmup=600``) up to
``STEP`` and prints the CPU cost of a training step and of a cold (50 Lanczos steps) and a warm
(10) probe there, the eigenvalue after 30 more warm steps, and which parameters carry the top
eigenvector, with their second moments.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import foreshock

THRESHOLDS = (0.5, 0.7, 0.9)
SWEEP = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 1e4, 1e5)


def smoothed(steps: np.ndarray, ratio: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The causal median of the last ``k`` finite probes, from the ``k``-th one on."""
    ok = np.isfinite(ratio)
    steps, ratio = steps[ok], ratio[ok]
    if len(ratio) < k:
        return steps[:0], ratio[:0]
    med = np.median(np.lib.stride_tricks.sliding_window_view(ratio, k), axis=1)
    return steps[k - 1:], med


def first_at(steps: np.ndarray, values: np.ndarray, level: float, skip: int) -> int | None:
    hit = np.flatnonzero((values >= level) & (steps >= skip))
    return int(steps[hit[0]]) if len(hit) else None


def rows(runs: Path, k: int) -> list[dict[str, object]]:
    index = json.loads((runs / "runs.json").read_text())
    out = []
    for r in index["runs"]:
        if r["workload"] != "gpt-instability" or not r["config"].get("sharpness_every"):
            continue
        run = foreshock.read(runs / "gpt-instability" / f"{r['run']}.csv.gz")
        steps, ratio = run.series("probe/eos_ratio")
        ls, lrs = run.series("opt/lr")
        onset = r["label"]["onset_step"]
        broke = r["label"]["event"] in ("divergence", "nan") and onset is not None
        s, med = smoothed(steps, ratio, k)
        before = s < onset if broke else np.ones(len(s), bool)
        late = (s >= onset - 100) & before if broke else s >= s[-1] - 300  # trained: the top of the ramp
        cfg = r["config"]
        out.append({"run": r["run"], "qk_norm": cfg["qk_norm"], "peak": cfg["lr"], "seed": cfg["seed"],
                    "broke": broke, "onset": onset if broke else None,
                    "lr_onset": float(lrs[np.searchsorted(ls, onset)]) if broke else None,
                    "steps": s, "med": med, "max_before": _max(med[before]),
                    "max_before_100": _max(med[before & (s >= 100)]),
                    "late": float(np.median(med[late])) if late.any() else float("nan"),
                    "cpu_s": r["cpu_s"], "last": r["steps"], "probes": int(np.isfinite(ratio).sum())})
    return sorted(out, key=lambda x: (x["broke"], x["qk_norm"], x["peak"], x["seed"]))


def _max(x: np.ndarray) -> float:
    return float(x.max()) if len(x) else float("nan")


def markdown(table: list[dict[str, object]], k: int, lead: int, skip: int) -> str:
    def cell(x: dict[str, object], level: float, from_step: int) -> str:
        hit = first_at(x["steps"], x["med"], level, from_step)
        if hit is None or (x["broke"] and hit >= x["onset"]):
            return "-"
        return f"{hit} ({x['onset'] - hit})" if x["broke"] else str(hit)

    head = " | ".join(f"first >= {t}" for t in THRESHOLDS)
    lines = [f"Smoothed ratio: median of the last {k} probes. Cells: first step at which it reached the "
             "threshold (for diverging runs, in brackets, steps ahead of the onset; '-': not before the onset).",
             "",
             f"| qk_norm | peak lr | seed | outcome | onset step | LR at onset | {head} | max before onset "
             "(trained: whole run) | same, from step 100 | median over the 100 steps before onset "
             "(trained: last 300 steps) |",
             "|---|---|---|---|---|---|" + "---|" * len(THRESHOLDS) + "---|---|---|"]
    for x in table:
        lines.append(f"| {x['qk_norm']} | {x['peak']:g} | {x['seed']} | {'divergence' if x['broke'] else 'trained'} | "
                     f"{x['onset'] if x['broke'] else '-'} | "
                     f"{'-' if x['lr_onset'] is None else format(x['lr_onset'], '.3f')} | "
                     + " | ".join(cell(x, t, 0) for t in THRESHOLDS)
                     + f" | {x['max_before']:.3g} | {x['max_before_100']:.3g} | {x['late']:.3g} |")
    broke = [x for x in table if x["broke"]]
    stable = [x for x in table if not x["broke"]]
    lines += ["", f"Every threshold, counting probes from step {skip} on (and, second, from step 0): diverging "
                  f"runs warned >= {lead} steps before the onset, median lead, and trained runs warned at all.",
              "", "| threshold | diverging warned >= lead (from step " + str(skip) + ") | median lead | "
                  "trained warned (from step " + str(skip) + ") | diverging warned >= lead (from 0) | "
                  "trained warned (from 0) |",
              "|---|---|---|---|---|---|"]
    for level in SWEEP:
        cols = []
        for from_step in (skip, 0):
            leads = []
            for x in broke:
                hit = first_at(x["steps"], x["med"], level, from_step)
                leads.append(x["onset"] - hit if hit is not None and hit < x["onset"] else None)
            ok = sum(v is not None and v >= lead for v in leads)
            warned = [v for v in leads if v is not None]
            false = sum(first_at(x["steps"], x["med"], level, from_step) is not None for x in stable)
            cols.append((f"{ok}/{len(broke)}", f"{np.median(warned):.0f}" if warned else "-", f"{false}/{len(stable)}"))
        (a, m, f), (a0, _, f0) = cols
        lines.append(f"| {level:g} | {a} | {m} | {f} | {a0} | {f0} |")
    return "\n".join(lines) + "\n"


def cost(table: list[dict[str, object]], baseline: Path) -> str:
    """CPU seconds per run with and without the probe (same seed, same steps), per probe, and the ratio."""
    base = {r["run"]: r for r in json.loads((baseline / "runs.json").read_text())["runs"]}
    lines = ["| run | steps | probes | CPU s with probe | CPU s without | s per probe | overhead |",
             "|---|---|---|---|---|---|---|"]
    per, ratio = [], []
    for x in table:
        twin = base.get(x["run"].replace("_sharpness_every-10", ""))
        if twin is None or twin["steps"] != x["last"]:
            continue
        extra = x["cpu_s"] - twin["cpu_s"]
        per.append(extra / x["probes"])
        ratio.append(x["cpu_s"] / twin["cpu_s"])
        lines.append(f"| {twin['run']} | {x['last'] + 1} | {x['probes']} | {x['cpu_s']:.1f} | {twin['cpu_s']:.1f} | "
                     f"{per[-1]:.2f} | {ratio[-1]:.2f}x |")
    if per:
        lines.append(f"| median | | | | | {np.median(per):.2f} | {np.median(ratio):.2f}x |")
    return "\n".join(lines) + "\n"


def diagnose(peak: float, stop: int) -> str:
    import time

    import torch

    from foreshock.lab.corpus import corpus_bytes, train_val_split
    from foreshock.lab.gpt import (
        PRESETS,
        WORKLOAD,
        adam_edge_ratio,
        build,
        lm_loss,
        lr_table,
        preconditioned_sharpness,
    )

    torch.set_num_threads(1)
    cfg = WORKLOAD.config("cpu", {**PRESETS["cpu"], "lr": peak, "warmup": 600, "steps": 900, "device": "cpu"})
    model, opt = build(cfg)
    seq, batch = cfg["seq_len"], cfg["batch"]
    data = torch.from_numpy(np.array(train_val_split(corpus_bytes(cfg["corpus_bytes"]))[0]))
    offsets, lrs = torch.arange(seq + 1), lr_table(cfg)
    gen = torch.Generator().manual_seed(cfg["seed"])  # the batches of the lab run
    train_s = 0.0
    for t in range(stop + 1):
        for g in opt.param_groups:
            g["lr"] = float(lrs[t])
        chunk = data[torch.randint(0, len(data) - seq - 1, (batch,), generator=gen)[:, None] + offsets].long()
        x, y = chunk[:, :-1], chunk[:, 1:]
        if t == stop:
            break
        c0 = time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
        opt.zero_grad()
        lm_loss(logits, y)[1].backward()
        opt.step()
        train_s += time.process_time() - c0
    c0 = time.process_time()
    lam, vec = preconditioned_sharpness(model, opt, x, y, iters=50)
    c1 = time.process_time()
    lam10, vec = preconditioned_sharpness(model, opt, x, y, start=vec, iters=10)
    c2 = time.process_time()
    lam40, _ = preconditioned_sharpness(model, opt, x, y, start=vec, iters=30)
    lines = [f"step {stop}, lr {lrs[stop]:.4f}: training step {train_s / stop:.4f} CPU s; cold probe (50 steps) "
             f"{c1 - c0:.2f} CPU s -> {float(lam):.4g}; warm probe (10) {c2 - c1:.2f} CPU s -> {float(lam10):.4g} "
             f"(ratio {float(adam_edge_ratio(lam10, float(lrs[stop]))):.3g}); 30 more -> {float(lam40):.4g}"]
    names = {id(p): n for n, p in model.named_parameters()}
    i = 0
    for group in opt.param_groups:
        for p in group["params"]:
            mass = float(vec[i:i + p.numel()].pow(2).sum())
            i += p.numel()
            v_hat = opt.state[p]["exp_avg_sq"] / (1 - group["betas"][1] ** float(opt.state[p]["step"]))
            if mass > 0.01:
                lines.append(f"  {names[id(p)]}: eigenvector mass {mass:.3f}, v_hat median {float(v_hat.median()):.2e}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, help="a bench/lab_sweep.py output folder")
    ap.add_argument("--diagnose", nargs=2, type=float, metavar=("LR", "STEP"), help="probe one ramp at one step")
    ap.add_argument("--median", type=int, default=3, help="probes in the causal median (default: %(default)s)")
    ap.add_argument("--lead", type=int, default=100, help="steps of warning asked for (default: %(default)s)")
    ap.add_argument("--baseline", type=Path, help="a sweep folder with the same runs without the probe: "
                    "adds the probe's CPU cost (e.g. bench/lab_runs)")
    ap.add_argument("--skip", type=int, default=100, help="probes before this step are ignored in the second "
                    "count (default: %(default)s)")
    args = ap.parse_args()
    if args.diagnose:
        print(diagnose(args.diagnose[0], int(args.diagnose[1])))
        return 0
    if args.runs is None:
        ap.error("--runs or --diagnose is required")
    table = rows(args.runs, args.median)
    print(markdown(table, args.median, args.lead, args.skip))
    if args.baseline:
        print(cost(table, args.baseline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
