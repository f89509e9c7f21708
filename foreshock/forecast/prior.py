"""What a forecast knows before it sees the run: log-normal priors on the schedule-response parameters.

A prefix at constant LR shows nothing of how the loss answers an LR decay, so the parameters that
say it (the annealing law's ``C``; the multi-power law's ``B, C, beta, gamma``) and, on a short
prefix, the exponent ``alpha`` must come from elsewhere. Two places:

- **reference runs** of the same model family under other schedules: the law is fitted on them and
  their values become the prior's centre, with the spread that the same parameter shows between
  schedules of one model on public curves (``transfer_sd``);
- the **default prior** for a lone run: the spread of each parameter over public runs of several
  model families and sizes, fitted by ``bench/forecast_prior.py`` and shipped as
  ``foreshock/data/forecast_prior.json``.

A prior is not a fixed value: :func:`foreshock.forecast.fit.fit_law` adds it as a penalty
(maximum a posteriori), so where the prefix does show a decay the data decides, and the bootstrap
draws the prior's centre anew in every replicate, so the interval carries what the prior does not
know.

Parameters are compared across runs in units that do not depend on the LR's scale (a run may log
the LR or a multiplier of it): ``B * peak`` and ``C * peak ** (1 - gamma)`` for the multi-power law
(``peak``: the schedule's highest LR), the exponents as they are, and for the annealing law's ``C``,
which also depends on how long the decay is, the loss an anneal from the peak to zero takes off by
the target step, ``C * peak * anneal_time`` (:func:`anneal_time`: the annealing area ``S2`` at the
target per unit of LR decay). The annealing area's momentum has a fixed time constant
(``1 / (1 - lam)``, 1000 steps), so a decay of a few hundred steps that ends at the target has built
up only part of it, and ``C * peak`` alone is the larger the shorter the decay: on the public curves
of ``bench/forecast_prior.py`` (decays of 600 to 70000 steps) the model families' medians of
``C * peak`` lie between 1.2e-4 and 3.7e-4, those of ``C * peak * anneal_time`` between 0.12 and 0.17.
That is the default prior's unit. A reference run is of the same model, and there ``C * peak`` is the
steadier of the two (log-sd 0.06 between the nine schedules of one multi-power-law model, whose decays
end at different anneal times, against 0.10): reference runs carry ``C`` over in units of
``C * peak`` (``anneal = FULL_ANNEAL``, the default of :func:`normalise`), and ``transfer_sd`` is
measured in those units.
Each prior is on the natural log of the normalised value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from foreshock.forecast.laws import annealing_area, decay_steps

__all__ = ["LogNormal", "Prior", "anneal_time", "default_prior", "denormalise", "normalise", "prior_from_fits"]

LAM = 0.999  # the annealing law's momentum (the default of foreshock.forecast.laws.design)
FULL_ANNEAL = 1.0 / (1.0 - LAM)  # anneal_time of a decay that ended long before the target

#: the parameters a prior speaks for, per law
PRIOR_PARAMS = {"annealing": ("alpha", "C"), "multi-power": ("alpha", "B", "C", "beta", "gamma")}


@dataclass(frozen=True)
class LogNormal:
    """``log(x) ~ Normal(mu, sd)``; ``median = exp(mu)``."""

    mu: float
    sd: float

    @property
    def median(self) -> float:
        return math.exp(self.mu)


@dataclass(frozen=True)
class Prior:
    """Log-normal priors on one law's normalised parameters, and where they came from."""

    law: str
    params: Mapping[str, LogNormal]
    source: str
    transfer_sd: Mapping[str, float] = field(default_factory=dict)  # between schedules of one model

    def in_units_of(self, peak: float, anneal: float = FULL_ANNEAL) -> dict[str, tuple[float, float]]:
        """``{param: (mu, sd)}`` on ``log(param)`` in the units of a schedule whose highest LR is ``peak``
        and whose :func:`anneal_time` at the target step is ``anneal``."""
        gamma = math.exp(self.params["gamma"].mu) if "gamma" in self.params else 0.0
        out = {}
        for name, p in self.params.items():
            out[name] = (p.mu - math.log(_unit(self.law, name, peak, gamma, anneal)), p.sd)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"law": self.law, "source": self.source,
                "params": {k: {"mu": v.mu, "sd": v.sd, "median": v.median} for k, v in self.params.items()},
                "transfer_sd": dict(self.transfer_sd)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Prior:
        return cls(law=d["law"], source=d["source"],
                   params={k: LogNormal(float(v["mu"]), float(v["sd"])) for k, v in d["params"].items()},
                   transfer_sd={k: float(v) for k, v in d.get("transfer_sd", {}).items()})


