"""Pure numpy/scipy math on 1-D series: trailing medians, robust bands, runs of a condition, early-warning
indicators, change-point posteriors, clipped second moments, log-log slopes. No I/O."""

from foreshock.series.best import RunningBest, running_best
from foreshock.series.bocpd import BOCPD, ChangePoint, run_length_posterior, student_t_logpdf
from foreshock.series.ews import (
    EarlyWarning,
    Indicators,
    gaussian_residuals,
    indicator_rows,
    indicators,
    kendall_rows,
    kendall_tau,
    kernel_sigma,
)
from foreshock.series.moment import moment_step, new_moment_state, second_moment_ratios
from foreshock.series.phases import bin_step, broken_line, new_bin_state, theil_sen
from foreshock.series.robust import MAD_SCALE, Band, band_state, band_step, new_band_state, robust_band
from foreshock.series.rolling import lower_median, push, trailing_median
from foreshock.series.runs import first_true, running_streak, true_runs

__all__ = [
    "BOCPD",
    "MAD_SCALE",
    "ChangePoint",
    "EarlyWarning",
    "Indicators",
    "bin_step",
    "broken_line",
    "gaussian_residuals",
    "indicator_rows",
    "indicators",
    "kendall_rows",
    "kendall_tau",
    "kernel_sigma",
    "moment_step",
    "new_bin_state",
    "new_moment_state",
    "run_length_posterior",
    "second_moment_ratios",
    "student_t_logpdf",
    "theil_sen",
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
