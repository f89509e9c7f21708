"""Robust fits of a law to a loss curve, and prediction intervals by a residual block bootstrap.

Fitting: ``scipy.optimize.least_squares`` with a Huber loss (a stray spike must not drag the
curve), box bounds from :meth:`Law.bounds`, and a few starts; the lowest cost wins. The Huber
scale is the curve's own noise, estimated from its first differences, so it needs no tuning.

Priors: ``prior={param: (mu, sd)}`` on ``log(param)`` (see :mod:`foreshock.forecast.prior`) adds one
residual per parameter, ``scale * (log(param) - mu) / sd``: with Gaussian noise of the curve's own
scale this is the maximum a posteriori fit, so a parameter the data pins down follows the data and
one it cannot see stays near the prior.

Intervals: a residual bootstrap that refits (Davison & Hinkley 1997, Algorithm 6.4, "prediction
error" form). Each replicate adds resampled residuals to the fitted curve, refits, and compares its
prediction at the target with the replicate's own truth there (fitted value plus a fresh residual),
so the interval holds both the parameter uncertainty of the extrapolation and the noise of the
point that will be logged. With a prior, each replicate is a world whose prior-held parameters are
drawn around the fit with the prior's spread: its curve, not the fitted one, makes the replicate's data
and its truth at the target, and the fit (with the same prior) is judged on it. Where the data pins a
parameter down, the refit recovers the drawn value and the interval stays narrow; where it cannot see
it, the refit stays at the prior and the interval holds the prior's whole spread, with its skew. (The Huber
loss applies to the prior's residuals too: beyond about one sd the prior pulls linearly, a heavy-tailed
prior that data far from it can overrule.) Residuals are resampled in moving blocks because a loss
curve's noise is correlated over neighbouring steps (data order, smoothing in the log); iid
resampling would make the interval too narrow on real curves. Why this and not the delta method: the laws are strongly
nonlinear in their exponents, far out of the fitted range a linearisation is poor, and the
bootstrap needs no Jacobian of the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from foreshock.forecast.laws import Design, Law

__all__ = ["Fit", "fit_law", "noise_scale", "prediction_interval"]


@dataclass(frozen=True)
class Fit:
    """A fitted law: all parameters (fixed ones included) and the fit's residuals."""

    law: Law
    theta: np.ndarray
    free: np.ndarray  # bool mask over law.params: fitted here (True) or held fixed (False)
    residuals: np.ndarray
    scale: float  # Huber scale: the curve's noise level
    prior: dict[str, tuple[float, float]] | None = None  # param -> (mu, sd) of log(param)

    @property
    def params(self) -> dict[str, float]:
        return {p: float(v) for p, v in zip(self.law.params, self.theta, strict=True)}

    def predict(self, d: Design) -> np.ndarray:
        return self.law(self.theta, d)


def noise_scale(y: np.ndarray) -> float:
    """Robust noise level of a curve: MAD of first differences / (0.6745 * sqrt 2)."""
    d = np.diff(y)
    if len(d) == 0:
        return 1e-3
    mad = float(np.median(np.abs(d - np.median(d))))
    return max(mad / 0.6745 / np.sqrt(2.0), 1e-6 * (abs(float(np.median(y))) + 1e-12), 1e-9)


