"""The ``foreshock`` command: parses arguments, calls the public functions, prints the results.

    foreshock analyze run.log [--json] [--html report.html] [--store runs.db]
    foreshock analyze --sample              # the bundled sample run: works with no data of your own
    foreshock check run.log --fail-on warning
    foreshock runs --store runs.db
    foreshock lab list                      # the training workloads that make labelled runs
    foreshock lab run gpt-instability --set lr=0.1 --set qk_norm=true --store lab.db
    foreshock demo                          # trains a tiny model on CPU and shows a warning fire in time

Exit codes: 0 success; 1 ``check`` found an event at or above ``--fail-on``; 2 bad usage or an
input that cannot be read (the error names the file and, where it can, the line).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

import foreshock
from foreshock.analysis import Analysis
from foreshock.errors import ForeshockError
from foreshock.events import SEVERITIES, jsonable, severity_rank
from foreshock.report import print_analysis, write_html
from foreshock.report.terminal import SEVERITY_STYLE
from foreshock.store import is_store, open_store

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (``sys.argv[1:]`` when None); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors: argparse has printed them
        return stop.code if isinstance(stop.code, int) else EXIT_ERROR
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        return args.handler(args)
    except BrokenPipeError:  # `foreshock analyze --json ... | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_FAIL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foreshock",
        description="Watch neural-network training runs and tell, with evidence, whether they are about to break.")
    parser.add_argument("--version", action="version", version=f"foreshock {foreshock.__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    p = sub.add_parser("analyze", help="replay logs through the detectors and report what fired",
                       description="Read each log (or run store), replay it through the default detectors and "
                                   "print a summary: metrics, skipped records, events with their evidence.")
    _add_inputs(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per run per line instead of the terminal summary")
    p.add_argument("--html", metavar="REPORT.html", type=Path,
                   help="also write a self-contained HTML report (plots work offline) for all runs")
    p.add_argument("--store", metavar="DB", type=Path,
                   help="also save each run and its events into this SQLite run store (created if missing; "
                        "re-analysing a log replaces its earlier copy)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--schedule", metavar="SPEC",
                     help="the run's LR schedule (e.g. cosine:peak=6e-4,final=6e-5,warmup=700,total=20000): "
                          "also forecast the loss at the schedule's last step")
    how.add_argument("--lr-from-log", action="store_true",
                     help="forecast with the LR the run logged as its schedule")
    p.add_argument("--forecast-at", metavar="STEP", type=int,
                   help="the step to forecast (default: the schedule's last step)")
    p.set_defaults(handler=_analyze)

    p = sub.add_parser("check", help="exit 1 when an event at or above a severity fired (for CI gates)",
                       description="Analyse each log and print one verdict line per run. Exit code 0: nothing at "
                                   "or above --fail-on; 1: something was; 2: an input could not be read.")
    _add_inputs(p)
    p.add_argument("--fail-on", choices=SEVERITIES, default="warning",
                   help="lowest severity that fails the check (default: %(default)s)")
    p.set_defaults(handler=_check)

    p = sub.add_parser("runs", help="list the runs kept in a run store",
                       description="List the runs kept in a run store, with their steps, points and events.")
    p.add_argument("--store", metavar="DB", type=Path, required=True, help="the SQLite run store to list")
    p.add_argument("--json", action="store_true", help="print one JSON object per run per line")
    p.set_defaults(handler=_runs)

    p = sub.add_parser("forecast", help="predict where the loss will land under a learning-rate schedule",
                       description="Fit a loss-curve law to the observed part of a run and print the predicted "
                                   "loss at a later step with a 90%% interval.")
    p.add_argument("path", metavar="PATH", type=Path, help="a training log or run store")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--schedule", metavar="SPEC",
                     help="the LR schedule, e.g. cosine:peak=6e-4,final=6e-5,warmup=700,total=20000 (also "
                          "constant, linear, wsd, step, two-stage)")
    how.add_argument("--lr-from-log", action="store_true",
                     help="take the schedule from the log's opt/lr (or opt/lr_mult) series")
    p.add_argument("--fit-until", metavar="STEP", type=int, help="fit on data up to this step (default: all)")
    p.add_argument("--metric", metavar="NAME", help="metric to forecast (default: val/loss if logged, else train/loss)")
    p.add_argument("--at", metavar="STEP", type=int, help="step to forecast (default: the schedule's last step)")
    p.add_argument("--law", choices=("auto", "power", "annealing", "multi-power"), default="auto",
                   help="loss-curve law (default: multi-power with a schedule, power without)")
    p.add_argument("--reference", metavar="RUN", nargs="+", type=Path, default=[],
                   help="complete runs of the same model family under other schedules, with their LR logged: "
                        "the law's schedule response is fitted on them, only level and scale on PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_forecast)

    p = sub.add_parser("lab", help="train reproducible workloads that make real, labelled runs (needs torch)",
                       description="Lab workloads: small training recipes whose runs are watched, stored and "
                                   "labelled in hindsight (none, spike, divergence, nan, grokking, "
                                   "edge_of_stability).")
    lab = p.add_subparsers(dest="lab_command", title="lab commands", metavar="LAB_COMMAND",
                           help="list | run")
    p.set_defaults(handler=lambda args, lab_parser=p: _usage(lab_parser))
    q = lab.add_parser("list", help="list the workloads with their knobs",
                       description="List the lab workloads, each with its knobs and their cpu-preset values.")
    q.add_argument("--json", action="store_true", help="print one JSON object per workload per line")
    q.set_defaults(handler=_lab_list)
    q = lab.add_parser("run", help="train one workload, watched, stored and labelled",
                       description="Train a lab workload with the detectors watching, store the run and print "
                                   "its hindsight label and the events that fired.")
    q.add_argument("name", metavar="NAME", help="the workload (see `foreshock lab list`)")
    q.add_argument("--preset", default="cpu",
                   help="a preset of the workload: cpu (minutes), gpu, or its own (see `lab list`; default: %(default)s)")
    q.add_argument("--set", metavar="KNOB=VALUE", action="append", default=[], dest="knobs",
                   help="override a knob, typed like its default (bools: true/false/1/0); repeatable")
    q.add_argument("--store", metavar="DB", type=Path, default=Path("foreshock.db"),
                   help="the SQLite run store to record into (default: %(default)s)")
    q.add_argument("--run", metavar="NAME", dest="run_name",
                   help="the run's name in the store (default: workload, knobs set and UTC time)")
    q.add_argument("--threads", metavar="N", type=int, help="torch CPU threads (default: torch's own choice)")
    q.add_argument("--json", action="store_true",
                   help="print one JSON object (run, store, workload, config, steps, label, events) and no "
                        "live event lines")
    q.set_defaults(handler=_lab_run)

    p = sub.add_parser("demo", help="train a tiny model on CPU and watch a warning fire before it breaks",
                       description="Train small models on the CPU with foreshock watching, and show which "
                                   "warnings fired, how early, and what happened (needs torch).")
    p.add_argument("--out", metavar="DIR", type=Path, default=Path("."),
                   help="folder for the demo's run store and report (default: the current folder)")
    p.add_argument("--html", metavar="REPORT.html", type=Path,
                   help="where to write the self-contained HTML report (default: foreshock-demo.html in --out)")
    p.set_defaults(handler=_demo)
    return parser


def _add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", type=Path,
                   help="training logs (CSV, JSONL, trainer_state.json, TensorBoard, text; .gz welcome) or a "
                        "run store (its most recent run)")
    p.add_argument("--format", metavar="NAME", help="force a reader by name instead of detecting the format")
    p.add_argument("--sample", action="store_true",
                   help="also use the bundled sample log: a small real run that spikes, recovers, then diverges")


# -- commands ----------------------------------------------------------------------------------


def _analyze(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if paths is None:
        return EXIT_ERROR
    console = Console(highlight=False)
    analyses: list[Analysis] = []
    failed = False
    schedule = "log" if args.lr_from_log else args.schedule
    for analysis in _analyses(paths, args.format, schedule=schedule, forecast_at=args.forecast_at):
        if analysis is None:
            failed = True
            continue
        analyses.append(analysis)
        if args.json:
            print(_json_line(analysis.to_dict()), flush=True)
        else:
            if len(analyses) > 1:
                console.print()
            print_analysis(analysis, console)
    # where the JSON goes, stdout stays JSON only: notes go to stderr
    note: Callable[[str], None] = (lambda s: print(s, file=sys.stderr)) if args.json else console.print
    if args.store is not None and analyses:
        try:
            with open_store(args.store) as store:
                for a in analyses:
                    run_id = store.save_run(a.run)
                    store.replace_events(run_id, a.events)
                    note(f"saved {a.run.name} to {args.store} (run id {run_id}, {len(a.events)} events)")
        except (ForeshockError, OSError) as e:
            return _error(_located(args.store, e))
    if args.html is not None and analyses:
        try:
            write_html(analyses, args.html)
        except OSError as e:
            return _error(_located(args.html, e))
        note(f"wrote {args.html}")
    return EXIT_ERROR if failed else EXIT_OK


def _check(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if paths is None:
        return EXIT_ERROR
    threshold = severity_rank(args.fail_on)
    failed = broken = False
    for analysis in _analyses(paths, args.format):
        if analysis is None:
            broken = True
            continue
        hits = [e for e in analysis.events if severity_rank(e.severity) >= threshold]
        name = analysis.run.name
        if hits:
            failed = True
            worst = max(hits, key=lambda e: (severity_rank(e.severity), -e.step))
            first = min(hits, key=lambda e: e.step)
            print(f"FAIL {name}: {len(hits)} event(s) at or above {args.fail_on}; first: {first.severity} "
                  f"{first.kind} at step {first.step}; worst: {worst.severity} {worst.kind} at step {worst.step}")
        else:
            below = f" ({len(analysis.events)} below {args.fail_on})" if analysis.events else ""
            print(f"ok   {name}: no event at or above {args.fail_on}{below}")
    return EXIT_ERROR if broken else (EXIT_FAIL if failed else EXIT_OK)


def _runs(args: argparse.Namespace) -> int:
    if not is_store(args.store):
        what = "does not exist" if not args.store.exists() else "is not a run store"
        return _error(f"{args.store}: {what}")
    try:
        with open_store(args.store) as store:
            infos = store.runs()
    except (ForeshockError, OSError) as e:
        return _error(_located(args.store, e))
    if args.json:
        for info in infos:
            print(_json_line(dataclasses.asdict(info)))
        return EXIT_OK
    table = Table(title=f"{len(infos)} run(s) in {args.store}", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("id", "steps", "points", "events", "created"):
        table.add_column(col, justify="right" if col in ("id", "points") else "left", no_wrap=True)
    table.add_column("run", ratio=1, overflow="fold")
    table.add_column("format / source", ratio=2, overflow="fold")
    for r in infos:
        steps = "" if r.first_step is None else f"{r.first_step}-{r.last_step}"
        events = Text(str(r.n_events))
        if r.worst_severity:
            events.append(f" {r.worst_severity}", style=SEVERITY_STYLE.get(r.worst_severity, ""))
        name = Text(r.name, style="bold")
        if r.status != "unknown":
            name.append(f" ({r.status})", style="dim")
        table.add_row(str(r.id), steps, str(r.n_points), events, r.created_at[:16].replace("T", " "), name,
                      Text(f"{r.format}: ", style="dim") + Text(r.source))
    Console(highlight=False).print(table)
    return EXIT_OK


def _forecast(args: argparse.Namespace) -> int:
    from foreshock.forecast import forecast

    try:
        run = foreshock.read(args.path)
        refs = [foreshock.read(r) for r in args.reference]
        schedule = "log" if args.lr_from_log else args.schedule
        f = forecast(run, schedule=schedule, metric=args.metric, fit_until=args.fit_until, at=args.at, law=args.law,
                     reference=refs)
    except KeyError as e:  # a metric the run does not have; its message lists those it has
        return _error(_located(args.path, LookupError(e.args[0])))
    except (ForeshockError, ValueError, OSError) as e:
        return _error(_located(args.path, e))
    if args.json:
        print(_json_line(f.to_dict()))
    else:
        print(f"{f.run}: {f.metric} at step {f.target_step}: {f.value:.4g}  "
              f"({f.level:.0%} interval {f.lo:.4g} to {f.hi:.4g})")
        print(f"  law {f.law}, fitted on steps up to {f.at_step}; schedule {f.schedule or 'none'}")
        print("  params: " + ", ".join(f"{k}={v:.4g} ({f.sources.get(k, 'fit')})" for k, v in f.params.items()))
    return EXIT_OK


def _lab_list(args: argparse.Namespace) -> int:
    if _torch_missing("the lab workloads train with torch"):
        return EXIT_ERROR
    from foreshock import lab

    workloads = [lab.get(name) for name in lab.names()]
    if args.json:
        for w in workloads:
            print(_json_line({"name": w.name, "description": w.description, "knobs": w.config("cpu"),
                              "presets": {k: dict(v) for k, v in w.presets.items()}}))
        return EXIT_OK
    console = Console(highlight=False)
    for w in workloads:
        console.print(Text(w.name, style="bold") + Text(f"  {w.description}"))
        knobs = "  ".join(f"{k}={_knob_text(v)}" for k, v in w.config("cpu").items())
        console.print(Text(f"  knobs (cpu preset): {knobs}", style="dim"))
        console.print(Text(f"  presets: {', '.join(sorted(w.presets))}", style="dim"))
    return EXIT_OK


def _lab_run(args: argparse.Namespace) -> int:
    if _torch_missing("the lab workloads train with torch"):
        return EXIT_ERROR
    from foreshock import lab

    try:
        workload = lab.get(args.name)
        overrides = parse_knobs(args.knobs, workload.defaults)
        workload.config(args.preset, overrides)  # an unknown knob is an error before anything trains
    except ValueError as e:
        return _error(str(e))
    try:
        result = lab.run(args.name, args.preset, overrides, store=args.store, run_name=args.run_name,
                         console=not args.json, threads=args.threads)
    except (ForeshockError, ValueError, RuntimeError, OSError) as e:
        return _error(f"lab run {args.name}: {type(e).__name__}: {e}")
    if args.json:
        print(_json_line(result.to_dict()))
        return EXIT_OK
    label = result.label
    when = "" if label.onset_step is None else f" from step {label.onset_step}"
    print(f"{result.run}: last step {result.steps}, {len(result.events)} event(s), stored in {result.store} "
          f"(run id {result.run_id})")
    print(f"  label: {label.event}{when}")
    print(f"  rule: {label.rule}")
    warnings = [e for e in result.events if severity_rank(e.severity) >= severity_rank("warning")]
    if warnings:
        first = min(warnings, key=lambda e: e.step)
        print(f"  first warning: {first.kind} at step {first.step} ({first.detector}): {first.message}")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    if _torch_missing("the demo trains a model"):
        return EXIT_ERROR
    from foreshock.lab.demo import run_demo

    options: dict[str, Any] = {"out_dir": args.out}
    if args.html is not None:  # else the demo's own default name, inside --out
        options["html"] = args.html
    try:
        run_demo(**options)
    except (ForeshockError, OSError) as e:
        return _error(str(e))
    return EXIT_OK


def parse_knobs(items: Sequence[str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``["lr=0.1", "qk_norm=true"]`` -> ``{"lr": 0.1, "qk_norm": True}``, each typed like its default.

    Raises ValueError naming the item for a missing ``=``, an unknown knob or a value that does not
    parse as the default's type (bool: true/false/1/0/yes/no/on/off).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KNOB=VALUE")
        if key not in defaults:
            raise ValueError(f"--set {item!r}: unknown knob {key!r}; knobs: {sorted(defaults)}")
        out[key] = _typed(key, text.strip(), defaults[key])
    return out


def _typed(key: str, text: str, default: Any) -> Any:
    kind = type(default)
    if kind is bool:
        word = text.lower()
        if word in ("true", "1", "yes", "on"):
            return True
        if word in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"--set {key}={text}: expected a bool (true/false/1/0), the default is {default}")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"--set {key}={text}: expected {'an int' if kind is int else 'a float'}, "
                             f"the default is {default}") from None
    if default is None:  # a knob without a typed default takes the text as it is
        return text
    return kind(text)


def _knob_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _torch_missing(what: str) -> bool:
    """True (after printing one line saying what to install) when torch cannot be imported."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        return False
    _error(f'{what}, which is not installed: pip install "foreshock[torch]"')
    return True


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_ERROR


