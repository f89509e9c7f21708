import math

import numpy as np
import pytest

from foreshock.run import RunBuilder


def build(records):
    b = RunBuilder()
    for r in records:
        b.add(*r)
    return b.build("r", source="mem", format="test")


def test_series_are_sorted_by_step_with_numpy_dtypes():
    run = build([(3, "train/loss", 3.0), (1, "train/loss", 1.0), (2, "train/loss", 2.0)])
    steps, values = run.series("train/loss")
    assert steps.dtype == np.int64 and values.dtype == np.float64
    assert steps.tolist() == [1, 2, 3] and values.tolist() == [1.0, 2.0, 3.0]


def test_repeated_step_keeps_the_record_read_last():
    # a resumed run logs the same step again; the later record is the one the run continued from
    run = build([(0, "train/loss", 5.0), (1, "train/loss", 4.0), (1, "train/loss", 9.0), (2, "train/loss", 3.0)])
    assert run.series("train/loss")[1].tolist() == [5.0, 9.0, 3.0]


def test_non_finite_values_are_kept():
    run = build([(0, "train/loss", 1.0), (1, "train/loss", math.nan), (2, "train/loss", math.inf)])
    v = run.series("train/loss")[1]
    assert math.isnan(v[1]) and v[2] == math.inf


def test_names_steps_and_missing_metric_error():
    run = build([(5, "val/loss", 1.0), (0, "train/loss", 2.0), (9, "train/loss", 1.5)])
    assert run.names == ["train/loss", "val/loss"]
    assert run.steps == (0, 9)
    with pytest.raises(KeyError, match="has no metric 'opt/lr'.*train/loss"):
        run.series("opt/lr")


def test_wall_times_only_when_logged():
    b = RunBuilder()
    b.add(0, "a", 1.0)
    b.add(0, "b", 1.0, wall_time=100.0)
    run = b.build("r", source="mem", format="test")
    assert run["a"].wall_times is None
    assert run["b"].wall_times.tolist() == [100.0]


def test_adjacent_skips_merge_into_one_entry():
    b = RunBuilder()
    b.skip(10, "cut off")
    b.skip(11, "cut off")
    b.skip(20, "cut off")
    b.add(0, "a", 1.0)
    run = b.build("r", source="mem", format="test")
    assert [(s.line, s.count) for s in run.skipped] == [(10, 2), (20, 1)]
    assert run.skipped_records == 3
