"""Run stores: runs, points, events, forecasts and monitor state, kept transactionally.

:class:`RunStore` is the interface; :class:`SQLiteStore` (one file, or ``":memory:"``) the
embedded default. ``open_store(path)`` opens (or creates) a store; ``is_store(path)`` tells a
store from a log file by its first bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

from foreshock.store.base import ForecastRecord, RunInfo, RunStore
from foreshock.store.sqlite import SQLITE_HEADER, SQLiteStore

__all__ = ["ForecastRecord", "RunInfo", "RunStore", "SQLiteStore", "is_store", "open_store"]


def open_store(path: str | os.PathLike) -> SQLiteStore:
    """Open the run store at ``path``, creating it when the file does not exist.

    Raises :class:`foreshock.errors.StoreError` when ``path`` is a directory, a file that is not
    a SQLite database, or a SQLite database that is not a foreshock store.
    """
    return SQLiteStore(path)


def is_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is an existing SQLite database file (by its 16-byte header).

    False for directories, missing paths and any other file: those are logs for the readers.
    """
    p = Path(path)
    try:
        if not p.is_file():
            return False
        with open(p, "rb") as f:
            return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False
