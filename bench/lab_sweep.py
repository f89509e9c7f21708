"""Run a grid of lab workloads and keep each run as a labelled long CSV, like the shared real logs.

Every grid point is one :func:`foreshock.lab.run` (watched by the default detectors, stored, and
labelled in hindsight by :mod:`foreshock.lab.labels`), in its own process with one torch thread;
``--jobs`` of them run side by side. Each finished run is written to
``<out>/<workload>/<run>.csv.gz`` (:func:`foreshock.logs.csv_long.write_csv`, without wall times,
so a seeded run gives the same file) and gets a row in ``<out>/LABELS.csv``, whose columns are
those of the shared ``LABELS.csv`` (``source`` is ``lab-<workload>``; ``steps`` the last step;
``notes`` the label rule with its numbers, the knobs and the first warning). ``<out>/runs.json``
keeps each run's knobs, label, first warning and CPU time (and the commands), and ``<out>/README.md`` is rebuilt
from it with the command line. Rows of earlier sweeps into the same folder are kept (a run of the
same name is replaced), so a sweep can be run in parts.

A grid is ``WORKLOAD:KNOB=V1,V2;KNOB=V...`` (every combination; values typed like the knob's
default)::

    python bench/lab_sweep.py --jobs 2 \\
        --grid "gpt-instability:lr=3e-3,3e-2,1e-1;qk_norm=false,true;seed=0,1" \\
        --grid "grokking:seed=0,1"

Without ``--grid`` the default grids below run. Workloads that are not installed (no torch, or a
module not written yet) are skipped with a note.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import dataclasses
import itertools
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "lab_runs"
COLUMNS = ["source", "run_file", "steps", "has_val", "schedule_known", "event", "event_step", "notes"]

#: the grids run without --grid: the gpt learning rates span the cpu preset's grid in
#: bench/results/gpt_instability_cpu.md (0.01 trains, 0.3 diverges, 0.2 spikes), each with and
#: without qk_norm; edge-of-stability at its preset lr and at a quarter of it (a 4x higher edge)
DEFAULT_GRIDS = (
    "gpt-instability:lr=0.01,0.03,0.1,0.2,0.3;qk_norm=false,true;seed=0,1",
    "grokking:seed=0,1,2",
    "edge-of-stability:lr=0.2,0.05;seed=0,1",
)


@dataclasses.dataclass(frozen=True)
class Job:
    workload: str
    overrides: dict[str, Any]
    preset: str
    store: str

    @property
    def name(self) -> str:
        knobs = "_".join(f"{k}-{_text(v)}" for k, v in self.overrides.items())
        return f"{self.workload}_{knobs}" if knobs else self.workload


def parse_grid(spec: str) -> tuple[str, list[dict[str, Any]]]:
    """``"w:a=1,2;b=x"`` -> ``("w", [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}])``, typed by the knobs' defaults."""
    from foreshock import lab
    from foreshock.cli import parse_knobs

    workload, _, body = spec.partition(":")
    defaults = lab.get(workload.strip()).defaults
    axes: list[list[str]] = []
    for part in filter(None, (p.strip() for p in body.split(";"))):
        key, sep, values = part.partition("=")
        if not sep:
            raise ValueError(f"grid {spec!r}: expected KNOB=V1,V2 in {part!r}")
        axes.append([f"{key.strip()}={v.strip()}" for v in values.split(",")])
    return workload.strip(), [parse_knobs(list(combo), defaults) for combo in itertools.product(*axes)]


def run_one(job: Job, out: str) -> dict[str, Any]:
    """Train one grid point (in a worker process), write its CSV; returns its row for runs.json."""
    from foreshock import lab
    from foreshock.logs.csv_long import write_csv
    from foreshock.run import Series
    from foreshock.store import open_store

    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        result = lab.run(job.workload, job.preset, job.overrides, store=job.store, run_name=job.name,
                         console=False, threads=1)
    except Exception as e:  # a crashed run has no label: reported, not written
        return {"run": job.name, "workload": job.workload, "overrides": job.overrides,
                "error": f"{type(e).__name__}: {e}"}
    with open_store(job.store) as store:
        run = store.load_run(result.run_id)
    for name, s in run.metrics.items():
        run.metrics[name] = Series(s.steps, s.values)  # no wall times: a seeded run writes the same file
    path = Path(out) / job.workload / f"{job.name}.csv.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(run, path)
    warnings = sorted((e for e in result.events if e.severity in ("warning", "critical")), key=lambda e: e.step)
    first = warnings[0] if warnings else None
    return {
        "run": job.name, "workload": job.workload, "overrides": job.overrides, "config": result.config,
        "steps": result.steps, "has_val": int("val/loss" in run or "val/acc" in run),
        "schedule_known": "yes:lr" if "opt/lr" in run else "no",
        "label": result.label.to_dict(),
        "first_warning": None if first is None else {"step": first.step, "kind": first.kind,
                                                     "detector": first.detector, "severity": first.severity},
        "events": len(result.events), "cpu_s": round(time.process_time() - cpu0, 1),
        "wall_s": round(time.perf_counter() - wall0, 1),
    }


def label_row(r: dict[str, Any]) -> dict[str, Any]:
    knobs = " ".join(f"{k}={_text(v)}" for k, v in r["overrides"].items())
    fw = r["first_warning"]
    warned = "no warning" if fw is None else f"first warning {fw['kind']}@{fw['step']} ({fw['detector']})"
    return {"source": f"lab-{r['workload']}", "run_file": f"{r['run']}.csv", "steps": r["steps"],
            "has_val": r["has_val"], "schedule_known": r["schedule_known"], "event": r["label"]["event"],
            "event_step": "" if r["label"]["onset_step"] is None else r["label"]["onset_step"],
            "notes": f"{r['label']['rule']} | knobs: {knobs} | {warned}"}


