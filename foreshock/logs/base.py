"""What every reader shares: the :class:`Reader` interface, number parsing, and :class:`Records`,
which collects good records and skipped ones and turns them into a Run or a clear error."""

from __future__ import annotations

import csv
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from foreshock.errors import LogFormatError
from foreshock.logs._source import run_name
from foreshock.run import Run, RunBuilder, Skipped, Status

__all__ = ["CUT_LINE", "Reader", "Records", "parse_float", "parse_step", "split_csv_line", "step_of"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CUT_LINE = "a complete line (this one has no line end: the file is cut off or still being written)"
_MAX_SKIP_GROUPS = 100  # beyond this, skipped records are counted in one last group


class Reader(ABC):
    """A log format: recognises its files from their first bytes and reads them into a Run.

    Subclasses set ``name`` (what ``read_log(format=...)`` and ``Run.format`` say) and a one-line
    ``description``. ``sniff`` must be cheap and must not raise; ``read`` raises
    :class:`~foreshock.errors.LogFormatError` for a file that is not a log of its format.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @abstractmethod
    def sniff(self, head: bytes, path: Path) -> bool:
        """Whether ``head`` (the first bytes, decompressed; empty for a directory) is this format."""

    @abstractmethod
    def read(self, path: Path) -> Run:
        """Read the log at ``path``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def parse_float(text: str) -> float | None:
    """A value as logs write it (``3.91``, ``1e-05``, ``nan``, ``inf``, ``-inf``), else None."""
    t = text.strip()
    if not t or "_" in t:  # float() accepts 1_000; no log means that
        return None
    try:
        return float(t)
    except ValueError:
        return None


def parse_step(text: str) -> int | None:
    """A step as logs write it (``120``, or ``120.0`` from a float column), else None."""
    t = text.strip()
    if len(t) > 24:  # no int64 is written that long; int() refuses very long digit strings anyway
        return None
    if t.isdigit() or (t[:1] == "-" and t[1:].isdigit()):
        return step_of(int(t))
    return step_of(parse_float(t))


def split_csv_line(line: str) -> list[str]:
    """The fields of one CSV line. Each line is split on its own, so that a stray quote cannot
    swallow the lines after it and every record keeps its own line number."""
    try:
        return next(csv.reader([line]), [])
    except csv.Error:  # a NUL byte, for instance
        return [line]


def step_of(value: Any) -> int | None:
    """An integral number that fits a step (int64), else None. Booleans are not steps."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    if not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
        return None
    return value


class Records:
    """Good records, skipped records, config: what a reader collects before it builds a Run.

    A skipped record is noted with its line (or record number) and why. A file with no good
    record at all is not a log of this format: :meth:`build` then raises a LogFormatError that
    names the first bad line, or says what was expected when there was none.
    """

    def __init__(self, path: Path, format: str) -> None:
        self.path = path
        self.format = format
        self.builder = RunBuilder()
        self.config: dict[str, Any] = {}
        self._first_bad: tuple[int | None, str, str | None] | None = None
        self._overflow: list[int | None] = []  # lines of skipped records beyond the group limit
        self.last_step: int | None = None  # the largest step added one record at a time

    def add(self, step: int, name: str, value: float, wall_time: float | None = None) -> None:
        self.builder.add(step, name, value, wall_time)
        if self.last_step is None or step > self.last_step:
            self.last_step = step

    def __len__(self) -> int:
        return len(self.builder)

    def bad(self, line: int | None, expected: str, got: str | None = None, count: int = 1) -> None:
        """Skip ``count`` records at ``line``: they are not what the format expects."""
        if self._first_bad is None:
            self._first_bad = (line, expected, got)
        reason = f"expected {expected}" + ("" if got is None else f", got {_short(got)!r}")
        groups = len(self.builder.skipped)
        self.builder.skip(line, reason, count)
        if len(self.builder.skipped) > max(groups, _MAX_SKIP_GROUPS):
            self.builder.skipped.pop()
            self._overflow.extend([line] * count)

    def lost_tail(self, last_line: int) -> None:
        """The compressed stream ended early, after ``last_line``: what followed is lost (count unknown)."""
        self.builder.skip(last_line + 1, "the compressed file is cut off here: whatever followed is lost")

    def build(self, *, expected: str, status: Status = "unknown") -> Run:
        """The Run, or a LogFormatError when no record could be read."""
        if len(self.builder) == 0:
            if self._first_bad is not None:
                raise LogFormatError(self.path, *self._first_bad)
            raise LogFormatError(self.path, None, expected, "no records")
        if self._overflow:
            self.builder.skipped.append(_overflow_group(self._overflow))
        return self.builder.build(run_name(self.path), source=str(self.path), format=self.format,
                                  config=self.config, status=status)


def _overflow_group(lines: list[int | None]) -> Skipped:
    return Skipped(lines[0], len(lines), "more records that could not be read; this is the first of them")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
