"""At what learning rate does gpt-instability break, with and without qk_norm? Read off LR ramps.

A run whose LR rises slowly (a long linear warm-up to a peak above the threshold) diverges when the
LR crosses the threshold, so one run measures it: the LR the run had at its labelled divergence
onset (``foreshock.lab.labels.loss_label``, the first step from which every loss stays at least
1.5x the best running median before it). The runs are those of ``bench/lab_runs`` made with a
``warmup`` knob (``bench/lab_sweep.py``); for each, the LR at the onset comes from the run's own
logged ``opt/lr``. Runs that never diverge give a lower bound: their peak LR.

    python bench/gpt_lr_threshold.py --out bench/results/gpt_lr_threshold.md
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

import foreshock

HERE = Path(__file__).resolve().parent
RUNS = HERE / "lab_runs"


def rows() -> list[dict[str, object]]:
    index = json.loads((RUNS / "runs.json").read_text())
    out = []
    for r in index["runs"]:
        if r["workload"] != "gpt-instability" or "warmup" not in r["overrides"]:
            continue
        run = foreshock.read(RUNS / "gpt-instability" / f"{r['run']}.csv.gz")
        steps, lrs = run.series("opt/lr")
        onset = r["label"]["onset_step"]
        broke = r["label"]["event"] in ("divergence", "nan") and onset is not None
        lr_at = float(lrs[np.searchsorted(steps, onset)]) if broke else float(np.nanmax(lrs))
        cfg = r["config"]
        out.append({"run": r["run"], "qk_norm": cfg["qk_norm"], "z_loss": cfg["z_loss"], "peak": cfg["lr"],
                    "warmup": cfg["warmup"], "seed": cfg["seed"], "event": r["label"]["event"], "onset": onset,
                    "lr": lr_at, "broke": broke})
    return sorted(out, key=lambda x: (x["z_loss"], x["qk_norm"], x["peak"], x["seed"]))


def markdown(table: list[dict[str, object]]) -> str:
    lines = ["| qk_norm | z_loss | peak lr | warmup | seed | outcome | onset step | LR at onset (or peak) |",
             "|---|---|---|---|---|---|---|---|"]
    for x in table:
        outcome = x["event"] if x["broke"] else "trained"
        lines.append(f"| {x['qk_norm']} | {x['z_loss']:g} | {x['peak']:g} | {x['warmup']} | {x['seed']} | {outcome} | "
                     f"{x['onset'] if x['broke'] else '-'} | {x['lr']:.3f}{'' if x['broke'] else ' (peak, no break)'} |")
    lines += ["", "| qk_norm | z_loss | diverged runs | LR at onset: median [min, max] | highest peak that trained |",
              "|---|---|---|---|---|"]
    for key in sorted({(x["qk_norm"], x["z_loss"]) for x in table}):
        sel = [x for x in table if (x["qk_norm"], x["z_loss"]) == key]
        at = [x["lr"] for x in sel if x["broke"]]
        ok = [x["lr"] for x in sel if not x["broke"]]
        span = f"{np.median(at):.3f} [{min(at):.3f}, {max(at):.3f}]" if at else "-"
        lines.append(f"| {key[0]} | {key[1]:g} | {len(at)}/{len(sel)} | {span} | {max(ok):.3f} |" if ok else
                     f"| {key[0]} | {key[1]:g} | {len(at)}/{len(sel)} | {span} | - |")
    lines += ["", "Per peak LR (z_loss 0): runs that broke (diverged or NaN) out of those run, by arm. A peak near "
                  "the threshold is where the two arms differ.", "",
              "| peak lr | qk_norm off: broke | qk_norm on: broke |", "|---|---|---|"]
    for peak in sorted({x["peak"] for x in table if x["z_loss"] == 0}):
        cells = []
        for qk in (False, True):
            sel = [x for x in table if x["peak"] == peak and x["z_loss"] == 0 and x["qk_norm"] == qk]
            cells.append(f"{sum(x['broke'] for x in sel)}/{len(sel)}" if sel else "-")
        lines.append(f"| {peak:g} | {cells[0]} | {cells[1]} |")
    pairs = []  # the same peak, z_loss and seed, with and without qk_norm, both broken
    for x in table:
        if x["qk_norm"] or not x["broke"]:
            continue
        twin = next((y for y in table if y["qk_norm"] and y["broke"] and
                     (y["peak"], y["z_loss"], y["seed"]) == (x["peak"], x["z_loss"], x["seed"])), None)
        if twin is not None:
            pairs.append(twin["lr"] - x["lr"])
    if pairs:
        d = np.array(pairs)
        higher, lower = int((d > 1e-6).sum()), int((d < -1e-6).sum())
        # two-sided sign test over the pairs that differ
        n = higher + lower
        p = min(1.0, 2 * sum(math.comb(n, k) for k in range(min(higher, lower) + 1)) / 2 ** n) if n else 1.0
        lines += ["", f"Paired (same peak lr, z_loss and seed; both broke): {len(d)} pairs; the LR at the onset is "
                      f"higher with qk_norm in {higher}, lower in {lower}, equal in {len(d) - n}; difference "
                      f"median {np.median(d):+.3f} [min {d.min():+.3f}, max {d.max():+.3f}]; two-sided sign test "
                      f"p = {p:.3f}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the tables here (markdown)")
    args = ap.parse_args()
    text = markdown(rows())
    print(text)
    if args.out:
        args.out.write_text("# gpt-instability: the learning rate at which each run breaks, read off LR ramps\n\n"
                            f"Command: `python bench/gpt_lr_threshold.py --out {args.out}`; runs from "
                            "`bench/lab_runs` (see its README for the sweep commands and machine).\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
