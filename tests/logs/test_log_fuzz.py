"""Whatever bytes a file holds, reading it gives a Run or a LogFormatError raised on purpose
(not the catch-all's conversion of some other exception)."""

import gzip
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logsamples import write_events

from foreshock.errors import LogFormatError
from foreshock.logs import list_formats, read_log
from foreshock.run import Run

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

LINES = [
    "step,name,value", "0,train_loss,3.5", "1,val_loss,nan", "2,lr,-inf", "3,,1", "x,loss,1",
    "step,lr,loss", "100,0.0003,3.76", "200,,3.5", "epoch,step,train_loss", "0,49,2.3",
    '{"step": 1, "loss": 2.5}', '{"global_step": 2, "train": {"loss": NaN}}', '{"loss": [1, 2, 3]}',
    '{"log_history": [{"step": 1, "loss": 2}]', '"eigenvalues": [[1, 2], [3',
    "step:120/1750 train_loss:3.91 train_time:25ms step_avg:21.3ms", "step:0/6200 val_loss:10.92",
    "s:120 trl:3.91 lr:0.0006 norm:0.3", "s:0 tel:10.96", "iter 3010: loss nan, time 12.3ms, mfu 30.1%",
    "step 2000: train loss 3.1, val loss 3.2", "def get_lr(it):", "    return 1.0", "import os", "",
    "step:99999999999999999999999/1 train_loss:1", "s:1 trl:1e999", "step:5/10 train_loss:3.0 garbage",
]


def check(path, fmt=None):
    try:
        run = read_log(path, format=fmt)
    except LogFormatError as e:
        assert e.__cause__ is None, f"{type(e.__cause__).__name__}: {e.__cause__}"
        assert path.name in str(e)
        return None
    assert isinstance(run, Run) and len(run) > 0
    return run


@SETTINGS
@given(st.binary(max_size=400), st.booleans())
def test_random_bytes(tmp_path, data, compressed):
    path = tmp_path / "random.bin"
    path.write_bytes(gzip.compress(data) if compressed else data)
    check(path)


@SETTINGS
@given(st.lists(st.sampled_from(LINES), max_size=12), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_mixed_lines_from_different_formats(tmp_path, lines, end, last_end):
    path = tmp_path / "mixed.log"
    path.write_text(end.join(lines) + (end if last_end else ""), newline="")
    check(path)


@SETTINGS
@given(st.lists(st.sampled_from(LINES), min_size=1, max_size=8), st.sampled_from(list_formats()))
def test_forcing_any_format_on_any_text(tmp_path, lines, fmt):
    path = tmp_path / "forced.txt"
    path.write_text("\n".join(lines) + "\n")
    check(path, fmt)


@SETTINGS
@given(st.data())
def test_cut_and_corrupted_logs_of_every_format(tmp_path, data):
    state = {"global_step": 3, "log_history": [{"step": s, "loss": 1.0 / s, "learning_rate": 0.1} for s in range(1, 4)]}
    samples = {
        "long.csv": "step,name,value\n" + "".join(f"{s},loss,{s / 7}\n" for s in range(30)),
        "wide.csv": "step,lr,loss\n" + "".join(f"{s},0.1,{s / 7}\n" for s in range(30)),
        "log.jsonl": "".join(json.dumps({"step": s, "loss": s / 7}) + "\n" for s in range(30)),
        "trainer_state.json": json.dumps(state, indent=1),
        "cols.json": json.dumps({"loss": [s / 7 for s in range(30)], "eigenvalues": [[s, s + 1] for s in range(30)]}),
        "train.txt": "".join(f"step:{s}/30 train_loss:{s / 7:.4f} train_time:{s}ms\n" for s in range(30)),
    }
    name = data.draw(st.sampled_from(sorted(samples)))
    blob = samples[name].encode()
    at = data.draw(st.integers(0, len(blob)))
    blob = bytearray(blob[:at])
    for _ in range(data.draw(st.integers(0, 3))):  # flip a few bytes too
        if blob:
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / name
    path.write_bytes(bytes(blob))
    check(path)


@SETTINGS
@given(st.data())
def test_cut_and_corrupted_event_files(tmp_path_factory, data):
    path = write_events(tmp_path_factory.mktemp("ev"), [(s, "loss", s / 7) for s in range(20)])
    blob = bytearray(path.read_bytes())
    blob = blob[: data.draw(st.integers(0, len(blob)))]
    if blob and data.draw(st.booleans()):
        blob[data.draw(st.integers(0, len(blob) - 1))] ^= 0xFF
    path.write_bytes(bytes(blob))
    check(path)
