import gzip
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logsamples import same

from foreshock.errors import LogFormatError
from foreshock.logs import csv_long, read_log, write_csv
from foreshock.run import RunBuilder


def write(tmp_path, text, name="run.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_values_nan_inf_and_canonical_names(tmp_path):
    path = write(tmp_path, "step,name,value\n0,train_loss,3.5\n0,lr,0.001\n1,train_loss,nan\n2,train_loss,inf\n"
                           "3,train_loss,-inf\n1,val_loss,4.0\n")
    run = read_log(path)
    assert run.format == "csv-long" and run.names == ["opt/lr", "train/loss", "val/loss"]
    steps, values = run.series("train/loss")
    assert steps.tolist() == [0, 1, 2, 3]
    assert values[0] == 3.5 and math.isnan(values[1]) and values[2] == math.inf and values[3] == -math.inf
    assert run.skipped == [] and run.name == "run" and run.source == str(path)


def test_repeated_step_keeps_the_last_record_even_across_spellings(tmp_path):
    path = write(tmp_path, "step,name,value\n0,loss,1.0\n1,loss,2.0\n1,train_loss,9.0\n2,loss,3.0\n")
    assert read_log(path).series("train/loss")[1].tolist() == [1.0, 9.0, 3.0]


def test_gzip_is_recognised_by_its_bytes_not_its_name(tmp_path):
    path = tmp_path / "run.log"
    path.write_bytes(gzip.compress(b"step,name,value\r\n5,val_loss,2.25\r\n6,val_loss,2.5\r\n"))
    run = read_log(path)
    assert run.format == "csv-long" and run.series("val/loss")[1].tolist() == [2.25, 2.5]


def test_quoted_names_wall_times_and_long_names(tmp_path):
    long = "layer/transformer.h.11.attn.c_proj.weight/grad_norm"
    path = write(tmp_path, f'step,name,value,wall_time\n0,"a,b",1.5,100.0\n1,{long},2.5,nan\n')
    run = read_log(path)
    assert run.names == sorted(["a,b", long])
    assert run["a,b"].wall_times.tolist() == [100.0] and run[long].wall_times is None


def test_bad_records_are_skipped_with_their_line_numbers(tmp_path):
    path = write(tmp_path, "step,name,value\n0,loss,1.0\n1,loss,abc\n2,loss\nx,loss,3\n3,loss,4.0\n")
    run = read_log(path)
    assert run.series("train/loss")[0].tolist() == [0, 3]
    assert [(s.line, s.count) for s in run.skipped] == [(3, 1), (4, 1), (5, 1)]
    assert "a number in column 'value'" in run.skipped[0].reason and "'abc'" in run.skipped[0].reason


def test_a_cut_last_line_is_skipped_not_read_as_a_shorter_number(tmp_path):
    path = write(tmp_path, "step,name,value\n0,loss,1.0\n1,loss,2.7")  # 2.75 cut off
    run = read_log(path)
    assert run.series("train/loss")[1].tolist() == [1.0]
    assert run.skipped[0].line == 3 and "no line end" in run.skipped[0].reason


def test_cut_gzip_stream_reads_the_decompressible_prefix(tmp_path):
    rows = "".join(f"{i},loss,{i / 10}\n" for i in range(20000))
    blob = gzip.compress(("step,name,value\n" + rows).encode())
    path = tmp_path / "run.csv.gz"
    path.write_bytes(blob[: len(blob) // 2])
    run = read_log(path)
    steps, values = run.series("train/loss")
    assert 0 < len(steps) < 20000 and steps.tolist() == list(range(len(steps)))
    assert run.skipped and run.skipped[-1].line == len(steps) + 2


def test_not_a_long_csv_names_file_line_and_expectation(tmp_path):
    path = write(tmp_path, "step,name,value\n0,loss,abc\n")
    with pytest.raises(LogFormatError) as e:
        read_log(path)
    assert e.value.line == 2 and "run.csv, line 2" in str(e.value) and "a number in column 'value'" in str(e.value)
    with pytest.raises(LogFormatError, match="line 1: expected the header step,name,value"):
        read_log(write(tmp_path, "stp,name,value\n0,loss,1\n"), format="csv-long")


def test_fast_path_reads_typical_files_without_falling_back(tmp_path, monkeypatch):
    def refuse(*args):
        raise AssertionError("careful path used")

    monkeypatch.setattr(csv_long, "_careful", refuse)
    names = [f"m{i}" for i in range(80)]  # more names than the vectorised grouping handles one by one
    rows = "".join(f"{s},{n},{s * 0.5}\n" for s in range(50) for n in names)
    run = read_log(write(tmp_path, "step,name,value\n" + rows))
    assert len(run.names) == 80 and run.series("m79")[1].tolist() == [s * 0.5 for s in range(50)]


def test_fast_and_careful_paths_agree(tmp_path):
    rng = np.random.default_rng(1)
    names = ["loss", "val_loss", "lr", "grad_norm_hidden"]
    lines = [f"{int(s)},{names[int(k)]},{v!r}" for s, k, v in
             zip(rng.integers(0, 40, 500), rng.integers(0, 4, 500), rng.standard_normal(500).tolist(), strict=True)]
    lines[17] = "3,loss,nan"
    path = write(tmp_path, "step,name,value\n" + "\n".join(lines) + "\n")
    fast = read_log(path)
    records = csv_long.Records(path, "csv-long")
    csv_long._careful(lines, 2, 3, records)
    careful = records.build(expected="rows")
    assert fast.names == careful.names
    for name in fast.names:
        assert same(fast[name].steps, careful[name].steps) and same(fast[name].values, careful[name].values)


finite_or_not = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["train/loss", "val/loss", "opt/lr", "weird,name", "x"]),
                       st.dictionaries(st.integers(-5, 10**12), finite_or_not, min_size=1, max_size=20),
                       min_size=1),
       st.booleans())
def test_write_then_read_gives_the_same_run(tmp_path_factory, metrics, compressed):
    b = RunBuilder()
    for name, points in metrics.items():
        for step, value in points.items():
            b.add(step, name, value)
    run = b.build("r", source="mem", format="live")
    path = tmp_path_factory.mktemp("w") / ("r.csv.gz" if compressed else "r.csv")
    back = read_log(write_csv(run, path))
    assert back.names == run.names
    for name in run.names:
        assert same(back[name].steps, run[name].steps) and same(back[name].values, run[name].values)


def test_many_bad_records_are_all_counted_in_a_bounded_list(tmp_path):
    rows = "".join(f"{i},loss,{'bad' if i % 2 else i}\n" for i in range(300))
    run = read_log(write(tmp_path, "step,name,value\n" + rows))
    assert run.skipped_records == 150 and len(run.skipped) == 101
    assert run.skipped[0].line == 3 and run.skipped[-1].line == 2 + 201 and run.skipped[-1].count == 50


def test_gzip_cut_between_lines_still_says_something_was_lost(tmp_path):
    first = gzip.compress(b"step,name,value\n0,loss,1.0\n1,loss,0.5\n")
    second = gzip.compress(b"2,loss,0.25\n")
    path = tmp_path / "run.csv.gz"
    path.write_bytes(first + second[:6])  # the second gzip member is cut inside its header
    run = read_log(path)
    assert run.series("train/loss")[0].tolist() == [0, 1]
    assert [(s.line, s.count) for s in run.skipped] == [(4, 1)] and "cut off" in run.skipped[0].reason
