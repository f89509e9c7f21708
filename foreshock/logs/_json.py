"""Loading a JSON document that may be cut off: the complete part is kept, the rest reported.

A ``trainer_state.json`` copied while it was written, or a columnar JSON log cut by a failed
download, still holds every complete entry before the cut. :func:`load_document` parses the
document; when it fails, it closes the brackets left open at the last complete value and parses
that, returning the line where the document broke so the reader can report it as skipped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from foreshock.errors import LogFormatError
from foreshock.logs._source import LogBytes, decode

__all__ = ["load_document"]

# strings as whole tokens (so brackets inside them are not structure), structure characters,
# and a lone quote: a string that never ends, after which nothing is structure
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]|"')


def load_document(path: Path, loaded: LogBytes) -> tuple[Any, int | None]:
    """The JSON document in ``loaded``, and the line where it broke off (None if it is whole)."""
    text = decode(loaded.data)
    if not text.strip():
        raise LogFormatError(path, None, "a JSON document", "an empty file")
    try:
        return json.loads(text), (None if not loaded.cut else text.count("\n") + 1)
    except json.JSONDecodeError as e:
        error = e
    except RecursionError:
        raise LogFormatError(path, None, "a JSON document", "objects nested too deeply") from None
    except ValueError as e:  # e.g. an integer literal too long to convert
        raise LogFormatError(path, None, "a JSON document", str(e)) from None
    obj = _complete_prefix(text[: error.pos])
    if obj is None:
        raise LogFormatError(path, error.lineno, "a JSON document", f"{error.msg} at column {error.colno}")
    return obj, error.lineno


def _complete_prefix(prefix: str) -> Any:
    """The document made of the complete values in ``prefix``, or None if there is none.

    The elements of an array are records: a cut inside one (a half-written log entry, a list of
    eigenvalues missing its last ones) drops that element whole. Members of objects that are not
    array elements (the top-level fields) are kept one by one.
    """
    stack: list[tuple[str, bool]] = []  # closing character, and whether it is an array element
    in_elements = 0  # how many containers on the stack are array elements
    best: tuple[int, str] | None = None

    def closers() -> str:
        return "".join(c for c, _ in reversed(stack))

    for m in _TOKEN.finditer(prefix):
        token = m.group()
        if token == '"':
            break
        if token[0] == '"':
            continue
        if token in "[{":
            element = bool(stack) and stack[-1][0] == "]"
            stack.append(("]" if token == "[" else "}", element))
            in_elements += element
        elif token in "]}":
            if not stack or stack[-1][0] != token:
                break
            in_elements -= stack.pop()[1]
        if in_elements:
            continue
        if token == ",":
            best = (m.start(), closers()) if stack else best  # everything before the comma is complete
        else:
            best = (m.end(), closers())
    if best is None:
        return None
    try:
        return json.loads(prefix[: best[0]] + best[1])
    except (ValueError, RecursionError):
        return None
