"""How good every warning is: each foreshock detector, the default set and today's baselines, on labelled runs.

Inputs are two labelled data sets, each a folder with a ``LABELS.csv``
(``source,run_file,steps,has_val,schedule_known,event,event_step,notes``) and the long-CSV runs it
names: ``shared`` (the real public logs of ``../shared/data``) and ``lab`` (runs of the lab
workloads in ``bench/lab_runs``, written by ``bench/lab_sweep.py``; absent or partial is fine:
what is there is scored, the rest is listed as skipped).

Contestants:

- every concrete ``foreshock.detect.Detector`` subclass that can be built with no arguments, alone
  (found at run time in every module of ``foreshock.detect``), and ``default_detectors()``
  together; each replayed with ``foreshock.detect.replay(run, detectors)``, so what is scored is
  exactly what would have fired live, and when; a warning is an event of severity warning or critical;
- Lightning ``SpikeDetection`` and llm-foundry ``KillLossSpike`` with their defaults
  (``bench/baselines``: causal per-batch rules on ``train/loss``; a warning is a step at which the
  callback fires or would stop the run);
- trainspotter 0.2.6 and losslint 0.4.1 from ``bench/.venv-peers`` (as in ``bench/replay.py``), as
  subprocesses on the whole log written as a wide CSV: their real use, after the fact. A warning is
  a finding of severity warning or error, at the step where the tool places it. Each is also scored
  on its loss findings only (trainspotter ``spikes``/``divergence``; losslint ``nan_inf``,
  ``loss_spike``, ``divergence``; each on a series whose name has "loss"), since their other
  findings (LR schedule, throughput, a NaN in some gradient norm) are about something else.

Scoring (``bench/scoring.py``): per contestant, data set and label kind, recall = share of runs
warned at or before the labelled ``event_step``; "by +k" = warned no later than the k-th logged
training-loss point after it (``--k``, 10 by default); false-alarm rate = share of runs labelled
``none`` with any warning; lead time = ``event_step`` - first warning step (positive: early),
median and quartiles over the caught spike/divergence/nan runs. Plateau runs are not failures:
reported apart, never false alarms. ``bench/results/truth.md`` has the tables, with the command,
date and machine; ``bench/results/truth.json`` every per-run outcome behind them.

    .venv/bin/python bench/truth.py                      # both data sets, peers included (~2-5 min)
    .venv/bin/python bench/truth.py --skip-peers         # without trainspotter and losslint
    .venv/bin/python bench/truth.py --only shared --peer-timeout 60
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import importlib
import inspect
import json
import os
import pkgutil
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from baselines import _peers, kill_loss_spike, lightning_spike, losslint_peer, trainspotter_peer  # noqa: E402
from scoring import NOT_FAILURES, Leads, RunOutcome, Summary, leads, summarise  # noqa: E402

import foreshock  # noqa: E402
import foreshock.detect  # noqa: E402
from foreshock.detect import Detector, default_detectors, health_timeline, replay  # noqa: E402
from foreshock.events import Event, jsonable, severity_rank  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
LAB = ROOT / "bench" / "lab_runs"
OUT_MD = ROOT / "bench" / "results" / "truth.md"
OUT_JSON = ROOT / "bench" / "results" / "truth.json"
PEERS_VENV = ROOT / "bench" / ".venv-peers"
WORK = Path("/tmp/foreshock-bench/truth")
LOSS = "train/loss"
WARNING = severity_rank("warning")
KIND_ORDER = ("spike", "divergence", "nan", "grokking", "edge_of_stability")
PEER_LOSS_FINDINGS = {"trainspotter": ("spikes", "divergence"),
                      "losslint": ("nan_inf", "loss_spike", "divergence")}


# -- inputs -------------------------------------------------------------------------------------

@dataclass
class Labelled:
    """One row of a ``LABELS.csv`` and the log it names (``path`` None when it is not there)."""

    dataset: str
    source: str
    file: str
    event: str
    event_step: int | None
    path: Path | None
    notes: str = ""

    @property
    def name(self) -> str:
        return f"{self.source}/{self.file.removesuffix('.gz').removesuffix('.csv')}"


def _resolve(folder: Path, source: str, run_file: str) -> Path | None:
    # lab runs may sit under the workload name (source "lab-<workload>") rather than the source
    dirs = [folder / source, folder / source.removeprefix("lab-"), folder]
    for d in dirs:
        for name in (run_file + ".gz", run_file):
            if (d / name).is_file():
                return d / name
    return None


def load_labels(folder: Path, dataset: str) -> list[Labelled]:
    """The labelled runs of ``folder/LABELS.csv``; an empty list when there is none yet."""
    labels = folder / "LABELS.csv"
    if not labels.is_file():
        return []
    with open(labels, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        if not r.get("source") or not r.get("run_file") or not r.get("event"):
            continue  # a row still being written
        step = (r.get("event_step") or "").strip()
        out.append(Labelled(dataset, r["source"], r["run_file"], r["event"].strip(),
                            int(float(step)) if step else None, _resolve(folder, r["source"], r["run_file"]),
                            r.get("notes") or ""))
    return out


def k_step(run: foreshock.Run, event_step: int | None, k: int) -> int | None:
    """The step of the k-th logged training-loss point after ``event_step`` (the run's last when fewer)."""
    if event_step is None:
        return None
    steps = _loss_steps(run)
    after = steps[steps > event_step]
    if len(after) == 0:
        return event_step
    return int(after[min(k, len(after)) - 1])


def k_before(run: foreshock.Run, event_step: int | None, k: int) -> int | None:
    """The step of the k-th logged training-loss point before ``event_step`` (the run's first when fewer)."""
    if event_step is None:
        return None
    steps = _loss_steps(run)
    before = steps[steps < event_step]
    if len(before) == 0:
        return event_step
    return int(before[-min(k, len(before))])


def _loss_steps(run: foreshock.Run) -> np.ndarray:
    name = LOSS if LOSS in run else (run.names[0] if run.names else None)
    return run.series(name)[0] if name is not None else np.empty(0, np.int64)


# -- contestants --------------------------------------------------------------------------------

@dataclass
class Warned:
    """A contestant's warnings on one run: their steps in order, and the first one described."""

    steps: list[int] = field(default_factory=list)
    first: dict[str, Any] | None = None
    error: str | None = None


def detector_classes() -> tuple[list[type[Detector]], list[str]]:
    """Every concrete Detector subclass of ``foreshock.detect`` that builds with no arguments.

    Each module of the package is imported first, so a detector is found even before the package
    exports it; what could not be imported or built is returned as notes.
    """
    notes = []
    for mod in pkgutil.iter_modules(foreshock.detect.__path__):
        try:
            importlib.import_module(f"foreshock.detect.{mod.name}")
        except Exception as exc:  # a module being edited must not stop the benchmark
            notes.append(f"foreshock.detect.{mod.name} not imported: {type(exc).__name__}: {exc}")
    found, seen, stack = [], set(), list(Detector.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        if (cls.__name__.startswith("_") or inspect.isabstract(cls) or cls.update is Detector.update
                or not cls.__module__.startswith("foreshock.") or cls.__module__.split(".")[-1].startswith("_")):
            continue
        try:
            cls()
        except Exception as exc:
            notes.append(f"{cls.__name__} not scored alone: it does not build with no arguments ({exc})")
            continue
        found.append(cls)
    return sorted(found, key=lambda c: (c.__module__, c.__name__)), notes


_DEFAULT_EVENTS: dict[int, list[Event]] = {}  # id(run) -> its default-set events (runs live as long as this)


def default_events(run: foreshock.Run) -> list[Event]:
    """The default set's events on ``run``, replayed once and shared by every contestant built on them."""
    if id(run) not in _DEFAULT_EVENTS:
        _DEFAULT_EVENTS[id(run)] = replay(run, default_detectors())
    return _DEFAULT_EVENTS[id(run)]


def foreshock_warned(run: foreshock.Run, detectors: Sequence[Detector]) -> Warned:
    return warned_by(replay(run, list(detectors)))


def warned_by(all_events: Sequence[Event]) -> Warned:
    events = [e for e in all_events if severity_rank(e.severity) >= WARNING]
    if not events:
        return Warned()
    e = min(events, key=lambda e: e.step)
    return Warned(steps=sorted(e.step for e in events),
                  first={"detector": e.detector, "kind": e.kind, "severity": e.severity,
                         "onset_step": e.onset_step, "message": e.message})  # the message carries the numbers


def health_warned(run: foreshock.Run) -> Warned:
    """The steps at which the run's health (``foreshock.detect.Health``, fed the default set's events)
    left ``healthy``: its ``watch`` state, earned by info early warnings of two independent families,
    is scored like a warning here, to measure whether it has earned one."""
    events = default_events(run)
    last = max((int(s.steps[-1]) for s in run.metrics.values() if len(s.steps)), default=None)
    moved = [c for c in health_timeline(events, last_step=last) if c.previous == "healthy"]
    if not moved:
        return Warned()
    c = moved[0]
    return Warned(steps=[m.step for m in moved],
                  first={"detector": ",".join(c.detectors), "kind": c.state, "severity": c.state,
                         "onset_step": c.step, "message": c.reason})


def grokking_target(labelled: Sequence[Labelled], runs: dict[str, foreshock.Run], ds: str) -> dict[str, Any]:
    """Per grokking run of ``ds``: the step of the default set's first ``grokking`` event beside the
    first step at which ``val/acc`` reaches 0.9 (the target: reported before it)."""
    rows = []
    for lab in labelled:
        if lab.dataset != ds or lab.event != "grokking" or "val/acc" not in runs[lab.name]:
            continue
        run = runs[lab.name]
        vs, va = run.series("val/acc")
        hit = np.flatnonzero(va >= 0.9)
        t90 = int(vs[hit[0]]) if len(hit) else None
        fired = min((e.step for e in default_events(run) if e.kind == "grokking"), default=None)
        rows.append({"run": lab.name, "reported": fired, "val_acc_0.9": t90,
                     "before": fired is not None and t90 is not None and fired < t90})
    return {"n": len(rows), "before": sum(r["before"] for r in rows),
            "lead": dataclasses.asdict(leads(r["val_acc_0.9"] - r["reported"] for r in rows if r["before"])),
            "runs": rows}


def lightning_warned(run: foreshock.Run) -> Warned:
    if LOSS not in run:
        return Warned(error=f"no {LOSS}")
    steps, values = run.series(LOSS)
    fired = lightning_spike.fire_steps(steps, values)
    return Warned(steps=fired, first={"what": "TrainingSpikeException", "value": float(values[steps == fired[0]][0])}
                  if fired else None)


def kill_loss_spike_warned(run: foreshock.Run) -> Warned:
    if LOSS not in run:
        return Warned(error=f"no {LOSS}")
    steps, values = run.series(LOSS)
    fired = kill_loss_spike.fire_steps(steps, values)
    return Warned(steps=[s for s, _ in fired], first={"what": fired[0][1]} if fired else None)


def peer_warned(record: dict[str, Any], only: Sequence[str] | None = None) -> Warned:
    if "error" in record:
        return Warned(error=record["error"])
    hits = [f for f in record["findings"] if f["severity"] in ("warning", "error") and f["step"] is not None
            and (only is None or (f["what"] in only and "loss" in str(f.get("metric") or "").lower()))]
    if not hits:
        return Warned()
    hits.sort(key=lambda f: f["step"])
    return Warned(steps=[int(f["step"]) for f in hits], first=hits[0])


# -- running ------------------------------------------------------------------------------------

def run_peers(labelled: Sequence[Labelled], timeout_s: int) -> dict[str, dict[str, dict[str, Any]]]:
    """``{tool: {run name: record}}`` for trainspotter and losslint, on wide-CSV copies of the logs."""
    from replay_inputs import peer_python, wide_copies

    python = peer_python(PEERS_VENV)
    wide: dict[str, Path] = {}
    for dataset in sorted({lab.dataset for lab in labelled}):
        # the wide copies are made from gzipped long CSVs, the format of both data sets
        group = [lab for lab in labelled if lab.dataset == dataset and lab.path.name.endswith(".csv.gz")]
        if not group:
            continue
        root = Path(os.path.commonpath([str(lab.path.parent) for lab in group]))
        paths = wide_copies([lab.path for lab in group], WORK / "wide" / dataset, root)
        wide.update({lab.name: p for lab, p in zip(group, paths, strict=True)})
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for tool, module in (("trainspotter", trainspotter_peer), ("losslint", losslint_peer)):
        t = time.perf_counter()
        res = _peers.run_tool(python, Path(module.__file__), list(wide.values()), timeout_s)
        out[tool] = {lab.name: res[str(wide[lab.name])] if lab.name in wide else {"error": "not a .csv.gz log"}
                     for lab in labelled}
        print(f"  {tool}: {len(wide)} logs in {time.perf_counter() - t:.0f} s", flush=True)
    return out


@dataclass
class Contestant:
    name: str
    family: str  # "foreshock", "callback" or "peer"
    about: str
    warned: Callable[[foreshock.Run, Labelled], Warned]


def contestants(classes: Sequence[type[Detector]], peers: dict[str, dict[str, dict[str, Any]]] | None
                ) -> list[Contestant]:
    defaults = ", ".join(type(d).__name__ for d in default_detectors())
    out = [Contestant("foreshock default set", "foreshock", f"default_detectors(): {defaults}",
                      lambda run, lab: warned_by(default_events(run))),
           Contestant("foreshock health (watch or worse)", "foreshock",
                      "the run's health from the default set's events, any state but healthy",
                      lambda run, lab: health_warned(run))]
    for cls in classes:
        out.append(Contestant(f"foreshock {cls.__name__}", "foreshock", f"{cls.__name__}() alone",
                              lambda run, lab, c=cls: foreshock_warned(run, [c()])))
    out.append(Contestant("Lightning SpikeDetection", "callback", "defaults; stops the run at the first spike",
                          lambda run, lab: lightning_warned(run)))
    out.append(Contestant("llm-foundry KillLossSpike", "callback", "defaults (log_only: keeps firing)",
                          lambda run, lab: kill_loss_spike_warned(run)))
    for tool, version in (("trainspotter", trainspotter_peer.VERSION), ("losslint", losslint_peer.VERSION)):
        if peers is None:
            continue
        records = peers[tool]
        only = PEER_LOSS_FINDINGS[tool]
        out.append(Contestant(f"{tool} {version}", "peer", "every warning/error finding, whole log",
                              lambda run, lab, r=records: peer_warned(r[lab.name])))
        out.append(Contestant(f"{tool} {version}: loss findings", "peer",
                              f"only {', '.join(only)} findings on a loss series",
                              lambda run, lab, r=records, o=only: peer_warned(r[lab.name], o)))
    return out


def evaluate(labelled: Sequence[Labelled], runs: dict[str, foreshock.Run], cands: Sequence[Contestant],
             k: int) -> dict[str, list[tuple[RunOutcome, Warned]]]:
    """``{contestant: [(outcome, warnings) per run]}``."""
    result: dict[str, list[tuple[RunOutcome, Warned]]] = {c.name: [] for c in cands}
    for lab in labelled:
        run = runs[lab.name]
        ks, lo = k_step(run, lab.event_step, k), k_before(run, lab.event_step, k)
        for c in cands:
            try:
                w = c.warned(run, lab)
            except Exception as exc:  # a detector being edited must not stop the benchmark: counted as silent
                w = Warned(error=f"{type(exc).__name__}: {exc}")
            first = w.steps[0] if w.steps else None
            near = None if ks is None else next((s for s in w.steps if lo <= s <= ks), None)
            result[c.name].append((RunOutcome(lab.name, lab.event, lab.event_step, first, ks, len(w.steps), near),
                                   w))
    return result


# -- report -------------------------------------------------------------------------------------

def _fmt_step(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 10 or x == int(x) else f"{x:.1f}"


def _rate_cell(summary: Summary, kind: str) -> str:
    r, b, n = summary.recall[kind], summary.by_k[kind], summary.near[kind]
    return f"{r} ({b.hits}) [{n.hits}]" if r.n else "-"


def _lead_cell(ld: Leads) -> str:
    return f"{_fmt_step(ld.median)} [{_fmt_step(ld.q1)}, {_fmt_step(ld.q3)}] ({ld.n})" if ld.n else "-"


def table(summaries: dict[str, Summary], kinds: Sequence[str], counts: dict[str, int]) -> list[str]:
    head = ["contestant", *(f"{kind} (n={counts[kind]})" for kind in kinds),
            f"false alarms (none, n={counts.get('none', 0)})", "lead, steps: median [q1, q3] (n)",
            "near lead: median [q1, q3] (n)"]
    if counts.get("plateau"):
        head.append(f"plateau warned (n={counts['plateau']})")
    head.append("n")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summaries.items():
        fa = s.false_alarms
        fa_cell = f"{fa} ({100 * fa.fraction:.0f}%)" if fa.n else "-"
        row = [name, *(_rate_cell(s, kind) for kind in kinds), fa_cell, _lead_cell(s.leads), _lead_cell(s.near_leads)]
        if counts.get("plateau"):
            row.append(str(s.plateau_warned))
        row.append(str(s.n_runs))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "foreshock": foreshock.__version__,
            "loadavg_at_start": os.getloadavg()}


def markdown(meta: dict[str, Any], datasets: dict[str, dict[str, Any]], k: int) -> str:
    m = meta["machine"]
    out = ["# How good every warning is: foreshock beside today's baselines, on labelled runs", "",
           f"Produced by `{meta['command']}` on {meta['date']} (took {meta['seconds']:.0f} s). Machine: "
           f"{m['cpu']}, {m['cores']} cores (shared; load average {m['loadavg_at_start'][0]:.1f} at the start), "
           f"{m['platform']}; Python {m['python']}, numpy {m['numpy']}, "
           f"foreshock {m['foreshock']}" + (f" (commit {meta['commit']}" if meta.get("commit") else "")
           + (", working tree modified)" if meta.get("tree_modified") else ")" if meta.get("commit") else "")
           + ".", "",
           "Each cell of a label column reads *recall (by +k) [near]*, out of the runs with that label: "
           "*recall* counts the runs whose first warning came at or before the labelled `event_step`; *by "
           f"+k* those whose first warning came no later than the {k}th logged training-loss point after it; "
           f"*near* those with any warning within {k} logged training-loss points either side of it. Recall "
           "and by +k look at the first warning only, so a warning about something else long before the event "
           "counts as a catch (large leads are that); near counts the warnings about the event itself. A warning is a foreshock event of severity warning or "
           "critical, the step at which a callback fires (Lightning's would stop the run there), or a "
           "peer's finding of severity warning or error. *False alarms*: runs labelled `none` with any "
           "warning. *Lead*: `event_step` minus the first warning's step (positive = early) over the caught "
           "spike/divergence/nan runs, in the run's own steps; *near lead* the same for the first warning near the event. Plateau runs are not failures: they count "
           "neither way. Labels are hindsight rules applied to the whole run (see the data sets' "
           "`LABELS.csv` notes); grokking and edge-of-stability are phases, not breakage, so a warning "
           "there is scored the same way but means something else.", "",
           "The callbacks and foreshock are causal: they see the steps up to the one they fire at (the "
           "callbacks are replayed on the logged training-loss points, one point per batch; a log written every "
           "N steps hides the batches in between, see `bench/baselines`). "
           "trainspotter and losslint read the whole log first (their real use): the step they point at "
           "is a place in hindsight, not a moment they could have warned during training; a losslint "
           "finding that names no step (its whole-run `divergence`) is placed at the run's last step. "
           "Every per-run outcome is in `truth.json`.", ""]
    for ds, d in datasets.items():
        labels = ", ".join(f"{k_} {v}" for k_, v in d["counts"].items())
        out += [f"## {ds} ({d['n_runs']} runs" + (f": {labels})" if labels else ")"), ""]
        if not d["summaries"]:
            out += [d.get("empty", "No runs."), ""]
            continue
        out += table(d["summaries"], d["kinds"], d["counts"]) + [""]
        g = d.get("grokking")
        if g and g["n"]:
            ld = g["lead"]
            out += [f"Grokking reported (the default set's `grokking` event) before validation accuracy reached "
                    f"0.9: {g['before']}/{g['n']} runs; steps ahead: median {_fmt_step(ld['median'])} "
                    f"[{_fmt_step(ld['q1'])}, {_fmt_step(ld['q3'])}].", ""]
        if d["skipped"]:
            out += ["Not scored: " + "; ".join(d["skipped"]) + ".", ""]
        if d["failures"]:
            out += ["Failures (counted as no warning): " + "; ".join(d["failures"]) + ".", ""]
    out += ["## Contestants", "", "| contestant | what runs |", "|---|---|"]
    out += [f"| {c['name']} | {c['about']} |" for c in meta["contestants"]]
    if meta["notes"]:
        out += ["", "Notes: " + " ".join(meta["notes"])]
    return "\n".join(out) + "\n"


def _outcome_json(outcome: RunOutcome, warned: Warned) -> dict[str, Any]:
    d = {k: v for k, v in outcome.to_dict().items() if v is not None}
    if warned.first is not None:
        d["first"] = warned.first
    if warned.error is not None:
        d["error"] = warned.error
    return d


def dump_json(doc: dict[str, Any]) -> str:
    """``doc`` as indented JSON, except that each per-run outcome and each run takes one line."""
    lines: dict[str, str] = {}

    def flatten(x: Any, key: str | None = None) -> Any:
        if isinstance(x, dict):
            return {k: flatten(v, k) for k, v in x.items()}
        if isinstance(x, list) and key in ("outcomes", "runs"):
            out = []
            for item in x:
                token = f"@@{len(lines)}@@"
                lines[token] = json.dumps(jsonable(item), ensure_ascii=False)
                out.append(token)
            return out
        return x

    text = json.dumps(jsonable(flatten(doc)), indent=1, ensure_ascii=False)
    return re.sub(r'"(@@\d+@@)"', lambda m: lines[m.group(1)], text) + "\n"


def _git(*args: str) -> str:
    res = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return res.stdout.strip()


def read_sets(sets: dict[str, Path]) -> tuple[list[Labelled], dict[str, foreshock.Run], dict[str, list[str]]]:
    """The labelled runs that could be read, the runs by name, and per data set what was skipped and why."""
    labelled: list[Labelled] = []
    skipped: dict[str, list[str]] = {ds: [] for ds in sets}
    runs: dict[str, foreshock.Run] = {}
    for ds, folder in sets.items():
        for lab in load_labels(folder, ds):
            if lab.path is None:
                skipped[ds].append(f"{lab.name} (log not found)")
                continue
            try:
                runs[lab.name] = foreshock.read(lab.path)
            except Exception as exc:
                skipped[ds].append(f"{lab.name} (unreadable: {type(exc).__name__}: {exc})")
                continue
            labelled.append(lab)
    return labelled, runs, skipped


def score_set(ds: str, folder: Path, labelled: Sequence[Labelled], runs: dict[str, foreshock.Run], results: dict[str, list[tuple[RunOutcome, Warned]]],
              cands: Sequence[Contestant], skipped: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One data set's summaries for the markdown, and its per-run outcomes for the JSON."""
    idx = [i for i, lab in enumerate(labelled) if lab.dataset == ds]
    labs = [labelled[i] for i in idx]
    counts: dict[str, int] = {}
    for lab in labs:
        counts[lab.event] = counts.get(lab.event, 0) + 1
    kinds = [x for x in KIND_ORDER if x in counts] + sorted(set(counts) - set(KIND_ORDER) - {"none", *NOT_FAILURES})
    summaries = {c.name: summarise([results[c.name][i][0] for i in idx], kinds) for c in cands} if labs else {}
    failures = []  # contestants that could not judge a run (a run without train/loss is not a failure)
    for c in cands:
        errs = [(labelled[i].name, results[c.name][i][1].error) for i in idx
                if results[c.name][i][1].error and results[c.name][i][1].error != f"no {LOSS}"]
        if errs:
            failures.append(f"{c.name} on {len(errs)} run(s), first {errs[0][0]}: {errs[0][1]}")
    where = os.path.relpath(folder, ROOT)
    grok = grokking_target(labelled, runs, ds)
    md = {"n_runs": len(labs), "counts": dict(sorted(counts.items())), "kinds": kinds, "summaries": summaries,
          "grokking": grok,
          "skipped": skipped, "failures": failures, "empty": f"No labelled runs in `{where}` yet."}
    js = {"folder": where, "counts": counts, "skipped": skipped, "grokking_target": grok,
          "runs": [{"run": lab.name, "label": lab.event, "event_step": lab.event_step,
                    "path": os.path.relpath(lab.path, folder), "notes": lab.notes} for lab in labs],
          "contestants": {c.name: {"summary": summaries[c.name].to_dict(),
                                   "outcomes": [_outcome_json(*results[c.name][i]) for i in idx]}
                          for c in cands} if labs else {}}
    return md, js


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="shared data folder (default ../shared/data)")
    ap.add_argument("--lab", type=Path, default=LAB, help="lab runs folder (default bench/lab_runs)")
    ap.add_argument("--only", choices=("shared", "lab"), help="score one data set only")
    ap.add_argument("--k", type=int, default=10, help="grace after event_step, in logged loss points (10)")
    ap.add_argument("--skip-peers", action="store_true", help="leave out trainspotter and losslint")
    ap.add_argument("--peer-timeout", type=int, default=120, help="seconds per log for each peer (120)")
    ap.add_argument("--out", type=Path, default=OUT_MD, help="markdown to write")
    ap.add_argument("--json", type=Path, default=OUT_JSON, help="per-run outcomes to write")
    ap.add_argument("--min-severity", choices=("info", "warning", "critical"), default="warning",
                    help="the least severe foreshock event that counts as a warning (default warning; 'info' "
                         "scores the families that only inform, as if they warned)")
    cli = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(cli)
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    global WARNING
    WARNING = severity_rank(args.min_severity)
    sets = {"shared": args.data, "lab": args.lab}
    if args.only:
        sets = {args.only: sets[args.only]}
    labelled, runs, skipped = read_sets(sets)
    print(f"{len(labelled)} labelled runs read in {time.perf_counter() - t0:.1f} s", flush=True)

    holder: dict[str, Any] = {}
    thread = None
    if not args.skip_peers and labelled:  # the peers run in their own processes while foreshock is scored here

        def work() -> None:
            try:
                holder["peers"] = run_peers(labelled, args.peer_timeout)
            except Exception as exc:  # no peers environment: say so, score the rest
                holder["error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=work)
        thread.start()
    classes, notes = detector_classes()
    cands = contestants(classes, None)
    t = time.perf_counter()
    results = evaluate(labelled, runs, cands, args.k)
    print(f"foreshock and callbacks: {len(cands)} contestants in {time.perf_counter() - t:.1f} s", flush=True)
    if thread is not None:
        thread.join()
        if "error" in holder:
            notes.append(f"Peers not run: {holder['error']}.")
        else:
            peer_cands = [c for c in contestants([], holder["peers"]) if c.family == "peer"]
            results.update(evaluate(labelled, runs, peer_cands, args.k))
            cands += peer_cands
    meta = {"command": " ".join(["python bench/truth.py", *cli]), "date": started, "machine": machine(),
            "commit": _git("rev-parse", "--short", "HEAD"),
            "tree_modified": bool(_git("status", "--porcelain", "--", "foreshock")), "k_points": args.k,
            "contestants": [{"name": c.name, "family": c.family, "about": c.about} for c in cands], "notes": notes}
    scored = {ds: score_set(ds, folder, labelled, runs, results, cands, skipped[ds]) for ds, folder in sets.items()}
    meta["seconds"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(meta, {ds: md for ds, (md, _) in scored.items()}, args.k), encoding="utf-8")
    args.json.write_text(dump_json({**meta, "datasets": {ds: js for ds, (_, js) in scored.items()}}),
                         encoding="utf-8")
    print(f"wrote {args.out} and {args.json} in {meta['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