def fit_law(law: Law, d: Design, y: np.ndarray, *, fixed: dict[str, float] | None = None,
            prior: dict[str, tuple[float, float]] | None = None, starts: list[np.ndarray] | None = None,
            max_nfev: int | None = None) -> Fit:
    """Fit ``law`` to ``y`` at the steps of ``d`` (a :func:`~foreshock.forecast.laws.design`),
    with the parameters in ``fixed`` held at their values and those in ``prior`` pulled towards it."""
    y = np.asarray(y, dtype=np.float64)
    fixed = dict(fixed or {})
    prior = {p: v for p, v in (prior or {}).items() if p not in fixed}
    unknown = (set(fixed) | set(prior)) - set(law.params)
    if unknown:
        raise ValueError(f"law {law.name!r} has no parameter(s) {sorted(unknown)}; it has {law.params}")
    free = np.array([p not in fixed for p in law.params])
    lo, hi = law.bounds(y)
    scale = noise_scale(y)
    candidates = list(starts) if starts is not None else law.starts(d, y)
    if prior and starts is None:  # also start where the prior says, the others filled from the first start
        at_prior = np.array(candidates[0], dtype=np.float64)
        for i, p in enumerate(law.params):
            if p in prior:
                at_prior[i] = np.exp(prior[p][0])
        candidates.append(at_prior)
    prior_idx = np.array([law.params.index(p) for p in prior], dtype=np.int64)
    prior_mu = np.array([prior[p][0] for p in prior])
    prior_sd = np.array([prior[p][1] for p in prior])

    def full(x: np.ndarray) -> np.ndarray:
        theta = np.array([fixed.get(p, 0.0) for p in law.params])
        theta[free] = x
        return theta

    def resid(x: np.ndarray) -> np.ndarray:
        theta = full(x)
        r = law(theta, d) - y
        r = np.where(np.isfinite(r), r, 1e6)  # an overflow is a bad point, not a crash
        if len(prior_idx):
            pen = scale * (np.log(np.maximum(theta[prior_idx], 1e-300)) - prior_mu) / prior_sd
            r = np.concatenate([r, pen])
        return r

    best = None
    for start in candidates:
        x0 = np.clip(np.asarray(start, dtype=np.float64)[free], lo[free], hi[free])
        x0 = np.where(x0 >= hi[free], lo[free] + 0.99 * (hi[free] - lo[free]), x0)
        res = least_squares(resid, x0, bounds=(lo[free], hi[free]), loss="huber", f_scale=scale,
                            x_scale="jac", max_nfev=max_nfev or 100 * (1 + int(free.sum())))
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    theta = full(best.x)
    return Fit(law=law, theta=theta, free=free, residuals=y - law(theta, d), scale=scale, prior=prior or None)


def prediction_interval(fit: Fit, d_fit: Design, d_target: Design, *, level: float = 0.9, n_boot: int = 100,
                        seed: int = 0) -> tuple[float, float, float]:
    """``(value, lo, hi)`` at the one step of ``d_target``: the prediction and its bootstrap interval.

    ``d_fit`` is the design the fit was made on.
    """
    rng = np.random.default_rng(seed)
    fitted = fit.predict(d_fit)
    value = float(fit.predict(d_target)[0])
    r = fit.residuals - np.mean(fit.residuals)
    n = len(r)
    block = max(1, int(round(n ** (1.0 / 3.0))))
    fixed = {p: float(v) for p, v, f in zip(fit.law.params, fit.theta, fit.free, strict=True) if not f}
    deltas = np.empty(n_boot)
    prior_idx = [fit.law.params.index(p) for p in (fit.prior or {})]
    prior_sd = np.array([sd for _, sd in (fit.prior or {}).values()])
    for b in range(n_boot):
        theta_b = fit.theta
        if prior_idx:  # a world whose response is drawn from the prior's spread (see the module docstring)
            theta_b = fit.theta.copy()
            theta_b[prior_idx] = np.exp(np.log(np.maximum(theta_b[prior_idx], 1e-300))
                                        + prior_sd * rng.standard_normal(len(prior_idx)))
        y_star = fit.law(theta_b, d_fit) if theta_b is not fit.theta else fitted
        y_star = y_star + _block_resample(r, block, rng)
        if not np.all(np.isfinite(y_star)):  # a drawn world whose curve overflows: no replicate
            deltas[b] = np.nan
            continue
        refit = fit_law(fit.law, d_fit, y_star, fixed=fixed, prior=fit.prior, starts=[fit.theta],
                        max_nfev=30 * (1 + int(fit.free.sum())))
        pred = float(refit.predict(d_target)[0])
        truth = float(fit.law(theta_b, d_target)[0])
        deltas[b] = pred - (truth + r[rng.integers(n)])
    a = (1.0 - level) / 2.0
    ok = deltas[np.isfinite(deltas)]
    if len(ok) < max(10, n_boot // 2):
        return value, float("nan"), float("nan")
    return value, value - float(np.quantile(ok, 1.0 - a)), value - float(np.quantile(ok, a))


def _block_resample(r: np.ndarray, block: int, rng: np.random.Generator) -> np.ndarray:
    """Moving-block bootstrap: concatenate random blocks of ``block`` consecutive residuals."""
    n = len(r)
    if block <= 1 or n <= block:
        return r[rng.integers(0, n, n)]
    starts = rng.integers(0, n - block + 1, -(-n // block))
    idx = (starts[:, None] + np.arange(block)[None, :]).ravel()[:n]
    return r[idx]
