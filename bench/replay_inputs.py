"""What ``bench/replay.py`` needs around the measurement: the peers' environment, their input
files, and a description of the machine the numbers were taken on."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

# The versions measured; bump them together with the committed results.
PEERS = {"trainspotter": "trainspotter==0.2.6", "losslint": "losslint[fast]==0.4.1"}


def _numpy_pin() -> str:
    import numpy

    # the peers get the numpy foreshock runs with, so that the comparison is of the tools
    return f"numpy=={numpy.__version__}"


def peer_python(venv: Path) -> Path:
    """The peers' interpreter; creates ``venv`` (same base Python as this one) when it is missing.

    ``losslint[fast]`` is its numpy-accelerated install, the fastest it offers.
    """
    py = venv / "bin" / "python"
    want = [_numpy_pin(), *PEERS.values()]
    if py.exists() and _installed(py, want):
        return py
    print(f"setting up {venv}: {' '.join(want)}", flush=True)
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", *want], check=True)
    return py


def _installed(py: Path, specs: list[str]) -> bool:
    pairs = [s.replace("[fast]", "").split("==") for s in specs]
    code = ("import importlib.metadata as m, sys; "
            f"sys.exit(any(m.version(n) != v for n, v in {pairs!r}))")
    return subprocess.run([str(py), "-c", code], capture_output=True).returncode == 0


def wide_copies(logs: list[Path], out: Path, root: Path) -> list[Path]:
    """Each long ``step,name,value`` log rewritten as a plain wide CSV the peers read.

    Cells are copied as written (``nan`` and ``inf`` included); a metric not logged at a step is
    a blank cell; a repeated ``(step, name)`` keeps the last value, as the long format means.
    """
    paths = []
    for log in logs:
        dest = out / log.relative_to(root).with_suffix("")  # x.csv.gz -> x.csv
        paths.append(dest)
        if dest.exists() and dest.stat().st_mtime >= log.stat().st_mtime:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        rows: dict[str, dict[str, str]] = {}
        names: dict[str, None] = {}
        with gzip.open(log, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            next(reader)
            for step, name, value in reader:
                rows.setdefault(step, {})[name] = value
                names[name] = None
        tmp = dest.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["step", *names])
            for step in sorted(rows, key=int):
                w.writerow([step, *(rows[step].get(n, "") for n in names)])
        tmp.replace(dest)
    return paths


def _versions(py: Path, packages: list[str]) -> dict[str, str | None]:
    code = ("import importlib.metadata as m, json, platform, sys\n"
            "def v(n):\n try: return m.version(n)\n except m.PackageNotFoundError: return None\n"
            f"print(json.dumps({{'python': platform.python_version(), "
            f"**{{n: v(n) for n in {packages!r}}}}}))")
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def _detectors(py: Path) -> list[str]:
    code = "from foreshock.detect import default_detectors as d; print(*(repr(x) for x in d()), sep=chr(10))"
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    return res.stdout.split("\n")[:-1] if res.returncode == 0 else []


def source_digest(package: Path) -> str:
    """A digest of the package's Python sources: taken before and after a long measurement, it
    tells whether the code changed while it was being measured."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(package.rglob("*.py")):
        h.update(str(f.relative_to(package)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _git(*args: str) -> str:
    res = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True)
    return res.stdout.strip()


def machine_info(foreshock_py: Path, peers_py: Path) -> dict[str, Any]:
    cpu = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "cpu family", "model", "cpu MHz", "cache size") and key not in cpu:
            cpu[key] = value.strip()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "pinned_to": "core 0 (taskset -c 0)",
        "loadavg_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "foreshock_env": _versions(foreshock_py, ["foreshock", "numpy", "scipy"]),
        "peers_env": _versions(peers_py, ["trainspotter", "losslint", "numpy"]),
        "foreshock_detectors": _detectors(foreshock_py),
        "foreshock_commit": _git("rev-parse", "--short", "HEAD"),
        "foreshock_tree_dirty": bool(_git("status", "--porcelain", "--", "foreshock")),
    }
