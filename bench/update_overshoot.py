"""Does a step that raises its own batch's loss warn of a gpt-instability divergence early?

At step ``t`` with batch ``B_t`` the loop has ``L_t = L(theta_t; B_t)``; after ``optimizer.step()``
one extra forward pass (no grad, the same autocast) gives ``L'_t = L(theta_{t+1}; B_t)``. The
*overshoot* is ``d_t = (L'_t - L_t) / L_t``: negative while each step lowers its batch's loss. The
signals read from it are ``d_t`` itself, its running mean over the last ``W`` measured steps and
the fraction of those with ``d_t > 0`` (``W`` 20 and 50).

The training loop is :func:`foreshock.lab.gpt.fit`'s (the same model, optimizer, data, batches and
stop rule, with its host checks every :data:`~foreshock.lab.gpt.CHECK_EVERY` steps) without
``foreshock.watch`` and without the validation passes, which change nothing in the training. Each
run writes ``<out>/<run>.csv`` (step, lr, loss, loss_after, overshoot) and ``<out>/<run>.json``
(why it stopped, CPU seconds of the loop and of the extra forwards).

    # one run
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/update_overshoot.py --out /tmp/overshoot \\
        --run lr=0.5,qk_norm=false,seed=0
    # the grid (lr 0.5, 0.4, 0.2 x qk_norm x seed 0, 1; warmup 600, steps 900), two processes at once
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/update_overshoot.py --out /tmp/overshoot --grid --jobs 2
    # the table: onsets (foreshock.lab.labels.loss_label) and the first crossing of each signal
    .venv/bin/python bench/update_overshoot.py --out /tmp/overshoot --report bench/results/update_overshoot.md
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

import foreshock
from foreshock.lab.corpus import VOCAB, corpus_bytes, train_val_split
from foreshock.lab.gpt import CHECK_EVERY, DEFAULTS, PRESETS, _windows, build, lm_loss, lr_table
from foreshock.lab.labels import loss_label
from foreshock.run import RunBuilder

HERE = Path(__file__).resolve().parent
LAB_RUNS = HERE / "lab_runs" / "gpt-instability"
GRID = {"lr": [0.5, 0.4, 0.2], "qk_norm": [False, True], "seed": [0, 1]}
FIXED = {"warmup": 600, "steps": 900}
WINDOWS = (20, 50)
AFTER = 50  # crossings count from the step after this one
#: the running windows hold only steps from this one on: Adam's first steps overshoot by up to +200%
#: (a start-up transient, over by step ~12) and would set off every windowed signal at step 51
BURN_IN = 20
THRESHOLDS: dict[str, list[float]] = {
    "d": [0.0, 0.01, 0.02, 0.05],
    "mean20": [-0.02, -0.01, 0.0, 0.01],
    "mean50": [-0.02, -0.01, 0.0, 0.01],
    "frac20": [0.1, 0.2, 0.3, 0.5],
    "frac50": [0.1, 0.2, 0.3, 0.5],
}
LR_BINS = [(0.0, 0.1), (0.1, 0.15), (0.15, 0.2), (0.2, 0.25), (0.25, 0.3), (0.3, 0.4)]
LEAD = 100  # the warning the question asks for: this many steps before the onset


def run_name(config: dict[str, Any]) -> str:
    return (f"gpt-instability_lr-{config['lr']:g}_warmup-{config['warmup']}_steps-{config['steps']}"
            f"_qk_norm-{str(config['qk_norm']).lower()}_seed-{config['seed']}")


def parse_run(text: str) -> dict[str, Any]:
    """``lr=0.5,qk_norm=false,seed=0`` -> the cpu preset's config with those knobs (and warmup 600, steps 900)."""
    config = {**DEFAULTS, **PRESETS["cpu"], **FIXED, "device": "cpu"}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or key not in config:
            raise ValueError(f"--run wants knob=value pairs of gpt-instability's knobs, got {item!r}")
        old = config[key]
        if isinstance(old, bool):
            if value.lower() not in ("true", "false"):
                raise ValueError(f"{key} must be true or false, got {value!r}")
            config[key] = value.lower() == "true"
        else:
            config[key] = type(old)(value)
    return config


