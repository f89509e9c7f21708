"""Events: what a detector found, when it fired, and the evidence that made it fire."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["Event", "Severity", "SEVERITIES", "severity_rank"]

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


def severity_rank(severity: str) -> int:
    """0 for info, 1 for warning, 2 for critical; ValueError for anything else."""
    try:
        return SEVERITIES.index(severity)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}") from None


@dataclass(frozen=True)
class Event:
    """One finding of one detector.

    ``step`` is the step at which the detector fired: the last step it had seen. ``onset_step`` is
    its estimate of when the thing began (<= step). ``evidence`` holds the values and thresholds
    that made it fire, plain JSON types only, and always ``"metric"``: the series it is about.
    """

    detector: str
    kind: str
    severity: Severity
    step: int
    onset_step: int
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def metric(self) -> str | None:
        return self.evidence.get("metric")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = _jsonable(d["evidence"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(detector=d["detector"], kind=d["kind"], severity=d["severity"], step=int(d["step"]),
                   onset_step=int(d["onset_step"]), message=d["message"], evidence=dict(d.get("evidence") or {}))


def _jsonable(x: Any) -> Any:
    """Evidence as strict JSON: non-finite floats become the strings 'nan', 'inf', '-inf'."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):  # numpy scalar
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x
