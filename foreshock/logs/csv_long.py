"""Long CSV: one value per row, ``step,name,value`` (and optionally ``wall_time``).

This is the format of the shared logs and the one :func:`write_csv` writes. Large files take a
fast path: numpy parses whole columns at once and rows are grouped by metric without a Python
object per row. Anything the fast path cannot parse sends the file to the careful path, which
reads line by line and reports the exact line of every bad record.

    >>> import tempfile, pathlib
    >>> from foreshock.run import RunBuilder
    >>> b = RunBuilder(); b.add(0, "train/loss", 3.5); b.add(1, "train/loss", float("nan"))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.csv.gz"
    >>> _ = write_csv(b.build("run", source="mem", format="live"), path)
    >>> LongCsvReader().read(path).series("train/loss")[1].tolist()
    [3.5, nan]
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
from pathlib import Path
from typing import IO

import numpy as np

from foreshock.errors import LogFormatError
from foreshock.logs._source import decode, read_bytes, split_lines
from foreshock.logs.base import CUT_LINE, Reader, Records, parse_float, parse_step, split_csv_line
from foreshock.logs.names import canonical_name
from foreshock.run import Run

__all__ = ["LongCsvReader", "write_csv"]

_HEADERS = {
    ("step", "name", "value"),
    ("step", "tag", "value"),
    ("step", "metric", "value"),
    ("step", "name", "value", "wall_time"),
    ("step", "tag", "value", "wall_time"),
    ("step", "metric", "value", "wall_time"),
}
_EXPECTED_HEADER = "the header step,name,value (or step,name,value,wall_time)"
_NAME_WIDTHS = (32, 128, 1024)  # bytes of the fixed-width name column the fast path tries (multiples of 8)


def _header(line: str) -> int | None:
    """Number of columns when ``line`` is a long-CSV header, else None."""
    fields = tuple(f.strip().strip('"').lower() for f in line.strip().split(","))
    return len(fields) if fields in _HEADERS else None


class LongCsvReader(Reader):
    name = "csv-long"
    description = "long CSV, one value per row: step,name,value[,wall_time]"

    def sniff(self, head: bytes, path: Path) -> bool:
        first = decode(head[:4096]).split("\n", 1)[0]
        return _header(first) is not None

    def read(self, path: Path) -> Run:
        loaded = read_bytes(path)
        data = loaded.data
        records = Records(path, self.name)
        end = data.find(b"\n")
        header = decode(data if end < 0 else data[:end])
        ncols = _header(header)
        if ncols is None:
            raise LogFormatError(path, 1, _EXPECTED_HEADER, header.strip() or "an empty file")
        # an unterminated last line may be cut off: keep it out of the fast path
        last_nl = data.rfind(b"\n")
        body, tail = (data[end + 1: last_nl + 1], data[last_nl + 1:]) if end >= 0 else (b"", b"")
        if not _fast(body, ncols, records):
            records = Records(path, self.name)
            lines, _ = split_lines(decode(body))
            _careful(lines, 2, ncols, records)
        n_lines = data.count(b"\n")
        if tail.strip():
            if len(records):
                records.bad(n_lines + 1, CUT_LINE, decode(tail))
            else:
                _careful([decode(tail).rstrip("\r")], n_lines + 1, ncols, records)
        elif loaded.cut:
            records.lost_tail(n_lines)
        return records.build(expected="rows step,name,value after the header")


def _careful(lines: list[str], first_line: int, ncols: int, records: Records) -> None:
    names: dict[str, str] = {}
    for lineno, text in enumerate(lines, first_line):
        row = split_csv_line(text)
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != ncols:
            records.bad(lineno, f"{ncols} comma-separated fields", text)
            continue
        step = parse_step(row[0])
        if step is None:
            records.bad(lineno, "an integer step in column 'step'", row[0])
            continue
        raw = row[1].strip()
        if not raw:
            records.bad(lineno, "a metric name in column 'name'", text)
            continue
        value = parse_float(row[2])
        if value is None:
            records.bad(lineno, "a number in column 'value'", row[2])
            continue
        wall = None
        if ncols == 4 and row[3].strip():
            wall = parse_float(row[3])
            if wall is None:
                records.bad(lineno, "a number (seconds) in column 'wall_time'", row[3])
                continue
        name = names.get(raw)
        if name is None:
            name = names[raw] = canonical_name(raw)
        records.add(step, name, value, wall)


def _fast(body: bytes, ncols: int, records: Records) -> bool:
    """Parse whole columns with numpy; False when anything does not parse (nothing is added)."""
    if not body or body.isspace():
        return True
    for width in _NAME_WIDTHS:
        fields = [("step", "i8"), ("name", f"S{width}"), ("value", "f8")] + ([("wall", "f8")] if ncols == 4 else [])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = np.loadtxt(io.BytesIO(body), delimiter=",", comments=None, quotechar='"',
                                   dtype=fields, ndmin=1, encoding="latin1")
        except (ValueError, TypeError, OverflowError, UnicodeError):
            return False
        # a name as long as the column may have been cut short: try a wider column
        if not len(table) or int(np.char.str_len(table["name"]).max()) < width:
            break
    else:
        return False
    raw_names, ids = _group(table, width)
    names = [canonical_name(n.decode("utf-8", errors="replace").strip()) for n in raw_names]
    if "" in names:
        return False
    # raw names that share a canonical name form one group, so that read order decides repeats
    uniq = list(dict.fromkeys(names))
    if len(uniq) < len(names):
        ids = np.asarray([uniq.index(n) for n in names], dtype=np.int64)[ids]
    walls = table["wall"] if ncols == 4 else None
    for k, rows in enumerate(_rows_by_group(ids, len(uniq))):
        records.builder.add_array(uniq[k], table["step"][rows], table["value"][rows],
                                  None if walls is None else walls[rows])
    return True


_FEW = 64  # up to this many distinct names, one vectorised comparison per name beats sorting


def _group(table: np.ndarray, width: int) -> tuple[list[bytes], np.ndarray]:
    """Distinct names in order of first appearance, and each row's index into them.

    Each name is hashed into one uint64 straight from the table's memory (the name field sits
    at byte 8 of each row, 8-byte aligned), so no string is copied or sorted. A hash collision
    is detected and falls back to sorting the strings.
    """
    col = table["name"]
    words = table.view(np.uint64).reshape(len(table), table.dtype.itemsize // 8)[:, 1: 1 + width // 8]
    prime = np.uint64(0x100000001B3)
    h = words[:, 0] * prime
    for j in range(1, words.shape[1]):
        h = (h ^ words[:, j]) * prime
    firsts, ids = _distinct(h)
    if not np.array_equal(col[firsts][ids], col):
        firsts, ids = _distinct(col)
    return [bytes(col[i]) for i in firsts], ids


def _distinct(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First row of each distinct key, in order of appearance, and each row's key index."""
    ids = np.full(len(keys), -1, dtype=np.int64)
    firsts: list[int] = []
    few = len(np.unique(keys[:4096])) <= _FEW // 2  # a cheap look at the start decides the method
    while few and len(firsts) < _FEW:
        todo = np.flatnonzero(ids < 0)[:1]
        if not len(todo):
            return np.asarray(firsts, dtype=np.int64), ids
        ids[keys == keys[todo[0]]] = len(firsts)
        firsts.append(int(todo[0]))
    # many distinct keys: sort once instead
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    by_first = np.argsort(first)
    rank = np.empty(len(first), dtype=np.int64)
    rank[by_first] = np.arange(len(first))
    return first[by_first], rank[inverse.reshape(-1)]


