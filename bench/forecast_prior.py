"""Fit the default forecast prior on public loss curves and write ``foreshock/data/forecast_prior.json``.

Curves: every run in ``../shared/data`` whose LR schedule is known at every step (``opt/lr`` or an LR
multiplier) and that decays its LR (a run at constant LR says nothing of the decay response), from
the multi-power-law set (25M and 100M GPTs, nine schedules) and the modded-nanogpt speedrun records
(GPT-2 124M and 350M classes and a fixed-architecture optimizer benchmark, LR multipliers). Each run's
loss (``train/loss`` when it has 50+ points, else ``val/loss``) is fitted with the annealing and the
multi-power law over its whole length (less the first tenth, the transient ``forecast`` also leaves
out), the parameters are put in units free of the LR's scale and of the decay's length
(:func:`foreshock.forecast.prior.normalise`; the annealing law's ``C`` as the loss an anneal from the
peak to zero takes off by the run's last step, ``C * peak * anneal_time``), grouped by model family,
and summarised by :func:`foreshock.forecast.prior.prior_from_fits`.

    python bench/forecast_prior.py                       # writes foreshock/data/forecast_prior.json
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
from foreshock.errors import ForeshockError
from foreshock.forecast import schedule_from_run
from foreshock.forecast.fit import fit_law
from foreshock.forecast.laws import LAWS, design
from foreshock.forecast.prior import Prior, anneal_time, normalise, prior_from_fits

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
OUT = ROOT / "foreshock" / "data" / "forecast_prior.json"
FITS = ROOT / "bench" / "results" / "forecast_prior_fits.json"
SAME_MODEL = ("multipowerlaw/25M", "multipowerlaw/100M")  # one model, many schedules: the transfer spread
MIN_POINTS = 8
SHIPPED = ("annealing",)  # laws whose response parameters are consistent enough across families


def family(path: Path) -> str:
    """``multipowerlaw/25M``, ``modded-nanogpt/t1_short``, ...: runs of one model family and size."""
    return f"{path.parent.name}/{path.name.split('__')[0]}"


def candidates() -> list[Path]:
    return sorted((DATA / "multipowerlaw").glob("*.csv.gz")) + sorted((DATA / "modded-nanogpt").glob("*.csv.gz"))


def fit_one(path: Path) -> dict | None:
    """The normalised parameters of both laws on one complete run (None: no usable schedule or decay)."""
    run = foreshock.read(path)
    try:
        sched = schedule_from_run(run)
    except ForeshockError:
        return None
    metric = "train/loss" if "train/loss" in run and len(run["train/loss"]) >= 50 else "val/loss"
    if metric not in run:
        return None
    steps, y = run.series(metric)
    keep = np.isfinite(y) & (steps >= 1)
    keep &= steps >= int(steps[keep][-1]) // 10 if keep.any() else keep  # the transient, as forecast() skips it
    steps, y = steps[keep], y[keep]
    if len(steps) < MIN_POINTS:
        return None
    if len(steps) > 400:
        idx = np.unique(np.linspace(0, len(steps) - 1, 400).round().astype(np.int64))
        steps, y = steps[idx], y[idx]
    lr = sched.table(int(steps[-1]))
    d = design(steps, lr)
    if d.dk is None or not np.any(d.dk > 0):
        return None  # no decay: the response parameters are not identified
    peak, anneal = float(np.max(lr)), anneal_time(lr, int(steps[-1]))
    out = {"run": path.name, "family": family(path), "metric": metric, "points": len(steps), "peak": peak,
           "anneal_time": anneal}
    for name in ("annealing", "multi-power"):
        fit = fit_law(LAWS[name], d, y)
        rmse = float(np.sqrt(np.mean(fit.residuals ** 2)))
        out[name] = {"params": fit.params, "normalised": normalise(name, fit.params, peak, anneal), "rmse": rmse}
    return out


def collect(workers: int = 2) -> list[dict]:
    with ProcessPoolExecutor(workers) as pool:
        return [r for r in pool.map(fit_one, candidates()) if r is not None]


def build(fits: list[dict], *, exclude_family: str | None = None) -> dict:
    """The prior file's content from per-run fits (optionally leaving one family out, for honest tests)."""
    priors = []
    kept = [f for f in fits if f["family"] != exclude_family]
    families = sorted({f["family"] for f in kept})
    source = f"public curves: {len(kept)} runs of {len(families)} model families ({', '.join(families)})"
    spread = {}
    for law in ("annealing", "multi-power"):
        groups: dict[str, list[dict]] = {}
        for f in kept:
            groups.setdefault(f["family"], []).append(f[law]["normalised"])
        prior = prior_from_fits(law, groups, source=source, same_model=SAME_MODEL)
        # a reference run carries C over as C * peak (foreshock.forecast.prior): its spread in those units
        same = {fam: [normalise(law, f[law]["params"], f["peak"]) for f in kept if f["family"] == fam]
                for fam in SAME_MODEL}
        transfer = prior_from_fits(law, same, source=source, same_model=SAME_MODEL).transfer_sd
        prior = Prior(law=law, params=prior.params, source=source, transfer_sd=transfer)
        if law in SHIPPED:
            priors.append(prior.to_dict())
        else:
            spread[law] = {k: round(v.sd, 2) for k, v in prior.params.items()}
    return {"command": "python bench/forecast_prior.py", "priors": priors,
            "not_shipped": {"multi-power": "its response parameters trade off against each other: across these "
                            f"families their log-sd is {spread.get('multi-power')}, too wide to be a prior; give "
                            "reference runs instead"}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    fits = collect(args.workers)
    FITS.parent.mkdir(parents=True, exist_ok=True)
    FITS.write_text(json.dumps({"command": "python bench/forecast_prior.py", "runs": fits}, indent=1) + "\n")
    content = build(fits)
    content["seconds"] = round(time.perf_counter() - t0, 1)
    OUT.write_text(json.dumps(content, indent=1) + "\n")
    print(content["not_shipped"]["multi-power"])
    for p in content["priors"]:
        params = ", ".join(f"{k}: median {v['median']:.4g} log-sd {v['sd']:.2f}" for k, v in p["params"].items())
        print(f"{p['law']}: {params}; transfer sd {p['transfer_sd']}")
    print(f"{len(fits)} runs, {content['seconds']} s -> {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
