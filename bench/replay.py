"""Replay time and peak memory of foreshock beside trainspotter and losslint, on the same runs.

Two workloads:

- ``synthetic``: a seeded 1,000,000-step log of 5 metrics (``bench/make_log.py``);
- ``shared``: every ``*.csv.gz`` run in ``../shared/data`` (real logs).

Each tool runs in its own process (``bench/replay_child.py``) pinned to one core with
``taskset -c 0``, a few times; the tables give medians. Peak memory is that process's own
``ru_maxrss``. foreshock runs from the repository's ``.venv``; the peers run from
``bench/.venv-peers`` (created here when missing, with pinned versions and the same numpy as
``.venv``), on the same Python interpreter. foreshock reads the long CSV of ``shared/data``
(``step,name,value``, gzipped); the peers read the same run written as a wide CSV, a format both
document (neither reads the long format nor ``.gz``). When foreshock reads the wide CSV too, that
row is added, so the read cost of the two formats can be told apart.

    python bench/replay.py                  # both workloads, writes bench/results/replay.{md,json}
    python bench/replay.py --only shared --reps 5

Run it with the repository's ``.venv`` Python; see ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from make_log import ensure_logs  # noqa: E402
from replay_inputs import machine_info, peer_python, source_digest, wide_copies  # noqa: E402
from replay_report import summarise, write_markdown  # noqa: E402

FORESHOCK_PY = ROOT / ".venv" / "bin" / "python"
CHILD = HERE / "replay_child.py"


def spawn(cmd: list[str], *, cwd: Path = ROOT) -> dict[str, Any]:
    """Run ``cmd`` pinned to core 0; its wall time, exit code and own peak RSS.

    The peak comes from ``/usr/bin/time``, which forks the command itself: a process forked from
    this one would start with this process's resident size as its ``ru_maxrss`` (Linux keeps
    the high-water mark of the memory image a process was forked with).
    """
    with tempfile.NamedTemporaryFile(suffix=".time") as tf, tempfile.TemporaryFile() as err:
        full = ["taskset", "-c", "0", "/usr/bin/time", "-f", "%M %x", "-o", tf.name, *cmd]
        t = time.perf_counter()
        rc = subprocess.run(full, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err).returncode
        wall = time.perf_counter() - t
        maxrss_kib, child_rc = (int(x) for x in Path(tf.name).read_text().split()[-2:])
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace")
    return {"rc": child_rc if rc in (0, child_rc) else rc, "wall_s": wall, "maxrss_kib": maxrss_kib,
            "stderr": tail}


# A process slower than this is not repeated: its one run already says what the ratio is.
SLOW_S = 120.0


def api_runs(tool: str, python: Path, files: list[Path], reps: int) -> list[dict[str, Any]]:
    """Up to ``reps`` fresh processes of ``replay_child.py``; each one's own report plus its wall time.

    A process that takes longer than ``SLOW_S`` is not repeated.
    """
    out: list[dict[str, Any]] = []
    for _ in range(reps):
        if out and out[-1]["process_wall_s"] > SLOW_S:
            break
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
            report = Path(fh.name)
        proc = spawn([str(python), str(CHILD), tool, str(report), *map(str, files)])
        if proc["rc"] != 0:
            report.unlink(missing_ok=True)
            raise RuntimeError(f"{tool} child failed (exit {proc['rc']}):\n{proc['stderr']}")
        rec = json.loads(report.read_text(encoding="utf-8"))
        report.unlink()
        rec["process_wall_s"] = proc["wall_s"]
        rec["time_maxrss_kib"] = proc["maxrss_kib"]
        out.append(rec)
        print(f"  {tool:16s} import {rec['import_s']:.2f}s  "
              f"read {sum(f.get('read_s', 0) for f in rec['files']):.2f}s  "
              f"analyze {sum(f.get('analyze_s', 0) for f in rec['files']):.2f}s  "
              f"peak {rec['maxrss_kib'] / 1024:.0f} MiB", flush=True)
    return out


def cli_runs(tool: str, cmd: list[str], reps: int) -> list[dict[str, Any]]:
    """The tool's own command line, end to end (interpreter start, imports, read, analyse, report)."""
    out: list[dict[str, Any]] = []
    for _ in range(reps):
        if out and out[-1]["wall_s"] > SLOW_S:
            break
        proc = spawn(cmd)
        # losslint exits 1 when it found an error-severity problem: that is a result
        if proc["rc"] not in (0, 1):
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc['rc']}):\n{proc['stderr']}")
        out.append(proc)
        print(f"  {tool:16s} cli wall {proc['wall_s']:.2f}s  peak {proc['maxrss_kib'] / 1024:.0f} MiB",
              flush=True)
    return out


