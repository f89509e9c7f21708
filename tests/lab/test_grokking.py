import sys
import types

import numpy as np
import pytest
import torch

import foreshock
import foreshock.lab
from foreshock.lab.base import Label, get
from foreshock.lab.grokking import Transformer, learning_rates, make_model, modular_data, train, weight_norm
from foreshock.store import open_store


def _equations(data):
    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    return x[:, 0], x[:, 1], y


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_every_equation_is_right_and_appears_exactly_once(op):
    p = 11
    data = modular_data(p, op, train_frac=0.3, seed=1)
    a, b, c = _equations(data)
    if op == "+":
        assert np.all(c == (a + b) % p)
    elif op == "-":
        assert np.all((c + b) % p == a)
    elif op == "*":
        assert np.all(c == (a * b) % p)
    else:
        assert np.all((c * b) % p == a)  # c = a / b
    pairs = {(int(i), int(j)) for i, j in zip(a, b, strict=True)}
    expected = {(i, j) for i in range(p) for j in range(1 if op == "/" else 0, p)}
    assert pairs == expected and len(a) == len(expected)  # no pair twice, none missing
    assert np.all(data.x_train[:, 2] == p) and np.all(data.x_val[:, 2] == p)  # the '=' token
    assert len(data.y_train) == round(0.3 * len(expected))


def test_the_split_is_fixed_by_its_knobs_alone():
    torch.manual_seed(123)
    one = modular_data(13, "+", 0.5, seed=3)
    torch.manual_seed(456)  # the model's RNG does not move the split
    np.random.seed(7)
    two = modular_data(13, "+", 0.5, seed=3)
    for name in ("x_train", "y_train", "x_val", "y_val"):
        assert np.array_equal(getattr(one, name), getattr(two, name))
    other = modular_data(13, "+", 0.5, seed=4)
    assert not np.array_equal(one.x_train, other.x_train)
    # a different seed holds out different equations, not the same ones in another order
    held = {tuple(r) for r in one.x_val}
    assert held != {tuple(r) for r in other.x_val}


def test_bad_knobs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="op must be one of"):
        modular_data(11, "^")
    with pytest.raises(ValueError, match="prime"):
        modular_data(12, "/")
    with pytest.raises(ValueError, match="train_frac"):
        modular_data(11, "+", train_frac=1.0)
    with pytest.raises(ValueError, match="model must be"):
        make_model({"model": "rnn", "p": 11, "width": 8, "depth": 1, "heads": 2})
    with pytest.raises(ValueError, match="eval_every"):  # refused before a run is opened
        train(get("grokking").config("cpu", {"eval_every": 0}), lambda m, o: pytest.fail("watch was called"))


def test_the_transformer_reads_the_last_position_as_full_causal_attention_would():
    torch.manual_seed(0)
    model = Transformer(p=11, width=16, depth=2, heads=2)
    tokens = torch.as_tensor(modular_data(11, "+", 0.5).x_train[:20])
    # the same network run over every position, then read at the last one
    x = model.wte(tokens) + model.wpe(torch.arange(3))
    for block in model.h:
        x = block(x)
    full = model.lm_head(model.ln_f(x[:, -1]))
    assert torch.allclose(model(tokens), full, atol=1e-5)
    assert model(tokens).shape == (20, 11)
    mlp = make_model({"model": "mlp", "p": 11, "width": 8, "depth": 2, "heads": 1})
    assert mlp(tokens).shape == (20, 11)


def test_learning_rates_follow_the_schedule_knobs():
    lrs = learning_rates({"lr": 1e-3, "warmup": 10, "steps": 100, "schedule": "cosine"})
    assert len(lrs) >= 100
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[99] < 1e-5
    assert np.all(learning_rates({"lr": 3e-3, "warmup": 0, "steps": 50, "schedule": "constant"})[:50] == 3e-3)


@pytest.mark.parametrize("model", ["transformer", "mlp"])
def test_a_tiny_run_trains_through_watch_and_stores_its_metrics(tmp_path, model):
    config = get("grokking").config("cpu", {"p": 11, "model": model, "width": 32, "heads": 2, "steps": 40,
                                            "eval_every": 10, "lr": 3e-3, "warmup": 0})
    db = tmp_path / "grok.db"
    mon = None

    def watch(m, o):
        nonlocal mon
        mon = foreshock.watch(m, o, run="tiny", store=db, console=False)
        return mon

    train(config, watch)
    mon.close()
    with open_store(db) as store:
        run = store.load_run("tiny")
    for name in ("train/loss", "train/acc", "opt/lr", "opt/grad_norm"):
        assert list(run.series(name)[0]) == list(range(40)), name
    for name in ("val/loss", "val/acc", "weight/norm"):
        assert list(run.series(name)[0]) == [0, 10, 20, 30, 39], name
    if model == "transformer":  # watch found the nanoGPT-style attention and the output head
        assert "attn/h.0/logit_max" in run.names and "out/logit_max" in run.names
    loss = run.series("train/loss")[1]
    acc = run.series("train/acc")[1]
    assert np.all((0 <= acc) & (acc <= 1))
    assert loss[-5:].mean() < 0.7 * loss[:5].mean()  # it learns
    assert np.allclose(run.series("opt/lr")[1], 3e-3)
    # weight/norm at step 0 is the norm of the initial network that the seed gives
    torch.manual_seed(config["seed"])
    assert run.series("weight/norm")[1][0] == pytest.approx(float(weight_norm(make_model(config))), rel=1e-6)


def test_the_workload_is_registered_with_its_knobs_and_label_rule(monkeypatch):
    workload = get("grokking")
    knobs = {"lr", "warmup", "steps", "schedule", "seed", "batch", "width", "depth",
             "p", "op", "train_frac", "weight_decay", "eval_every", "model"}
    assert knobs <= set(workload.defaults)
    assert {"cpu", "gpu"} <= set(workload.presets)
    seen = []
    fake = types.ModuleType("foreshock.lab.labels")
    fake.grokking_label = lambda run, config: seen.append((run, config)) or Label("grokking", 7, "test")
    monkeypatch.setitem(sys.modules, "foreshock.lab.labels", fake)
    monkeypatch.setattr(foreshock.lab, "labels", fake, raising=False)
    assert workload.label("RUN", {"p": 97}) == Label("grokking", 7, "test")
    assert seen == [("RUN", {"p": 97})]