class LabLoop:
    """The lab's gpt-instability training, step by step, exactly as ``foreshock.lab.gpt.fit`` trains it
    (same batches, same stop rule), without ``foreshock.watch`` and the validation passes.

    Iterating yields ``(t, lr, loss, model, x, y, measured)`` after each ``optimizer.step()``, where
    ``measured`` is ``t % every == 0``; ``active["on"]`` is that flag during the step's forward pass only
    (for forward hooks that measure), and ``on_model`` is called with the model before the first step.
    After the loop, ``stopped`` says why it ended and ``cpu_s`` / ``wall_s`` what it cost.
    """

    def __init__(self, config: dict[str, Any], every: int, on_model: Any = None):
        if every < 1:
            raise ValueError(f"--every must be >= 1, got {every}")
        self.config, self.every, self.on_model = config, every, on_model
        self.active = {"on": False}
        self.stopped, self.cpu_s, self.wall_s = "finished", 0.0, 0.0
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=config["precision"] == "bf16")

    def __iter__(self) -> Any:
        config = self.config
        torch.set_num_threads(1)
        model, optimizer = build(config)
        if self.on_model is not None:
            self.on_model(model)
        seq, batch, steps = int(config["seq_len"]), int(config["batch"]), int(config["steps"])
        train_data = torch.from_numpy(np.array(train_val_split(corpus_bytes(int(config["corpus_bytes"])))[0]))
        offsets = torch.arange(seq + 1)
        gen = torch.Generator(device="cpu").manual_seed(int(config["seed"]))
        lrs = lr_table(config)
        ceiling, patience = math.log(VOCAB), int(config["patience"])
        above = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for t in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = float(lrs[t])
            starts = torch.randint(0, len(train_data) - seq - 1, (batch,), generator=gen)
            x, y = _windows(train_data, starts, offsets)
            measured = t % self.every == 0
            self.active["on"] = measured
            with self.autocast:
                logits = model(x)
            self.active["on"] = False
            ce, objective = lm_loss(logits, y, float(config["z_loss"]))
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            loss = float(ce.detach())
            yield t, float(lrs[t]), loss, model, x, y, measured
            above = above + 1 if not loss <= ceiling else 0  # NaN counts as above
            if self.stopped == "finished":
                if not math.isfinite(loss):
                    self.stopped = "nonfinite"
                elif above >= patience:
                    self.stopped = "above_start"
            if self.stopped != "finished" and (t + 1) % CHECK_EVERY == 0:  # fit reads the losses every CHECK_EVERY steps
                break
        self.cpu_s, self.wall_s = time.process_time() - cpu0, time.perf_counter() - wall0


def train(config: dict[str, Any], every: int = 1) -> dict[str, Any]:
    """Train as ``fit`` does and measure the overshoot every ``every`` steps; the per-step records."""
    loop = LabLoop(config, every)
    rows: list[tuple[int, float, float, float]] = []
    extra_cpu = 0.0
    for t, lr, loss, model, x, y, measured in loop:
        after = math.nan
        if measured:
            c0 = time.process_time()
            with torch.no_grad(), loop.autocast:
                after = float(lm_loss(model(x), y)[0])
            extra_cpu += time.process_time() - c0
        rows.append((t, lr, loss, after))
    return {"rows": rows, "stopped": loop.stopped, "cpu_s": loop.cpu_s, "wall_s": loop.wall_s,
            "extra_cpu_s": extra_cpu, "every": every}


