"""Values watch() records equal the same quantities measured synchronously by hand."""

import doctest
import math

import pytest

torch = pytest.importorskip("torch")

from torch_models import LAYERS, data, loss_of, mlp, reference_step  # noqa: E402

import foreshock  # noqa: E402
from foreshock.torch import layer_name  # noqa: E402


def recorded(db, name):
    run = foreshock.read(db, run=name)
    return {m: dict(zip(run[m].steps.tolist(), run[m].values.tolist(), strict=True)) for m in run.names}


def train_against_reference(tmp_path, make_optimizer, steps=7, scheduler=None, flush_every=3,
                            dtype=torch.float32):
    model = mlp().to(dtype)
    optimizer = make_optimizer(model)
    sched = scheduler(optimizer) if scheduler else None
    x, y = (t.to(dtype) for t in data())
    db = tmp_path / "runs.db"
    refs = {}
    with foreshock.watch(model, optimizer, run="ref", store=db, flush_every=flush_every, console=False) as mon:
        for step in range(steps):
            loss, refs[step] = reference_step(model, optimizer, x, y)
            if sched is not None:
                sched.step()  # the learning rate recorded is the one this step used, not the next one
            mon.step(step, loss=loss)
    return refs, recorded(db, "ref")


def assert_matches(refs, got):
    expected_names = {"train/loss", "opt/lr", "opt/grad_norm", "opt/update_ratio",
                      *(f"layer/{layer}/{what}" for layer in LAYERS for what in ("grad_norm", "update_ratio"))}
    assert set(got) == expected_names
    for step, ref in refs.items():
        assert got["train/loss"][step] == ref["train/loss"]  # kept exactly, whatever its precision
        assert got["opt/lr"][step] == ref["opt/lr"]
        for name, want in ref.items():
            assert got[name][step] == pytest.approx(want, rel=2e-5), (name, step)
    for series in got.values():
        assert sorted(series) == sorted(refs)  # every step, once


@pytest.mark.parametrize("make_optimizer", [
    lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9),
    lambda m: torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.1),
], ids=["sgd", "adamw"])
def test_values_equal_a_synchronous_reference(tmp_path, make_optimizer):
    refs, got = train_against_reference(tmp_path, make_optimizer)
    assert_matches(refs, got)
    assert all(0 < got["opt/update_ratio"][s] < 1 for s in refs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=str)
def test_values_equal_the_reference_in_other_precisions(tmp_path, dtype):
    refs, got = train_against_reference(tmp_path, lambda m: torch.optim.SGD(m.parameters(), lr=0.05), steps=4,
                                        dtype=dtype)
    assert_matches(refs, got)


def test_learning_rate_is_the_one_the_step_used(tmp_path):
    refs, got = train_against_reference(
        tmp_path, lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2),
        scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s)))
    assert_matches(refs, got)
    assert [got["opt/lr"][s] for s in range(3)] == pytest.approx([1e-2, 5e-3, 1e-2 / 3])


def test_every_param_group_gets_its_learning_rate_when_they_differ(tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                                 {"params": [*model[2].parameters(), *model[4].parameters()]}], lr=0.01)
    x, y = data()
    db = tmp_path / "runs.db"
    with foreshock.watch(model, optimizer, run="groups", store=db, console=False) as mon:
        for step in range(3):
            loss = loss_of(model, x, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            mon.step(step, loss=loss)
    got = recorded(db, "groups")
    assert got["opt/lr"] == {0: 0.1, 1: 0.1, 2: 0.1}
    assert got["opt/group0/lr"] == {0: 0.1, 1: 0.1, 2: 0.1}
    assert got["opt/group1/lr"] == {0: 0.01, 1: 0.01, 2: 0.01}


def test_every_measures_gradients_at_every_nth_call_only(tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    db = tmp_path / "runs.db"
    refs = {}
    with foreshock.watch(model, optimizer, run="every", store=db, every=3, console=False) as mon:
        for step in range(8):
            loss, refs[step] = reference_step(model, optimizer, x, y)
            mon.step(step, loss=loss)
    got = recorded(db, "every")
    assert sorted(got["train/loss"]) == list(range(8))
    assert sorted(got["opt/lr"]) == list(range(8))
    for name in ("opt/grad_norm", "opt/update_ratio", "layer/2/grad_norm"):
        assert sorted(got[name]) == [0, 3, 6]
        for step in (0, 3, 6):
            assert got[name][step] == pytest.approx(refs[step][name], rel=2e-5)


def test_without_an_optimizer_gradients_are_measured_at_step(tmp_path):
    model = mlp()
    x, y = data()
    db = tmp_path / "runs.db"
    want = {}
    with foreshock.watch(model, run="no-opt", store=db, console=False) as mon:
        for step in range(3):
            loss = loss_of(model, x, y)
            loss.backward()
            want[step] = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters()))
            mon.step(step, loss=loss)  # before zero_grad: the gradients are still there
            model.zero_grad()
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(0.9)
        mon.step(3, loss=loss_of(model, x, y).detach())  # no gradients at all: none recorded
    got = recorded(db, "no-opt")
    assert "opt/lr" not in got and "opt/update_ratio" not in got
    assert sorted(got["opt/grad_norm"]) == [0, 1, 2]
    for step in range(3):
        assert got["opt/grad_norm"][step] == pytest.approx(want[step], rel=2e-5)
    assert sorted(got["train/loss"]) == [0, 1, 2, 3]


