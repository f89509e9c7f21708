import math

import pytest

from foreshock.errors import LogFormatError
from foreshock.logs import LinePattern, read_log, register_pattern
from foreshock.logs import text as text_module

SCRIPT = '''import os
def main():
    for step in range(10):
        print(f"step:{step}/{n} train_loss:{loss:.4f} train_time:{t:.0f}ms step_avg:{a:.2f}ms")
'''


def write(tmp_path, text, name="train.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_modded_nanogpt_log_after_the_script_timing_kept_apart(tmp_path):
    log = SCRIPT + "=" * 20 + "\nstep:0/1750 val_loss:10.8258 train_time:0ms step_avg:nanms\n" \
        "step:1/1750 train_loss:10.9184 train_time:74701ms step_avg:nanms\n" \
        "step:2/1750 train_loss:nan train_time:75965ms step_avg:21.30ms\n"
    run = read_log(write(tmp_path, log))
    assert run.format == "text" and run.config == {"total_steps": 1750} and run.skipped == []
    assert run.status == "unknown"  # step 2 of 1750: the log stops early
    assert run.names == ["time/step_avg_ms", "time/train_ms", "train/loss", "val/loss"]
    assert run.series("val/loss")[1].tolist() == [10.8258]
    assert math.isnan(run.series("train/loss")[1][1]) and run.series("time/train_ms")[1].tolist() == [0, 74701, 75965]


def test_llmc_lines(tmp_path):
    run = read_log(write(tmp_path, "s:0 tel:10.96\ns:0 trl:10.97 lr:0.0006 norm:1.25\ns:1 trl:inf lr:0.0006 norm:9.5\n", "main.log"))
    assert run.names == ["opt/grad_norm", "opt/lr", "train/loss", "val/loss"]
    assert run.series("train/loss")[1].tolist() == [10.97, math.inf]


def test_nanogpt_lines(tmp_path):
    log = "step 0: train loss 10.9, val loss 10.95\niter 0: loss 10.9, time 1200.5ms, mfu -100.00%\n" \
          "iter 3010: loss nan, time 12.3ms, mfu 30.1%\nstep 2000: train loss 3.1, val loss 3.2\n"
    run = read_log(write(tmp_path, log, "out.log"))
    assert run.series("val/loss")[0].tolist() == [0, 2000]
    assert run.series("train/loss")[0].tolist() == [0, 2000, 3010] and math.isnan(run.series("train/loss")[1][2])
    assert run.series("time/iter_ms")[1].tolist() == [1200.5, 12.3] and "perf/mfu_pct" in run


def test_record_lines_that_cannot_be_read_are_skipped_with_line_numbers(tmp_path):
    log = "hello\nstep:1/10 train_loss:3.0\nstep:2/10 train_loss:abc\nstep:3/10 train_loss:2.9 (best)\nstep:4/10\n" \
          "step:5/10 train_loss:2.5\nstep:6/10 train_lo"
    run = read_log(write(tmp_path, log))
    assert run.series("train/loss")[0].tolist() == [1, 5]
    assert [s.line for s in run.skipped] == [3, 4, 5, 7]
    assert "a number for 'train_loss'" in run.skipped[0].reason and "'abc'" in run.skipped[0].reason
    assert "no line end" in run.skipped[-1].reason


def test_text_without_records_is_not_a_training_log(tmp_path):
    with pytest.raises(LogFormatError, match=r"notes.txt: expected training log lines such as 'step:120/1750"):
        read_log(write(tmp_path, "just some notes\nnothing else\n", "notes.txt"))
    schedule = "def get_lr(it):\n    if it < warmup:\n        return (it+1) / warmup\n    return 1.0\n"
    with pytest.raises(LogFormatError, match="a schedule file is not a training log"):
        read_log(write(tmp_path, schedule, "run.schedule.txt"))
    with pytest.raises(LogFormatError, match="Python source"):
        read_log(write(tmp_path, SCRIPT, "train.py"))


def test_only_unreadable_records_raise_with_the_first_bad_line(tmp_path):
    with pytest.raises(LogFormatError) as e:
        read_log(write(tmp_path, "intro\nstep:1/10 train_loss:abc\n"))
    assert e.value.line == 2 and "train.txt, line 2: expected a number for 'train_loss'" in str(e.value)


def test_user_patterns_per_call_and_registered(tmp_path, monkeypatch):
    path = write(tmp_path, "Epoch 1 | loss=2.50 | acc=0.1\nEpoch 2 | loss=nan | acc=0.2\n")
    with pytest.raises(LogFormatError):
        read_log(path)
    run = read_log(path, patterns=[r"Epoch (?P<step>\d+) \| loss=(?P<loss>\S+) \| acc=(?P<train_acc>\S+)"])
    assert run.names == ["train/acc", "train/loss"]
    monkeypatch.setattr(text_module, "_registered", [])
    register_pattern(LinePattern("epochs", r"Epoch (?P<step>\d+)", items=r"(?P<key>\w+)=(?P<value>\S+)"))
    assert read_log(path).series("train/acc")[1].tolist() == [0.1, 0.2]


def test_a_pattern_without_step_group_is_refused():
    with pytest.raises(ValueError, match="named group 'step'"):
        LinePattern("bad", r"Epoch (\d+)")
