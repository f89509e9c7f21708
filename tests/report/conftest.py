import numpy as np
import pytest
from report_runs import make_events, make_run

from foreshock.analysis import Analysis
from foreshock.run import RunBuilder


@pytest.fixture
def analysis():
    return Analysis(make_run(), make_events())


@pytest.fixture
def long_analysis():
    n = 20_000
    b = RunBuilder()
    rng = np.random.default_rng(0)
    loss = 2.0 + 0.05 * rng.standard_normal(n)
    loss[12_345] = 40.0  # a one-step spike that must survive thinning
    b.add_array("train/loss", np.arange(n), loss)
    b.add_array("opt/lr", np.arange(n), np.full(n, 3e-4))
    return Analysis(b.build("long", source="/data/long.csv", format="csv-long"), [])