def test_user_metrics_are_named_canonically_and_merge_into_one_step(tmp_path):
    model = mlp()
    db = tmp_path / "runs.db"
    with foreshock.watch(model, run="metrics", store=db, flush_every=2, console=False) as mon:
        mon.step(0, loss=2.5, acc=torch.tensor(0.25))
        mon.step(1, loss=torch.tensor([2.0]))
        mon.step(1, val_loss=3.0, **{"val/acc": torch.tensor(0.5, dtype=torch.float64)})
        mon.step(2, loss=float("nan"), tokens_seen=1)
        with pytest.raises(ValueError, match="'train/loss'.*shape \\(3,\\)"):
            mon.step(3, loss=torch.ones(3))
        with pytest.raises(ValueError, match="backwards"):
            mon.step(1, loss=1.0)
    got = recorded(db, "metrics")
    assert got["train/loss"][0] == 2.5 and got["train/loss"][1] == 2.0 and math.isnan(got["train/loss"][2])
    assert got["train/acc"] == {0: 0.25}
    assert got["val/loss"] == {1: 3.0}
    assert got["val/acc"] == {1: 0.5}
    assert got["tokens_seen"] == {2: 1.0}
    assert "opt/grad_norm" not in got  # no gradients were ever computed


def test_layers_are_blocks_of_indexed_containers_else_owning_modules():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = torch.nn.Linear(4, 4)
            self.norm = torch.nn.LayerNorm(4)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)
            self.blocks = torch.nn.ModuleList([Block(), Block()])
            self.head = torch.nn.Linear(4, 10)
            self.scale = torch.nn.Parameter(torch.ones(()))

    net = Net()
    assert list(dict.fromkeys(layer_name(n) for n, _ in net.named_parameters())) == \
        ["scale", "emb", "blocks.0", "blocks.1", "head"]
    stats = foreshock.torch.GradStats(net)
    assert stats.layers == ["scale", "emb", "blocks.0", "blocks.1", "head"]
    net.head.weight.requires_grad_(False)
    assert foreshock.torch.GradStats(net).layers == ["scale", "emb", "blocks.0", "blocks.1", "head"]
    net.head.requires_grad_(False)
    assert foreshock.torch.GradStats(net).layers == ["scale", "emb", "blocks.0", "blocks.1"]


def test_a_skipped_optimizer_step_records_no_stale_gradient_statistics(tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    db = tmp_path / "runs.db"
    with foreshock.watch(model, optimizer, run="skip", store=db, console=False) as mon:
        for step in range(4):
            loss = loss_of(model, x, y)
            loss.backward()
            if step != 2:  # as a gradient scaler skips a step whose gradients overflowed
                optimizer.step()
            optimizer.zero_grad()
            mon.step(step, loss=loss)
    got = recorded(db, "skip")
    assert sorted(got["train/loss"]) == sorted(got["opt/lr"]) == [0, 1, 2, 3]
    assert sorted(got["opt/grad_norm"]) == sorted(got["opt/update_ratio"]) == [0, 1, 3]


def test_docstring_examples_run():
    import foreshock.torch.capture

    result = doctest.testmod(foreshock.torch.capture)
    assert result.attempted > 0 and result.failed == 0
