"""One measured process of ``bench/replay.py``: import a tool, read and analyse logs, report timings.

It runs under the interpreter of the tool's own environment (the repository's ``.venv`` for
foreshock, ``bench/.venv-peers`` for the others), so it imports nothing but the standard library
at the top. Each tool is called through its documented Python API with default settings, the
same calls its command line makes:

- ``foreshock``: ``foreshock.read(path)``, then ``foreshock.analyze(run)`` (vectorised replay);
- ``foreshock-steps``: the same with ``analyze(run, fast=False)``, the step-by-step live path;
- ``trainspotter``: ``trainspotter.load_run(path)``, then ``trainspotter.run_all(run)``;
- ``losslint``: ``losslint.parsing.load_run(path)``, then ``losslint.checks.run_all_checks(run)``.

    python bench/replay_child.py TOOL OUT.json FILE [FILE ...]
    python bench/replay_child.py profile:TOOL OUT.json FILE      # cProfile of read and analyse

``OUT.json`` receives the import time, the peak resident memory after the import and at the end
(``ru_maxrss`` of this process), and per file the read and analysis times and what was flagged.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

MAX_RANGES = 5000  # step ranges of flagged events kept per file; counts are always complete

Flag = tuple[str, "int | None", "int | None"]  # (what, first step, last step)


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _foreshock(fast: bool) -> tuple[Callable[[str], Any], Callable[[Any], list[Flag]]]:
    import foreshock
    import foreshock.detect
    import foreshock.logs  # noqa: F401 - read() imports these on first use: count them as imports
    import foreshock.store  # noqa: F401

    def analyze(run: Any) -> list[Flag]:
        events = foreshock.analyze(run, fast=fast).events
        return [(f"{e.detector}:{e.kind}", min(e.onset_step, e.step), e.step) for e in events]

    return foreshock.read, analyze


def _trainspotter() -> tuple[Callable[[str], Any], Callable[[Any], list[Flag]]]:
    from trainspotter import load_run, run_all

    def analyze(run: Any) -> list[Flag]:
        return [(f.detector, f.step_start, f.step_end) for f in run_all(run)]

    return load_run, analyze


def _losslint() -> tuple[Callable[[str], Any], Callable[[Any], list[Flag]]]:
    from pathlib import Path

    from losslint.checks import run_all_checks
    from losslint.parsing import load_run

    def analyze(run: Any) -> list[Flag]:
        flags: list[Flag] = []
        for f in run_all_checks(run):
            steps = f.details.get("steps") if isinstance(f.details, dict) else None
            if f.check == "loss_spike" and isinstance(steps, list):
                # the finding lists the first few spike steps; one flag per listed step
                flags.extend((f.check, int(s), int(s)) for s in steps)
            else:
                flags.append((f.check, None, None))
        return flags

    return (lambda path: load_run(Path(path))), analyze


def _tool(name: str):
    if name == "foreshock":
        return _foreshock(fast=True)
    if name == "foreshock-steps":
        return _foreshock(fast=False)
    if name == "trainspotter":
        return _trainspotter()
    if name == "losslint":
        return _losslint()
    raise SystemExit(f"unknown tool {name!r}")


def measure(tool: str, files: list[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    read, analyze = _tool(tool)
    out: dict[str, Any] = {"tool": tool, "import_s": time.perf_counter() - t0,
                           "maxrss_import_kib": _maxrss_kib(), "files": []}
    for path in files:
        rec: dict[str, Any] = {"path": path}
        try:
            # wall time, and this process's CPU time: on a busy machine the second is the steadier
            t, c = time.perf_counter(), time.process_time()
            run = read(path)
            rec["read_s"], rec["read_cpu_s"] = time.perf_counter() - t, time.process_time() - c
            rec["maxrss_after_read_kib"] = _maxrss_kib()
            t, c = time.perf_counter(), time.process_time()
            flags = analyze(run)
            rec["analyze_s"], rec["analyze_cpu_s"] = time.perf_counter() - t, time.process_time() - c
        except Exception as exc:  # a tool that cannot handle a log is a result, not a crash
            rec["error"] = f"{type(exc).__name__}: {exc}"
            rec["traceback"] = traceback.format_exc(limit=3)
        else:
            counts: dict[str, int] = {}
            for what, _, _ in flags:
                counts[what] = counts.get(what, 0) + 1
            rec["n_flags"] = len(flags)
            rec["flag_counts"] = counts
            rec["ranges"] = [[w, lo, hi] for w, lo, hi in flags if lo is not None][:MAX_RANGES]
        out["files"].append(rec)
        run = flags = None  # free this log before the next one
        gc.collect()
    out["maxrss_kib"] = _maxrss_kib()
    out["total_s"] = time.perf_counter() - t0
    out["code"] = _code_digests(tool.split("-")[0])
    return out


def _code_digests(package: str) -> dict[str, str]:
    """Digest of each of the package's modules this process loaded: two processes that loaded a
    module with the same digest measured the same code for it, even while files are edited elsewhere."""
    import hashlib

    out = {}
    for name in sorted(m for m in sys.modules if m == package or m.startswith(package + ".")):
        path = getattr(sys.modules[name], "__file__", None)
        if path:
            with open(path, "rb") as fh:
                out[name] = hashlib.sha256(fh.read()).hexdigest()[:12]
    return out


def profile(tool: str, path: str, top: int = 12) -> dict[str, Any]:
    """cProfile of reading ``path`` and of analysing it: the ``top`` functions by own time, each."""
    import cProfile
    import pstats

    read, analyze = _tool(tool)
    out: dict[str, Any] = {"tool": tool, "path": path}
    prof = cProfile.Profile()
    run = prof.runcall(read, path)
    out["read"] = _top(pstats.Stats(prof), top)
    prof = cProfile.Profile()
    prof.runcall(analyze, run)
    out["analyze"] = _top(pstats.Stats(prof), top)
    return out


def _top(stats: Any, n: int) -> dict[str, Any]:
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]  # by own time
    return {"total_s": stats.total_tt, "functions": [
        {"function": f"{_short(file)}:{line}({name})", "calls": nc, "own_s": tt, "cumulative_s": ct}
        for (file, line, name), (_, nc, tt, ct, _) in rows]}


def _short(file: str) -> str:
    parts = file.replace("\\", "/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 1 else file


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    tool, out_path, files = argv[0], argv[1], argv[2:]
    if tool.startswith("profile:"):
        result = profile(tool.split(":", 1)[1], files[0])
    else:
        result = measure(tool, files)
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
