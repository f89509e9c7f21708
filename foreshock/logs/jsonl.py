"""JSON Lines: one JSON object per line, with a step key (``step``, ``global_step``, ``_step``,
``iteration``, ``iter``).

Other numeric keys are metrics; nested objects are flattened with ``/``
(``{"train": {"loss": 2.1}}`` is ``train/loss``). ``null`` means "not logged". Objects without
a step before the first record (a line of hyper-parameters) become the run's config.

    >>> import json, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.jsonl"
    >>> _ = path.write_text('{"lr": 0.1}\\n{"step": 1, "loss": 2.5}\\n{"step": 2, "loss": NaN}\\n')
    >>> run = JsonlReader().read(path)
    >>> run.config, run.series("train/loss")[1].tolist()
    ({'lr': 0.1}, [2.5, nan])
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from foreshock.logs._source import HEAD_BYTES, decode, read_bytes, split_lines
from foreshock.logs.base import CUT_LINE, Reader, Records, parse_float, parse_step, step_of
from foreshock.logs.names import EPOCH_KEY, STEP_KEYS, WALL_TIME_KEYS, canonical_name
from foreshock.run import Run

__all__ = ["JsonlReader", "add_record", "number", "step_key"]

_EXPECTED_STEP = "a step key (" + ", ".join(STEP_KEYS) + ")"
_SNIFF_LINES = 5


def step_key(obj: Mapping[str, Any]) -> str | None:
    """The key that holds the step in a record, or None."""
    for key in STEP_KEYS + (EPOCH_KEY,):
        if key in obj and not isinstance(obj[key], (dict, list)):
            return key
    return None


def number(value: Any) -> float | None:
    """A JSON value as a metric value: numbers and numeric strings ("nan", "1e-3"); else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range
            return None
    if isinstance(value, str):
        return parse_float(value)
    return None


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, name + "/")
        else:
            yield name, value


def add_record(records: Records, obj: Any, where: int) -> bool:
    """Add one record (a JSON object with a step); False when it holds no step or no value.

    ``where`` is the line (or record number) reported if the record is bad.
    """
    if not isinstance(obj, dict):
        records.bad(where, "a JSON object", json.dumps(obj)[:80])
        return False
    key = step_key(obj)
    if key is None:
        records.bad(where, _EXPECTED_STEP, json.dumps(obj)[:80])
        return False
    raw_step = obj[key]
    step = parse_step(raw_step) if isinstance(raw_step, str) else step_of(raw_step)
    if step is None:
        records.bad(where, f"an integer step in key {key!r}", repr(raw_step))
        return False
    wall = next((number(obj[k]) for k in WALL_TIME_KEYS if k in obj), None)
    try:
        items = list(_flatten(obj))
    except RecursionError:
        records.bad(where, "a JSON object nested less deeply", json.dumps(obj)[:80])
        return False
    added = False
    for name, value in items:
        if name == key or name in WALL_TIME_KEYS or name in STEP_KEYS:
            continue
        v = number(value)
        if v is not None:
            records.add(step, canonical_name(name), v, wall)
            added = True
    return added


class JsonlReader(Reader):
    name = "jsonl"
    description = "JSON Lines: one object per line with a step key"

    def sniff(self, head: bytes, path: Path) -> bool:
        pieces = decode(head).split("\n")
        if len(head) >= HEAD_BYTES:
            pieces.pop()  # the head may end inside a line
        lines = [ln for ln in pieces if ln.strip()][:_SNIFF_LINES]
        objs = []
        for line in lines:
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                objs.append(obj)
        # most lines are objects (a bad line is a skipped record, not another format) and one has a step
        return 2 * len(objs) > len(lines) and any(step_key(o) is not None for o in objs)

    def read(self, path: Path) -> Run:
        loaded = read_bytes(path)
        lines, terminated = split_lines(decode(loaded.data))
        records = Records(path, self.name)
        started = False
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):
                last_cut = lineno == len(lines) and not terminated
                records.bad(lineno, CUT_LINE if last_cut else "a JSON object on each line", line)
                continue
            if not started and isinstance(obj, dict) and step_key(obj) is None:
                records.config.update(obj)  # hyper-parameters written before the first record
                continue
            started = True
            add_record(records, obj, lineno)
        if loaded.cut and terminated:
            records.lost_tail(len(lines))
        return records.build(expected="JSON objects with a step key, one per line")
