"""Text logs (stdout of a training script), read through a small table of line patterns.

Built in: modded-nanogpt ``step:120/1750 train_loss:3.91 train_time:25ms step_avg:21.3ms``,
llm.c ``s:120 trl:3.91 lr:0.0006 norm:0.31`` / ``s:0 tel:10.96``, and nanoGPT
``iter 3010: loss nan, time 12.3ms, mfu 30.1%`` / ``step 2000: train loss 3.1, val loss 3.2``.

Lines that match no pattern are not records (a log may start with the whole training script,
nvidia-smi output...) and are passed over. A line that matches a pattern but cannot be read
(a value that is not a number, text that is not ``key:value`` items) is a skipped record with
its line number. Units are kept in the name (``train_time:25ms`` -> ``time/train_ms``).

Add a style of line for one call with ``read_log(path, patterns=[...])`` or for the whole
session with :func:`register_pattern`. A pattern is a :class:`LinePattern` or just a regular
expression whose named groups are the step and the values:

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "train.log"
    >>> _ = path.write_text("Epoch 1 | loss=2.50\\nEpoch 2 | loss=nan\\n")
    >>> run = TextLogReader([r"Epoch (?P<step>\\d+) \\| loss=(?P<loss>\\S+)"]).read(path)
    >>> run.series("train/loss")[1].tolist()
    [2.5, nan]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from foreshock.errors import LogFormatError
from foreshock.logs._source import decode, read_bytes, split_lines
from foreshock.logs.base import CUT_LINE, Reader, Records, parse_float, parse_step
from foreshock.logs.names import canonical_name
from foreshock.run import Run

__all__ = ["BUILTIN_PATTERNS", "LinePattern", "TextLogReader", "register_pattern"]

_VALUE = re.compile(r"([-+]?(?:(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|nan|inf(?:inity)?))(ms|s|%)?", re.IGNORECASE)
_UNITS = {"ms": "_ms", "s": "_s", "%": "_pct"}


@dataclass(frozen=True)
class LinePattern:
    """One style of training-log line.

    Parameters
    ----------
    name : str
        What to call this style in messages.
    regex : str
        Matched at the start of a line. Group ``step`` is the step; every other named group is
        a metric value named after the group. Groups starting with ``_`` are not values;
        ``_total`` (the planned number of steps) is kept as config ``total_steps``.
    items : str, optional
        A regex for one ``key value`` item after what ``regex`` matched, with groups ``key``
        and ``value``. When given, the rest of the line must be such items, separated by
        ``sep``; anything else makes the line a skipped record. When omitted, the rest of the
        line is not read.
    sep : str
        What may separate items: spaces and commas by default.
    """

    name: str
    regex: str
    items: str | None = None
    sep: str = r"[\s,|]*"

    def __post_init__(self) -> None:
        if "step" not in self.start.groupindex:
            raise ValueError(f"pattern {self.name!r}: the regex needs a named group 'step', e.g. (?P<step>\\d+)")
        if self.item is not None and not {"key", "value"} <= self.item.groupindex.keys():
            raise ValueError(f"pattern {self.name!r}: the items regex needs named groups 'key' and 'value'")

    @cached_property
    def start(self) -> re.Pattern[str]:
        return re.compile(self.regex)

    @cached_property
    def item(self) -> re.Pattern[str] | None:
        return None if self.items is None else re.compile(self.items)

    @cached_property
    def separator(self) -> re.Pattern[str]:
        return re.compile(self.sep)


_COLON_ITEMS = r"(?P<key>[A-Za-z_][\w./-]*):(?P<value>\S+)"
_SPACED_ITEMS = r"(?P<key>[A-Za-z][\w./]*(?: [A-Za-z][\w./]*)*)\s+(?P<value>[^\s,]+)"

BUILTIN_PATTERNS: tuple[LinePattern, ...] = (
    LinePattern("modded-nanogpt", r"step:(?P<step>\d+)(?:/(?P<_total>\d+))?(?=\s|$)", _COLON_ITEMS),
    LinePattern("llm.c", r"s:(?P<step>\d+)(?=\s|$)", _COLON_ITEMS),
    LinePattern("nanogpt-iter", r"iter (?P<step>\d+):", _SPACED_ITEMS),
    LinePattern("nanogpt-eval", r"step (?P<step>\d+):", _SPACED_ITEMS),
)
_registered: list[LinePattern] = []


def register_pattern(pattern: LinePattern | str) -> LinePattern:
    """Read another style of line in every text log from now on (tried before the built-ins)."""
    made = _as_pattern(pattern)
    _registered.insert(0, made)
    return made


def _as_pattern(pattern: LinePattern | str) -> LinePattern:
    return pattern if isinstance(pattern, LinePattern) else LinePattern("custom", pattern)


class TextLogReader(Reader):
    """Reads text logs with the given patterns, then registered ones, then the built-ins."""

    name = "text"
    description = "text log lines (modded-nanogpt, llm.c, nanoGPT styles; extensible)"

    def __init__(self, patterns: Iterable[LinePattern | str] | None = None) -> None:
        self.extra = tuple(_as_pattern(p) for p in (patterns or ()))

    @property
    def patterns(self) -> tuple[LinePattern, ...]:
        return self.extra + tuple(_registered) + BUILTIN_PATTERNS

    def sniff(self, head: bytes, path: Path) -> bool:
        # the fallback format: any text; read() decides whether it is a training log
        return bool(head) and b"\x00" not in head

    def read(self, path: Path) -> Run:
        loaded = read_bytes(path)
        text = decode(loaded.data)
        lines, terminated = split_lines(text)
        records = Records(path, self.name)
        patterns = self.patterns
        for lineno, line in enumerate(lines, 1):
            if lineno == len(lines) and not terminated and len(records) and line.strip():
                records.bad(lineno, CUT_LINE, line)
                continue
            for pattern in patterns:
                m = pattern.start.match(line)
                if m:
                    _read_line(records, pattern, m, line, lineno)
                    break
        if loaded.cut and terminated:
            records.lost_tail(len(lines))
        if not len(records) and records.builder.skipped == []:
            raise LogFormatError(path, None, _expected(patterns), _describe(lines))
        total = records.config.get("total_steps")
        done = total is not None and records.last_step is not None and records.last_step >= total
        return records.build(expected=_expected(patterns), status="finished" if done else "unknown")


def _read_line(records: Records, pattern: LinePattern, m: re.Match[str], line: str, lineno: int) -> None:
    step = parse_step(m["step"]) if m["step"] else None
    if step is None:
        records.bad(lineno, f"an integer step ({pattern.name} line)", m["step"])
        return
    pairs = [(k, v) for k, v in m.groupdict().items() if k != "step" and not k.startswith("_") and v is not None]
    if pattern.item is not None:
        pos = m.end()
        while True:
            sep = pattern.separator.match(line, pos)
            pos = sep.end() if sep else pos
            if pos >= len(line):
                break
            item = pattern.item.match(line, pos)
            if item is None or item.end() == pos:
                records.bad(lineno, f"'key:value' items after the step ({pattern.name} line)", line[pos:])
                return
            pairs.append((item["key"], item["value"]))
            pos = item.end()
    values = []
    for key, text in pairs:
        number = _VALUE.fullmatch(text.strip())
        value = parse_float(number.group(1)) if number else None
        if value is None:
            records.bad(lineno, f"a number for {key!r} ({pattern.name} line)", text)
            return
        unit = _UNITS.get((number.group(2) or "").lower(), "")
        values.append((canonical_name(key.strip().replace(" ", "_") + unit), value))
    if not values:
        records.bad(lineno, f"values after the step ({pattern.name} line)", line)
        return
    total = m.groupdict().get("_total")
    if total and "total_steps" not in records.config:
        records.config["total_steps"] = int(total)
    for name, value in values:
        records.add(step, name, value)


def _expected(patterns: Sequence[LinePattern]) -> str:
    if tuple(patterns) == BUILTIN_PATTERNS:
        return ("training log lines such as 'step:120/1750 train_loss:3.91', 's:120 trl:3.91', "
                "'iter 10: loss 3.9, time 12ms' or 'step 2000: train loss 3.1, val loss 3.2'")
    return "training log lines matching one of the patterns " + ", ".join(repr(p.name) for p in patterns)


_PYTHON = re.compile(r"^\s*(?:def |class |import |from \S+ import |return\b|if __name__)", re.MULTILINE)
_SCHEDULE = re.compile(r"^\s*def \w*(?:lr|schedule|warmup|decay)\w*\s*\(", re.MULTILINE | re.IGNORECASE)


def _describe(lines: list[str]) -> str:
    """What a text file that holds no log record is, for the error message."""
    body = "\n".join(lines)
    if not body.strip():
        return "an empty file"
    if _SCHEDULE.search(body):
        return "Python source of an LR schedule: a schedule file is not a training log"
    if len(_PYTHON.findall(body)) >= 2:
        return "Python source, not a training log"
    first = next(ln for ln in lines if ln.strip())
    return f"{len(lines)} line(s), none of them a log record; the first is {first.strip()[:60]!r}"