def write_outputs(out: Path, new: list[dict[str, Any]], command: str) -> list[dict[str, Any]]:
    """Merge ``new`` into ``runs.json`` (same run name: replaced) and rewrite LABELS.csv and README.md."""
    index = out / "runs.json"
    old = json.loads(index.read_text()) if index.exists() else {"commands": [], "runs": []}
    rows = {r["run"]: r for r in old["runs"]}
    rows.update((r["run"], r) for r in new if "error" not in r)
    ordered = sorted(rows.values(), key=lambda r: (r["workload"], r["run"]))
    commands = [c for c in old["commands"] if c != command] + [command]
    index.write_text(json.dumps({"commands": commands, "runs": ordered}, indent=1) + "\n")
    with open(out / "LABELS.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(label_row(r) for r in ordered)
    (out / "README.md").write_text(readme(ordered, commands))
    return ordered


def readme(rows: list[dict[str, Any]], commands: list[str]) -> str:
    lines = [
        "# Lab runs",
        "",
        "Runs of foreshock's lab workloads (`foreshock/lab/`), each trained on a CPU with the default detectors",
        "watching, stored, labelled in hindsight (`foreshock/lab/labels.py`) and written as a long CSV",
        "(`<workload>/<run>.csv.gz`, the format of the shared real logs). `LABELS.csv` has the shared",
        "columns (`source` is `lab-<workload>`); its notes give the rule's numbers, the knobs and the",
        "first warning that fired live. `runs.json` has the same and the CPU seconds of each run.",
        "",
        "Made by (from the repository root, in this order; each part adds its runs to the folder):",
        "",
        "```bash",
        *commands,
        "```",
        "",
        f"{len(rows)} runs, {sum(r['cpu_s'] for r in rows) / 60:.1f} CPU minutes in all.",
        "",
        "| run | label | onset | last step | first warning | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        fw = r["first_warning"]
        lab = r["label"]
        onset = "" if lab["onset_step"] is None else lab["onset_step"]
        warned = "" if fw is None else f"{fw['kind']}@{fw['step']}"
        lines.append(f"| {r['run']} | {lab['event']} | {onset} | {r['steps']} | {warned} | {r['cpu_s']} |")
    gpt = [r for r in rows if r["workload"] == "gpt-instability"]
    if gpt:
        lines += ["", "## gpt-instability: which learning rates break", "",
                  "| lr | qk_norm | runs | diverged or NaN | spiked |", "|---|---|---|---|---|"]
        cells: dict[tuple[float, bool], list[str]] = {}
        for r in gpt:
            cells.setdefault((r["config"]["lr"], r["config"]["qk_norm"]), []).append(r["label"]["event"])
        for (lr, qk), events in sorted(cells.items()):
            broke = sum(e in ("divergence", "nan") for e in events)
            lines.append(f"| {lr:g} | {_text(qk)} | {len(events)} | {broke} | {events.count('spike')} |")
    return "\n".join(lines) + "\n"


def _text(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", action="append", metavar="SPEC",
                    help="WORKLOAD:KNOB=V1,V2;KNOB=... (repeatable; default: the DEFAULT_GRIDS of this script)")
    ap.add_argument("--preset", default="cpu", help="workload preset (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time, one torch thread each (default: 1)")
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default: bench/lab_runs)")
    ap.add_argument("--store", type=Path, help="keep the run store here (default: a temporary file, deleted)")
    ap.add_argument("--skip-existing", action="store_true", help="skip runs already in <out>/runs.json")
    ap.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the workers before torch loads there

    from foreshock import lab

    tmp = tempfile.TemporaryDirectory(prefix="foreshock-lab-sweep-")
    store = str(args.store or Path(tmp.name) / "lab.db")
    jobs: list[Job] = []
    for spec in args.grid or DEFAULT_GRIDS:
        name = spec.partition(":")[0].strip()
        if name not in lab.names():
            print(f"skipping {name}: not installed here (workloads: {', '.join(lab.names())})", file=sys.stderr)
            continue
        workload, points = parse_grid(spec)
        jobs += [Job(workload, p, args.preset, store) for p in points]
    args.out.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.skip_existing and (args.out / "runs.json").exists():
        done = {r["run"] for r in json.loads((args.out / "runs.json").read_text())["runs"]}
    jobs = [j for j in jobs if j.name not in done]
    for j in jobs:
        print(f"{'would run' if args.dry_run else 'run'} {j.name}", file=sys.stderr)
    if args.dry_run or not jobs:
        return 0
    results: list[dict[str, Any]] = []
    ctx = multiprocessing.get_context("spawn")  # fresh workers: no torch state forked from this process
    with cf.ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx) as pool:
        futures = {pool.submit(run_one, j, str(args.out)): j for j in jobs}
        for fut in cf.as_completed(futures):
            r = fut.result()
            results.append(r)
            if "error" in r:
                print(f"FAILED {r['run']}: {r['error']}", file=sys.stderr)
            else:
                fw = r["first_warning"]
                print(f"{r['run']}: {r['label']['event']}@{r['label']['onset_step']}, first warning "
                      f"{None if fw is None else fw['step']}, {r['cpu_s']} CPU s", file=sys.stderr)
    command = "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/lab_sweep.py " + " ".join(
        f"'{a}'" if any(c in a for c in " ;") else a for a in (argv if argv is not None else sys.argv[1:]))
    write_outputs(args.out, results, command)
    tmp.cleanup()
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
