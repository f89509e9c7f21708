"""What one live forecast refresh costs: the fit ``watch(schedule=...)`` runs on its worker thread.

On the first 2,000 and 20,000 steps of a real run (modded-nanogpt ``ScaleUp1B``, 20,344 steps, LR
multiplier logged at every step, from ``../shared/data``), the forecast is fitted three times with the
live settings (``foreshock.forecast.live``: ``LIVE_N_BOOT`` bootstrap refits, ``LIVE_MAX_POINTS``
points) and with those of ``foreshock forecast`` (100, 400); the median wall time is reported.

    OMP_NUM_THREADS=1 python bench/forecast_live_cost.py --out bench/results/forecast_live_cost.md
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import foreshock
from foreshock.forecast.forecast import forecast
from foreshock.forecast.live import LIVE_MAX_POINTS, LIVE_N_BOOT
from foreshock.forecast.schedules import schedule_from_run
from foreshock.run import Run, Series

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".." / "shared" / "data" / "modded-nanogpt" / "t1_short__2024-10-20_ScaleUp1B__87bd51fd-6203.csv.gz"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the table here (markdown)")
    args = ap.parse_args()
    full = foreshock.read(RUN)
    sched = schedule_from_run(full)
    rows = ["| observed steps | n_boot | max_points | median s [min, max] of 3 | forecast at the last step |",
            "|---|---|---|---|---|"]
    for n in (2000, 20000):
        run = Run("prefix", {m: Series(s.steps[s.steps < n], s.values[s.steps < n]) for m, s in full.metrics.items()})
        for n_boot, max_points in ((LIVE_N_BOOT, LIVE_MAX_POINTS), (100, 400)):
            times = []
            for _ in range(3):
                t = time.perf_counter()
                f = forecast(run, schedule=sched, n_boot=n_boot, max_points=max_points)
                times.append(time.perf_counter() - t)
            times.sort()
            rows.append(f"| {n:,} | {n_boot} | {max_points} | {times[1]:.2f} [{times[0]:.2f}, {times[2]:.2f}] | "
                        f"{f.value:.4f} [{f.lo:.4f}, {f.hi:.4f}] at {f.target_step} |")
            print(rows[-1], flush=True)
    text = "\n".join(rows) + "\n"
    if args.out:
        args.out.write_text(
            "# One live forecast refresh: its cost\n\n"
            f"Command: `OMP_NUM_THREADS=1 python bench/forecast_live_cost.py --out {args.out}`. Machine: "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs (load "
            f"average {os.getloadavg()[0]:.1f}), Python {platform.python_version()}, foreshock "
            f"{foreshock.__version__}. Run: `{RUN.name}` (modded-nanogpt, LR multiplier logged).\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
