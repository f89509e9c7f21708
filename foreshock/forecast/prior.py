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
the LR or a multiplier of it): ``C * peak`` for the annealing law's ``C``, ``B * peak`` and
``C * peak ** (1 - gamma)`` for the multi-power law (``peak``: the schedule's highest LR); the
exponents as they are. Each prior is on the natural log of that normalised value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["LogNormal", "Prior", "default_prior", "denormalise", "normalise", "prior_from_fits"]

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

    def in_units_of(self, peak: float) -> dict[str, tuple[float, float]]:
        """``{param: (mu, sd)}`` on ``log(param)`` in the units of a schedule whose highest LR is ``peak``."""
        gamma = math.exp(self.params["gamma"].mu) if "gamma" in self.params else 0.0
        out = {}
        for name, p in self.params.items():
            out[name] = (p.mu - math.log(_unit(self.law, name, peak, gamma)), p.sd)
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


def _unit(law: str, name: str, peak: float, gamma: float) -> float:
    """The factor that turns a parameter into its normalised value (``normalised = value * unit``)."""
    if name == "C" and law == "annealing":
        return peak
    if name == "B":
        return peak
    if name == "C" and law == "multi-power":
        return peak ** (1.0 - gamma)
    return 1.0


def normalise(law: str, params: Mapping[str, float], peak: float) -> dict[str, float]:
    """The prior's parameters of a fit, in LR-scale-free units (see the module docstring)."""
    gamma = float(params.get("gamma", 0.0))
    return {p: float(params[p]) * _unit(law, p, peak, gamma) for p in PRIOR_PARAMS[law] if p in params}


def denormalise(law: str, values: Mapping[str, float], peak: float) -> dict[str, float]:
    """Inverse of :func:`normalise` (``gamma`` taken from ``values``)."""
    gamma = float(values.get("gamma", 0.0))
    return {p: float(v) / _unit(law, p, peak, gamma) for p, v in values.items()}


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
    import numpy as np

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
    import numpy as np

    num = sum(float(np.sum((g - np.mean(g)) ** 2)) for g in groups if len(g) > 1)
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    return num / dof if dof else 0.0