def foreshock_can(capability: str) -> bool:
    """Whether the foreshock in ``.venv`` reads the long CSV / has default detectors / has a CLI."""
    probe = {
        "read_long": "import foreshock,sys; foreshock.read(sys.argv[1])",
        "read_wide": "import foreshock,sys; r=foreshock.read(sys.argv[2]); assert len(r.names)>=5, r.names",
        "detectors": "from foreshock.detect import default_detectors as d; assert d()",
        "cli": "import foreshock.cli",
    }[capability]
    small = ensure_logs(Path(tempfile.gettempdir()) / "foreshock-bench-probe", steps=3000)
    res = subprocess.run([str(FORESHOCK_PY), "-c", probe, str(small["long_gz"]), str(small["wide_csv"])],
                         cwd=ROOT, capture_output=True, text=True)
    return res.returncode == 0


def synthetic(args: argparse.Namespace, peers: Path, caps: dict[str, bool]) -> dict[str, Any]:
    paths = ensure_logs(args.work, steps=args.steps, seed=0)
    meta = json.loads(paths["meta"].read_text(encoding="utf-8"))
    print(f"synthetic: {meta['points']:,} points, spikes at {meta['spikes']}", flush=True)
    rows: dict[str, Any] = {}
    # the peers first: foreshock's rows then come close together, in case its code is being edited
    for tool in ("trainspotter", "losslint"):
        rows[tool] = {"input": paths["wide_csv"].name,
                      "runs": api_runs(tool, peers, [paths["wide_csv"]], args.reps)}
    if caps["read_long"]:
        rows["foreshock"] = {"input": paths["long_gz"].name,
                             "runs": api_runs("foreshock", FORESHOCK_PY, [paths["long_gz"]], args.reps)}
        rows["foreshock, plain long CSV"] = {
            "input": paths["long_csv"].name,
            "runs": api_runs("foreshock", FORESHOCK_PY, [paths["long_csv"]], args.reps)}
    if caps["read_wide"]:
        rows["foreshock, wide CSV"] = {
            "input": paths["wide_csv"].name,
            "runs": api_runs("foreshock", FORESHOCK_PY, [paths["wide_csv"]], args.reps)}
    if caps["read_long"] and args.step_path:
        rows["foreshock, step-by-step (fast=False)"] = {
            "input": paths["long_gz"].name,
            "runs": api_runs("foreshock-steps", FORESHOCK_PY, [paths["long_gz"]], args.reps)}
    prof = None
    if caps["read_long"] and args.profile:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
            report = Path(fh.name)
        spawn([str(FORESHOCK_PY), str(CHILD), "profile:foreshock", str(report), str(paths["long_gz"])])
        prof = json.loads(report.read_text(encoding="utf-8"))
        report.unlink()
        print(f"  profiled foreshock: read {prof['read']['total_s']:.2f}s, analyze {prof['analyze']['total_s']:.2f}s "
              "(under cProfile)", flush=True)
    cli: dict[str, Any] = {}
    if args.cli:
        bindir = peers.parent
        cmds = {"trainspotter": [str(bindir / "trainspotter"), "analyze", str(paths["wide_csv"]), "--output", "json"],
                "losslint": [str(bindir / "losslint"), "check", str(paths["wide_csv"]), "--format", "json"]}
        if caps["cli"]:
            cmds = {"foreshock": [str(FORESHOCK_PY.parent / "foreshock"), "analyze", str(paths["long_gz"]),
                                  "--json"], **cmds}
        for tool, cmd in cmds.items():
            shown = " ".join(Path(c).name if i in (0, 2) else c for i, c in enumerate(cmd))
            api_s = min((r["process_wall_s"] for r in rows.get(tool, {}).get("runs", [])), default=0.0)
            if api_s > SLOW_S and not args.slow_cli:
                # the command line does the same reading and analysis, plus its report
                cli[tool] = {"command": shown, "runs": [], "skipped": f"its API run took {api_s:.0f} s"}
                continue
            cli[tool] = {"command": shown, "runs": cli_runs(tool, cmd, args.cli_reps)}
    return {"meta": meta, "rows": _foreshock_first(rows), "cli": cli, "profile": prof}


