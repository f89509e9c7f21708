"""The same small run in every format, plain and gzip-compressed: NaN and Inf are values, and a
step logged twice (a resumed run) keeps the record written last."""

import gzip
import json
import math

import pytest
from logsamples import write_events

from foreshock.logs import read_log

NAN, INF = float("nan"), float("inf")
POINTS = [(0, NAN), (1, 5.0), (1, 4.0), (2, INF)]


def _hf():
    return json.dumps({"global_step": 2, "log_history": [{"step": s, "loss": v} for s, v in POINTS]})


SAMPLES = {
    "csv-long": ("run.csv", "step,name,value\n" + "".join(f"{s},loss,{v}\n" for s, v in POINTS)),
    "csv-wide": ("run.csv", "step,loss\n" + "".join(f"{s},{v}\n" for s, v in POINTS)),
    "jsonl": ("run.jsonl", "".join(json.dumps({"step": s, "loss": v}) + "\n" for s, v in POINTS)),
    "hf-trainer-state": ("trainer_state.json", _hf()),
    "json-columns": ("run.json", json.dumps({"step": [s for s, _ in POINTS], "loss": [v for _, v in POINTS]})),
    "text (llm.c)": ("main.log", "".join(f"s:{s} trl:{v}\n" for s, v in POINTS)),
    "text (modded-nanogpt)": ("run.txt", "".join(f"step:{s}/2 train_loss:{v} train_time:{s}ms\n" for s, v in POINTS)),
    "text (nanoGPT)": ("out.log", "".join(f"iter {s}: loss {v}, time 1.5ms, mfu 3.0%\n" for s, v in POINTS)),
}


def _content(kind, tmp_path):
    if kind == "tensorboard":
        path = write_events(tmp_path / "tb", [(s, "loss", v) for s, v in POINTS])
        return "events.out.tfevents.1.host", path.read_bytes()
    name, text = SAMPLES[kind]
    return name, text.encode()


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("kind", [*SAMPLES, "tensorboard"])
def test_nan_inf_and_repeated_steps_in_every_format(kind, compressed, tmp_path):
    name, data = _content(kind, tmp_path)
    path = tmp_path / "run" / (name + (".gz" if compressed else ""))
    path.parent.mkdir()
    path.write_bytes(gzip.compress(data) if compressed else data)
    run = read_log(path)
    assert run.format == kind.split(" ")[0]
    steps, values = run.series("train/loss")
    assert steps.tolist() == [0, 1, 2]
    assert math.isnan(values[0]) and values[1] == 4.0 and values[2] == math.inf
    assert run.skipped == []