def anneal_time(lr: np.ndarray, step: int, lam: float = LAM) -> float:
    """The annealing area at ``step`` per unit of LR decay: ``S2(step) / (peak - lr[step - 1])``, in steps.

    ``S2`` (:func:`~foreshock.forecast.laws.annealing_area`) sums a momentum of the LR's decreases,
    so a decay that ended long before ``step`` holds ``1 / (1 - lam)`` steps' worth of it per unit
    of decay (1000 at ``lam = 0.999``) whatever its shape, and one still under way holds less (a linear
    decay of ``D << 1000`` steps that ends at ``step``: about ``D / 2``). Clipped to
    ``[1, 1 / (1 - lam)]``; ``1 / (1 - lam)`` where the LR has not fallen by ``step``.
    """
    lr = np.asarray(lr, dtype=np.float64)
    if not 1 <= step <= len(lr):
        raise ValueError(f"step={step}: expected 1..{len(lr)} (the LR table's length)")
    full = 1.0 / (1.0 - lam)
    drop = float(np.sum(decay_steps(lr)[:step]))
    if drop <= 1e-9 * float(np.max(np.abs(lr))):
        return full
    return float(np.clip(annealing_area(lr, lam)[step] / drop, 1.0, full))


def _unit(law: str, name: str, peak: float, gamma: float, anneal: float = FULL_ANNEAL) -> float:
    """The factor that turns a parameter into its normalised value (``normalised = value * unit``)."""
    if name == "C" and law == "annealing":
        return peak * anneal
    if name == "B":
        return peak
    if name == "C" and law == "multi-power":
        return peak ** (1.0 - gamma)
    return 1.0


def normalise(law: str, params: Mapping[str, float], peak: float,
              anneal: float = FULL_ANNEAL) -> dict[str, float]:
    """The prior's parameters of a fit, in units free of the LR's scale and the decay's length (see the
    module docstring; ``anneal``: the schedule's :func:`anneal_time` at the step the fit speaks for)."""
    gamma = float(params.get("gamma", 0.0))
    return {p: float(params[p]) * _unit(law, p, peak, gamma, anneal) for p in PRIOR_PARAMS[law] if p in params}


def denormalise(law: str, values: Mapping[str, float], peak: float,
                anneal: float = FULL_ANNEAL) -> dict[str, float]:
    """Inverse of :func:`normalise` (``gamma`` taken from ``values``)."""
    gamma = float(values.get("gamma", 0.0))
    return {p: float(v) / _unit(law, p, peak, gamma, anneal) for p, v in values.items()}


@cache
def _shipped() -> dict[str, Prior]:
    text = resources.files("foreshock").joinpath("data", "forecast_prior.json").read_text()
    data = json.loads(text)
    return {d["law"]: Prior.from_dict(d) for d in data["priors"]}


def default_prior(law: str) -> Prior | None:
    """The shipped prior for ``law`` (None for a law that needs none, such as the power law)."""
    return _shipped().get(law)


def prior_from_fits(law: str, fits: Mapping[str, list[Mapping[str, float]]], *, source: str,
                    same_model: tuple[str, ...] = (), min_sd: float = 0.1) -> Prior:
    """A prior from fitted runs grouped by model family: ``{family: [normalised params, ...]}``.

    For each parameter, ``mu`` is the mean over families of the family's median log value (each family
    counts once, however many runs it has) and ``sd`` adds, in quadrature, the spread between family
    medians and the pooled spread within families, floored at ``min_sd``. ``transfer_sd`` is the pooled
    within-family spread over the ``same_model`` families only (runs of one model under different
    schedules): how far a reference run's value is from another schedule's, on that model.
    """
    params: dict[str, LogNormal] = {}
    transfer: dict[str, float] = {}
    for p in PRIOR_PARAMS[law]:
        groups = {fam: np.log([f[p] for f in rows if f.get(p, 0.0) > 0]) for fam, rows in fits.items()}
        groups = {fam: g for fam, g in groups.items() if len(g)}
        if not groups:
            continue
        medians = np.array([np.median(g) for g in groups.values()])
        between = float(np.var(medians, ddof=1)) if len(medians) > 1 else 0.0
        within = _pooled_var(list(groups.values()))
        params[p] = LogNormal(float(np.mean(medians)), max(math.sqrt(between + within), min_sd))
        same = [g for fam, g in groups.items() if fam in same_model]
        if same:
            transfer[p] = max(math.sqrt(_pooled_var(same)), min_sd / 2)
    return Prior(law=law, params=params, source=source, transfer_sd=transfer)


def _pooled_var(groups: list) -> float:
    num = sum(float(np.sum((g - np.mean(g)) ** 2)) for g in groups if len(g) > 1)
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    return num / dof if dof else 0.0
