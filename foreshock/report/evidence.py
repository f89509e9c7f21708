"""Short text for numbers and evidence, and the order events are listed in; shared by both reports.

Evidence is a dict of plain JSON values; a reader wants ``ratio=4.21 threshold=3``, not
``ratio=4.213887261 threshold=3.0``. Floats get four significant digits, long lists are cut, and
the ``metric`` key is left out where the report shows it in a column of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import groupby
from typing import Any

from foreshock.events import Event, nonfinite_token, severity_rank

__all__ = ["format_evidence", "format_value", "group_events"]


def format_value(value: Any, digits: int = 4) -> str:
    """One value, compactly: floats to ``digits`` significant digits, lists cut after four items.

    >>> format_value(0.000123456), format_value(1234567.0), format_value(float("nan")), format_value(3)
    ('0.0001235', '1.235e+06', 'nan', '3')
    """
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        value = value.item()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return nonfinite_token(value)
        if value == int(value) and abs(value) < 10**digits:
            return str(int(value))
        return f"{value:.{digits}g}"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "{" + format_evidence(value, skip=(), digits=digits) + "}"
    if isinstance(value, Iterable):
        items = list(value)
        shown = ", ".join(format_value(v, digits) for v in items[:4])
        return f"[{shown}{', ...' if len(items) > 4 else ''}]"
    return str(value)


def format_evidence(evidence: Mapping[str, Any], *, skip: Iterable[str] = ("metric",), limit: int | None = None,
                    digits: int = 4) -> str:
    """``key=value`` pairs separated by spaces, in the evidence's own order.

    Parameters
    ----------
    skip : keys to leave out (by default ``metric``, which reports show in its own column).
    limit : show at most this many pairs, then ``(+N more)``.

    >>> format_evidence({"metric": "train/loss", "ratio": 4.213887, "threshold": 3.0, "value": float("inf")})
    'ratio=4.214 threshold=3 value=inf'
    """
    skipped = set(skip)
    pairs = [f"{k}={format_value(v, digits)}" for k, v in evidence.items() if k not in skipped]
    if limit is not None and len(pairs) > limit:
        pairs = pairs[:limit] + [f"(+{len(pairs) - limit} more)"]
    return " ".join(pairs)


def group_events(events: Sequence[Event]) -> list[list[Event]]:
    """Events in groups of one (severity, detector, kind, metric), worst severity then earliest first."""
    def key(e: Event) -> tuple:
        return (-severity_rank(e.severity), e.detector, e.kind, e.metric or "")

    groups = [sorted(g, key=lambda e: e.step) for _, g in groupby(sorted(events, key=key), key=key)]
    groups.sort(key=lambda g: (-severity_rank(g[0].severity), g[0].step))
    return groups
