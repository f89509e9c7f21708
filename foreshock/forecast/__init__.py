"""Forecasts: where will the loss land under this learning-rate schedule?

    >>> from foreshock.forecast import forecast, parse_schedule      # doctest: +SKIP
    >>> f = forecast(run, schedule="cosine:peak=6e-4,final=6e-5,warmup=700,total=20000")  # doctest: +SKIP
    >>> f.value, f.interval                                          # doctest: +SKIP
"""

from foreshock.forecast.fit import Fit, fit_law, prediction_interval
from foreshock.forecast.forecast import Forecast, default_metric, forecast
from foreshock.forecast.laws import LAWS, Law, annealing_law, multi_power_law, power_law
from foreshock.forecast.schedules import Schedule, ScheduleError, parse_schedule, schedule_from_run

__all__ = [
    "LAWS",
    "Fit",
    "Forecast",
    "Law",
    "Schedule",
    "ScheduleError",
    "annealing_law",
    "default_metric",
    "fit_law",
    "forecast",
    "multi_power_law",
    "parse_schedule",
    "power_law",
    "prediction_interval",
    "schedule_from_run",
]
