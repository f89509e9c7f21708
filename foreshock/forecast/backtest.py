"""How far off does the law go when it extrapolates? Measured on the run's own prefix.

A residual bootstrap knows only the noise around the fitted curve; it cannot know that the law
itself is slightly wrong for this run, and on real curves that misfit, carried far beyond the data,
is most of the error (measured in ``bench/forecast.py``). So the same fit is repeated on the first
50/60/70/80% of the observed points, each predicts the last observed step, and its miss against
the full fit there is scaled from its own horizon to the forecast's, in log steps::

    miss_i * log(target / last) / log(last / cut_i)

The root mean square of these scaled misses is the extrapolation error, added in quadrature to
the bootstrap interval's half-widths (times the normal quantile of the level).
"""

from __future__ import annotations

import numpy as np

from foreshock.forecast.fit import Fit, fit_law
from foreshock.forecast.laws import design

__all__ = ["extrapolation_error"]

CUTS = (0.5, 0.6, 0.7, 0.8)
MIN_POINTS = 8


def extrapolation_error(fit: Fit, steps: np.ndarray, y: np.ndarray, lr_fit: np.ndarray | None,
                        target: int) -> float:
    """RMS of the law's scaled extrapolation misses on the prefix (0 when it cannot be measured)."""
    steps = np.asarray(steps, dtype=np.int64)
    last = int(steps[-1])
    if target <= last:
        return 0.0
    fixed = {p: float(v) for p, v, f in zip(fit.law.params, fit.theta, fit.free, strict=True) if not f}
    d_last = design(np.array([last]), lr_fit)
    reference = float(fit.predict(d_last)[0])
    scaled = []
    for c in CUTS:
        m = int(c * len(steps))
        cut = int(steps[m - 1]) if m >= 1 else 0
        if m < MIN_POINTS or cut <= 0 or cut >= last:
            continue
        d_sub = design(steps[:m], None if lr_fit is None else lr_fit[: cut + 1])
        sub = fit_law(fit.law, d_sub, y[:m], fixed=fixed, prior=fit.prior)
        miss = float(sub.predict(d_last)[0]) - reference
        scaled.append(miss * np.log(target / last) / np.log(last / cut))
    return float(np.sqrt(np.mean(np.square(scaled)))) if scaled else 0.0
