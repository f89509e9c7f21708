"""How the ranks' buffered steps are combined (in one process: the collective itself is tested with
two processes in test_watch_distributed.py)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from foreshock.torch.buffer import StepBuffer  # noqa: E402
from foreshock.torch.distributed import column_ops, combine, fingerprint  # noqa: E402

NAMES = ["train/loss", "out/logit_max", "attn/h.0/entropy_min", "act/h.0/kurtosis", "opt/lr"]


def block(values, present, mark=7.0):
    values, present = torch.tensor(values, dtype=torch.float64), torch.tensor(present, dtype=torch.float64)
    return torch.cat([values, present, torch.full((values.shape[0], 1), mark, dtype=torch.float64)], dim=1)


def test_mean_max_min_by_name_presence_and_non_finite_values():
    nan, inf = math.nan, math.inf
    rank0 = block([[2.0, 5.0, 0.5, 3.0, 0.1], [1.0, 1.0, 0.2, 1.0, 0.1], [1.0, 1.0, 1.0, 1.0, 0.0]],
                  [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    rank1 = block([[4.0, 9.0, 0.3, 2.0, 0.1], [nan, inf, nan, nan, 0.3], [3.0, 2.0, 0.0, 5.0, 0.0]],
                  [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0]])
    out = combine(torch.stack([rank0, rank1]), column_ops(NAMES, 5)).numpy()
    values, present, agree = out[:, :5], out[:, 5:10] > 0.5, out[:, -1]
    assert values[0].tolist() == [3.0, 9.0, 0.3, 3.0, pytest.approx(0.1)]  # mean, max, min, max, mean
    # a NaN or an infinity on one rank is what every rank sees
    assert math.isnan(values[1, 0]) and values[1, 1] == inf and math.isnan(values[1, 2])
    assert math.isnan(values[1, 3]) and values[1, 4] == pytest.approx(0.2)
    # a value only one rank recorded is that rank's; a value none recorded is absent
    assert values[2, :4].tolist() == [1.0, 2.0, 1.0, 5.0]
    assert present.tolist() == [[True] * 5, [True] * 5, [True] * 4 + [False]]
    assert agree.tolist() == [1.0, 1.0, 1.0]
    other = block(rank1[:, :5].tolist(), rank1[:, 5:10].tolist(), mark=8.0)
    assert combine(torch.stack([rank0, other]), column_ops(NAMES, 5))[:, -1].tolist() == [0.0, 0.0, 0.0]


def test_fingerprint_tells_names_and_steps_apart():
    base = fingerprint(["a", "b"], [1, 2])
    assert base == fingerprint(["a", "b"], [1, 2])
    assert len({base, fingerprint(["b", "a"], [1, 2]), fingerprint(["a", "b"], [1, 3]),
                fingerprint(["a"], [1, 2])}) == 4
    assert base == float(np.float32(base))  # exact on a float32 buffer too


class TwoRanks:
    """A stand-in for the collective: the other rank had the same block with its loss doubled,
    or (``disagree``) recorded different metrics."""

    def __init__(self, disagree=False):
        self.disagree = disagree
        self.calls = 0

    def __call__(self, names, values, present, mark):
        self.calls += 1
        mine = torch.cat([values, present.to(values.dtype), values.new_full((values.shape[0], 1), mark)], 1)
        other = mine.clone()
        other[:, names.index("train/loss")] *= 2
        if self.disagree:
            other[:, -1] += 1
        return combine(torch.stack([mine, other]), column_ops(names, values.shape[1]))


def test_the_buffer_combines_device_and_host_values_once_per_send():
    reduce = TwoRanks()
    buf = StepBuffer("cpu", rows=2, columns=2, reduce=reduce)
    for step in (0, 1):
        buf.start_row(step, 0.0)
        buf.put("train/loss", torch.tensor(float(step + 1)))  # a device value
        buf.put("opt/lr", 0.5)  # a host value: joins the block
        if step == 1:
            buf.put("val/loss", 3.0)
            buf.put_block(["out/logit_max", "act/h.0/rms"], torch.tensor([4.0, 1.0], dtype=torch.float64),
                          np.array([True, False]))
    assert buf.send() is None and reduce.calls == 1
    batch = buf.poll()
    assert [row[2] for row in batch.rows()] == [
        {"opt/lr": 0.5, "train/loss": 1.5},
        {"opt/lr": 0.5, "out/logit_max": 4.0, "train/loss": 3.0, "val/loss": 3.0}]


def test_ranks_that_recorded_different_metrics_are_an_error():
    buf = StepBuffer("cpu", rows=1, reduce=TwoRanks(disagree=True))
    buf.start_row(5, 0.0)
    buf.put("train/loss", 1.0)
    buf.send()
    with pytest.raises(RuntimeError, match="different metrics or steps"):
        buf.poll()


def test_squared_norms_are_summed_over_the_ranks_and_become_norms_on_the_host():
    names = ["opt/grad_norm:sumsq", "opt/update_ratio:sumsq_num", "opt/update_ratio:sumsq_den", "train/loss"]
    # a sharded model: each rank holds part of the weights; the layer only rank 1 holds is absent on rank 0
    rank0 = block([[9.0, 1.0, 50.0, 2.0], [math.nan, 0.0, 0.0, 1.0]], [[1, 1, 1, 1], [1, 1, 1, 1]])
    rank1 = block([[16.0, 3.0, 50.0, 4.0], [1.0, 0.0, 0.0, 1.0]], [[1, 1, 1, 1], [1, 1, 1, 1]])
    out = combine(torch.stack([rank0, rank1]), column_ops(names, 4)).numpy()
    assert out[0, :4].tolist() == [25.0, 4.0, 100.0, 3.0]  # sums, and the mean of the rest
    assert math.isnan(out[1, 0]) and out[1, 1:3].tolist() == [0.0, 0.0]
    buf = StepBuffer("cpu", rows=2)
    for row, step in enumerate((0, 1)):
        buf.start_row(step, 0.0)
        buf.put_block(names[:3], torch.tensor(out[row, :3]), np.array([True, True, True]))
    steps = list(buf.drain()[0].rows())
    assert steps[0][2] == {"opt/grad_norm": 5.0, "opt/update_ratio": 0.2}  # sqrt(25), sqrt(4) / sqrt(100)
    assert math.isnan(steps[1][2]["opt/grad_norm"])  # a NaN stays
    assert math.isnan(steps[1][2]["opt/update_ratio"])  # 0 / 0, without an error
    assert set(steps[1][2]) == {"opt/grad_norm", "opt/update_ratio"}
