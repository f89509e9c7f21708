"""Is there a setting of the critical-slowing-down detector that warns early and stays quiet?

:class:`foreshock.detect.EarlyWarningDetector` fires when the variance of a metric's fluctuations
around its trend has been rising (Kendall tau over ``history`` evaluations, at least ``threshold``)
and has grown ``min_ratio`` times. Its defaults emit ``info`` events only. This script replays it,
over a grid of its parameters, on every labelled run of ``bench/truth.py`` (the shared real logs
and the lab runs) and prints, per setting and data set: spike/divergence/nan runs caught at or
before their labelled step, the median lead of those, and the runs labelled ``none`` that got an
event. A setting that earns ``warning`` severity needs recall and lead on the lab's divergences
(issue targets: 90%, 100 steps) with few events on healthy runs of both sets (10% lab, 5% shared).

    OMP_NUM_THREADS=1 python bench/early_warning_grid.py --out bench/results/early_warning_grid.md
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import truth  # noqa: E402

from foreshock.detect import EarlyWarningDetector, replay  # noqa: E402

BREAKS = ("spike", "divergence", "nan")
GRID = {"metrics": (("train/loss",), ("train/loss", "opt/grad_norm")), "window": (50, 100),
        "history": (5, 10, 20), "threshold": (0.6, 0.8), "min_ratio": (1.5, 3.0), "min_points": (100, 300)}


def score(data, **params) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for ds, event, step, run in data:
        fired = min((e.step for e in replay(run, [EarlyWarningDetector(stride=5, **params)])), default=None)
        r = out.setdefault(ds, {"pos": 0, "caught": 0, "leads": [], "none": 0, "fa": 0})
        if event in BREAKS:
            r["pos"] += 1
            if fired is not None and step is not None and fired <= step:
                r["caught"] += 1
                r["leads"].append(step - fired)
        elif event == "none":
            r["none"] += 1
            r["fa"] += fired is not None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the table here as markdown")
    args = ap.parse_args()
    t0 = time.perf_counter()
    labelled, runs, _ = truth.read_sets({"shared": truth.DATA, "lab": truth.LAB})
    data = [(lab.dataset, lab.event, lab.event_step, runs[lab.name]) for lab in labelled]
    rows = ["| metrics | window | history | threshold | min_ratio | min_points | lab: caught / lead / FA | "
            "shared: caught / lead / FA |", "|---|---|---|---|---|---|---|---|"]
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values, strict=True))
        res = score(data, **params)
        cells = []
        for ds in ("lab", "shared"):
            r = res.get(ds, {"pos": 0, "caught": 0, "leads": [], "none": 0, "fa": 0})
            lead = f"{np.median(r['leads']):.0f}" if r["leads"] else "-"
            cells.append(f"{r['caught']}/{r['pos']} / {lead} / {r['fa']}/{r['none']}")
        shown = [" + ".join(params["metrics"])] + [str(params[k]) for k in list(GRID)[1:]]
        rows.append("| " + " | ".join(shown + cells) + " |")
        print(rows[-1], flush=True)
    text = "\n".join(rows) + "\n"
    if args.out:
        args.out.write_text(f"Command: `OMP_NUM_THREADS=1 python bench/early_warning_grid.py --out {args.out}` "
                            f"({time.perf_counter() - t0:.0f} s). Cells: runs caught at or before the label "
                            f"/ median lead in steps / runs labelled none with an event.\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
