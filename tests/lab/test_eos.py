import sys
import types

import numpy as np
import pytest
import torch
from torch.func import functional_call

import foreshock
import foreshock.lab
from foreshock.lab.base import Label, get
from foreshock.lab.eos import CLASSES, DIM, make_data, make_model, mse, power_iteration, train
from foreshock.store import open_store


def _tiny_problem(seed=0):
    torch.manual_seed(seed)
    model = make_model(width=5, depth=2, activation="tanh").double()
    x, y = (torch.as_tensor(a, dtype=torch.float64) for a in make_data(40, seed))
    return model, x, y


def _exact_hessian(model, x, y):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(theta):
        parts, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            n = int(np.prod(shape))
            parts[name] = theta[i: i + n].reshape(shape)
            i += n
        return mse(functional_call(model, parts, (x,)), y)

    return torch.autograd.functional.hessian(loss_of, flat)


@pytest.mark.parametrize("seed", [0, 1])
def test_power_iteration_finds_the_top_eigenvalue_of_the_exact_hessian(seed):
    model, x, y = _tiny_problem(seed)
    hessian = _exact_hessian(model, x, y)
    assert hessian.shape[0] == sum(p.numel() for p in model.parameters())
    eigvals, eigvecs = torch.linalg.eigh(hessian)
    top = float(eigvals[-1])
    assert top > 0 and top > abs(float(eigvals[0]))  # the case the probe is for: the top one dominates

    params = list(model.parameters())
    grads = torch.autograd.grad(mse(model(x), y), params, create_graph=True)
    start = [torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(seed)) for p in params]
    lam, vec = power_iteration(grads, params, start, iters=300)
    assert float(lam) == pytest.approx(top, rel=1e-4)
    flat = torch.cat([v.reshape(-1) for v in vec])
    assert float(flat.norm()) == pytest.approx(1.0, abs=1e-9)
    if eigvals[-2] < 0.9 * top:  # a clear gap: the eigenvector is determined and must be found too
        assert abs(float(flat @ eigvecs[:, -1])) > 0.999

    # warm start from the exact eigenvector: one Hessian-vector product gives the eigenvalue
    exact = eigvecs[:, -1]
    warm, i = [], 0
    for p in params:
        warm.append(exact[i: i + p.numel()].reshape(p.shape))
        i += p.numel()
    lam_warm, _ = power_iteration(grads, params, warm, iters=1)
    assert float(lam_warm) == pytest.approx(top, rel=1e-9)
    with pytest.raises(ValueError, match="iters"):
        power_iteration(grads, params, warm, iters=0)


def test_the_dataset_is_deterministic_one_hot_and_uses_every_class():
    x, y = make_data(500, seed=0)
    x2, y2 = make_data(500, seed=0)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert x.shape == (500, DIM) and y.shape == (500, CLASSES) and x.dtype == np.float32
    assert np.all(y.sum(axis=1) == 1) and set(np.unique(y)) == {0.0, 1.0}
    assert np.all(y.sum(axis=0) > 0)  # no class left empty
    assert not np.array_equal(make_data(500, seed=1)[1], y)


def test_a_tiny_run_trains_through_watch_and_stores_sharpness_and_lr(tmp_path):
    config = get("edge-of-stability").config("cpu", {"n_samples": 64, "width": 8, "steps": 23, "probe_every": 5,
                                                     "probe_iters": 10, "lr": 0.1})
    db = tmp_path / "eos.db"
    mon = None

    def watch(m, o):
        nonlocal mon
        mon = foreshock.watch(m, o, run="tiny", store=db, console=False)
        return mon

    train(config, watch)
    mon.close()
    with open_store(db) as store:
        run = store.load_run("tiny")
    steps, lam = run.series("probe/hessian/lambda_max")
    assert list(steps) == [0, 5, 10, 15, 20, 22]
    assert np.all(np.isfinite(lam) & (lam > 0))
    assert np.allclose(run.series("opt/lr")[1], 0.1)  # so 2/lr is known from the run itself
    loss_steps, loss = run.series("train/loss")
    assert list(loss_steps) == list(range(23))
    assert loss[-1] < loss[0]  # gradient descent below 2/lr descends

    # the stored sharpness at step 0 is the top eigenvalue of the initial network's exact Hessian
    torch.manual_seed(config["seed"])
    model = make_model(8, config["depth"], "tanh").double()
    x, y = (torch.as_tensor(a, dtype=torch.float64) for a in make_data(64, config["seed"]))
    top = float(torch.linalg.eigvalsh(_exact_hessian(model, x, y))[-1])
    assert lam[0] == pytest.approx(top, rel=0.01)  # float32, and a finite number of iterations


def test_the_workload_is_registered_with_its_knobs_and_label_rule(monkeypatch):
    workload = get("edge-of-stability")
    knobs = {"lr", "warmup", "steps", "schedule", "seed", "batch", "width", "depth",
             "probe_every", "probe_iters", "n_samples"}
    assert knobs <= set(workload.defaults)
    assert {"cpu", "gpu"} <= set(workload.presets)
    assert workload.config("cpu")["schedule"] == "constant"
    with pytest.raises(ValueError, match="probe_every"):  # refused before a run is opened
        train(workload.config("cpu", {"probe_every": 0}), lambda m, o: pytest.fail("watch was called"))
    fake = types.ModuleType("foreshock.lab.labels")
    fake.eos_label = lambda run, config: Label("edge_of_stability", config["at"], "test")
    monkeypatch.setitem(sys.modules, "foreshock.lab.labels", fake)
    monkeypatch.setattr(foreshock.lab, "labels", fake, raising=False)
    assert workload.label(None, {"at": 860}) == Label("edge_of_stability", 860, "test")