def _rows_by_group(ids: np.ndarray, k: int) -> list[np.ndarray]:
    """Row indices of each group, in read order."""
    if k <= _FEW:
        return [np.flatnonzero(ids == g) for g in range(k)]
    order = np.argsort(ids, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=k))])
    return [order[bounds[g]: bounds[g + 1]] for g in range(k)]


def write_csv(run: Run, path: str | os.PathLike) -> Path:
    """Write ``run`` as a long CSV (gzip-compressed when the name ends in ``.gz``), sorted by step.

    Values are written with Python's shortest round-trip repr (``nan``, ``inf`` included), so
    reading the file back gives exactly the same numbers. A ``wall_time`` column is added when
    any metric has wall times.
    """
    path = Path(path)
    names = run.names
    with_wall = any(run[n].wall_times is not None for n in names)
    parts = [run[n] for n in names]
    steps = np.concatenate([s.steps for s in parts]) if parts else np.empty(0, np.int64)
    ids = np.concatenate([np.full(len(s), i) for i, s in enumerate(parts)]) if parts else np.empty(0, int)
    values = np.concatenate([s.values for s in parts]) if parts else np.empty(0)
    walls = np.concatenate([s.wall_times if s.wall_times is not None else np.full(len(s), np.nan)
                            for s in parts]) if parts else np.empty(0)
    order = np.lexsort((ids, steps))
    quoted = [_quote(n) for n in names]
    with _open_text(path) as f:
        f.write("step,name,value,wall_time\n" if with_wall else "step,name,value\n")
        for start in range(0, len(order), 100_000):
            rows = order[start: start + 100_000]
            cols = [steps[rows].tolist(), [quoted[i] for i in ids[rows].tolist()], values[rows].tolist()]
            if with_wall:
                f.writelines(f"{s},{n},{v!r},{w!r}\n" for s, n, v, w in zip(*cols, walls[rows].tolist(), strict=True))
            else:
                f.writelines(f"{s},{n},{v!r}\n" for s, n, v in zip(*cols, strict=True))
    return path


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "wt", encoding="utf-8", newline="\n", compresslevel=6)  # 9: 3x slower, 5% smaller
    return path.open("w", encoding="utf-8", newline="\n")


def _quote(name: str) -> str:
    if any(c in name for c in ',"\r\n') or name != name.strip():
        return '"' + name.replace('"', '""') + '"'
    return name
