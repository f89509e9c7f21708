"""Does attention entropy collapse warn of a gpt-instability divergence early?

Every ``--every`` steps a forward hook on each block's ``c_attn`` (the q, k, v the attention uses,
after the LayerNorms when ``qk_norm`` is on) reads q and k of the training forward on the current
batch and, with no grad, computes for each layer and head the causal attention distribution
``softmax(q k^T / sqrt(d) + causal mask)`` in float32. Each query's Shannon entropy is divided by
``log`` of its number of visible keys (so it lies in [0, 1]; the first query, with one key, is left
out) and averaged over queries and the batch. Per measured step the run records the minimum over
layers and heads (``min``), the mean over them (``mean``) and the minimum over the heads of each
layer (``min_l0``, ...). The hook only reads detached tensors, so training is unchanged.

The training loop is :func:`foreshock.lab.gpt.fit`'s, as in ``bench/update_overshoot.py`` (the same
model, optimizer, data, batches and stop rule). Each run writes ``<out>/<run>.csv`` (step, lr, loss,
the entropies; empty on unmeasured steps) and ``<out>/<run>.json`` (why it stopped, CPU seconds of
the loop and of the entropy hooks).

    # one run
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/attention_entropy.py --out /tmp/attn_entropy \\
        --run lr=0.5,qk_norm=false,seed=0
    # the grid (lr 0.5, 0.4, 0.2 x qk_norm x seed 0, 1; warmup 600, steps 900), two processes at once
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/attention_entropy.py --out /tmp/attn_entropy --grid --jobs 2
    # the tables: onsets (foreshock.lab.labels.loss_label) and the first crossing of each signal
    .venv/bin/python bench/attention_entropy.py --out /tmp/attn_entropy --report /tmp/attn_entropy/report.md
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import foreshock

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from update_overshoot import LAB_RUNS, LabLoop, cli, lab_onset, onset, save_run, short  # noqa: E402

AFTER = 50  # crossings count from the step after this one
BASE = 100  # the drops are relative to the run's own value at this step
LEAD = 100  # the warning the question asks for: this many steps before the onset
#: signal -> (thresholds, direction): "below" fires when the value is <= the threshold, "above" when >=
THRESHOLDS: dict[str, tuple[list[float], str]] = {
    "min": ([0.5, 0.4, 0.3, 0.2, 0.1], "below"),
    "mean": ([0.7, 0.6, 0.5, 0.4, 0.3], "below"),
    "min_drop": ([0.1, 0.2, 0.3, 0.5], "above"),
    "mean_drop": ([0.05, 0.1, 0.2, 0.3], "above"),
}
LR_BINS = [(0.0, 0.1), (0.1, 0.15), (0.15, 0.2), (0.2, 0.25), (0.25, 0.3), (0.3, 0.4)]


def head_entropy(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Mean normalised entropy of each head's causal attention, from ``c_attn``'s output ``(B, T, 3C)``.

    Returns a ``(heads,)`` float32 tensor in [0, 1]: per query the entropy over its visible keys
    divided by ``log`` of their number, averaged over queries 1..T-1 and the batch.
    """
    b, t, c3 = qkv.shape
    c = c3 // 3
    q, k, _ = (z.float().view(b, t, heads, -1).transpose(1, 2) for z in qkv.split(c, dim=-1))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    scores = scores.masked_fill(~mask, -math.inf)
    logp = torch.log_softmax(scores, dim=-1)
    ent = -(logp.exp() * logp.masked_fill(~mask, 0.0)).sum(-1)  # (B, H, T)
    visible = torch.arange(1, t + 1, dtype=torch.float32)
    return (ent[..., 1:] / visible[1:].log()).mean(dim=(0, 2))


def train(config: dict[str, Any], every: int = 5) -> dict[str, Any]:
    """Train as ``fit`` does and measure the attention entropy every ``every`` steps; the per-step records."""
    measure = {"cpu": 0.0}
    current: list[torch.Tensor] = []
    handles: list[Any] = []

    def attach(model: torch.nn.Module) -> None:
        current.extend([torch.empty(0)] * len(model.blocks))
        for i, block in enumerate(model.blocks):
            handles.append(block.attn.c_attn.register_forward_hook(hook_for(i, block.attn.n_head)))

    def hook_for(layer: int, heads: int):
        def hook(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if loop.active["on"]:
                c0 = time.process_time()
                with torch.no_grad():
                    current[layer] = head_entropy(output.detach(), heads)
                measure["cpu"] += time.process_time() - c0
        return hook

    loop = LabLoop(config, every, on_model=attach)
    rows: list[tuple[int, float, float, list[float]]] = []
    try:
        for t, lr, loss, _model, _x, _y, measured in loop:
            if measured:
                per_layer = torch.stack(current)  # (depth, heads)
                ent = [float(per_layer.min()), float(per_layer.mean())] + [float(v) for v in per_layer.min(dim=1).values]
            else:
                ent = [math.nan] * (2 + len(current))
            rows.append((t, lr, loss, ent))
    finally:
        for h in handles:
            h.remove()
    return {"rows": rows, "stopped": loop.stopped, "cpu_s": loop.cpu_s, "wall_s": loop.wall_s,
            "entropy_cpu_s": measure["cpu"], "every": every, "depth": len(current)}


def write_run(config: dict[str, Any], every: int, out: Path) -> Path:
    result = train(config, every)

    def cells(row: tuple[int, float, float, list[float]]) -> list[Any]:
        t, lr, loss, ent = row
        return [t, f"{lr:.6g}", repr(loss)] + ["" if math.isnan(v) else repr(v) for v in ent]

    header = ["step", "lr", "loss", "min", "mean"] + [f"min_l{i}" for i in range(result["depth"])]
    return save_run(config, result, header, cells, out)


def read_run(path: Path) -> dict[str, np.ndarray]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) if r[k] != "" else math.nan for r in rows]) for k in rows[0]}


