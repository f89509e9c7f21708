"""trainspotter 0.2.6 on a whole log, as ``trainspotter analyze`` runs it: ``load_run`` then ``run_all``.

It runs in ``bench/.venv-peers`` (see ``bench/replay_inputs.py``), as a child process::

    bench/.venv-peers/bin/python bench/baselines/trainspotter_peer.py OUT.json TIMEOUT_S FILE.csv ...

Each ``Finding`` becomes ``{"what": detector, "severity", "metric", "step": step_start, "step_end", ...}``; its
severities are info, warning and error (warning and error count as warnings). The tool reads the
whole log before it says anything, so ``step`` is where it places the problem in hindsight, not a
moment at which it could have warned during training.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

VERSION = "0.2.6"


def findings(path: str) -> list[dict[str, Any]]:
    from trainspotter import load_run, run_all

    return [{"what": f.detector, "severity": f.severity, "metric": f.metric, "step": int(f.step_start),
             "step_end": int(f.step_end), "located": True, "message": f.message} for f in run_all(load_run(path))]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _peers import child_main

    raise SystemExit(child_main(findings, sys.argv[1:]))
