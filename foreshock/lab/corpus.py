"""The lab's training text: the Python standard library's own source files, as bytes.

Every Python installation carries them, so a language-model workload needs no download. The files
are the ``*.py`` files under ``sysconfig.get_paths()["stdlib"]``, in sorted order of their path
relative to that directory, concatenated as they are on disk; test directories (``test``,
``tests``, ``idle_test``), ``site-packages`` and ``__pycache__`` are left out. The text is read as
bytes (vocabulary 256), so no tokenizer is needed either.

The same Python version gives the same bytes on every machine; another version gives a similar
text of another length. Some minimal distributions strip the sources: :func:`corpus_bytes` then
raises :class:`CorpusError` naming the directory it looked at.
"""

from __future__ import annotations

import functools
import os
import sysconfig
from pathlib import Path

import numpy as np

from foreshock.errors import ForeshockError

__all__ = ["CorpusError", "VOCAB", "corpus_bytes", "source_files", "stdlib_dir", "train_val_split"]

VOCAB = 256  # byte-level: every byte value is a token
_SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})


class CorpusError(ForeshockError, FileNotFoundError):
    """The standard library's sources cannot be found or hold too little text."""


def stdlib_dir() -> Path:
    """Where this Python keeps its standard library sources."""
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(root: str | os.PathLike | None = None) -> list[Path]:
    """The ``*.py`` files of the corpus under ``root`` (default :func:`stdlib_dir`), in corpus order."""
    root = Path(root) if root is not None else stdlib_dir()
    found: list[tuple[str, Path]] = []
    for here, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]  # pruned in place: never walked into
        rel = Path(here).relative_to(root)
        found.extend(((rel / f).as_posix(), Path(here, f)) for f in files if f.endswith(".py"))
    found.sort()
    return [path for _, path in found]


@functools.lru_cache(maxsize=8)
def _read(root: str, limit: int) -> np.ndarray:
    chunks: list[bytes] = []
    total = 0
    for path in source_files(root):
        data = path.read_bytes()
        chunks.append(data[: limit - total])
        total += len(chunks[-1])
        if total >= limit:
            break
    if total == 0:
        raise CorpusError(f"no Python source files (*.py) found under {root}: this Python's standard library "
                          "sources are missing (some minimal distributions strip them); install them, e.g. "
                          "the distribution's full python package, or pass another root")
    out = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    out.flags.writeable = False  # cached and shared between callers
    return out


def corpus_bytes(max_bytes: int = 4_000_000, root: str | os.PathLike | None = None) -> np.ndarray:
    """The first ``max_bytes`` bytes of the corpus (fewer if the sources are shorter), read-only uint8.

    Cached per process: a second call with the same arguments costs nothing.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    root = Path(root) if root is not None else stdlib_dir()
    if not root.is_dir():
        raise CorpusError(f"standard library directory {root} does not exist: this Python's sources are "
                          "missing (some minimal distributions strip them)")
    return _read(str(root), int(max_bytes))


def train_val_split(data: np.ndarray, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The corpus cut in two at one point: the first part trains, the last ``val_fraction`` validates.

    A single cut (not interleaved windows) keeps whole files on each side, so validation text is
    never seen in training.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(round(len(data) * (1 - val_fraction)))
    if cut < 1 or cut >= len(data):
        raise CorpusError(f"a corpus of {len(data)} bytes is too short to split with "
                          f"val_fraction={val_fraction}")
    return data[:cut], data[cut:]
