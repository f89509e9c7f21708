import gzip
import math

import numpy as np
import pytest
from logsamples import write_events

from foreshock.errors import LogFormatError
from foreshock.logs import read_log


def test_simple_values_and_scalar_tensors_are_both_read(tmp_path):
    a = write_events(tmp_path / "a", [(0, "loss", 2.0), (1, "loss", float("nan")), (2, "loss", 1.5)])
    b = write_events(tmp_path / "b", [(0, "loss", 2.0), (1, "loss", float("inf")), (2, "loss", 1.5)], tensor=True)
    run_a, run_b = read_log(a), read_log(b)
    assert run_a.format == run_b.format == "tensorboard"
    assert math.isnan(run_a.series("train/loss")[1][1]) and run_b.series("train/loss")[1][1] == math.inf
    assert run_a["train/loss"].wall_times.tolist() == [1_700_000_000.0, 1_700_000_001.0, 1_700_000_002.0]
    assert run_a.name == "a"  # an event file's name says nothing; its directory names the run


def test_non_scalar_summaries_are_passed_over(tmp_path):
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.util import tensor_util

    histogram = summary_pb2.Summary.Value(
        tag="weights", tensor=tensor_util.make_tensor_proto(np.ones((4, 3), np.float64)),
        metadata=summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="histograms")))
    text = summary_pb2.Summary.Value(tag="note", tensor=tensor_util.make_tensor_proto(np.array(b"hello")))
    path = write_events(tmp_path / "r", [(0, "lr", 0.1)], extra_values=[(0, histogram), (1, text)])
    assert read_log(path).names == ["opt/lr"]


def test_directory_with_split_writers_prefixes_bare_tags(tmp_path):
    write_events(tmp_path / "run" / "train", [(0, "epoch_loss", 2.0), (1, "epoch_loss", 1.0)])
    write_events(tmp_path / "run" / "validation", [(0, "epoch_loss", 2.5), (1, "epoch_accuracy", 0.5)])
    write_events(tmp_path / "run", [(0, "train/lr", 0.1)])
    run = read_log(tmp_path / "run")
    assert run.names == ["opt/lr", "train/loss", "val/acc", "val/loss"] and run.name == "run"


def test_add_scalars_writers_are_the_same_run(tmp_path):
    write_events(tmp_path / "run", [(0, "lr", 0.1)])
    write_events(tmp_path / "run" / "Loss_train", [(0, "Loss", 2.0)])
    write_events(tmp_path / "run" / "Loss_val", [(0, "Loss", 3.0)])
    run = read_log(tmp_path / "run")
    assert run.series("train/loss")[1].tolist() == [2.0] and run.series("val/loss")[1].tolist() == [3.0]


def test_several_runs_in_one_directory_are_refused_by_name(tmp_path):
    write_events(tmp_path / "runs" / "version_0", [(0, "loss", 1.0)])
    write_events(tmp_path / "runs" / "version_1", [(0, "loss", 1.0)])
    with pytest.raises(LogFormatError, match=r"2 runs \(version_0, version_1\)"):
        read_log(tmp_path / "runs")


def test_truncated_event_file_reads_up_to_the_last_good_record(tmp_path):
    path = write_events(tmp_path / "r", [(s, "loss", 1.0 / (s + 1)) for s in range(10)])
    data = path.read_bytes()
    cut = tmp_path / "cut" / path.name
    cut.parent.mkdir()
    cut.write_bytes(data[:-7])
    run = read_log(cut)
    assert run.series("train/loss")[0].tolist() == list(range(9))
    assert run.skipped_records == 1 and run.skipped[0].line == 11  # record 1 is the file-version event


def test_gzip_event_file_and_directory_without_events(tmp_path):
    path = write_events(tmp_path / "r", [(0, "loss", 1.0)])
    zipped = tmp_path / "z" / "events.out.tfevents.1.host.gz"
    zipped.parent.mkdir()
    zipped.write_bytes(gzip.compress(path.read_bytes()))
    assert read_log(zipped).series("train/loss")[1].tolist() == [1.0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(LogFormatError, match="empty: expected .*got 'a directory without TensorBoard event files'"):
        read_log(tmp_path / "empty")
