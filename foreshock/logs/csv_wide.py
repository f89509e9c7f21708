"""Wide CSV: a step column and one column per metric.

Covers Lightning's CSVLogger ``metrics.csv`` (empty cells where a metric was not logged on that
row, several rows per step), Weights & Biases history exports (``_step``, ``_runtime``,
``_timestamp``), Keras' CSVLogger (``epoch`` as the step) and plain ``step,lr,loss`` tables.

Cells: empty means "not logged"; ``nan`` / ``inf`` are values. A column of text, or a numeric
column that never changes and is not a known metric (``modulus``, ``d_model``), is a
hyper-parameter of the run and goes into ``Run.config``, not into the metrics.

A plain file of numbers is read whole columns at a time by numpy; anything else (text cells,
quotes, ragged or bad rows, a cut-off last line) goes the careful way, line by line, which
names the line of every skipped row.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foreshock.errors import LogFormatError
from foreshock.logs._source import decode, read_bytes, split_lines
from foreshock.logs.base import CUT_LINE, Reader, Records, parse_float, parse_step, split_csv_line
from foreshock.logs.names import EPOCH_KEY, STEP_KEYS, WALL_TIME_KEYS, canonical_name, is_known_metric
from foreshock.run import Run

__all__ = ["WideCsvReader"]

_MIN_CONSTANT_ROWS = 3  # fewer values than this never make a column a hyper-parameter
_EXPECTED_STEP = "a step column (" + ", ".join(STEP_KEYS + (EPOCH_KEY,)) + ")"


def _step_column(keys: list[str]) -> int | None:
    lower = [k.strip().lower() for k in keys]
    for key in STEP_KEYS + (EPOCH_KEY,):
        if key in lower:
            return lower.index(key)
    return None


@dataclass
class _Column:
    key: str
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    texts: int = 0  # cells that are not numbers


class WideCsvReader(Reader):
    name = "csv-wide"
    description = "wide CSV: a step column and one column per metric (Lightning, W&B export, Keras)"

    def sniff(self, head: bytes, path: Path) -> bool:
        first = decode(head[:16384]).split("\n", 1)[0].strip()
        if "," not in first:
            return False
        return _step_column(split_csv_line(first)) is not None

    def read(self, path: Path) -> Run:
        loaded = read_bytes(path)
        if not loaded.cut:
            run = _fast(path, loaded.data, self.name)
            if run is not None:
                return run
        lines, terminated = split_lines(decode(loaded.data))
        if not lines or not lines[0].strip():
            raise LogFormatError(path, 1, "a CSV header naming the columns", "an empty first line")
        header = [k.strip() for k in split_csv_line(lines[0])]
        step_at = _step_column(header)
        if step_at is None:
            raise LogFormatError(path, 1, _EXPECTED_STEP, lines[0])
        lower = [k.lower() for k in header]
        wall_at = next((lower.index(k) for k in WALL_TIME_KEYS if k in lower), None)
        columns = {i: _Column(k) for i, k in enumerate(header) if i not in (step_at, wall_at)}
        records = Records(path, self.name)
        rows = [split_csv_line(line) for line in lines[1:]]
        _count_texts(rows, columns, len(header))
        numeric = {i: c for i, c in columns.items() if c.texts * 2 <= _count_cells(rows, i)}
        if not numeric:
            raise LogFormatError(path, 1, "at least one column of numbers besides the step", lines[0])
        good = 0
        for lineno, row in enumerate(rows, 2):
            if not any(cell.strip() for cell in row):
                continue
            if lineno == len(lines) and not terminated and good:
                records.bad(lineno, CUT_LINE, lines[-1])
                continue
            if _read_row(records, lineno, row, lines[lineno - 1], header, step_at, wall_at, numeric):
                good += 1
        if loaded.cut and terminated:
            records.lost_tail(len(lines))
        records.config.update(_text_config(rows, columns, numeric))
        for column in numeric.values():
            if _is_constant(column):
                records.config[column.key] = _plain(column.values[0])
            elif column.steps:
                records.builder.add_array(canonical_name(column.key), column.steps, column.values, column.walls)
        if good and not len(records.builder):
            raise LogFormatError(path, 1, "at least one column of numbers besides the step", lines[0])
        return records.build(expected="rows of numbers under the header")


def _read_row(records: Records, lineno: int, row: list[str], text: str, header: list[str],
              step_at: int, wall_at: int | None, numeric: dict[int, _Column]) -> bool:
    """Add one row's values to its columns; a row with any bad cell is skipped whole."""
    if len(row) != len(header):
        records.bad(lineno, f"{len(header)} comma-separated fields like the header", text)
        return False
    step = parse_step(row[step_at])
    if step is None:
        records.bad(lineno, f"an integer step in column {header[step_at]!r}", row[step_at])
        return False
    wall = parse_float(row[wall_at]) if wall_at is not None and row[wall_at].strip() else None
    cells: list[tuple[_Column, float]] = []
    for i, column in numeric.items():
        cell = row[i].strip()
        if not cell:
            continue  # not logged on this row
        value = parse_float(cell)
        if value is None:
            records.bad(lineno, f"a number in column {column.key!r}", cell)
            return False
        cells.append((column, value))
    if not cells:
        return False
    nan = float("nan")
    for column, value in cells:
        column.steps.append(step)
        column.values.append(value)
        column.walls.append(nan if wall is None else wall)
    return True


