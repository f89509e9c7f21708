"""Forecast error and interval coverage on the multi-power-law curves (25M and 100M, nine schedules).

For each run, fit on the first 10/25/50% of its logged points with its known schedule (the LR logged at
every point) and predict the loss logged at its last step. Laws: the plain power law in steps
(baseline), the LR-annealing law and the multi-power law fitted on the prefix alone, and the two
schedule-aware laws with a reference run: their schedule-response parameters fitted on one complete
run of another schedule of the same model size (cosine_24000; for that run itself, wsd_20000_24000),
only the level L0 and scale A on the prefix.

    python bench/forecast.py                 # writes bench/results/forecast.{md,json}
    python bench/forecast.py --quick         # 25M only, 25% only, fewer bootstrap replicates
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import foreshock
from foreshock.forecast import forecast, schedule_from_run

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "multipowerlaw"
RESULTS = ROOT / "bench" / "results"
SCHEDULES = ("constant_24000", "constant_72000", "cosine_24000", "cosine_72000", "wsd_20000_24000",
             "wsdld_20000_24000", "wsdcon_3", "wsdcon_9", "wsdcon_18")
FRACTIONS = (0.10, 0.25, 0.50)
MODES = (("power", False), ("annealing", False), ("multi-power", False), ("annealing", True),
         ("multi-power", True))


def _label(law: str, ref: bool) -> str:
    return f"{law} + reference" if ref else f"{law} (alone)"


def one(job: tuple[str, str, float, str, bool, int]) -> dict:
    size, sched, frac, law, ref, n_boot = job
    run = foreshock.read(DATA / f"{size}__{sched}.csv.gz")
    steps, loss = run.series("train/loss")
    last, truth = int(steps[-1]), float(loss[-1])
    reference = []
    if ref:
        other = "wsd_20000_24000" if sched == "cosine_24000" else "cosine_24000"
        r = foreshock.read(DATA / f"{size}__{other}.csv.gz")
        reference = [(r, schedule_from_run(r))]
    t0 = time.perf_counter()
    # the first `frac` of the logged points: logging starts after the 2160-step warm-up, so 10% of
    # the steps would leave two points on the 24k runs
    fit_until = int(steps[max(int(np.ceil(frac * len(steps))) - 1, 0)])
    f = forecast(run, schedule="log", metric="train/loss", fit_until=fit_until, at=last, law=law,
                 reference=reference, n_boot=n_boot, seed=0)
    return {"size": size, "schedule": sched, "fraction": frac, "law": law, "reference": ref,
            "fit_until": f.at_step, "at": last, "truth": truth, "value": f.value, "lo": f.lo, "hi": f.hi,
            "rel_error": (f.value - truth) / truth, "covered": bool(f.lo <= truth <= f.hi),
            "seconds": round(time.perf_counter() - t0, 2), "params": f.params}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for frac in sorted({r["fraction"] for r in rows}):
        for law, ref in MODES:
            sel = [r for r in rows if r["fraction"] == frac and r["law"] == law and r["reference"] == ref]
            if not sel:
                continue
            err = np.abs([r["rel_error"] for r in sel]) * 100
            out.append({"fraction": frac, "mode": _label(law, ref), "runs": len(sel),
                        "median_abs_rel_error_pct": float(np.median(err)), "worst_abs_rel_error_pct": float(err.max()),
                        "coverage_90": float(np.mean([r["covered"] for r in sel])),
                        "median_seconds": float(np.median([r["seconds"] for r in sel]))})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=100)
    ap.add_argument("--report-only", action="store_true", help="rewrite forecast.md from forecast.json")
    args = ap.parse_args(argv)
    if args.report_only:
        return report_only()
    sizes = ("25M",) if args.quick else ("25M", "100M")
    fracs = (0.25,) if args.quick else FRACTIONS
    n_boot = 30 if args.quick else args.n_boot
    jobs = [(s, sc, fr, law, ref, n_boot) for s in sizes for sc in SCHEDULES for fr in fracs for law, ref in MODES]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(one, jobs))
    summary = summarise(rows)
    command = "python bench/forecast.py" + (" --quick" if args.quick else "") + \
        (f" --n-boot {args.n_boot}" if args.n_boot != 100 and not args.quick else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    seconds = time.perf_counter() - t0
    (RESULTS / "forecast.json").write_text(json.dumps({"command": command, "seconds": round(seconds, 1),
                                                       "summary": summary, "runs": rows}, indent=1) + "\n")
    (RESULTS / "forecast.md").write_text(_markdown(command, summary, rows, seconds))
    print(_markdown(command, summary, rows, seconds))
    return 0


def _markdown(command: str, summary: list[dict], rows: list[dict], seconds: float) -> str:
    lines = ["# Forecast of the final loss: multi-power-law curves", "",
             f"Command: `{command}` (from the repository root; {seconds:.0f} s on this machine).", "",
             "Data: `../shared/data/multipowerlaw`, 25M and 100M GPT models, nine LR schedules each, training "
             "loss every 128 steps from the end of the 2160-step warm-up, LR logged at every point (the known "
             "schedule). Each run is fitted on the first 10/25/50% of its logged points and the loss logged "
             "at its last step is predicted. "
             "'reference': the schedule-response parameters come from one complete run of another schedule of "
             "the same size (cosine_24000, or wsd_20000_24000 for cosine_24000 itself); only L0 and A are "
             "fitted on the prefix. Coverage: share of runs whose logged final loss lies in the 90% interval "
             "(residual block bootstrap with refits, widened by the law's extrapolation error measured on the "
             "prefix: foreshock/forecast/backtest.py).", "",
             "| fit on | law | runs | median abs. rel. error | worst | 90% coverage | median s |",
             "|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['fraction']:.0%} | {s['mode']} | {s['runs']} | {s['median_abs_rel_error_pct']:.2f}% | "
                     f"{s['worst_abs_rel_error_pct']:.2f}% | {s['coverage_90']:.0%} | {s['median_seconds']:.1f} |")
    lines += _targets(summary)
    lines += ["", "## Per run (fit on 25%)", "", "| run | law | predicted [90% interval] | logged | error |",
              "|---|---|---|---|---|"]
    for r in rows:
        if r["fraction"] == 0.25:
            lines.append(f"| {r['size']} {r['schedule']} | {_label(r['law'], r['reference'])} | {r['value']:.4f} "
                         f"[{r['lo']:.4f}, {r['hi']:.4f}] | {r['truth']:.4f} | {100 * r['rel_error']:+.2f}% |")
    return "\n".join(lines) + "\n"


def _targets(summary: list[dict]) -> list[str]:
    """The issue's targets for a 25% prefix with a known schedule, each marked met or missed."""
    at = {s["mode"]: s for s in summary if s["fraction"] == 0.25}
    need = ("power (alone)", "annealing (alone)", "multi-power (alone)", "annealing + reference",
            "multi-power + reference")
    if not all(m in at for m in need):
        return []

    def mark(ok: bool) -> str:
        return "met" if ok else "missed"

    base = at["power (alone)"]["median_abs_rel_error_pct"]
    out = ["", "## Against the targets (fit on 25%)", ""]
    for law in ("annealing", "multi-power"):
        ref, alone = at[f"{law} + reference"], at[f"{law} (alone)"]
        out.append(f"- {law}, one reference run: median error {ref['median_abs_rel_error_pct']:.2f}% (target <= 1%: "
                   f"{mark(ref['median_abs_rel_error_pct'] <= 1.0)}); 90% coverage {ref['coverage_90']:.0%} "
                   f"(target about 90%: {mark(ref['coverage_90'] >= 0.8)})")
        out.append(f"- {law}, alone: median error {alone['median_abs_rel_error_pct']:.2f}% vs the power law's "
                   f"{base:.2f}% (target at most half: {mark(alone['median_abs_rel_error_pct'] <= base / 2)}); "
                   f"90% coverage {alone['coverage_90']:.0%} (target about 90%: {mark(alone['coverage_90'] >= 0.8)})")
    out += ["", "Caveat: on a prefix with no LR decay (constant, WSD and two-stage runs at 10-25%), the annealing "
            "law's C and the multi-power law's B, C, beta, gamma are not identified by the data: the fit keeps "
            "its starting value, and the forecast's `sources` says so. For the annealing law that start (C = the "
            "prefix's loss range) happens to lie near the C fitted on complete runs of these models, so its "
            "'alone' numbers on those runs reflect that heuristic, not a measurement; a default prior fitted "
            "on other public curves is what would make them honest."]
    return out


def report_only() -> int:
    """Rewrite forecast.md from forecast.json (after a change to the report's layout only)."""
    data = json.loads((RESULTS / "forecast.json").read_text())
    seconds = float(data.get("seconds", 0.0))
    (RESULTS / "forecast.md").write_text(_markdown(data["command"], data["summary"], data["runs"], seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
