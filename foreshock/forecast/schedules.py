"""Learning-rate schedules: the LR at any integer step, from a short spec or from the log itself.

A spec is ``NAME:key=value,key=value``::

    constant:peak=3e-4,warmup=2160,total=24000
    linear:peak=3e-4,final=0,warmup=500,total=10000
    cosine:peak=6e-4,final=6e-5,warmup=700,total=20000
    wsd:peak=3e-4,final=3e-5,warmup=2160,decay=4000,total=24000,shape=exp
    step:peak=3e-4,at=8000/12000,gamma=0.1,total=16000        (multi-step; or every=N)
    two-stage:peak=3e-4,low=3e-5,at=8000,warmup=2160,total=16000

Conventions: ``lr(t)`` is the LR of the update taken at step ``t`` (steps count from 0). Warm-up
is linear, ``peak * (t + 1) / warmup`` for ``t < warmup``; the decay of cosine and linear runs from
``warmup`` to ``total``; after ``total`` the last LR is held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from foreshock.errors import ForeshockError
from foreshock.run import Run

__all__ = ["Schedule", "ScheduleError", "parse_schedule", "schedule_from_run"]


class ScheduleError(ForeshockError, ValueError):
    """A schedule spec (or a log's LR series) cannot be turned into a schedule."""


@dataclass(frozen=True)
class Schedule:
    """An LR schedule: ``schedule(steps)`` gives the LR at each integer step (vectorised).

    ``total`` is the schedule's last step (a forecast's default target); ``spec`` says where it
    came from (the spec text, or ``from-log:opt/lr``).
    """

    name: str
    total: int
    params: dict[str, Any]
    spec: str
    fn: Callable[[np.ndarray], np.ndarray] = field(repr=False, compare=False)

    def __call__(self, steps: Any) -> np.ndarray:
        t = np.asarray(steps, dtype=np.int64)
        return self.fn(t).astype(np.float64)

    def table(self, last: int) -> np.ndarray:
        """The LR of every step ``0..last`` (what the laws take)."""
        return self(np.arange(int(last) + 1))


# -- specs -------------------------------------------------------------------------------------

# name -> (required keys, optional keys with defaults)
_KEYS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "constant": (("peak", "total"), {"warmup": 0}),
    "linear": (("peak", "total"), {"final": 0.0, "warmup": 0}),
    "cosine": (("peak", "total"), {"final": 0.0, "warmup": 0}),
    "wsd": (("peak", "decay", "total"), {"final": 0.0, "warmup": 0, "shape": "linear"}),
    "step": (("peak", "total"), {"gamma": 0.1, "at": None, "every": None, "warmup": 0}),
    "two-stage": (("peak", "low", "at", "total"), {"warmup": 0}),
}
_ALIASES = {"twostage": "two-stage", "two_stage": "two-stage", "multistep": "step", "multi-step": "step",
            "const": "constant"}
_INT_KEYS = {"total", "warmup", "decay", "every"}
_SHAPES = ("linear", "cosine", "exp")


def parse_schedule(spec: str) -> Schedule:
    """Parse ``NAME:key=value,...`` into a :class:`Schedule`; errors name the bad key or value.

    >>> s = parse_schedule("cosine:peak=6e-4,final=6e-5,warmup=700,total=20000")
    >>> float(s([699])[0]), float(s([20000])[0])
    (0.0006, 6e-05)
    """
    text = spec.strip()
    name, _, body = text.partition(":")
    name = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if name not in _KEYS:
        raise ScheduleError(f"schedule {spec!r}: unknown schedule {name!r}; expected one of "
                            f"{', '.join(_KEYS)} (e.g. 'cosine:peak=6e-4,final=6e-5,warmup=700,total=20000')")
    required, optional = _KEYS[name]
    given: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in body.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not value.strip():
            raise ScheduleError(f"schedule {spec!r}: expected key=value, got {item!r}")
        if key not in required and key not in optional:
            raise ScheduleError(f"schedule {spec!r}: unknown key {key!r} for {name}; expected "
                                f"{', '.join(required + tuple(optional))}")
        given[key] = _value(spec, name, key, value.strip())
    missing = [k for k in required if k not in given]
    if missing:
        raise ScheduleError(f"schedule {spec!r}: missing {', '.join(missing)} (a {name} schedule needs "
                            f"{', '.join(required)})")
    p = {**optional, **given}
    _check(spec, name, p)
    return Schedule(name=name, total=int(p["total"]), params=p, spec=text, fn=_builder(name, p))


def _value(spec: str, name: str, key: str, text: str) -> Any:
    if key == "shape":
        if text.lower() not in _SHAPES:
            raise ScheduleError(f"schedule {spec!r}: shape={text!r}; expected one of {', '.join(_SHAPES)}")
        return text.lower()
    if key == "at" and name == "step":
        return tuple(_number(spec, key, v, integer=True) for v in text.split("/"))
    return _number(spec, key, text, integer=key in _INT_KEYS or key == "at")


