"""Readers (and a writer) for training logs: a log in any supported format in, a Run with
canonical metric names out.

    >>> from foreshock.logs import list_formats
    >>> list_formats()
    ['tensorboard', 'hf-trainer-state', 'jsonl', 'json-columns', 'csv-long', 'csv-wide', 'text']

The format is recognised from the file's first bytes (each reader's ``sniff``; gzip is
decompressed first, whatever the suffix), or forced with ``format=``. A partial or partly
corrupt log is read up to its last good record and ``Run.skipped`` says what was skipped and
where; a file that is not a training log raises :class:`~foreshock.errors.LogFormatError`
naming the file, the line and what was expected there.

Another package adds a format by listing a :class:`Reader` subclass in the
``foreshock.readers`` entry-point group::

    [project.entry-points."foreshock.readers"]
    mylog = "mypackage.reader:MyLogReader"

or, in a session, with :func:`register_reader`. Text logs in a new line style need no reader:
pass ``patterns=`` to :func:`read_log` or call :func:`register_pattern` (see
:mod:`foreshock.logs.text`).
"""

from __future__ import annotations

import csv
import errno
import os
import struct
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path

from foreshock.errors import LogFormatError
from foreshock.logs._source import read_head
from foreshock.logs.base import Reader
from foreshock.logs.csv_long import LongCsvReader, write_csv
from foreshock.logs.csv_wide import WideCsvReader
from foreshock.logs.hf_trainer import HfTrainerStateReader
from foreshock.logs.json_columns import JsonColumnsReader
from foreshock.logs.jsonl import JsonlReader
from foreshock.logs.names import canonical_name
from foreshock.logs.text import LinePattern, TextLogReader, register_pattern
from foreshock.logs.tfevents import TensorBoardReader
from foreshock.run import Run

__all__ = [
    "LinePattern",
    "Reader",
    "canonical_name",
    "list_formats",
    "read_log",
    "register_pattern",
    "register_reader",
    "write_csv",
]

ENTRY_POINT_GROUP = "foreshock.readers"

# Sniffing order: the most specific formats first; text, which accepts any text, last.
_BUILTIN: tuple[type[Reader], ...] = (
    TensorBoardReader, HfTrainerStateReader, JsonlReader, JsonColumnsReader, LongCsvReader, WideCsvReader,
)
_registered: list[Reader] = []
_plugins: list[Reader] | None = None

# What a reader may raise on input it did not foresee. read_log turns these into
# LogFormatError (keeping the original as __cause__), so callers handle one error type.
_UNFORESEEN = (ValueError, TypeError, KeyError, IndexError, AttributeError, UnicodeError, OverflowError,
               RecursionError, EOFError, zlib.error, struct.error, csv.Error)


def register_reader(reader: Reader | type[Reader]) -> None:
    """Add a format for this session, tried before the built-in ones; replaces one of the same name."""
    made = reader() if isinstance(reader, type) else reader
    _registered[:] = [r for r in _registered if r.name != made.name]
    _registered.insert(0, made)


def list_formats() -> list[str]:
    """Names of the formats :func:`read_log` knows, in the order it tries them."""
    return [r.name for r in _readers()]


def _load_plugins() -> list[Reader]:
    global _plugins
    if _plugins is None:
        from importlib.metadata import entry_points

        found: list[Reader] = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                reader = obj() if isinstance(obj, type) else obj
            except Exception as e:  # a broken plugin must not make every log unreadable
                warnings.warn(f"foreshock: cannot load log reader {ep.name!r} ({ep.value}): {e}", stacklevel=3)
                continue
            if all(hasattr(reader, a) for a in ("name", "sniff", "read")):
                found.append(reader)
            else:
                warnings.warn(f"foreshock: {ep.value} is not a log reader (needs name, sniff, read)", stacklevel=3)
        _plugins = found
    return _plugins


def _readers(patterns: Iterable[LinePattern | str] | None = None) -> list[Reader]:
    return [*_registered, *(cls() for cls in _BUILTIN), *_load_plugins(), TextLogReader(patterns)]


def read_log(path: str | os.PathLike, format: str | None = None, *,
             patterns: Iterable[LinePattern | str] | None = None) -> Run:
    """Read a training log into a :class:`~foreshock.run.Run`.

    Parameters
    ----------
    path : path
        A log file (``.gz`` welcome) or a TensorBoard log directory.
    format : str, optional
        A name from :func:`list_formats` to skip detection.
    patterns : iterable of LinePattern or str, optional
        Extra line styles for text logs, tried before the built-in ones.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    LogFormatError
        The file is not a training log in a known format (or in ``format``).
    ValueError
        ``format`` names no known format.
    """
    p = Path(os.fspath(path))
    if not p.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fspath(path))
    readers = _readers(patterns)
    if format is not None:
        chosen = [r for r in readers if r.name == format]
        if not chosen:
            raise ValueError(f"unknown log format {format!r}; known formats: {', '.join(r.name for r in readers)}")
    else:
        head = read_head(p)
        chosen = [r for r in readers if _sniff(r, head, p)]
        if not chosen:
            raise LogFormatError(p, None, "a training log in one of the formats "
                                 + ", ".join(r.name for r in readers), _what(head, p))
    first_error: LogFormatError | None = None
    for reader in chosen:  # when several formats claim the file, the first that reads it wins
        try:
            run = _read(reader, p)
        except LogFormatError as e:
            first_error = first_error or e
            continue
        run.source = os.fspath(path)
        return run
    assert first_error is not None
    raise first_error


def _sniff(reader: Reader, head: bytes, path: Path) -> bool:
    try:
        return bool(reader.sniff(head, path))
    except Exception:  # sniffing is a guess; a reader that cannot guess does not claim the file
        return False


def _read(reader: Reader, path: Path) -> Run:
    try:
        return reader.read(path)
    except IsADirectoryError:
        raise LogFormatError(path, None, f"a {reader.name} log file", "a directory") from None
    except LogFormatError:
        raise
    except _UNFORESEEN as e:
        raise LogFormatError(path, None, f"a readable {reader.name} log", f"{type(e).__name__}: {e}") from e


def _what(head: bytes, path: Path) -> str:
    if path.is_dir():
        return "a directory without TensorBoard event files"
    if not head:
        return "an empty file"
    if b"\x00" in head:
        return "binary data"
    return "text in none of these formats"