def signals(data: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each signal's ``(steps, values)`` over the measured steps; the drops relative to step :data:`BASE`."""
    measured = ~np.isnan(data["min"])
    s = data["step"][measured].astype(int)
    out = {}
    for key in ("min", "mean"):
        v = data[key][measured]
        out[key] = (s, v)
        base = v[s == BASE]
        out[f"{key}_drop"] = (s, (base[0] - v) / base[0] if len(base) else np.full_like(v, math.nan))
    return out


def first_cross(s: np.ndarray, v: np.ndarray, threshold: float, direction: str, until: int | None) -> int | None:
    """The first step after :data:`AFTER` (and before ``until``) where ``v`` crosses ``threshold``."""
    ok = (s > AFTER) & ((v <= threshold) if direction == "below" else (v >= threshold))
    if until is not None:
        ok &= s < until
    return int(s[np.argmax(ok)]) if ok.any() else None


def report(out: Path) -> str:
    runs = []
    for path in sorted(out.glob("gpt-instability_*.csv")):
        data = read_run(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        event, at = onset(path.stem, data["step"], data["loss"])
        lab = None
        lab_path = LAB_RUNS / f"{path.stem}.csv.gz"
        if lab_path.exists():
            ls, lv = foreshock.read(lab_path).series("train/loss")
            n = min(len(lv), len(data["loss"]))
            same = np.array_equal(ls[:n], data["step"][:n].astype(ls.dtype))
            diff = float(np.nanmax(np.abs(lv[:n] - data["loss"][:n]))) if same else math.nan
            lab = {"onset": lab_onset(path.stem), "n": n, "max_diff": diff, "lab_steps": len(lv)}
        runs.append({"config": meta["config"], "meta": meta, "event": event, "onset": at, "lab": lab,
                     "diverged": event in ("divergence", "nan"), "data": data, "sig": signals(data)})
    runs.sort(key=lambda r: (r["config"]["lr"], r["config"]["qk_norm"], r["config"]["seed"]))
    div = [r for r in runs if r["diverged"]]
    stable = [r for r in runs if not r["diverged"]]

    lines = ["## Runs", "", "| run | steps run | stopped | label | onset | LR at onset | lab onset | loss vs lab run | "
             "CPU s | entropy hook CPU s (share) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m, lab = r["meta"], r["lab"]
        lr_at = f"{r['data']['lr'][int(r['onset'])]:.3f}" if r["diverged"] else "-"
        if lab is None:
            cmp, lab_on = "no lab run", "-"
        else:
            lab_on = str(lab["onset"]) if lab["onset"] is not None else "none"
            cmp = (f"identical over {lab['n']} steps" if lab["max_diff"] == 0 else
                   f"max abs diff {lab['max_diff']:.3g} over {lab['n']} steps")
            if lab["lab_steps"] != len(r["data"]["loss"]):
                cmp += f" (lab run has {lab['lab_steps']} steps)"
        lines.append(f"| {short(r)} | {m['steps_run']} | {m['stopped']} | {r['event']} | "
                     f"{r['onset'] if r['diverged'] else '-'} | {lr_at} | {lab_on} | {cmp} | {m['cpu_s']:.1f} | "
                     f"{m['entropy_cpu_s']:.1f} ({m['entropy_cpu_s'] / m['cpu_s']:.0%}) |")

    lines += ["", "## Entropy along the run", "",
              "`min` / `mean` at a few steps (the measured step at or before it); the last column is the last "
              "measured step before the onset (diverging) or the last step (stable), and per layer `min_l*` there.",
              "", "| run | step 60 | step 100 | step 200 | step 300 | last before onset/end | per-layer min there |",
              "|---|---|---|---|---|---|---|"]
    depth = max(int(r["meta"]["depth"]) for r in runs)
    for r in runs:
        d = r["data"]
        measured = ~np.isnan(d["min"])
        s = d["step"][measured].astype(int)
        end = r["onset"] if r["diverged"] else int(d["step"][-1]) + 1
        cells = []
        for at in (60, 100, 200, 300):
            i = np.searchsorted(s, at, side="right") - 1
            cells.append(f"{d['min'][measured][i]:.3f} / {d['mean'][measured][i]:.3f}" if at < end else "-")
        i = np.searchsorted(s, end, side="left") - 1
        layer = " / ".join(f"{d[f'min_l{j}'][measured][i]:.3f}" for j in range(depth))
        cells.append(f"{s[i]}: {d['min'][measured][i]:.3f} / {d['mean'][measured][i]:.3f}")
        lines.append(f"| {short(r)} | " + " | ".join(cells) + f" | {layer} |")

    lines += ["", "## Entropy by learning rate (measured steps after 50 and before the onset)", "",
              "Each cell: median `min` / median `mean` over the measured steps whose LR lies in the bin. A warning "
              "100 steps ahead has to separate the runs at the LR they had then (about 0.19-0.25), which the stable "
              "runs visit too (0.2 is the top of their ramp).", "",
              "| run | " + " | ".join(f"lr [{a:g}, {b:g})" for a, b in LR_BINS) + " |",
              "|---|" + "---|" * len(LR_BINS)]
    for r in runs:
        d = r["data"]
        measured = ~np.isnan(d["min"])
        s, lr = d["step"][measured], d["lr"][measured]
        end = r["onset"] if r["diverged"] else int(d["step"][-1]) + 1
        cells = []
        for a, b in LR_BINS:
            sel = (s > AFTER) & (s < end) & (lr >= a) & (lr < b)
            cells.append(f"{np.median(d['min'][measured][sel]):.3f} / {np.median(d['mean'][measured][sel]):.3f}"
                         if sel.any() else "-")
        lines.append(f"| {short(r)} | " + " | ".join(cells) + " |")

    lines += ["", "## First crossing of each signal (after step 50)", "",
              "`min`, `mean` fire at or below the threshold; `*_drop` = (value at step 100 - value) / value at "
              "step 100 fires at or above it. Diverging runs: the first step before the onset, and the lead "
              "(onset - step). Stable runs: the first step anywhere, or `never`.", ""]
    header = ["signal", "threshold"] + [short(r) for r in div] + [short(r) + " (stable)" for r in stable] + \
             [f"lead >= {LEAD} on all diverging, quiet on all stable"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    verdicts = []
    for sig, (ths, direction) in THRESHOLDS.items():
        for th in ths:
            cells, leads, quiet = [], [], True
            for r in div:
                at = first_cross(*r["sig"][sig], th, direction, r["onset"])
                lead = None if at is None else r["onset"] - at
                leads.append(lead)
                cells.append("-" if at is None else f"{at} ({lead})")
            for r in stable:
                at = first_cross(*r["sig"][sig], th, direction, None)
                quiet &= at is None
                cells.append("never" if at is None else str(at))
            good = quiet and all(x is not None and x >= LEAD for x in leads)
            verdicts.append((sig, th, direction, good))
            lines.append(f"| {sig} | {'<=' if direction == 'below' else '>='} {th:g} | " + " | ".join(cells)
                         + f" | {'yes' if good else 'no'} |")

    lines += ["", "## The tightest threshold the stable runs never cross", "",
              "For each signal, its most extreme value on the stable runs after step 50 (lowest for `min`/`mean`, "
              "highest for the drops); on each diverging run, the first step (and lead) at which it goes beyond "
              "that value before the onset, and the count with a lead >= 100. Over all runs, then within each "
              "`qk_norm` setting (the two settings sit at very different entropy levels)."]
    groups = [("all runs", div, stable)] + [
        (f"qk_norm {str(qk).lower()}", [r for r in div if r["config"]["qk_norm"] == qk],
         [r for r in stable if r["config"]["qk_norm"] == qk]) for qk in (False, True)]
    for title, gdiv, gstable in groups:
        lines += ["", f"### {title}", "",
                  "| signal | stable extreme | " + " | ".join(short(r) for r in gdiv) + " | lead >= 100 |",
                  "|---|---|" + "---|" * len(gdiv) + "---|"]
        for sig, (_, direction) in THRESHOLDS.items():
            vals = [r["sig"][sig][1][r["sig"][sig][0] > AFTER] for r in gstable]
            vals = [v[~np.isnan(v)] for v in vals if len(v)]
            top = ((min(v.min() for v in vals) if direction == "below" else max(v.max() for v in vals))
                   if vals else math.nan)
            cells, hits = [], 0
            for r in gdiv:
                s, v = r["sig"][sig]
                ok = (s > AFTER) & (s < r["onset"]) & ((v < top) if direction == "below" else (v > top))
                at = int(s[np.argmax(ok)]) if ok.any() else None
                hits += at is not None and r["onset"] - at >= LEAD
                cells.append("-" if at is None else f"{at} ({r['onset'] - at})")
            lines.append(f"| {sig} | {top:.4g} | " + " | ".join(cells) + f" | {hits}/{len(gdiv)} |")
    winners = [f"{s} {'<=' if d == 'below' else '>='} {t:g}" for s, t, d, g in verdicts if g]
    lines += ["", "Thresholds that fire >= 100 steps before every onset and never on a stable run: "
              + (", ".join(winners) if winners else "none") + "."]
    return "\n".join(lines) + "\n"


def main() -> int:
    return cli(__doc__, __file__, write_run, report, every=5, what="entropy")


if __name__ == "__main__":
    raise SystemExit(main())
