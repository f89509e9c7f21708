"""Wide CSV: a step column and one column per metric.

Covers Lightning's CSVLogger ``metrics.csv`` (empty cells where a metric was not logged on that
row, several rows per step), Weights & Biases history exports (``_step``, ``_runtime``,
``_timestamp``), Keras' CSVLogger (``epoch`` as the step) and plain ``step,lr,loss`` tables.

Cells: empty means "not logged"; ``nan`` / ``inf`` are values. A column of text, or a numeric
column that never changes and is not a known metric (``modulus``, ``d_model``), is a
hyper-parameter of the run and goes into ``Run.config``, not into the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    first = column.values[0]
    return first == first and all(v == first for v in column.values)  # NaN is never constant


def _plain(value: float) -> int | float:
    return int(value) if value.is_integer() and abs(value) < 2**53 else value