def save_run(config: dict[str, Any], result: dict[str, Any], header: list[str], cells: Any, out: Path) -> Path:
    """Write one trained run: ``<name>.csv`` (``header``, then ``cells(row)`` per row) and ``<name>.json``
    (the config and the rest of ``result``)."""
    out.mkdir(parents=True, exist_ok=True)
    name = run_name(config)
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in result["rows"]:
            w.writerow(cells(row))
    meta = {k: v for k, v in result.items() if k != "rows"}
    (out / f"{name}.json").write_text(json.dumps({"config": config, **meta, "steps_run": len(result["rows"])},
                                                 indent=1))
    return out / f"{name}.csv"


def write_run(config: dict[str, Any], every: int, out: Path) -> Path:
    def cells(row: tuple[int, float, float, float]) -> list[Any]:
        t, lr, loss, after = row
        return [t, f"{lr:.6g}", repr(loss), repr(after), repr((after - loss) / loss)]

    return save_run(config, train(config, every), ["step", "lr", "loss", "loss_after", "overshoot"], cells, out)


def read_run(path: Path) -> dict[str, np.ndarray]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in ("step", "lr", "loss", "loss_after", "overshoot")}


def onset(name: str, steps: np.ndarray, losses: np.ndarray) -> tuple[str, int | None]:
    b = RunBuilder()
    b.add_array("train/loss", steps, losses)
    label = loss_label(b.build(name, source="update_overshoot", format="csv"))
    return label.event, label.onset_step


