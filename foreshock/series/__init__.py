"""Pure numpy/scipy math on 1-D series: trailing medians, robust bands, runs of a condition. No I/O."""

from foreshock.series.best import RunningBest, running_best
from foreshock.series.robust import MAD_SCALE, Band, band_state, band_step, new_band_state, robust_band
from foreshock.series.rolling import lower_median, push, trailing_median
from foreshock.series.runs import first_true, running_streak, true_runs

__all__ = [
    "MAD_SCALE",
    "Band",
    "RunningBest",
    "band_state",
    "band_step",
    "first_true",
    "lower_median",
    "new_band_state",
    "push",
    "robust_band",
    "running_best",
    "running_streak",
    "trailing_median",
    "true_runs",
]
