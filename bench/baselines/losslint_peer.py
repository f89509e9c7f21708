"""losslint 0.4.1 on a whole log, as ``losslint check`` runs it: ``load_run`` then ``run_all_checks``.

It runs in ``bench/.venv-peers`` (``losslint[fast]``, see ``bench/replay_inputs.py``), as a child::

    bench/.venv-peers/bin/python bench/baselines/losslint_peer.py OUT.json TIMEOUT_S FILE.csv ...

Each ``Finding`` becomes ``{"what": check, "severity", "metric", "step", ...}`` (``metric``: the series it
is about, when it is about one); severities are info, warning
and error (warning and error count as warnings). Where a finding names steps (``nan_inf`` and
``loss_spike`` list the first five, ``step_backtrack`` its first backtracks) ``step`` is the first
of them; a finding about the whole run (``divergence``: last-decile median over first-decile median;
``parse``) names none, so its step is the run's last one (``located`` false): losslint can say it
only once it has read the whole log.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

VERSION = "0.4.1"


def _steps(check: str, details: Any) -> list[int]:
    if not isinstance(details, dict):
        return []
    if check == "step_backtrack":
        return [int(s) for _, s in details.get("backtracks", [])]
    steps = details.get("steps")
    return [int(s) for s in steps] if isinstance(steps, list) else []


def findings(path: str) -> list[dict[str, Any]]:
    from losslint.checks import find_series, run_all_checks
    from losslint.parsing import load_run

    run = load_run(Path(path))
    last = max(run.steps) if run.steps else None
    train = find_series(run, "train")
    out = []
    for f in run_all_checks(run):
        steps = _steps(f.check, f.details)
        series = f.details.get("series") if isinstance(f.details, dict) else None
        if series is None and f.check in ("loss_spike", "divergence", "stagnation") and train is not None:
            series = train[0]  # these checks read the train loss series
        out.append({"what": f.check, "severity": f.severity, "metric": series,
                    "step": min(steps) if steps else last, "step_end": max(steps) if steps else last,
                    "located": bool(steps), "message": f.message})
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _peers import child_main

    raise SystemExit(child_main(findings, sys.argv[1:]))
