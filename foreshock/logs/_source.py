"""Getting the bytes of a log: gzip read transparently, the head for sniffing, the run's name.

A gzip file is recognised by its magic bytes, not by its suffix. A gzip stream that ends early
(a file copied while it was written, a cut download) gives the bytes that could be decompressed,
flagged ``cut`` so that readers treat the end as a cut-off record instead of a clean end.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HEAD_BYTES", "LogBytes", "decode", "read_bytes", "read_head", "run_name", "split_lines"]

GZIP_MAGIC = b"\x1f\x8b"
HEAD_BYTES = 64 * 1024  # every format is recognisable from its start; this is plenty
_CHUNK = 1 << 20

# Suffixes dropped from a file name to name the run, and names too generic to name a run by:
# for those the directory is the better name (checkpoint-500/trainer_state.json).
_SUFFIXES = (".gz", ".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".log", ".txt", ".out", ".trainer_state")
_GENERIC = frozenset({"trainer_state", "metrics", "history", "log", "logs", "train", "output", "stdout",
                      "main", "events", "progress", "scalars"})


@dataclass(frozen=True)
class LogBytes:
    """The (decompressed) content of a log file."""

    data: bytes
    cut: bool = False  # a compressed stream ended early: whatever followed ``data`` is lost


def read_bytes(path: Path) -> LogBytes:
    """The whole content of ``path``, decompressed when it is gzip."""
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        return _gunzip(raw)
    return LogBytes(raw)


def read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    """The first ``size`` bytes of the (decompressed) content; empty for a directory."""
    if path.is_dir():
        return b""
    with path.open("rb") as f:
        raw = f.read(size)
        if raw[:2] != GZIP_MAGIC:
            return raw
        # a compressed head can need much more input than it gives output: keep feeding
        out = bytearray()
        d = zlib.decompressobj(wbits=31)
        while len(out) < size:
            try:
                out += d.decompress(raw, size - len(out))
            except zlib.error:
                break
            if d.eof:
                break
            raw = d.unconsumed_tail or f.read(_CHUNK)
            if not raw:
                break
        return bytes(out)


def _gunzip(raw: bytes) -> LogBytes:
    out: list[bytes] = []
    pos = 0
    while pos < len(raw):
        d = zlib.decompressobj(wbits=31)
        # feed in chunks so that a corrupt block costs only the data after it
        while pos < len(raw) and not d.eof:
            try:
                out.append(d.decompress(raw[pos:pos + _CHUNK]))
            except zlib.error:
                return LogBytes(b"".join(out), cut=True)
            used = min(_CHUNK, len(raw) - pos) - len(d.unused_data)
            pos += used
        if not d.eof:
            return LogBytes(b"".join(out), cut=True)
        rest = raw[pos:]
        if rest[:2] != GZIP_MAGIC:  # a second member may follow (concatenated gzip); padding may not
            return LogBytes(b"".join(out), cut=bool(rest.strip(b"\x00")))
    return LogBytes(b"".join(out))


def decode(data: bytes) -> str:
    """Text of a log. Undecodable bytes become U+FFFD instead of failing: a stray byte in the
    script a log starts with must not make the log unreadable."""
    text = data.decode("utf-8", errors="replace")
    return text[1:] if text.startswith("\ufeff") else text


def split_lines(text: str) -> tuple[list[str], bool]:
    """Lines without their ends, and whether the last line had its line end.

    A last line without one is where a file was cut (or is still being written), so readers
    treat it as possibly incomplete.
    """
    lines = text.split("\n")
    terminated = lines[-1] == ""
    if terminated:
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines], terminated


def run_name(path: Path) -> str:
    """A run's name from its file: the stem without log suffixes, or the directory's name."""
    name = path.name
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name, changed = name[: -len(suffix)], True
    if (name.lower() in _GENERIC or name.startswith("events.out.tfevents")) and path.parent.name:
        return path.parent.name
    return name
