import numpy as np

from foreshock.forecast import LAWS, fit_law, forecast
from foreshock.forecast.backtest import extrapolation_error
from foreshock.forecast.laws import design
from foreshock.run import RunBuilder


def test_no_extrapolation_error_when_the_law_is_exact():
    steps = np.arange(10, 1001, 10)
    y = 2.0 + 3.0 * steps ** -0.5
    fit = fit_law(LAWS["power"], design(steps, None), y)
    assert extrapolation_error(fit, steps, y, None, 10_000) < 1e-4
    assert extrapolation_error(fit, steps, y, None, 500) == 0.0  # inside the data: nothing to add


def test_misspecified_law_gets_an_interval_that_reaches_the_truth():
    # an exponential approach is not a power law: the bootstrap alone is far too sure of itself
    steps = np.arange(10, 2001, 10)
    curve = 2.0 + np.exp(-steps / 1500.0)
    b = RunBuilder()
    b.add_array("train/loss", steps, curve + np.random.default_rng(0).normal(0, 0.002, len(steps)))
    run = b.build("sim", source="simulated", format="test")
    truth = 2.0 + np.exp(-4000 / 1500.0)
    narrow = forecast(run, law="power", fit_until=1000, at=4000, n_boot=30, widen=False)
    wide = forecast(run, law="power", fit_until=1000, at=4000, n_boot=30)
    assert not narrow.lo <= truth <= narrow.hi
    assert wide.lo <= truth <= wide.hi
    assert wide.value == narrow.value
