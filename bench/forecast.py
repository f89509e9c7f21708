"""Forecast error and interval coverage on public loss curves with known LR schedules.

Curves: the multi-power-law set (25M and 100M GPTs, nine schedules each, the LR logged at every
point) and the modded-nanogpt speedrun records whose per-step training loss and LR multiplier are
logged (GPT-2 124M class; LR: warm-up, constant, linear cool-down), and the Hugging Face Trainer
fine-tunes of ``hf-trainer-state`` (t5-small, mT5-small, TinyLlama LoRA; LR logged, linear decay from
the start), each its own model family and with no other run of its model, so no reference mode.
For each run, fit on the first 10/25/50% of its logged points with its known schedule and predict the
loss at its last step.

Modes: the plain power law in steps (the baseline users fit by hand); the annealing law on the
prefix alone, without a prior and with the default prior (:mod:`foreshock.forecast.prior`) fitted
with the run's own model family LEFT OUT (so a run never informs its own prior); the multi-power
law alone; and both schedule-aware laws with one reference run: a complete run of another schedule
of the same model (multi-power-law set: cosine_24000, or wsd_20000_24000 for cosine_24000 itself;
modded-nanogpt: the previous record of the same track).

The truth: the loss logged at the last step (multi-power-law curves are logged every 128 steps);
for modded-nanogpt, whose training loss is one batch per step (noise about 0.1), the mean of the
last 50 logged steps; for the fine-tunes (each point already a mean over the logging interval, noise
up to 0.05), the mean of the last 5.

    python bench/forecast_prior.py           # first: the per-run fits the left-out priors are built from
    python bench/forecast.py                 # writes bench/results/forecast.{md,json}
    python bench/forecast.py --quick         # 25M and 6 modded runs, 25% only, fewer bootstrap replicates
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
from foreshock.forecast.prior import Prior

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forecast_prior  # noqa: E402  (the per-run fits the left-out priors are built from)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data"
DATA = SHARED / "multipowerlaw"
MODDED = SHARED / "modded-nanogpt"
HF = SHARED / "hf-trainer-state"
RESULTS = ROOT / "bench" / "results"
SCHEDULES = ("constant_24000", "constant_72000", "cosine_24000", "cosine_72000", "wsd_20000_24000",
             "wsdld_20000_24000", "wsdcon_3", "wsdcon_9", "wsdcon_18")
FRACTIONS = (0.10, 0.25, 0.50)
# (law, how its schedule response is known)
MODES = (("power", "alone"), ("annealing", "alone"), ("annealing", "prior"), ("multi-power", "alone"),
         ("annealing", "reference"), ("multi-power", "reference"))
TAIL = {"modded-nanogpt": 50, "hf-trainer-state": 5}  # truth: mean of the last TAIL logged training losses
FOLDERS = {"multipowerlaw": DATA, "modded-nanogpt": MODDED, "hf-trainer-state": HF}
DATASETS = ("multipowerlaw", "modded-nanogpt", "hf-trainer-state", "all")


def _label(law: str, how: str) -> str:
    return {"alone": f"{law} (alone)", "prior": f"{law} + default prior",
            "reference": f"{law} + reference"}[how]


def _runs_with(folder: Path, pattern: str, min_points: int, lr_metric: str) -> list[str]:
    """The runs ``folder/pattern`` with ``min_points``+ training-loss points and ``lr_metric`` logged, by name."""
    out = []
    for path in sorted(folder.glob(pattern)):
        run = foreshock.read(path)
        if "train/loss" in run and len(run["train/loss"]) >= min_points and lr_metric in run.names:
            out.append(path.name.removesuffix(".csv.gz"))
    return out


def modded_runs() -> list[str]:
    """Track-1 records with per-step training loss and an LR multiplier, in date order."""
    return _runs_with(MODDED, "t1_short__*.csv.gz", 1000, "opt/lr_mult")


def hf_runs() -> list[str]:
    """Fine-tunes with 100+ training-loss points and a logged LR."""
    return _runs_with(HF, "*.csv.gz", 100, "opt/lr")


def _reference_name(dataset: str, name: str, runs: list[str]) -> str:
    if dataset == "multipowerlaw":
        size, sched = name.split("__")
        other = "wsd_20000_24000" if sched == "cosine_24000" else "cosine_24000"
        return f"{size}__{other}"
    i = runs.index(name)
    return runs[i - 1] if i > 0 else runs[1]  # the previous record of the track (the first takes the second)


_PRIORS: dict[str, Prior] = {}


def left_out_prior(family: str) -> Prior:
    """The annealing law's default prior fitted without ``family``'s runs."""
    if family not in _PRIORS:
        fits = json.loads(forecast_prior.FITS.read_text())["runs"]
        content = forecast_prior.build(fits, exclude_family=family)
        _PRIORS[family] = Prior.from_dict(next(p for p in content["priors"] if p["law"] == "annealing"))
    return _PRIORS[family]


def one(job: tuple[str, str, float, str, str, int, list[str]]) -> dict:
    dataset, name, frac, law, how, n_boot, track = job
    folder = FOLDERS[dataset]
    path = folder / f"{name}.csv.gz"
    run = foreshock.read(path)
    steps, loss = run.series("train/loss")
    keep = np.isfinite(loss)
    steps, loss = steps[keep], loss[keep]
    last = int(steps[-1])
    truth = float(np.mean(loss[-TAIL.get(dataset, 1):]))
    reference: list = []
    prior: Prior | str | None = None
    if how == "reference":
        r = foreshock.read(folder / f"{_reference_name(dataset, name, track)}.csv.gz")
        reference = [(r, schedule_from_run(r))]
    elif how == "prior":
        prior = left_out_prior(forecast_prior.family(path))
    t0 = time.perf_counter()
    # the first `frac` of the logged points: multi-power-law logging starts after the 2160-step
    # warm-up, so 10% of the steps would leave two points on the 24k runs
    fit_until = int(steps[max(int(np.ceil(frac * len(steps))) - 1, 0)])
    f = forecast(run, schedule="log", metric="train/loss", fit_until=fit_until, at=last, law=law,
                 reference=reference, prior=prior, n_boot=n_boot, seed=0)
    return {"dataset": dataset, "run": name, "fraction": frac, "law": law, "mode": _label(law, how),
            "fit_until": f.at_step, "at": last, "truth": truth, "value": f.value, "lo": f.lo, "hi": f.hi,
            "rel_error": (f.value - truth) / truth, "covered": bool(f.lo <= truth <= f.hi),
            "seconds": round(time.perf_counter() - t0, 2), "params": f.params, "sources": f.sources}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for dataset in DATASETS:
        for frac in sorted({r["fraction"] for r in rows}):
            for law, how in MODES:
                mode = _label(law, how)
                sel = [r for r in rows if r["fraction"] == frac and r["mode"] == mode
                       and dataset in ("all", r["dataset"])]
                if not sel:
                    continue
                err = np.abs([r["rel_error"] for r in sel]) * 100
                out.append({"dataset": dataset, "fraction": frac, "mode": mode, "runs": len(sel),
                            "median_abs_rel_error_pct": float(np.median(err)),
                            "worst_abs_rel_error_pct": float(err.max()),
                            "coverage_90": float(np.mean([r["covered"] for r in sel])),
                            "median_seconds": float(np.median([r["seconds"] for r in sel]))})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=100)
    ap.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS), metavar="F",
                    help="prefix fractions to fit on (default: 0.1 0.25 0.5)")
    ap.add_argument("--report-only", action="store_true", help="rewrite forecast.md from forecast.json")
    args = ap.parse_args(argv)
    if args.report_only:
        return report_only()
    if not forecast_prior.FITS.exists():
        forecast_prior.main([])
    sizes = ("25M",) if args.quick else ("25M", "100M")
    fracs = (0.25,) if args.quick else tuple(args.fractions)
    n_boot = 30 if args.quick else args.n_boot
    track = modded_runs()
    modded = track[::3] if args.quick else track
    names = [("multipowerlaw", f"{s}__{sc}") for s in sizes for sc in SCHEDULES] + \
        [("modded-nanogpt", m) for m in modded] + [("hf-trainer-state", h) for h in hf_runs()]
    jobs = [(ds, nm, fr, law, how, n_boot, track) for ds, nm in names for fr in fracs for law, how in MODES
            if how != "reference" or ds != "hf-trainer-state"]  # a fine-tune has no other run of its model
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(one, jobs))
    summary = summarise(rows)
    command = "python bench/forecast.py" + (" --quick" if args.quick else "") + \
        (f" --n-boot {args.n_boot}" if args.n_boot != 100 and not args.quick else "") + \
        (f" --fractions {' '.join(map(str, fracs))}" if fracs != FRACTIONS and not args.quick else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    seconds = time.perf_counter() - t0
    (RESULTS / "forecast.json").write_text(json.dumps({"command": command, "seconds": round(seconds, 1),
                                                       "summary": summary, "runs": rows}, indent=1) + "\n")
    (RESULTS / "forecast.md").write_text(_markdown(command, summary, rows, seconds))
    print(_markdown(command, summary, rows, seconds))
    return 0


def _markdown(command: str, summary: list[dict], rows: list[dict], seconds: float) -> str:
    lines = ["# Forecast of the final loss on public curves with known LR schedules", "",
             f"Command: `python bench/forecast_prior.py && {command}` (from the repository root; {seconds:.0f} s "
             "on this machine, 2 workers).", "",
             "Data: `../shared/data/multipowerlaw` (25M and 100M GPTs, nine LR schedules each, training loss "
             "every 128 steps from the end of the 2160-step warm-up, LR logged at every point), the "
             "`../shared/data/modded-nanogpt` track-1 records with per-step training loss and LR multiplier "
             "(GPT-2 124M class), and the `../shared/data/hf-trainer-state` fine-tunes (t5-small, mT5-small, "
             "TinyLlama LoRA; LR logged; each its own family, no reference run). Each run is fitted on the "
             "first 10/25/50% of its logged points and its loss at the last step is predicted (modded-nanogpt: "
             "against the mean of the last 50 steps, the per-step loss being one batch; fine-tunes: the mean of "
             "the last 5 logged points). 'default prior': the shipped prior of the annealing law "
             "(`bench/forecast_prior.py`; its C as the loss an anneal from the peak to zero takes off by the "
             "target, C * peak * anneal time), re-fitted here WITHOUT the run's own model family. 'reference': one "
             "complete run of another schedule of the same model (multi-power-law: cosine_24000, or "
             "wsd_20000_24000 for cosine_24000 itself; modded-nanogpt: the previous record); its response "
             "parameters and exponent become the prior, L0 and A are fitted on the prefix. Coverage: share of "
             "runs whose truth lies in the 90% interval (residual block bootstrap with refits and prior draws, "
             "widened by the law's extrapolation error measured on the prefix).", ""]
    for dataset in DATASETS:
        part = [s for s in summary if s.get("dataset") == dataset]
        if not part:
            continue
        lines += [f"## {dataset}", "",
                  "| fit on | law | runs | median abs. rel. error | worst | 90% coverage | median s |",
                  "|---|---|---|---|---|---|---|"]
        for s in part:
            lines.append(f"| {s['fraction']:.0%} | {s['mode']} | {s['runs']} | {s['median_abs_rel_error_pct']:.2f}% | "
                         f"{s['worst_abs_rel_error_pct']:.2f}% | {s['coverage_90']:.0%} | {s['median_seconds']:.1f} |")
        lines.append("")
    lines += _targets(summary)
    lines += ["", "## Per run (fit on 25%)", "", "| run | law | predicted [90% interval] | truth | error |",
              "|---|---|---|---|---|"]
    for r in rows:
        if r["fraction"] == 0.25:
            lines.append(f"| {r['run']} | {r['mode']} | {r['value']:.4f} [{r['lo']:.4f}, {r['hi']:.4f}] | "
                         f"{r['truth']:.4f} | {100 * r['rel_error']:+.2f}% |")
    return "\n".join(lines) + "\n"


def _targets(summary: list[dict]) -> list[str]:
    """The targets for a 25% prefix with a known schedule, over all curves, each marked met or missed."""
    at = {s["mode"]: s for s in summary if s["fraction"] == 0.25 and s.get("dataset") == "all"}
    need = ("power (alone)", "annealing + default prior", "annealing + reference", "multi-power + reference")
    if not all(m in at for m in need):
        return []

    def mark(ok: bool) -> str:
        return "met" if ok else "missed"

    base = at["power (alone)"]["median_abs_rel_error_pct"]
    out = ["## Against the targets (fit on 25%, all curves)", ""]
    for mode in ("annealing + reference", "multi-power + reference"):
        ref = at[mode]
        out.append(f"- {mode}: median error {ref['median_abs_rel_error_pct']:.2f}% (target <= 1%: "
                   f"{mark(ref['median_abs_rel_error_pct'] <= 1.0)}); 90% coverage {ref['coverage_90']:.0%} "
                   f"(target about 90%: {mark(ref['coverage_90'] >= 0.8)})")
    alone = at["annealing + default prior"]
    out.append(f"- lone run, annealing + default prior (own family left out): median error "
               f"{alone['median_abs_rel_error_pct']:.2f}% vs the power law's {base:.2f}% (target at most half: "
               f"{mark(alone['median_abs_rel_error_pct'] <= base / 2)}); 90% coverage {alone['coverage_90']:.0%} "
               f"(target about 90%: {mark(alone['coverage_90'] >= 0.8)})")
    return out


def report_only() -> int:
    """Rewrite forecast.md from forecast.json (after a change to the report's layout only)."""
    data = json.loads((RESULTS / "forecast.json").read_text())
    seconds = float(data.get("seconds", 0.0))
    (RESULTS / "forecast.md").write_text(_markdown(data["command"], data["summary"], data["runs"], seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
