"""The whole-column path of the wide CSV reader gives exactly the Run of the row-by-row path."""

import random
from pathlib import Path

import numpy as np
import pytest

from foreshock.logs import csv_wide
from foreshock.logs.csv_wide import WideCsvReader

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SHARED_WIDE = sorted(p for p in SHARED.glob("*/orig/*.csv") if WideCsvReader().sniff(p.read_bytes()[:65536], p))


def _careful(path, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(csv_wide, "_fast", lambda *a: None)
        return WideCsvReader().read(path)


def _same_array(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True)
    if a.dtype.kind == "f":  # bit for bit where not NaN (0.0 and -0.0 differ)
        keep = ~np.isnan(a)
        assert np.array_equal(a[keep].view(np.int64), b[keep].view(np.int64))


def assert_same_run(a, b):
    assert list(a.metrics) == list(b.metrics)
    for name in a.metrics:
        sa, sb = a.metrics[name], b.metrics[name]
        _same_array(sa.steps, sb.steps)
        _same_array(sa.values, sb.values)
        assert (sa.wall_times is None) == (sb.wall_times is None)
        if sa.wall_times is not None:
            _same_array(sa.wall_times, sb.wall_times)
    assert a.config == b.config and [type(v) for v in a.config.values()] == [type(v) for v in b.config.values()]
    assert a.skipped == b.skipped and a.name == b.name and a.format == b.format


def _read_both(path, monkeypatch):
    try:
        fast = WideCsvReader().read(path)
    except Exception as error:  # the same file must fail the same way on the careful path
        with pytest.raises(type(error)) as careful_error:
            _careful(path, monkeypatch)
        assert str(careful_error.value) == str(error)
        return None
    assert_same_run(fast, _careful(path, monkeypatch))
    return fast


_CELLS = ["", "", "nan", "inf", "-inf", "NaN", "-0.0", "0", "1e-05", "3.25", "-7", "1E3", ".5", "5."]


def _cell(rng: random.Random, kind: str, row: int) -> str:
    if kind == "constant":
        return "128"
    if kind == "text":
        return "adamw"
    if kind == "sparse":
        return "" if rng.random() < 0.9 else repr(rng.uniform(-5, 5))
    if rng.random() < 0.3:
        return rng.choice(_CELLS)
    return repr(rng.gauss(0, 10) if rng.random() < 0.8 else float(row))


def _generate(rng: random.Random) -> str:
    style = rng.choice(["plain", "lightning", "wandb", "keras"])
    step_key = {"plain": "step", "lightning": "step", "wandb": "_step", "keras": "epoch"}[style]
    extra = {"lightning": ["epoch"], "wandb": ["_runtime", "_timestamp"]}.get(style, [])
    names = rng.sample(["train_loss", "val_loss", "lr", "grad_norm", "acc", "d_model", "regime", "loss"], rng.randint(1, 5))
    kinds = [rng.choice(["value", "value", "sparse", "constant", "text"]) for _ in names]
    header = [step_key] + extra + names
    rng.shuffle(header)
    lines = [",".join(header)]
    step = rng.randint(0, 3)
    for row in range(rng.randint(0, 60)):
        cells = {}
        for key in extra:
            cells[key] = "" if rng.random() < 0.1 else repr(1.7e9 + row * 0.5) if key == "_timestamp" else str(row // 3)
        for key, kind in zip(names, kinds, strict=True):
            cells[key] = _cell(rng, kind, row)
        cells[step_key] = str(step)
        step += rng.choice([0, 1, 1, 10])  # repeated steps: several rows per step
        lines.append(",".join(cells[k] for k in header))
    if rng.random() < 0.15 and len(lines) > 1:  # a surprise the whole-column path must refuse
        at = rng.randrange(1, len(lines))
        lines[at] = rng.choice([lines[at] + ",1", "x" + lines[at], lines[at].replace(",", ',"', 1) + '"',
                                "", " " + lines[at], lines[at] + "\r", "1_0" + lines[at]])
    return "\n".join(lines) + ("\n" if rng.random() < 0.9 else "")


@pytest.mark.parametrize("seed", range(300))
def test_generated_wide_csv_reads_the_same_on_both_paths(tmp_path, monkeypatch, seed):
    path = tmp_path / "metrics.csv"
    path.write_text(_generate(random.Random(seed)))
    _read_both(path, monkeypatch)


def test_plain_file_takes_the_whole_column_path(tmp_path, monkeypatch):
    path = tmp_path / "history.csv"
    path.write_text("_step,_timestamp,loss,lr,d_model\n0,1.5,3.0,,64\n1,,nan,1e-3,64\n1,2.5,,2e-3,64\n2,3.5,inf,,64\n")
    run = WideCsvReader().read(path)
    assert csv_wide._fast(path, path.read_bytes(), "csv-wide") is not None
    assert run.config == {"d_model": 64}
    steps, values = run.series("train/loss")
    assert steps.tolist() == [0, 1, 2] and np.isnan(values[1]) and values[2] == np.inf
    assert run.metrics["train/loss"].wall_times.tolist()[0] == 1.5 and np.isnan(run.metrics["train/loss"].wall_times[1])
    assert_same_run(run, _careful(path, monkeypatch))


def test_bad_cell_falls_back_and_keeps_its_line_number(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss\n0,1.0\n1,oops\n2,0.5\n3,0.4\n")
    run = WideCsvReader().read(path)
    assert run.series("train/loss")[0].tolist() == [0, 2, 3]
    assert [(s.line, s.count) for s in run.skipped] == [(3, 1)]


@pytest.mark.skipif(not SHARED_WIDE, reason="shared logs not found")
@pytest.mark.parametrize("path", SHARED_WIDE, ids=lambda p: f"{p.parts[-3]}/{p.name}")
def test_shared_wide_csv_reads_the_same_on_both_paths(path, monkeypatch):
    assert _read_both(path, monkeypatch) is not None
