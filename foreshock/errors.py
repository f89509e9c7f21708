"""Every error foreshock raises on purpose.

    ForeshockError
     +-- LogFormatError     a file is not a training log foreshock can read (names file, line, expectation)
     +-- StoreError         the run store cannot be opened, or a write was refused
     +-- NotEnoughData      an analysis needs more points than the run has
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ForeshockError", "LogFormatError", "NotEnoughData", "StoreError"]


class ForeshockError(Exception):
    """Base class of all foreshock errors."""


class LogFormatError(ForeshockError, ValueError):
    """A file is not a training log in any format foreshock reads.

    The message always names the file, the line (1-based, when the problem has one) and what was
    expected there, e.g. ``run.csv, line 3: expected a number in column 'value', got 'abc'``.
    """

    def __init__(self, path: str | Path, line: int | None, expected: str, got: str | None = None):
        self.path = str(path)
        self.line = line
        self.expected = expected
        self.got = got
        where = self.path if line is None else f"{self.path}, line {line}"
        msg = f"{where}: expected {expected}"
        if got is not None:
            shown = got if len(got) <= 80 else got[:77] + "..."
            msg += f", got {shown!r}"
        super().__init__(msg)


class StoreError(ForeshockError):
    """The run store cannot be opened or refused a write."""


class NotEnoughData(ForeshockError):
    """An analysis needs more points than the run has."""
