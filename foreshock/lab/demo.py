"""``foreshock demo``: train a small GPT twice on the CPU, watch both runs live, report which one broke.

The two runs are the ``gpt-instability`` workload's cpu preset (:mod:`foreshock.lab.gpt`) at
:data:`~foreshock.lab.gpt.CPU_STABLE_LR` and at :data:`~foreshock.lab.gpt.CPU_UNSTABLE_LR`, where
the loss diverges. They train side by side in two processes of one thread each, each watched by
:func:`foreshock.watch` (warnings print as they fire, ``flush_every`` :data:`FLUSH_EVERY`), into
one run store. Then the stored runs are replayed through the detectors for the HTML report (the
same events ``foreshock analyze --html`` would show) and one verdict line per run is printed.

When did the loss turn up? That is the hindsight label of :func:`foreshock.lab.labels.loss_label`:
for a divergence, the first step from which every loss to the end of the run is at least 1.5 times
the best loss before it; for a NaN, the onset of the divergence that preceded the NaN when there
was one, else the first NaN step. The lead of the first warning is that step minus the step the
warning was about (``event.step``); the monitor saw it ``flush_latency_steps`` later (its evidence),
so the lead a user had in hand is the lead minus that latency, both printed.
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import multiprocessing
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from foreshock.events import Event, severity_rank

__all__ = ["FLUSH_EVERY", "run_demo", "verdict"]

FLUSH_EVERY = 10  # steps per flush: a CPU flush is cheap, and a warning is printed at most 9 steps late


def _train_one(key: str, config: dict[str, Any], store: str, run_name: str, console: bool) -> dict[str, Any]:
    """Train one demo run in this process (one thread); returns its run id and what training cost."""
    import torch

    import foreshock
    from foreshock.lab.gpt import fit

    torch.set_num_threads(1)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    monitors: list[Any] = []

    def watch(model: Any, optimizer: Any) -> Any:
        monitors.append(foreshock.watch(model, optimizer, run=run_name, store=store, console=console,
                                        flush_every=FLUSH_EVERY))
        return monitors[0]

    try:
        result = fit(config, watch)
    except BaseException:
        if monitors:
            monitors[0].close("crashed")
        raise
    monitors[0].close("finished")
    return {"key": key, "run_id": monitors[0].run_id, "stopped": result.stopped,
            "steps_run": result.steps_run, "cpu_s": time.process_time() - cpu0,
            "wall_s": time.perf_counter() - wall0}


def verdict(run: Any, events: list[Event], config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """How a finished run ended, and how early the first warning came (see the module docstring).

    Returns a dict: ``label`` (event, onset_step, rule), ``broke`` (a divergence or a NaN),
    ``turned_up`` (the step the loss turned up, or None), ``first_warning`` (the first warning or
    critical event's kind, step and flush latency, or None), ``lead_steps`` (``turned_up`` minus
    the warning's step: positive when it came first; None without both) and ``line``, one sentence.
    """
    from foreshock.lab import labels

    label = labels.loss_label(run, config)
    broke = label.event in ("divergence", "nan")
    turned_up = label.onset_step if broke else None
    if label.event == "nan":
        turned_up = _divergence_before_nan(run, config, label.onset_step)
    alarms = sorted((e for e in events if severity_rank(e.severity) >= severity_rank("warning")),
                    key=lambda e: e.step)
    first = alarms[0] if alarms else None
    warning = None if first is None else {"kind": first.kind, "detector": first.detector, "step": first.step,
                                          "flush_latency_steps": first.evidence.get("flush_latency_steps")}
    lead = None if first is None or turned_up is None else turned_up - first.step
    steps, values = run.series("train/loss")
    last = float(values[-1]) if len(values) else float("nan")
    if not broke:
        extra = ("no warning" if first is None
                 else f"{len(alarms)} warning(s), the first {first.kind} at step {first.step}")
        line = f"stable: trained {len(steps)} steps to loss {last:.3f} (label {label.event}); {extra}"
    else:
        what = "diverged" if label.event == "divergence" else "NaN"
        head = f"{what}: the loss turned up at step {turned_up}"
        if first is None:
            line = f"{head}; no warning fired"
        elif lead is not None and lead > 0:
            seen = warning["flush_latency_steps"]
            line = (f"{head}; the first warning ({first.kind}, step {first.step}) came {lead} steps before"
                    + ("" if not seen else f" (seen {seen} steps later, after the flush)"))
        else:
            line = (f"{head}; the first warning ({first.kind}, step {first.step}) came late, "
                    f"{-(lead or 0)} steps after")
    return {"label": label.to_dict(), "broke": broke, "turned_up": turned_up, "first_warning": warning,
            "lead_steps": lead, "warnings": len(alarms), "line": line}


def _divergence_before_nan(run: Any, config: Mapping[str, Any] | None, nan_step: int) -> int:
    """The divergence onset of the finite part of the loss before ``nan_step``, else ``nan_step``."""
    from foreshock.lab import labels
    from foreshock.run import RunBuilder

    steps, values = run.series("train/loss")
    keep = steps < nan_step
    builder = RunBuilder()
    builder.add_array("train/loss", steps[keep], values[keep])
    before = labels.loss_label(builder.build(run.name, source="demo", format="demo"), config)
    if before.event == "divergence" and before.onset_step is not None:
        return int(before.onset_step)
    return nan_step


def run_demo(out_dir: str | os.PathLike = ".", html: str | os.PathLike = "foreshock-demo.html",
             store: str | os.PathLike = "foreshock-demo.db", console: bool = True,
             overrides: Mapping[str, Any] | None = None, parallel: bool = True) -> dict[str, Any]:
    """Train the demo's stable and unstable runs, write the HTML report, print one verdict per run.

    Parameters
    ----------
    out_dir : path
        Where the report and the store go (created if missing); ``html`` and ``store`` are taken
        relative to it unless absolute.
    html, store : path
        The report file and the SQLite run store (runs are added; earlier ones are kept).
    console : bool
        Print the events as they fire, and the verdicts.
    overrides : mapping, optional
        Knobs on top of the cpu preset for both runs (``lr`` excepted: it is what differs).
    parallel : bool
        Train the two runs at once in two processes (one thread each); else one after the other here.

    Returns
    -------
    dict
        ``runs``: ``{"stable": ..., "unstable": ...}``, each :func:`verdict` plus ``run``, ``run_id``,
        ``lr``, ``stopped``, ``steps_run``, ``cpu_s`` and ``wall_s``; ``html`` and ``store`` paths;
        ``cpu_s`` (both trainings) and ``wall_s`` (the whole demo).
    """
    import foreshock
    from foreshock.lab.gpt import CPU_STABLE_LR, CPU_UNSTABLE_LR, WORKLOAD
    from foreshock.report import write_html
    from foreshock.store import open_store

    wall0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, store_path = out / html, out / store
    knobs = {k: v for k, v in (overrides or {}).items() if k != "lr"}
    when = f"{_dt.datetime.now(_dt.timezone.utc):%Y%m%d-%H%M%S}"
    jobs = {}
    for key, lr in (("stable", CPU_STABLE_LR), ("unstable", CPU_UNSTABLE_LR)):
        config = WORKLOAD.config("cpu", {**knobs, "lr": lr})
        jobs[key] = (config, f"demo-{key}-lr{lr:g}-{when}")
    if console:
        print(f"foreshock demo: training a byte-level GPT twice (lr {CPU_STABLE_LR:g} and "
              f"{CPU_UNSTABLE_LR:g}), watched live; events print as they fire", file=sys.stderr)
    if parallel:
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch threads inherited
        with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
            futures = [pool.submit(_train_one, key, config, os.fspath(store_path), name, console)
                       for key, (config, name) in jobs.items()]
            trained = [f.result() for f in futures]
    else:
        trained = [_train_one(key, config, os.fspath(store_path), name, console)
                   for key, (config, name) in jobs.items()]

    runs: dict[str, dict[str, Any]] = {}
    analyses = []
    with open_store(store_path) as db:
        for info in trained:
            key = info["key"]
            config, name = jobs[key]
            run = db.load_run(info["run_id"])
            analyses.append(foreshock.analyze(run))
            runs[key] = {"run": name, "run_id": info["run_id"], "lr": config["lr"],
                         "stopped": info["stopped"],
                         "steps_run": info["steps_run"], "cpu_s": info["cpu_s"], "wall_s": info["wall_s"],
                         **verdict(run, db.events(info["run_id"]), config)}
    write_html(analyses, html_path, title="foreshock demo")
    cpu = sum(r["cpu_s"] for r in runs.values())
    wall = time.perf_counter() - wall0
    if console:
        for key, r in runs.items():
            print(f"{key:>8} lr={r['lr']:g}: {r['line']}")
        print(f"wrote {html_path} (runs in {store_path}); training took {cpu:.0f} s of CPU, "
              f"the demo {wall:.0f} s")
    return {"runs": runs, "html": os.fspath(html_path), "store": os.fspath(store_path), "cpu_s": cpu,
            "wall_s": wall}