def _number(spec: str, key: str, text: str, *, integer: bool) -> float | int:
    try:
        x = float(text)
    except ValueError:
        kind = "an integer step" if integer else "a number"
        raise ScheduleError(f"schedule {spec!r}: {key}={text!r}; expected {kind}") from None
    if not np.isfinite(x) or x < 0:
        raise ScheduleError(f"schedule {spec!r}: {key}={text!r}; expected a finite number >= 0")
    if integer:
        if x != int(x):
            raise ScheduleError(f"schedule {spec!r}: {key}={text!r}; expected an integer step")
        return int(x)
    return x


def _check(spec: str, name: str, p: dict[str, Any]) -> None:
    def bad(msg: str) -> ScheduleError:
        return ScheduleError(f"schedule {spec!r}: {msg}")

    if p["peak"] <= 0:
        raise bad(f"peak={p['peak']}; expected a learning rate > 0")
    if p["total"] <= p["warmup"]:
        raise bad(f"total={p['total']} must exceed warmup={p['warmup']}")
    if name == "wsd":
        if not 0 < p["decay"] <= p["total"] - p["warmup"]:
            raise bad(f"decay={p['decay']}; expected 0 < decay <= total - warmup = {p['total'] - p['warmup']}")
        if p["shape"] == "exp" and p["final"] <= 0:
            raise bad("shape=exp needs final > 0 (an exponential never reaches 0)")
    if name == "step":
        if (p["at"] is None) == (p["every"] is None):
            raise bad("give exactly one of at=S1/S2/... (milestones) or every=N")
        if p["every"] is not None and p["every"] <= 0:
            raise bad(f"every={p['every']}; expected a step count > 0")
        if p["at"] is not None and list(p["at"]) != sorted(p["at"]):
            raise bad(f"at={'/'.join(map(str, p['at']))}; expected increasing steps")
    if name == "two-stage" and not p["warmup"] <= p["at"] <= p["total"]:
        raise bad(f"at={p['at']}; expected warmup <= at <= total")


def _builder(name: str, p: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    peak, final, warmup, total = p["peak"], p.get("final", 0.0), p["warmup"], p["total"]

    def after(t: np.ndarray) -> np.ndarray:  # the LR once warm-up is over
        prog = np.clip((t - warmup) / (total - warmup), 0.0, 1.0)
        if name == "constant":
            return np.full(t.shape, peak)
        if name == "linear":
            return peak + (final - peak) * prog
        if name == "cosine":
            return final + (peak - final) * 0.5 * (1.0 + np.cos(np.pi * prog))
        if name == "wsd":
            start = total - p["decay"]
            q = np.clip((t - start) / p["decay"], 0.0, 1.0)
            if p["shape"] == "exp":
                return peak * (final / peak) ** q
            if p["shape"] == "cosine":
                return final + (peak - final) * 0.5 * (1.0 + np.cos(np.pi * q))
            return peak + (final - peak) * q
        if name == "step":
            if p["every"] is not None:
                k = np.maximum(t - warmup, 0) // p["every"]
            else:
                k = np.searchsorted(np.asarray(p["at"]), t, side="right")
            return peak * p["gamma"] ** k
        return np.where(t < p["at"], peak, p["low"])  # two-stage

    def fn(t: np.ndarray) -> np.ndarray:
        lr = after(t.astype(np.float64))
        if warmup > 0:
            lr = np.where(t < warmup, peak * (t + 1.0) / warmup, lr)
        return lr

    return fn


# -- from the log ------------------------------------------------------------------------------


def schedule_from_run(run: Run, *, base_lr: float = 1.0,
                      before: Literal["warmup", "hold"] = "warmup") -> Schedule:
    """The LR a run logged: ``opt/lr``, else ``opt/lr_mult`` times ``base_lr``.

    Between logged steps the LR is interpolated linearly; after the last one it is held. Before the
    first logged step (logs often start after warm-up) it rises linearly from 0 (``before="warmup"``)
    or is held at the first value (``"hold"``). A multiplier with ``base_lr=1`` is enough to fit one
    run: every law absorbs the LR's scale into its own constants.
    """
    if "opt/lr" in run:
        metric, scale = "opt/lr", 1.0
    elif "opt/lr_mult" in run:
        metric, scale = "opt/lr_mult", float(base_lr)
    else:
        raise ScheduleError(f"run {run.name!r} ({run.source}) logged no learning rate: expected a metric "
                            f"'opt/lr' or 'opt/lr_mult'; it has {run.names}")
    steps, values = run.series(metric)
    ok = np.isfinite(values)
    steps, values = steps[ok], values[ok] * scale
    if len(steps) == 0:
        raise ScheduleError(f"run {run.name!r} ({run.source}): '{metric}' has no finite value")
    first, v0 = int(steps[0]), float(values[0])

    def fn(t: np.ndarray) -> np.ndarray:
        lr = np.interp(t, steps, values)
        if before == "warmup" and first > 0:
            lr = np.where(t < first, v0 * (t + 1.0) / (first + 1.0), lr)
        return lr

    return Schedule(name="from-log", total=int(steps[-1]), params={"metric": metric, "scale": scale},
                    spec=f"from-log:{metric}" + (f"*{scale:g}" if metric == "opt/lr_mult" else ""), fn=fn)