def signals(steps: np.ndarray, d: np.ndarray, every: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each signal's ``(steps, values)`` over the measured steps; a window needs ``W`` measured points."""
    measured = steps % every == 0
    s, v = steps[measured], d[measured]
    out = {"d": (s, v)}
    s, v = s[s >= BURN_IN], v[s >= BURN_IN]
    for w in WINDOWS:
        if len(v) < w:
            out[f"mean{w}"] = out[f"frac{w}"] = (s[:0], v[:0])
            continue
        win = np.lib.stride_tricks.sliding_window_view(v, w)
        out[f"mean{w}"] = (s[w - 1:], win.mean(axis=1))
        out[f"frac{w}"] = (s[w - 1:], (win > 0).mean(axis=1))
    return out


def first_cross(s: np.ndarray, v: np.ndarray, threshold: float, until: int | None) -> int | None:
    """The first step after :data:`AFTER` (and before ``until``) with ``v >= threshold``."""
    ok = (s > AFTER) & (v >= threshold)
    if until is not None:
        ok &= s < until
    return int(s[np.argmax(ok)]) if ok.any() else None


def lab_onset(name: str) -> int | None:
    """The labelled onset of the lab run of that name in ``bench/lab_runs`` (None: no onset or no such run)."""
    index = json.loads((LAB_RUNS.parent / "runs.json").read_text())
    r = next((r for r in index["runs"] if r["run"] == name), None)
    return None if r is None else r["label"]["onset_step"]


def report(out: Path) -> str:
    runs = []
    for path in sorted(out.glob("gpt-instability_*.csv")):
        data = read_run(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        event, at = onset(path.stem, data["step"], data["loss"])
        diverged = event in ("divergence", "nan")
        lab = None
        lab_path = LAB_RUNS / f"{path.stem}.csv.gz"
        if lab_path.exists():
            lab_run = foreshock.read(lab_path)
            ls, lv = lab_run.series("train/loss")
            n = min(len(lv), len(data["loss"]))
            same = np.array_equal(ls[:n], data["step"][:n].astype(ls.dtype))
            diff = np.abs(lv[:n] - data["loss"][:n])
            first_diff = int(ls[np.argmax(diff > 0)]) if same and (diff > 0).any() else None
            lab = {"onset": lab_onset(path.stem), "n": n, "max_diff": float(np.nanmax(diff)) if same else math.nan,
                   "first_diff": first_diff, "lab_steps": len(lv)}
        runs.append({"name": path.stem, "config": meta["config"], "meta": meta, "event": event, "onset": at,
                     "diverged": diverged, "data": data, "sig": signals(data["step"], data["overshoot"], int(meta["every"])), "lab": lab})
    runs.sort(key=lambda r: (r["config"]["lr"], r["config"]["qk_norm"], r["config"]["seed"]))

    lines = ["## Runs", "", "| run | steps run | stopped | label | onset | LR at onset | lab onset | "
             "loss vs lab run | CPU s | extra forward CPU s (share) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        c, m, lab = r["config"], r["meta"], r["lab"]
        lr_at = f"{r['data']['lr'][int(r['onset'])]:.3f}" if r["diverged"] else "-"
        if lab is None:
            cmp, lab_on = "no lab run", "-"
        else:
            lab_on = str(lab["onset"]) if lab["onset"] is not None else "none"
            cmp = ("identical over " + str(lab["n"]) + " steps" if lab["max_diff"] == 0 else
                   f"max abs diff {lab['max_diff']:.3g} over {lab['n']} steps (first at {lab['first_diff']})")
        lines.append(f"| lr {c['lr']:g} qk_norm {str(c['qk_norm']).lower()} seed {c['seed']} | {m['steps_run']} | "
                     f"{m['stopped']} | {r['event']} | {r['onset'] if r['diverged'] else '-'} | {lr_at} | {lab_on} | "
                     f"{cmp} | {m['cpu_s']:.1f} | {m['extra_cpu_s']:.1f} ({m['extra_cpu_s'] / m['cpu_s']:.0%}) |")

    lines += ["", "## Overshoot before the onset", "",
              "Median of `d_t` over steps 51-150, and over the 50 steps before the onset (diverging runs) or the "
              "last 50 steps (stable runs); share of steps with `d_t > 0` in the same spans.", "",
              "| run | d median 51-150 | d>0 share 51-150 | d median last 50 before onset/end | d>0 share there |",
              "|---|---|---|---|---|"]
    for r in runs:
        s, v = r["sig"]["d"]
        end = r["onset"] if r["diverged"] else int(s[-1]) + 1
        early, late = v[(s > 50) & (s <= 150) & (s < end)], v[(s >= end - 50) & (s < end)]
        lines.append(f"| {short(r)} | {np.median(early):+.4f} | {(early > 0).mean():.2f} | {np.median(late):+.4f} | "
                     f"{(late > 0).mean():.2f} |")

    lines += ["", "## Overshoot by learning rate (steps after 50 and before the onset)", "",
              "Each cell: share of steps with `d_t > 0` / median `d_t`, over the steps whose LR lies in the bin "
              "(number of steps). A warning 100 steps ahead of the onset has to separate the runs at the LR they "
              "had then, about 0.19-0.25, which the stable runs visit too (their plateau at 0.2 is the last bin "
              "they reach).", "",
              "| run | " + " | ".join(f"lr [{a:g}, {b:g})" for a, b in LR_BINS) + " |",
              "|---|" + "---|" * len(LR_BINS)]
    for r in runs:
        s, v = r["sig"]["d"]
        lr = r["data"]["lr"][s.astype(int)]
        end = r["onset"] if r["diverged"] else int(s[-1]) + 1
        cells = []
        for a, b in LR_BINS:
            sel = v[(s > AFTER) & (s < end) & (lr >= a) & (lr < b)]
            cells.append(f"{(sel > 0).mean():.2f} / {np.median(sel):+.4f} ({len(sel)})" if len(sel) else "-")
        lines.append(f"| {short(r)} | " + " | ".join(cells) + " |")

    lines += ["", "## First crossing of each signal (after step 50)", "",
              "Diverging runs: the first step the signal is >= the threshold before the onset, and the lead "
              "(onset - step). Stable runs: the first step it is >= the threshold anywhere, or `never`.", ""]
    div = [r for r in runs if r["diverged"]]
    stable = [r for r in runs if not r["diverged"]]
    header = ["signal", "threshold"] + [short(r) for r in div] + [short(r) + " (stable)" for r in stable] + \
             [f"lead >= {LEAD} on all diverging, quiet on all stable"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    verdicts = []
    for sig, ths in THRESHOLDS.items():
        for th in ths:
            cells, leads, quiet = [], [], True
            for r in div:
                s, v = r["sig"][sig]
                at = first_cross(s, v, th, r["onset"])
                lead = None if at is None else r["onset"] - at
                leads.append(lead)
                cells.append("-" if at is None else f"{at} ({lead})")
            for r in stable:
                s, v = r["sig"][sig]
                at = first_cross(s, v, th, None)
                quiet &= at is None
                cells.append("never" if at is None else str(at))
            good = quiet and all(x is not None and x >= LEAD for x in leads)
            verdicts.append((sig, th, good))
            lines.append(f"| {sig} | {th:g} | " + " | ".join(cells) + f" | {'yes' if good else 'no'} |")
    lines += ["", "## The lowest threshold the stable runs never reach", "",
              "For each signal, its highest value on the stable runs after step 50 (`max`); on each diverging "
              "run, the first step (and lead) at which the signal exceeds that value before the onset: the "
              "earliest warning any threshold on this signal could give without a false alarm on these stable runs.",
              "", "| signal | stable max | " + " | ".join(short(r) for r in div) + " | leads >= 100 |",
              "|---|---|" + "---|" * (len(div) + 1)]
    for sig in THRESHOLDS:
        top = max((float(np.nanmax(v[s > AFTER])) for r in stable for s, v in [r["sig"][sig]] if (s > AFTER).any()),
                  default=math.nan)
        cells, hits = [], 0
        for r in div:
            s, v = r["sig"][sig]
            ok = (s > AFTER) & (s < r["onset"]) & (v > top)
            at = int(s[np.argmax(ok)]) if ok.any() else None
            hits += at is not None and r["onset"] - at >= LEAD
            cells.append("-" if at is None else f"{at} ({r['onset'] - at})")
        lines.append(f"| {sig} | {top:.4g} | " + " | ".join(cells) + f" | {hits}/{len(div)} |")
    winners = [f"{s} >= {t:g}" for s, t, g in verdicts if g]
    lines += ["", "Thresholds that fire >= 100 steps before every onset and never on a stable run: "
              + (", ".join(winners) if winners else "none") + "."]
    return "\n".join(lines) + "\n"


def short(r: dict[str, Any]) -> str:
    c = r["config"]
    return f"{c['lr']:g}/{'qk' if c['qk_norm'] else 'noqk'}/s{c['seed']}"


def cli(doc: str, script: str, write_run: Any, report: Any, every: int, what: str) -> int:
    """The command line of a study of the lab loop (this one's, and others' built on :class:`LabLoop`)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder of the per-run CSVs")
    ap.add_argument("--run", help="one run: knob=value pairs, e.g. lr=0.5,qk_norm=false,seed=0")
    ap.add_argument("--grid", action="store_true", help="run the whole grid, each run in its own process")
    ap.add_argument("--jobs", type=int, default=2, help="processes at once with --grid")
    ap.add_argument("--every", type=int, default=every, help=f"measure the {what} every this many steps")
    ap.add_argument("--report", type=Path, help="write the tables of the runs in --out here (markdown)")
    args = ap.parse_args()
    if args.run:
        print(write_run(parse_run(args.run), args.every, args.out))
    if args.grid:
        specs = [f"lr={lr},qk_norm={str(qk).lower()},seed={seed}"
                 for lr, qk, seed in itertools.product(*GRID.values())]

        def one(spec: str) -> int:
            cmd = [sys.executable, script, "--out", str(args.out), "--run", spec, "--every", str(args.every)]
            done = subprocess.run(cmd, check=False)
            print(spec, "exit", done.returncode, flush=True)
            return done.returncode

        with ThreadPoolExecutor(args.jobs) as pool:
            codes = list(pool.map(one, specs))
        if any(codes):
            return 1
    if args.report:
        text = report(args.out)
        print(text)
        args.report.write_text(text)
    return 0


def main() -> int:
    return cli(__doc__, __file__, write_run, report, every=1, what="overshoot")


if __name__ == "__main__":
    raise SystemExit(main())