# -- helpers -----------------------------------------------------------------------------------


def _paths(args: argparse.Namespace) -> list[Path] | None:
    paths = list(args.paths)
    if args.sample:
        from foreshock.lab.sample import sample_path

        paths.insert(0, sample_path())
    if not paths:
        _error(f"{args.command}: give at least one PATH, or --sample for the bundled sample log")
        return None
    return paths


def _analyses(paths: Sequence[Path], format: str | None, *, schedule: str | None = None,
              forecast_at: int | None = None) -> Iterator[Analysis | None]:
    """Read and analyse each path in turn; an unreadable one prints its error and yields None."""
    for path in paths:
        try:
            run = foreshock.read(path, format=format)
        except (ForeshockError, ValueError, OSError) as e:  # LogFormatError, StoreError, unknown reader, I/O
            _error(_located(path, e))
            yield None
            continue
        yield foreshock.analyze(run, schedule=schedule, forecast_at=forecast_at)


def _located(path: Path, error: Exception) -> str:
    """The error's message, prefixed with the path unless it names it already (LogFormatError does)."""
    if isinstance(error, OSError) and error.strerror:
        return f"{path}: {error.strerror}"
    return str(error) if str(path) in str(error) else f"{path}: {error}"


def _error(message: str) -> int:
    print(f"foreshock: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _json_line(obj: dict[str, Any]) -> str:
    """Strict JSON (no NaN/Infinity literals: non-finite floats become "nan", "inf", "-inf")."""
    return json.dumps(jsonable(obj), allow_nan=False, separators=(",", ":"))


if __name__ == "__main__":
    raise SystemExit(main())
