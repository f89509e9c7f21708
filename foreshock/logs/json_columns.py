"""Columnar JSON: one object holding a numeric array per metric, element ``i`` at step ``i``
(or at ``step[i]`` when the object has a step array). Also a JSON list of step records.

This is how the edge-of-stability browser saves runs (``loss``, ``testLoss``, ``eigenvalues``
with the top Hessian eigenvalues of every step, hyper-parameters in ``params``) and how Keras'
``history.history`` is usually dumped. Arrays of per-step lists are split by rank: for
``eigenvalues`` the largest is ``probe/hessian/lambda_max``, the next ``lambda_2``...
Everything that is not a per-step array (``params``, ``name``) is config. When no array holds
the learning rate but the config does (``params.eta``), it becomes a constant ``opt/lr``
series: the schedule is known, and it is flat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from foreshock.errors import LogFormatError
from foreshock.logs._json import load_document
from foreshock.logs._source import read_bytes
from foreshock.logs.base import Reader, Records, step_of
from foreshock.logs.jsonl import add_record, number
from foreshock.logs.names import STEP_KEYS, canonical_name
from foreshock.run import Run

__all__ = ["JsonColumnsReader"]

_EIGENVALUES = "probe/hessian/eigenvalues"
_LR_KEYS = ("eta", "lr", "learning_rate")
_EXPECTED = "a JSON log: an object of per-step arrays of numbers, or a list of records with a step"


class JsonColumnsReader(Reader):
    name = "json-columns"
    description = "JSON object of per-step numeric arrays (eos-browser, Keras history), or a list of records"

    def sniff(self, head: bytes, path: Path) -> bool:
        return head.lstrip()[:1] in (b"{", b"[")

    def read(self, path: Path) -> Run:
        doc, cut_line = load_document(path, read_bytes(path))
        records = Records(path, self.name)
        if isinstance(doc, list):
            for index, item in enumerate(doc, 1):
                add_record(records, item, index)
        elif isinstance(doc, dict):
            _read_columns(records, doc)
        else:
            raise LogFormatError(path, 1, _EXPECTED, f"a JSON {type(doc).__name__}")
        if cut_line is not None:
            records.bad(cut_line, "the rest of the JSON document", "the end of the file (cut off here)")
        if not len(records) and isinstance(doc, dict):
            raise LogFormatError(path, None, _EXPECTED, "a JSON object with keys " + ", ".join(list(doc)[:10]))
        return records.build(expected=_EXPECTED)


def _read_columns(records: Records, doc: dict[str, Any]) -> None:
    columns = {k: _column(v) for k, v in doc.items() if isinstance(v, list)}
    columns = {k: c for k, c in columns.items() if c is not None and len(c)}
    step_key = next((k for k in STEP_KEYS if k in columns and columns[k].ndim == 1), None)
    steps_given = _steps(doc[step_key]) if step_key else None
    if steps_given is None:
        step_key = None
    longest = len(steps_given) if steps_given is not None else max((len(c) for c in columns.values()), default=0)
    # arrays much shorter than the run (hiddenDims: [30, 20]) describe the model, not the steps
    metrics = {k: c for k, c in columns.items() if k != step_key and 2 * len(c) >= longest}
    records.config.update({k: v for k, v in doc.items() if k not in metrics and k != step_key})
    for key, col in metrics.items():
        n = min(len(col), longest)
        steps = steps_given[:n] if steps_given is not None else np.arange(n)
        for name, values in _named_columns(canonical_name(key), col[:n]):
            records.builder.add_array(name, steps, values)
    if longest and "opt/lr" not in {canonical_name(k) for k in metrics}:
        lr = _constant_lr(records.config)
        if lr is not None:
            steps = steps_given if steps_given is not None else np.arange(longest)
            records.builder.add_array("opt/lr", steps, np.full(len(steps), lr))


def _column(values: list[Any]) -> np.ndarray | None:
    """A 1-D array of numbers, a 2-D array of per-step lists, or None when not numeric.

    ``null`` is NaN: JavaScript writes NaN as null. Per-step lists of different lengths are
    padded with -inf, which ranks last and never passes for a value (see :func:`_named_columns`).
    """
    if any(isinstance(v, list) for v in values):
        if not all(v is None or isinstance(v, list) for v in values):
            return None
        width = max(len(v) for v in values if v is not None)
        out = np.full((len(values), width), -np.inf)
        for i, row in enumerate(values):
            if row is None:
                out[i] = np.nan
                continue
            for j, v in enumerate(row):
                x = number(v)
                if x is None and v is not None:
                    return None
                out[i, j] = np.nan if x is None else x
        return out if width else None
    out = np.empty(len(values))
    for i, v in enumerate(values):
        x = number(v)
        if x is None and v is not None:
            return None
        out[i] = np.nan if x is None else x
    return out


def _steps(values: list[Any]) -> np.ndarray | None:
    steps = [step_of(v) for v in values]
    return None if any(s is None for s in steps) else np.asarray(steps, dtype=np.int64)


def _named_columns(name: str, col: np.ndarray) -> list[tuple[str, np.ndarray]]:
    if col.ndim == 1:
        return [(name, col)]
    if name == _EIGENVALUES:
        # largest first, whatever order the file keeps them in; a NaN stays NaN (a failed probe)
        ranked = -np.sort(-col, axis=1)
        ranked[np.isnan(col).any(axis=1)] = np.nan
        ranked[ranked == -np.inf] = np.nan  # padding: that step had fewer eigenvalues
        names = ["probe/hessian/lambda_max"] + [f"probe/hessian/lambda_{j + 1}" for j in range(1, col.shape[1])]
        return [(n, ranked[:, j]) for j, n in enumerate(names)]
    col = np.where(col == -np.inf, np.nan, col)
    return [(f"{name}/{j}", col[:, j]) for j in range(col.shape[1])]


def _constant_lr(config: dict[str, Any]) -> float | None:
    for scope in (config, config.get("params"), config.get("config")):
        if isinstance(scope, dict):
            for key in _LR_KEYS:
                value = number(scope.get(key))
                if value is not None:
                    return value
    return None