def _count_texts(rows: list[list[str]], columns: dict[int, _Column], width: int) -> None:
    for row in rows:
        if len(row) != width:
            continue
        for i, column in columns.items():
            cell = row[i].strip()
            if cell and parse_float(cell) is None:
                column.texts += 1


def _count_cells(rows: list[list[str]], i: int) -> int:
    return sum(1 for row in rows if i < len(row) and row[i].strip())


def _text_config(rows: list[list[str]], columns: dict[int, _Column], numeric: dict[int, _Column]) -> dict:
    """Text columns holding a single value (``regime=adamw``) are hyper-parameters."""
    config: dict[str, Any] = {}
    for i, column in columns.items():
        if i in numeric:
            continue
        values = {row[i].strip() for row in rows if i < len(row) and row[i].strip()}
        if len(values) == 1:
            config[column.key] = values.pop()
    return config


def _is_constant(column: _Column) -> bool:
    if len(column.values) < _MIN_CONSTANT_ROWS or is_known_metric(column.key):
        return False
    values = np.asarray(column.values, dtype=np.float64)
    return bool(values[0] == values[0] and (values == values[0]).all())  # NaN is never constant


def _plain(value: float) -> int | float:
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


# Bytes the fast path accepts in the body: digits, signs, points, exponents, the letters of
# nan / inf / infinity, commas and line ends. Text cells, quotes, blanks, tabs, carriage
# returns, underscores (``1_000``) and non-ASCII bytes all send the file to the careful path.
_FAST_BYTES = np.zeros(256, dtype=bool)
_FAST_BYTES[np.frombuffer(b"0123456789+-.eEnNaAiIfFtTyY,\n", dtype=np.uint8)] = True
_MAX_STEP_DIGITS = 18  # always fits an int64


def _fast(path: Path, data: bytes, fmt: str) -> Run | None:
    """The Run from whole-column numpy parsing, or None when anything is unusual.

    Only plain files qualify: every line terminated, no blank line, numbers or empty cells
    only, digit-only steps. Then no row can be skipped, so the careful path would read the
    same values, and its line numbers are not needed.
    """
    end = data.find(b"\n")
    if end < 0 or not data.endswith(b"\n") or data.startswith(b"\xef\xbb\xbf") or b"\r" in data:
        return None
    header = [k.strip() for k in split_csv_line(decode(data[:end]))]
    step_at = _step_column(header)
    body = data[end + 1:]
    if step_at is None or not body or b"\n\n" in body or b'"' in data[:end]:
        return None
    if not _FAST_BYTES[np.frombuffer(body, dtype=np.uint8)].all():
        return None
    lower = [k.lower() for k in header]
    wall_at = next((lower.index(k) for k in WALL_TIME_KEYS if k in lower), None)
    keys = {i: k for i, k in enumerate(header) if i not in (step_at, wall_at)}
    if not keys:
        return None
    width = max(len(cell) for cell in body[:body.find(b"\n")].split(b","))
    for _ in range(4):  # a cell as wide as the column may have been cut short: try a wider one
        width = 2 * width + 8
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = np.loadtxt(io.BytesIO(body), delimiter=",", comments=None, quotechar=None,
                                   dtype=f"S{width}", ndmin=2, encoding="latin1")
        except (ValueError, TypeError, OverflowError, UnicodeError):
            return None
        if table.shape[1] != len(header):
            return None
        if int(np.char.str_len(table).max()) < width:
            break
    else:
        return None
    try:
        return _fast_columns(path, table, fmt, keys, step_at, wall_at)
    except (ValueError, OverflowError):
        return None


def _fast_columns(path: Path, table: np.ndarray, fmt: str, keys: dict[int, str],
                  step_at: int, wall_at: int | None) -> Run | None:
    raw_steps = table[:, step_at]
    if not np.char.isdigit(raw_steps).all() or int(np.char.str_len(raw_steps).max()) > _MAX_STEP_DIGITS:
        return None
    steps = raw_steps.astype(np.int64)
    walls = np.full(len(table), np.nan)
    if wall_at is not None:
        logged = table[:, wall_at] != b""
        walls[logged] = table[logged, wall_at].astype(np.float64)
    columns = []
    for i, key in keys.items():
        logged = table[:, i] != b""
        columns.append((key, logged, table[logged, i].astype(np.float64)))  # ValueError: a bad cell
    records = Records(path, fmt)
    for key, logged, values in columns:
        if _is_constant(_Column(key, values=values)):
            records.config[key] = _plain(float(values[0]))
        elif len(values):
            records.builder.add_array(canonical_name(key), steps[logged], values, walls[logged])
    if not len(records.builder):
        return None  # the careful path says what is wrong
    return records.build(expected="rows of numbers under the header")
