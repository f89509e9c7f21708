"""The ``foreshock`` command: parses arguments, calls the public functions, prints the results.

    foreshock analyze run.log [--json] [--html report.html] [--store runs.db]
    foreshock analyze --sample              # the bundled sample run: works with no data of your own
    foreshock check run.log --fail-on warning
    foreshock runs --store runs.db

Exit codes: 0 success; 1 ``check`` found an event at or above ``--fail-on``; 2 bad usage or an
input that cannot be read (the error names the file and, where it can, the line).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
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
    for analysis in _analyses(paths, args.format):
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


def _analyses(paths: Sequence[Path], format: str | None) -> Iterator[Analysis | None]:
    """Read and analyse each path in turn; an unreadable one prints its error and yields None."""
    for path in paths:
        try:
            run = foreshock.read(path, format=format)
        except (ForeshockError, ValueError, OSError) as e:  # LogFormatError, StoreError, unknown reader, I/O
            _error(_located(path, e))
            yield None
            continue
        yield foreshock.analyze(run)


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
