"""Events: what a detector found, when it fired, and the evidence that made it fire."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["Event", "Severity", "SEVERITIES", "jsonable", "nonfinite_token", "severity_rank"]

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
        d["evidence"] = jsonable(d["evidence"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(detector=d["detector"], kind=d["kind"], severity=d["severity"], step=int(d["step"]),
                   onset_step=int(d["onset_step"]), message=d["message"], evidence=dict(d.get("evidence") or {}))


def nonfinite_token(x: float) -> str:
    """How foreshock writes a non-finite float where JSON has no spelling: 'nan', 'inf' or '-inf'."""
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def jsonable(x: Any) -> Any:
    """``x`` as strict JSON: numpy scalars become Python ones, non-finite floats their token."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):  # numpy scalar
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return nonfinite_token(x)
    return x
