"""Loss-curve laws: pure functions of (steps, LR table, parameters).

``lr`` is always the LR table of a schedule, ``lr[t]`` the LR of the update taken at step ``t``;
the loss logged at step ``s`` has seen the updates ``0..s-1``, so its LR area is
``S1(s) = lr[0] + ... + lr[s-1]``.

- :func:`power_law`: ``L(t) = L_inf + A * t**-alpha``, the baseline fitted by hand.
- :func:`annealing_law`: ``L(s) = L0 + A * S1**-alpha - C * S2`` (Tissue et al. 2024,
  arXiv:2408.11029), with ``S2 = sum_i m_i`` and ``m_i = lam * m_{i-1} + (eta_{i-1} - eta_i)``.
- :func:`multi_power_law`: ``L(t) = L0 + A * S1**-alpha - LD(t)`` with
  ``LD(t) = B * sum_k (eta_{k-1} - eta_k) * G(eta_k**-gamma * S_k(t))``,
  ``S_k(t) = eta_k + ... + eta_{t}``, ``G(x) = 1 - (C x + 1)**-beta`` (Luo et al. 2025,
  arXiv:2503.12811). ``S1`` includes the warm-up area (the paper's ``S1 + S_W``).

Both schedule-aware laws sum LR *decreases* only after warm-up: the papers start their sums at the
peak (``eta_0`` is the peak LR), so the rise of the warm-up is not an "annealing".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

__all__ = ["LAWS", "Design", "Law", "annealing_area", "annealing_law", "decay_steps", "design", "lr_area",
           "multi_power_law", "power_law"]


def power_law(steps: np.ndarray, L_inf: float, A: float, alpha: float) -> np.ndarray:
    """``L_inf + A * steps**-alpha`` (steps > 0)."""
    return L_inf + A * np.asarray(steps, dtype=np.float64) ** -alpha


def lr_area(lr: np.ndarray) -> np.ndarray:
    """``S1[s] = lr[0] + ... + lr[s-1]`` for ``s = 0..len(lr)``."""
    return np.concatenate([[0.0], np.cumsum(lr, dtype=np.float64)])


def decay_steps(lr: np.ndarray) -> np.ndarray:
    """``d[t] = lr[t-1] - lr[t]`` (``d[0] = 0``), zero up to the first step at the peak (warm-up)."""
    lr = np.asarray(lr, dtype=np.float64)
    d = np.zeros(len(lr))
    d[1:] = lr[:-1] - lr[1:]
    d[: int(np.argmax(lr)) + 1] = 0.0
    return d


def annealing_area(lr: np.ndarray, lam: float) -> np.ndarray:
    """``S2[s] = m[0] + ... + m[s-1]``, ``m[t] = lam * m[t-1] + d[t]``, for ``s = 0..len(lr)``."""
    m = lfilter([1.0], [1.0, -lam], decay_steps(lr))  # the momentum recursion, in C
    return np.concatenate([[0.0], np.cumsum(m)])


@dataclass(frozen=True)
class Design:
    """What the laws need of (steps, schedule), computed once so that a fit only does arithmetic.

    ``sk[i, j]`` is ``S_k(t)`` for step ``steps[i]`` and decrease ``j`` (0 where ``k >= t``).
    """

    steps: np.ndarray
    s1: np.ndarray | None = None
    s2: np.ndarray | None = None
    sk: np.ndarray | None = None
    lr_k: np.ndarray | None = None
    dk: np.ndarray | None = None
    peak: float = 1.0  # the schedule's highest LR (sets the scale of starting points)


def design(steps: np.ndarray, lr: np.ndarray | None, *, lam: float = 0.999, max_terms: int = 200) -> Design:
    """Precompute the LR areas at ``steps`` (1 <= step <= len(lr)) for :data:`LAWS`.

    The multi-power sum is exact while the schedule falls at no more than ``max_terms`` steps before
    the last step asked for; beyond that, consecutive decreases are merged into ``max_terms`` groups
    (each at its decrease-weighted mean step), which keeps a fit on a 70k-step cosine fast; the test
    suite bounds the error this makes.
    """
    s = np.asarray(steps, dtype=np.int64).reshape(-1)
    if lr is None:
        return Design(steps=s)
    lr = np.asarray(lr, dtype=np.float64)
    if len(s) and (s.min() < 1 or s.max() > len(lr)):
        raise ValueError(f"steps must lie in 1..{len(lr)} (the LR table's length); got {s.min()}..{s.max()}")
    area = lr_area(lr)
    d = decay_steps(lr)
    k = np.flatnonzero(d)
    k = k[k < (s.max() if len(s) else 0)]  # decreases after the last step asked for cannot matter
    dk = d[k]
    if len(k) > max_terms:  # group into runs of equal size; keep the total decrease per group
        groups = np.array_split(np.arange(len(k)), max_terms)
        w = np.array([dk[g].sum() for g in groups])
        pos = np.array([np.average(k[g], weights=np.abs(dk[g]) + 1e-300) for g in groups])
        k, dk = np.rint(pos).astype(np.int64), w
    # S_k(t) = lr[k] + ... + lr[t-1] for the loss at step t (updates up to t-1); terms with k >= t vanish
    sk = np.where(k[None, :] < s[:, None], area[s][:, None] - area[k][None, :], 0.0)
    return Design(steps=s, s1=area[s], s2=annealing_area(lr, lam)[s], sk=sk, lr_k=lr[k], dk=dk,
                  peak=float(lr.max()))


def annealing_law(steps: np.ndarray, lr: np.ndarray, L0: float, A: float, alpha: float, C: float,
                  lam: float = 0.999) -> np.ndarray:
    """Tissue et al.: ``L0 + A * S1**-alpha - C * S2`` at ``steps`` (1 <= step <= len(lr))."""
    return _annealing(design(steps, lr, lam=lam), L0, A, alpha, C)


def multi_power_law(steps: np.ndarray, lr: np.ndarray, L0: float, A: float, alpha: float, B: float,
                    C: float, beta: float, gamma: float, *, max_terms: int = 100_000) -> np.ndarray:
    """Luo et al.: ``L0 + A * S1**-alpha - LD(t)`` at ``steps`` (1 <= step <= len(lr))."""
    return _multi_power(design(steps, lr, max_terms=max_terms), L0, A, alpha, B, C, beta, gamma)


def _annealing(d: Design, L0: float, A: float, alpha: float, C: float) -> np.ndarray:
    return L0 + A * d.s1 ** -alpha - C * d.s2  # type: ignore[operator]


def _multi_power(d: Design, L0: float, A: float, alpha: float, B: float, C: float, beta: float,
                 gamma: float) -> np.ndarray:
    x = d.lr_k[None, :] ** -gamma * d.sk  # type: ignore[index,operator]
    ld = B * ((1.0 - (C * x + 1.0) ** -beta) * d.dk[None, :]).sum(axis=1)  # type: ignore[index]
    return L0 + A * d.s1 ** -alpha - ld  # type: ignore[operator]


# -- the registry the fitter uses ---------------------------------------------------------------


@dataclass(frozen=True)
class Law:
    """A law as the fitter sees it: names, bounds, which parameters answer the schedule."""

    name: str
    params: tuple[str, ...]
    needs_schedule: bool
    # parameters that say how the loss answers the LR schedule: fitted once on reference runs
    response: tuple[str, ...]

    def __call__(self, theta: np.ndarray, d: Design) -> np.ndarray:
        if self.name == "power":
            return power_law(d.steps, *theta)
        if d.s1 is None:
            raise ValueError(f"law {self.name!r} needs the LR schedule")
        if self.name == "annealing":
            return _annealing(d, *theta)
        return _multi_power(d, *theta)

    def bounds(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Box bounds; the floor ``L0`` lies between 0 and the lowest loss seen."""
        top = max(float(np.min(y)), 1e-12)  # a loss at or below 0 (a drawn world, a log-loss) keeps a box
        lo = {"L_inf": 0.0, "L0": 0.0, "A": 1e-8, "alpha": 0.01, "C": 0.0, "B": 0.0, "beta": 0.01, "gamma": 0.0}
        hi = {"L_inf": top, "L0": top, "A": 1e10, "alpha": 3.0, "C": 1e6, "B": 1e7, "beta": 5.0, "gamma": 1.5}
        if self.name == "multi-power":
            lo["C"] = 1e-6
        return np.array([lo[p] for p in self.params]), np.array([hi[p] for p in self.params])

    def starts(self, d: Design, y: np.ndarray) -> list[np.ndarray]:
        """A few starting points spread over the exponents; the level comes from the data."""
        top, span = float(np.min(y)), float(np.ptp(y)) + 1e-3
        x = d.steps.astype(np.float64) if self.name == "power" else d.s1
        out = []
        for alpha, floor in ((0.3, 0.8), (0.6, 0.9), (1.0, 0.5)):
            L0 = floor * top
            A = max((float(np.max(y)) - L0) * float(np.min(x)) ** alpha, 1e-6)
            if self.name == "power":
                out.append(np.array([L0, A, alpha]))
            elif self.name == "annealing":
                out.append(np.array([L0, A, alpha, span]))
            else:
                out.append(np.array([L0, A, alpha, span / d.peak, 1.0, 0.5, 0.5]))
        return out


LAWS: dict[str, Law] = {
    "power": Law("power", ("L_inf", "A", "alpha"), needs_schedule=False, response=()),
    "annealing": Law("annealing", ("L0", "A", "alpha", "C"), needs_schedule=True, response=("C",)),
    "multi-power": Law("multi-power", ("L0", "A", "alpha", "B", "C", "beta", "gamma"), needs_schedule=True,
                       response=("B", "C", "beta", "gamma")),
}
