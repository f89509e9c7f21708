import json
import math

import pytest

from foreshock.errors import LogFormatError
from foreshock.logs import read_log


def write(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- JSON Lines -------------------------------------------------------------------------------

def test_jsonl_step_keys_nesting_nan_and_config_line(tmp_path):
    text = ('{"model": "gpt", "batch_size": 8}\n'
            '{"global_step": 1, "train": {"loss": 2.5}, "lr": 0.1, "note": "warmup", "flag": true}\n'
            '{"global_step": 2, "train": {"loss": NaN}, "lr": null, "_timestamp": 1700000000}\n'
            '{"global_step": 2, "train": {"loss": 2.0}, "eval_loss": "Infinity"}\n')
    run = read_log(write(tmp_path, text, "log.jsonl"))
    assert run.format == "jsonl" and run.config == {"model": "gpt", "batch_size": 8}
    assert run.names == ["opt/lr", "train/loss", "val/loss"]  # null is "not logged"; strings and booleans are not values
    assert run.series("train/loss")[1].tolist() == [2.5, 2.0]  # step 2 logged twice: the later record wins
    assert run.series("val/loss")[1].tolist() == [math.inf]


def test_jsonl_bad_and_cut_lines_are_skipped(tmp_path):
    text = '{"step": 0, "loss": 1.0}\n{"step": "x", "loss": 2}\nnot json\n{"loss": 3}\n{"step": 4, "loss": 0.5}\n{"step": 5, "lo'
    run = read_log(write(tmp_path, text, "log.jsonl"))
    assert run.series("train/loss")[0].tolist() == [0, 4]
    assert [s.line for s in run.skipped] == [2, 3, 4, 6]
    assert "no line end" in run.skipped[-1].reason


# --- Hugging Face trainer_state.json ----------------------------------------------------------

STATE = {
    "best_metric": None, "epoch": 1.0, "global_step": 30, "max_steps": 30, "train_batch_size": 4,
    "log_history": [
        {"epoch": 0.3, "grad_norm": 1.5, "learning_rate": 5e-05, "loss": 2.5, "step": 10},
        {"epoch": 0.6, "grad_norm": float("nan"), "learning_rate": 4e-05, "loss": 2.2, "step": 20},
        {"epoch": 0.6, "eval_loss": 2.1, "eval_rouge1": 0.3, "eval_runtime": 12.5, "step": 20},
        {"epoch": 1.0, "learning_rate": 1e-05, "loss": 2.0, "mean_token_accuracy": 0.6, "step": 30},
        {"epoch": 1.0, "step": 30, "total_flos": 1e15, "train_loss": 2.23, "train_runtime": 100.0},
    ],
}


def test_trainer_state_maps_names_keeps_summary_out_of_the_metrics(tmp_path):
    run = read_log(write(tmp_path, json.dumps(STATE, indent=2), "trainer_state.json"))
    assert run.format == "hf-trainer-state" and run.status == "finished"
    assert run.series("train/loss")[1].tolist() == [2.5, 2.2, 2.0]  # not the run-average 2.23
    assert run.series("val/loss")[0].tolist() == [20] and "val/rouge1" in run and "val/runtime" in run
    assert run.series("opt/lr")[1].tolist() == [5e-05, 4e-05, 1e-05] and math.isnan(run.series("opt/grad_norm")[1][1])
    assert "train/mean_token_accuracy" in run and "train/runtime" not in run
    assert run.config["max_steps"] == 30 and run.config["train_batch_size"] == 4
    assert run.config["train_summary"]["train_loss"] == 2.23 and "log_history" not in run.config


def test_cut_trainer_state_keeps_the_complete_entries(tmp_path):
    text = json.dumps(STATE, indent=2)
    cut = text[: text.index('"loss": 2.0')]
    path = write(tmp_path, cut, "trainer_state.json")
    run = read_log(path)
    assert run.series("train/loss")[1].tolist() == [2.5, 2.2] and run.status == "unknown"
    assert run.skipped and run.skipped[-1].line == cut.count("\n") + 1


def test_trainer_state_without_log_history_is_not_a_log(tmp_path):
    with pytest.raises(LogFormatError, match="with a 'log_history' list"):
        read_log(write(tmp_path, '{"global_step": 3}', "trainer_state.json"))


# --- columnar JSON ------------------------------------------------------------------------------

def test_columnar_eos_style_arrays_eigenvalues_and_constant_lr(tmp_path):
    doc = {"name": "toy", "params": {"eta": 0.5, "hiddenDims": [30, 20]}, "totalSteps": 4,
           "loss": [1.0, 0.5, None, 0.25], "testLoss": [], "eigenvalues": [[1, 2, 3], [2, 4, 3], [1, 1, 5]]}
    run = read_log(write(tmp_path, json.dumps(doc), "run.json"))
    assert run.format == "json-columns" and run.config["params"]["eta"] == 0.5
    steps, loss = run.series("train/loss")
    assert steps.tolist() == [0, 1, 2, 3] and math.isnan(loss[2])  # JavaScript writes NaN as null
    assert run.series("probe/hessian/lambda_max")[1].tolist() == [3, 4, 5]  # the largest, in any order
    assert run.series("probe/hessian/lambda_2")[1].tolist() == [2, 3, 1]
    assert run.series("opt/lr")[1].tolist() == [0.5] * 4
    assert "val/loss" not in run


def test_columnar_with_step_array_and_list_of_records(tmp_path):
    run = read_log(write(tmp_path, '{"step": [10, 20], "loss": [2, 1], "val_acc": [0.1, 0.2]}', "h.json"))
    assert run.series("val/acc")[0].tolist() == [10, 20]
    run = read_log(write(tmp_path, '[{"step": 1, "loss": 3}, {"step": 2, "loss": 2}]', "records.json"))
    assert run.series("train/loss")[1].tolist() == [3, 2]


def test_cut_columnar_json_keeps_complete_values(tmp_path):
    run = read_log(write(tmp_path, '{"loss": [1.0, 0.9, 0.8, 0.7', "cut.json"))
    assert run.series("train/loss")[1].tolist() == [1.0, 0.9, 0.8] and run.skipped


@pytest.mark.parametrize("text", ['{"name": "x", "files": ["a", "b"]}', '"just a string"', '{"a": {"b": 1}}', "[1, 2, 3]"])
def test_json_that_is_not_a_log(tmp_path, text):
    with pytest.raises(LogFormatError, match="other.json"):
        read_log(write(tmp_path, text, "other.json"))
