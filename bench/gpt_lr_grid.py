"""Learning-rate grid of the gpt-instability cpu preset, with and without qk_norm.

Each grid point trains the cpu preset (with the given knobs changed) in its own process with one
thread, watched by ``foreshock.watch`` into a throw-away store, and reports the loss it reached,
whether it diverged (stopped early: a non-finite loss, or ``patience`` steps above ln 256), the
largest attention logit the watch measured, and the process CPU time and wall time of the training
loop (the machine may be shared: CPU time is the number to compare).

    python bench/gpt_lr_grid.py --lr 0.01 0.03 0.1 0.3 --jobs 2 --out bench/results/gpt_instability_cpu.md
    python bench/gpt_lr_grid.py --lr 0.3 --set warmup=50 --set steps=250

Writes a Markdown table (``--out``) and prints each row as it finishes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _knob(text: str) -> tuple[str, Any]:
    from foreshock.lab.gpt import DEFAULTS

    key, _, value = text.partition("=")
    if key not in DEFAULTS:
        raise argparse.ArgumentTypeError(f"unknown knob {key!r}; knobs: {sorted(DEFAULTS)}")
    default = DEFAULTS[key]
    if isinstance(default, bool):
        return key, value.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return key, int(float(value))
    if isinstance(default, float):
        return key, float(value)
    return key, value


def one(overrides: dict[str, Any]) -> dict[str, Any]:
    """Train one grid point in this process; returns its row."""
    import numpy as np
    import torch

    import foreshock
    from foreshock.lab.gpt import WORKLOAD, fit

    torch.set_num_threads(1)
    config = WORKLOAD.config("cpu", overrides)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "grid.db"
        monitors: list[Any] = []

        def watch(model: Any, optimizer: Any) -> Any:
            monitors.append(foreshock.watch(model, optimizer, run="grid", store=db, console=False))
            return monitors[0]

        result = fit(config, watch)
        monitors[0].close()
        run = foreshock.read(db, run="grid")
    attn = [run.series(n)[1] for n in run.names if n.startswith("attn/")]
    attn_max = float(np.nanmax(np.concatenate(attn))) if attn else math.nan
    losses = np.asarray(result.losses)
    return {"lr": config["lr"], "qk_norm": config["qk_norm"], "overrides": overrides,
            "steps_run": result.steps_run, "steps": config["steps"], "stopped": result.stopped,
            "min_loss": result.min_loss, "final_loss": result.final_loss,
            "loss_at_100": float(losses[99]) if len(losses) >= 100 else math.nan,
            "attn_logit_max": attn_max, "cpu_s": result.cpu_s, "wall_s": result.wall_s}


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def _row(r: dict[str, Any]) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in r["overrides"].items() if k not in ("lr", "qk_norm")) or "-"
    verdict = "diverged" if r["stopped"] != "finished" else "trained"
    return (f"| {r['lr']:g} | {'yes' if r['qk_norm'] else 'no'} | {extra} | {verdict} ({r['stopped']}) | "
            f"{r['steps_run']}/{r['steps']} | {r['loss_at_100']:.3f} | {r['min_loss']:.3f} | "
            f"{r['final_loss']:.3f} | "
            f"{r['attn_logit_max']:.3g} | {r['cpu_s']:.1f} | {r['wall_s']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, nargs="+", required=True, help="learning rates to try")
    parser.add_argument("--qk-norm", choices=("both", "on", "off"), default="both")
    parser.add_argument("--set", type=_knob, action="append", default=[], metavar="KNOB=VALUE",
                        help="another knob for every grid point (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="grid points trained at once (one thread each)")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    fixed = dict(args.set)
    qks = {"both": (False, True), "on": (True,), "off": (False,)}[args.qk_norm]
    points = [{**fixed, "lr": lr, "qk_norm": qk} for lr in args.lr for qk in qks]
    rows = []
    wall0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        for row in pool.map(one, points):
            print(json.dumps(row), flush=True)
            rows.append(row)
    head = ["| lr | qk_norm | other knobs | outcome | steps | loss@100 | min loss | final loss (last 10) | "
            "attn logit max | CPU s | wall s |", "|" + "---|" * 11]
    command = "python bench/gpt_lr_grid.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join([f"`{command}`", "", f"CPU: {_cpu_model()}; {args.jobs} grid points at once, "
                      f"one thread each; grid wall time {time.perf_counter() - wall0:.0f} s", "", *head,
                      *map(_row, rows), ""])
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
