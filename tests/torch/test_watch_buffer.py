"""The step buffer: rows reach the host in whole batches, in order, each once, and only when the copy is done."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import foreshock  # noqa: E402
from foreshock.store import open_store  # noqa: E402
from foreshock.torch import StepBuffer  # noqa: E402


class SlowCopy:
    """Stands in for a CUDA event whose copy has not finished until the test says so."""

    def __init__(self):
        self.done = False
        self.recorded = False
        self.waited = False

    def record(self):
        self.recorded = True

    def query(self):
        return self.done

    def synchronize(self):
        self.waited = True
        self.done = True


def rows(batch):
    return [(step, values) for step, _, values in batch.rows()]


def test_a_batch_is_read_only_when_its_copy_is_done_or_at_the_next_send():
    buf = StepBuffer("cpu", rows=2)
    events = []
    buf._new_event = lambda: events.append(SlowCopy()) or events[-1]
    for step in (0, 1):
        buf.start_row(step, 0.0)
        buf.put("train/loss", torch.tensor(float(step)))
    assert buf.full and buf.send() is None and events[0].recorded
    assert buf.poll() is None  # still copying: the host does not wait
    buf.start_row(2, 0.0)
    buf.put("train/loss", torch.tensor(2.0))  # written while the first copy is in flight
    events[0].done = True
    first = buf.poll()
    assert rows(first) == [(0, {"train/loss": 0.0}), (1, {"train/loss": 1.0})]
    assert buf.poll() is None
    buf.start_row(3, 0.0)
    buf.put("train/loss", 3.0)
    assert buf.send() is None  # nothing was in flight
    buf.start_row(4, 0.0)
    buf.put("train/loss", torch.tensor(4.0))
    buf.start_row(5, 0.0)
    second = buf.send()  # the copy before this one is read first (waiting if it must)
    assert events[1].waited and rows(second) == [(2, {"train/loss": 2.0}), (3, {"train/loss": 3.0})]
    rest = buf.drain()
    assert [rows(b) for b in rest] == [[(4, {"train/loss": 4.0}), (5, {})]]
    assert buf.drain() == []


def test_columns_grow_past_the_first_allocation_and_values_stay_put():
    buf = StepBuffer("cpu", rows=3, columns=4)
    want = {}
    for step in range(3):
        buf.start_row(step, float(step))
        for j in range(3 + 4 * step):  # 3, 7 then 11 metrics: two doublings mid-batch
            value = torch.tensor(step * 100.0 + j) if j % 2 else step * 100.0 + j
            buf.put(f"m{j:02d}", value)
            want.setdefault(step, {})[f"m{j:02d}"] = step * 100.0 + j
    (batch,) = buf.drain()
    assert [(s, v) for s, v in rows(batch)] == [(s, dict(sorted(want[s].items()))) for s in range(3)]
    assert batch.walls == [0.0, 1.0, 2.0]


def test_a_later_value_of_the_same_step_wins_and_nan_is_data():
    buf = StepBuffer("cpu", rows=4)
    buf.start_row(7, 0.0)
    buf.put("a", torch.tensor(1.0))
    buf.put("a", 2.0)  # host value replaces the device one
    buf.put("b", 3.0)
    buf.start_row(7, 0.0)  # same step: same row
    buf.put("b", torch.tensor(float("nan")))
    buf.put_block(["c", "d"], torch.tensor([5.0, 6.0]), np.array([True, False]))
    (batch,) = buf.drain()
    ((step, values),) = rows(batch)
    assert step == 7 and values["a"] == 2.0 and math.isnan(values["b"]) and values["c"] == 5.0
    assert set(values) == {"a", "b", "c"}  # d was not measured at this step


def test_watch_flushes_every_n_steps_and_on_close_losing_and_repeating_nothing(tmp_path):
    model = torch.nn.Linear(3, 1)
    db = tmp_path / "runs.db"
    stored = []
    with foreshock.watch(model, run="flush", store=db, flush_every=5, console=False) as mon:
        for step in range(23):
            mon.step(step, loss=torch.tensor(1.0 / (step + 1)))
            with open_store(db) as other:  # what another process sees: committed batches only
                stored.append(len(other.load_run("flush").series("train/loss")[0]) if other.runs()[0].n_points
                              else 0)
    assert stored == [5 * ((s + 1) // 5) for s in range(23)]
    run = foreshock.read(db, run="flush")
    assert run["train/loss"].steps.tolist() == list(range(23))
    assert run["train/loss"].values.tolist() == [float(np.float32(1.0 / (s + 1))) for s in range(23)]
    assert run.status == "finished"
    assert len(run["train/loss"].wall_times) == 23