def shared(args: argparse.Namespace, peers: Path, caps: dict[str, bool]) -> dict[str, Any]:
    logs = sorted(Path(args.data).resolve().rglob("*.csv.gz"))
    if not logs:
        raise SystemExit(f"no *.csv.gz logs under {args.data}")
    wide = wide_copies(logs, Path(args.work) / "shared-wide", Path(args.data).resolve())
    print(f"shared: {len(logs)} logs", flush=True)
    rows: dict[str, Any] = {}
    for tool in ("trainspotter", "losslint"):
        rows[tool] = {"input": "wide CSV copies", "runs": api_runs(tool, peers, wide, args.reps)}
    if caps["read_long"]:
        rows["foreshock"] = {"input": "the .csv.gz files as they are",
                             "runs": api_runs("foreshock", FORESHOCK_PY, logs, args.reps)}
    if caps["read_wide"]:
        rows["foreshock, wide CSV"] = {"input": "wide CSV copies",
                                       "runs": api_runs("foreshock", FORESHOCK_PY, wide, args.reps)}
    names = [str(p.relative_to(Path(args.data).resolve())) for p in logs]
    return {"logs": names, "rows": _foreshock_first(rows)}


def _foreshock_first(rows: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(rows.items(), key=lambda kv: not kv[0].startswith("foreshock")))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3, help="processes per tool and workload (median)")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--only", choices=("synthetic", "shared"), default=None)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "foreshock-bench"),
                   help="where generated logs go (never the repository)")
    p.add_argument("--out", default=str(HERE / "results"), help="where replay.md and replay.json go")
    p.add_argument("--no-cli", dest="cli", action="store_false", help="skip the command-line runs")
    p.add_argument("--cli-reps", type=int, default=1)
    p.add_argument("--slow-cli", action="store_true",
                   help=f"also time the command line of a tool whose API run took over {SLOW_S:.0f} s")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the cProfile run of foreshock on the synthetic log")
    p.add_argument("--no-step-path", dest="step_path", action="store_false",
                   help="skip foreshock's step-by-step replay (fast=False)")
    args = p.parse_args(argv)

    peers = peer_python(HERE / ".venv-peers")
    caps = {c: foreshock_can(c) for c in ("read_long", "read_wide", "detectors", "cli")}
    print(f"foreshock capabilities: {caps}", flush=True)
    started = time.time()
    result: dict[str, Any] = {"command": "python bench/replay.py " + " ".join(argv or sys.argv[1:]),
                              "machine": machine_info(FORESHOCK_PY, peers), "foreshock_caps": caps,
                              "reps": args.reps, "foreshock_source": source_digest(ROOT / "foreshock")}
    if args.only in (None, "synthetic"):
        result["synthetic"] = synthetic(args, peers, caps)
    if args.only in (None, "shared"):
        result["shared"] = shared(args, peers, caps)
    result["elapsed_s"] = time.time() - started
    result["foreshock_source_after"] = source_digest(ROOT / "foreshock")
    result["summary"] = summarise(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    write_markdown(result, out / "replay.md")
    print(f"wrote {out / 'replay.md'} and {out / 'replay.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
