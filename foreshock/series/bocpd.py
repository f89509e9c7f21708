"""Bayesian online change-point detection (Adams & MacKay 2007) with a bounded posterior and restarts.

The series is modelled as segments of independent Normal values with unknown mean and variance
(Normal-Gamma prior, Student-t predictive), a new segment starting at each step with probability
``hazard``. After each value the posterior over the *run length* (how many of the latest values
belong to the current segment) is updated in closed form: every hypothesis grows by one, or a new
segment begins. Four changes make it a streaming tool for long training logs:

- **Bounded memory.** Only the ``max_hypotheses`` most probable run lengths are kept, then the
  posterior is renormalised, so a step costs O(R) however long the run. What is dropped is the
  least probable mass; :func:`run_length_posterior` without truncation is the exact recursion the
  tests compare the truncated one with.
- **Restarts** (R-BOCPD, Alami et al. 2020). A change is declared when the posterior mass of
  "the segment began between ``min_length`` and ``delay`` values ago" reaches ``threshold``; the
  model then restarts from the most probable of those hypotheses, forgetting the old segment, so the
  next change is judged against the new level only.
- **No scale to choose.** The prior of a new segment is centred on the previous value, nearly flat on
  the mean (``kappa0``), its expected variance the robust noise level of the series (from the median
  absolute successive difference over the last ``scale_window`` values). The whole posterior is then
  unchanged when the series is shifted or multiplied by a constant: stationary noise of any scale
  gives the same (absence of) changes.
- **Outliers are not changes.** A Gaussian segment cannot absorb a single far outlier, so the
  posterior jumps to "a new segment began there"; a change is only declared when the median of the
  new segment's values has also moved ``min_jump`` noise SDs from the old mean.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy.special import gammaln

__all__ = ["BOCPD", "ChangePoint", "run_length_posterior", "student_t_logpdf"]

_DIFF_TO_SD = 1.0 / (0.6744897501960817 * math.sqrt(2.0))  # median |x_t - x_{t-1}| -> noise SD
_WARMUP = 8  # values that set the first noise level before the model starts
_NOISE_EVERY = 16  # values between two updates of the noise level (a median is not free)


def student_t_logpdf(x: float, mu: np.ndarray, kappa: np.ndarray, alpha: np.ndarray,
                     beta: np.ndarray) -> np.ndarray:
    """Log predictive density of ``x`` under Normal-Gamma(mu, kappa, alpha, beta) hypotheses."""
    scale2 = beta * (kappa + 1.0) / (alpha * kappa)
    return (gammaln(alpha + 0.5) - gammaln(alpha) - 0.5 * np.log(2.0 * math.pi * alpha * scale2)
            - (alpha + 0.5) * np.log1p((x - mu) ** 2 / (2.0 * alpha * scale2)))


@dataclass
class ChangePoint:
    """A declared change: where the new segment began and what the two segments look like."""

    index: int            # index (0-based count of values seen) of the first value of the new segment
    detected_at: int      # index of the value at which the change was declared
    probability: float    # posterior mass of the change when it was declared
    length_before: int    # values in the segment that ended
    mean_before: float
    mean_after: float


@dataclass
class BOCPD:
    """Streaming change-point posterior of one series (``update(x)``, then read the properties).

    Parameters
    ----------
    hazard : float
        Prior probability that a new segment starts at any step (1 / expected segment length).
    max_hypotheses : int
        Run lengths kept after each step (R); the rest of the posterior is dropped and renormalised.
    delay : int
        Largest run length counted as "a change just happened".
    min_length : int
        Smallest run length counted: a change needs this many values at its new level.
    threshold : float
        Posterior mass of a recent change that declares it and restarts the model.
    kappa0, alpha0 : float
        Prior strength on the mean (small: nearly flat) and on the variance (alpha0 > 1: finite).
    scale_window : int
        Values behind the robust noise level that scales the prior variance.
    min_jump : float
        The median of the new segment must be this many noise SDs away from the old mean: one outlier
        (which a Gaussian segment model cannot absorb) makes the posterior jump, but not the median.
    restarts : bool
        Declare changes and restart at them; False keeps the plain (truncated) posterior.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 1, 200), rng.normal(4, 1, 200)])
    >>> cp = BOCPD()
    >>> found = [cp.change.index for v in x if cp.update(v).change_detected]
    >>> found  # the index of the first value at the new level
    [200]
    """

    hazard: float = 1e-3
    max_hypotheses: int = 100
    delay: int = 10
    min_length: int = 5
    threshold: float = 0.9
    kappa0: float = 0.01
    alpha0: float = 2.0
    scale_window: int = 64
    restarts: bool = True
    min_jump: float = 2.0
    # running state: R slots, one hypothesis each (an empty slot has log_post -inf)
    t: int = 0
    started: bool = False
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    log_post: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mu: np.ndarray = field(default_factory=lambda: np.zeros(0))
    beta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sums: np.ndarray = field(default_factory=lambda: np.zeros(0))
    recent: list[float] = field(default_factory=list)
    noise: float = 0.0
    segment_n: int = 0
    segment_sum: float = 0.0
    change_prob: float = 0.0
    change: ChangePoint | None = None

    def __post_init__(self) -> None:
        if not 0 < self.hazard < 1 or self.max_hypotheses < 2 or not 1 <= self.min_length <= self.delay:
            raise ValueError("need 0 < hazard < 1, max_hypotheses >= 2 and 1 <= min_length <= delay")
        if not 0 < self.threshold <= 1 or self.kappa0 <= 0 or self.alpha0 <= 1 or self.min_jump < 0:
            raise ValueError("need 0 < threshold <= 1, kappa0 > 0, alpha0 > 1 and min_jump >= 0")
        if self.scale_window < max(3, self.delay):
            raise ValueError("need scale_window >= 3 and >= delay (the new segment's values are kept there)")
        if len(self.lengths) == 0:
            self._clear()

    def _clear(self) -> None:
        r = self.max_hypotheses
        self.lengths = np.zeros(r, dtype=np.int64)
        self.log_post = np.full(r, -np.inf)
        self.mu = np.zeros(r)
        self.beta = np.ones(r)  # any positive value: empty slots must give finite densities
        self.sums = np.zeros(r)

    _ARRAYS: ClassVar[tuple[str, ...]] = ("lengths", "log_post", "mu", "beta", "sums")
    _SCALARS: ClassVar[tuple[str, ...]] = ("t", "started", "noise", "segment_n", "segment_sum", "change_prob")

    def state(self) -> dict[str, Any]:
        """The running state as plain JSON-able values (see :meth:`load`)."""
        out: dict[str, Any] = {k: getattr(self, k).tolist() for k in self._ARRAYS}
        out.update({k: getattr(self, k) for k in self._SCALARS})
        out["recent"] = list(self.recent)
        out["change"] = None if self.change is None else asdict(self.change)
        return out

    def load(self, state: dict[str, Any]) -> BOCPD:
        """Restore a state from :meth:`state`; the parameters stay those of this object."""
        for k in self._ARRAYS:
            setattr(self, k, np.asarray(state[k], dtype=np.int64 if k == "lengths" else np.float64))
        for k in self._SCALARS:
            setattr(self, k, type(getattr(self, k))(state[k]))
        self.recent = [float(v) for v in state["recent"]]
        self.change = None if state["change"] is None else ChangePoint(**state["change"])
        return self

    @property
    def change_detected(self) -> bool:
        """True right after the value that declared a change (see ``change``)."""
        return self.change is not None and self.change.detected_at == self.t - 1

    @property
    def run_length(self) -> int:
        """Most probable run length (0 before the model starts)."""
        return int(self.lengths[np.argmax(self.log_post)]) if self.started else 0

    @property
    def posterior(self) -> dict[int, float]:
        """The run-length posterior, ``{run length: probability}`` over the hypotheses kept."""
        kept = np.isfinite(self.log_post)
        return dict(zip(self.lengths[kept].tolist(), np.exp(self.log_post[kept]).tolist(), strict=True))

    def update(self, x: float) -> BOCPD:
        """Take one finite value."""
        x = float(x)
        self.recent.append(x)
        if len(self.recent) > self.scale_window:
            del self.recent[0]
        self.t += 1
        if not self.started and len(self.recent) < _WARMUP:
            return self  # the first values only set the noise level, then the model starts on them
        if not self.started or (self.t - _WARMUP) % _NOISE_EVERY == 0:
            diffs = np.abs(np.diff(np.asarray(self.recent)))
            self.noise = float(np.median(diffs)) * _DIFF_TO_SD
        if not self.started:
            self.started = True
            for i, v in enumerate(self.recent):
                self._step(v, self.recent[i - 1] if i else v)
        else:
            self._step(x, self.recent[-2])
        self._check()
        return self

    def _step(self, x: float, prev: float) -> None:
        s = self.noise if self.noise > 0 else 1e-6 * max(abs(prev), abs(x), 1e-300)  # a constant stretch
        b0, k0, a0 = (self.alpha0 - 1.0) * s * s, self.kappa0, self.alpha0  # prior mean of the variance: s^2
        # a new segment starting at x, prior centred on the previous value (the posterior sums to 1)
        scale2 = b0 * (k0 + 1.0) / (a0 * k0)
        log_new = (math.lgamma(a0 + 0.5) - math.lgamma(a0) - 0.5 * math.log(2.0 * a0 * math.pi * scale2)
                   - (a0 + 0.5) * math.log1p((x - prev) ** 2 / (2.0 * a0 * scale2)) + math.log(self.hazard))
        # every kept hypothesis grows by x (kappa and alpha follow from the run length)
        n = self.lengths.astype(np.float64)
        kappa = k0 + n
        alpha = a0 + 0.5 * n
        log_post = self.log_post + student_t_logpdf(x, self.mu, kappa, alpha, self.beta) + math.log1p(-self.hazard)
        d2 = (x - self.mu) ** 2
        self.beta += kappa * d2 / (2.0 * (kappa + 1.0))
        self.mu = (kappa * self.mu + x) / (kappa + 1.0)
        self.sums += x
        self.lengths += 1
        # the new hypothesis takes the least probable slot, unless it is itself the least probable
        j = int(np.argmin(log_post))
        if log_new > log_post[j]:
            log_post[j] = log_new
            self.lengths[j], self.mu[j], self.beta[j], self.sums[j] = 1, (k0 * prev + x) / (k0 + 1.0), \
                b0 + k0 * (x - prev) ** 2 / (2.0 * (k0 + 1.0)), x
        top = float(np.max(log_post))
        self.log_post = log_post - (top + math.log(float(np.sum(np.exp(log_post - top)))))
        self.segment_n += 1
        self.segment_sum += x

    def _check(self) -> None:
        recent = (self.lengths >= self.min_length) & (self.lengths <= self.delay) & (self.lengths < self.segment_n)
        post = np.exp(self.log_post[recent])
        self.change_prob = float(np.sum(post))
        if not self.restarts or self.change_prob < self.threshold:
            return
        i = int(np.flatnonzero(recent)[np.argmax(post)])
        n_after = int(self.lengths[i])
        n_before = self.segment_n - n_after
        mean_before = (self.segment_sum - float(self.sums[i])) / n_before
        if abs(float(np.median(self.recent[-n_after:])) - mean_before) < self.min_jump * self.noise:
            return  # an outlier or a burst of noise, not a new level: the median has not moved
        self.change = ChangePoint(index=self.t - n_after, detected_at=self.t - 1, probability=self.change_prob,
                                  length_before=n_before,
                                  mean_before=mean_before,
                                  mean_after=float(self.sums[i]) / n_after)
        kept = (int(self.lengths[i]), float(self.mu[i]), float(self.beta[i]), float(self.sums[i]))
        self._clear()
        self.lengths[0], self.mu[0], self.beta[0], self.sums[0] = kept
        self.log_post[0] = 0.0
        self.segment_n = n_after
        self.segment_sum = kept[3]


def run_length_posterior(x: np.ndarray, hazard: float = 1e-3, max_hypotheses: int | None = None,
                         **prior: float) -> list[dict[int, float]]:
    """The run-length posterior after each value, ``{run length: probability}``, without restarts.

    ``max_hypotheses=None`` keeps every run length (the exact Adams & MacKay recursion, O(n^2)); it is
    the reference for the truncated streaming posterior.
    """
    cp = BOCPD(hazard=hazard, max_hypotheses=max_hypotheses or len(x) + 2, restarts=False, **prior)
    return [cp.update(v).posterior for v in x]
