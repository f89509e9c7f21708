"""Readers mix RunBuilder.add (one record) and add_array (a column); read order must still decide
which record of a repeated step wins."""

import numpy as np
import pytest

from foreshock.run import RunBuilder


def test_records_and_columns_interleave_in_read_order():
    b = RunBuilder()
    b.add(1, "m", 1.0)
    b.add_array("m", np.array([1, 2]), np.array([2.0, 3.0]))
    b.add(2, "m", 4.0, wall_time=7.0)
    b.add_array("n", [0], [0.5])
    assert len(b) == 5
    run = b.build("r", source="mem", format="test")
    assert run.series("m")[0].tolist() == [1, 2] and run.series("m")[1].tolist() == [2.0, 4.0]
    assert np.isnan(run["m"].wall_times[0]) and run["m"].wall_times[1] == 7.0
    assert run.names == ["m", "n"] and run["n"].wall_times is None


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="2 steps, 1 values"):
        RunBuilder().add_array("m", [0, 1], [1.0])
