import math

import pytest

from foreshock.errors import LogFormatError
from foreshock.logs import read_log

LIGHTNING = """epoch,step,train_loss,val_loss,val_acc
0,49,2.31,,
0,99,2.10,,
0,99,,2.05,0.41
1,149,1.95,,
1,199,nan,,
1,199,,1.90,0.52
"""


def write(tmp_path, text, name="metrics.csv"):
    (tmp_path / "version_0").mkdir(exist_ok=True)
    path = tmp_path / "version_0" / name
    path.write_text(text)
    return path


def test_lightning_metrics_csv_empty_cells_are_not_logged_nan_is_a_value(tmp_path):
    run = read_log(write(tmp_path, LIGHTNING))
    assert run.format == "csv-wide" and run.name == "version_0"  # metrics.csv says nothing; its folder does
    steps, values = run.series("train/loss")
    assert steps.tolist() == [49, 99, 149, 199] and math.isnan(values[-1]) and values[0] == 2.31
    assert run.series("val/loss")[0].tolist() == [99, 199] and run.series("val/acc")[1].tolist() == [0.41, 0.52]
    assert run.series("epoch")[1].tolist() == [0, 0, 1, 1]
    assert run.skipped == []


def test_wandb_export_uses_timestamp_as_wall_time(tmp_path):
    text = "_step,_runtime,_timestamp,train/loss,lr\n0,1.5,1700000000.5,3.0,0.1\n1,2.5,1700000001.5,2.5,0.1\n2,3.5,1700000002.5,2.4,0.05\n"
    run = read_log(write(tmp_path, text, "history.csv"))
    assert run.names == ["opt/lr", "time/runtime_s", "train/loss"]
    assert run["train/loss"].wall_times.tolist() == [1700000000.5, 1700000001.5, 1700000002.5]


def test_text_and_constant_columns_are_config_known_metrics_stay_metrics(tmp_path):
    rows = "".join(f"{s},adamw,113,0.3,{5 - s * 0.1},0.001,,{'nan' if s == 0 else 0.5}\n" for s in range(0, 500, 100))
    text = "step,regime,modulus,train_fraction,train_loss,lr,scheduled_freeze_step,hidden_gradient_norm\n" + rows
    run = read_log(write(tmp_path, text, "grok.csv"))
    assert run.config == {"regime": "adamw", "modulus": 113, "train_fraction": 0.3}
    assert run.names == ["layer/hidden/grad_norm", "opt/lr", "train/loss"]  # a constant lr is still the lr
    assert math.isnan(run.series("layer/hidden/grad_norm")[1][0])


def test_a_bad_cell_skips_its_row_and_names_the_line(tmp_path):
    run = read_log(write(tmp_path, "step,lr,loss\n0,0.1,3.0\n1,0.1,oops\n2,0.1,2.0\n3,0.1\n"))
    assert run.series("train/loss")[0].tolist() == [0, 2]
    assert [s.line for s in run.skipped] == [3, 5]
    assert "column 'loss'" in run.skipped[0].reason and "'oops'" in run.skipped[0].reason


def test_a_cut_last_row_is_skipped(tmp_path):
    run = read_log(write(tmp_path, "step,lr,loss\n0,0.1,3.0\n1,0.1,2.9\n2,0.1,2."))
    assert run.series("train/loss")[0].tolist() == [0, 1] and run.skipped[0].line == 4


def test_csv_without_step_column_or_numbers_is_not_a_log(tmp_path):
    with pytest.raises(LogFormatError, match=r"data.csv, line 1: expected a step column"):
        read_log(write(tmp_path, "a,b\n1,2\n", "data.csv"), format="csv-wide")
    with pytest.raises(LogFormatError, match=r"names.csv, line 1: expected at least one column of numbers"):
        read_log(write(tmp_path, "step,name\n1,alice\n2,bob\n", "names.csv"))
    with pytest.raises(LogFormatError, match="data.csv"):
        read_log(write(tmp_path, "a,b\n1,2\n", "data.csv"))
