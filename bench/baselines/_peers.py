"""Running a log-analysis tool from the peers' environment, one log at a time, with a time limit.

The parent (``bench/truth.py``, in the project's environment) starts one child process per tool
under ``bench/.venv-peers/bin/python``; the child runs the tool's ``findings(path)`` on each log
under ``signal.alarm`` and writes one JSON file. Standard library only: it runs in either
environment.

A finding is a dict ``{"what", "severity", "step", "step_end", "located", "message"}``: ``step`` is
where the tool places the problem, or, for a finding about the whole run that names no step
(``located`` false), the run's last step, the first moment a tool that reads the whole log can say it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Finding = dict[str, Any]


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


def child_main(findings: Callable[[str], list[Finding]], argv: Sequence[str]) -> int:
    """``OUT.json TIMEOUT_S FILE [FILE ...]``: each file's findings, seconds, or error, into OUT.json."""
    out_path, timeout, files = argv[0], int(argv[1]), argv[2:]
    signal.signal(signal.SIGALRM, _alarm)
    result: dict[str, dict[str, Any]] = {}
    for path in files:
        rec: dict[str, Any] = {}
        t = time.perf_counter()
        signal.alarm(timeout)
        try:
            rec["findings"] = findings(path)
        except _Timeout:
            rec["error"] = f"timed out after {timeout} s"
        except Exception as exc:  # a log the tool cannot handle is a result, not a crash
            rec["error"] = f"{type(exc).__name__}: {exc}"
            rec["traceback"] = traceback.format_exc(limit=3)
        finally:
            signal.alarm(0)
        rec["seconds"] = round(time.perf_counter() - t, 3)
        result[path] = rec
        with open(out_path, "w", encoding="utf-8") as fh:  # rewritten each time: a killed child keeps its work
            json.dump(result, fh)
    return 0


def run_tool(python: Path, module: Path, files: Sequence[Path], timeout_s: int) -> dict[str, dict[str, Any]]:
    """Run ``module`` (a peer module of this folder) under ``python`` on ``files``; ``{path: record}``.

    Each file gets ``timeout_s`` seconds; the whole child gets them all plus a minute.
    """
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    cmd = ["nice", "-n", "10", str(python), str(module), str(out), str(timeout_s), *map(str, files)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s * len(files) + 60)
        failed = proc.returncode != 0
        tail = proc.stderr[-2000:]
    except subprocess.TimeoutExpired:
        failed, tail = True, "the child ran past its overall time limit"
    result = json.loads(out.read_text(encoding="utf-8")) if out.stat().st_size else {}
    out.unlink()
    for f in files:
        if str(f) not in result:
            result[str(f)] = {"error": f"not analysed (child failed: {tail.strip()[-300:]})" if failed
                              else "not analysed"}
    return result


if __name__ == "__main__":
    print(__doc__, file=sys.stderr)
