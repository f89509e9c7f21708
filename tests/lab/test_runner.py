import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from foreshock import lab  # noqa: E402
from foreshock.lab.base import Workload, register  # noqa: E402
from foreshock.lab.labels import loss_label  # noqa: E402
from foreshock.store import open_store  # noqa: E402


def tiny_train(config, watch):
    """Linear regression by SGD; ``crash_at`` raises at that step, ``skip_watch`` records nothing."""
    if config["skip_watch"]:
        return
    gen = torch.Generator().manual_seed(config["seed"])
    x = torch.randn(256, 8, generator=gen)
    y = x @ torch.randn(8, 1, generator=gen)
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    mon = watch(model, optimizer)
    for step in range(config["steps"]):
        if step == config["crash_at"]:
            raise RuntimeError(f"boom at step {step}")
        idx = torch.randint(0, 256, (32,), generator=torch.Generator().manual_seed(step))
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        mon.step(step, loss=loss.detach(), noise=torch.rand(()))  # torch's global RNG: seeded by the runner


TINY = register(Workload(
    name="test-tiny",
    description="linear regression by SGD, for the runner's tests",
    defaults={"lr": 0.05, "steps": 120, "seed": 0, "crash_at": -1, "skip_watch": False},
    presets={"cpu": {"steps": 100}, "gpu": {"steps": 1000}},
    train=tiny_train,
    label=loss_label,
))


def run_tiny(tmp_path, overrides=None, name="r", **kw):
    return lab.run("test-tiny", "cpu", overrides, store=tmp_path / "lab.db", run_name=name, console=False, **kw)


def test_run_merges_knobs_stores_the_run_and_its_label(tmp_path):
    result = run_tiny(tmp_path, {"lr": 0.02})
    assert result.config == {"lr": 0.02, "steps": 100, "seed": 0, "crash_at": -1, "skip_watch": False}
    assert result.steps == 99 and result.label.event == "none"
    d = result.to_dict()
    assert list(d) == ["run", "store", "workload", "config", "steps", "label", "events"]
    assert d["label"]["event"] == "none" and d["label"]["onset_step"] is None and d["workload"] == "test-tiny"
    with open_store(tmp_path / "lab.db") as store:
        stored = store.load_run("r")
        assert stored.status == "finished" and len(stored["train/loss"]) == 100
        assert stored.config["lab"] == {"workload": "test-tiny", "preset": "cpu", "knobs": result.config}
        assert stored.config["optimizer"] == "SGD"  # what watch records is kept beside the knobs
        labels = [e for e in store.events(stored.id) if e.kind == "label"]
    assert len(labels) == 1 and labels[0].detector == "lab" and labels[0].severity == "info"
    assert labels[0].evidence["event"] == "none" and labels[0].evidence["rule"] == result.label.rule


def test_divergent_run_is_labelled_with_its_onset(tmp_path):
    result = run_tiny(tmp_path, {"lr": 3.0})  # far above 2 / lambda_max of this problem
    assert result.label.event in ("divergence", "nan")
    with open_store(tmp_path / "lab.db") as store:
        stored = store.load_run("r")
        label = next(e for e in store.events(stored.id) if e.kind == "label")
    assert label.onset_step == result.label.onset_step
    steps, loss = stored.series("train/loss")
    at = loss[steps == result.label.onset_step][0]
    assert not at <= 1.5 * loss[steps < result.label.onset_step].min()  # up 1.5x from its best, or NaN
    assert any(e.kind in ("divergence", "nan", "spike", "early_warning") for e in result.events)


def test_same_seed_same_run(tmp_path):
    for name, overrides in (("a", None), ("b", None), ("c", {"seed": 1})):
        run_tiny(tmp_path, overrides, name=name)
    with open_store(tmp_path / "lab.db") as store:
        la, lb, lc = (store.load_run(n).series("noise")[1] for n in "abc")
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(la, lc)


def test_unknown_knob_or_preset_fails_before_anything_is_stored(tmp_path):
    with pytest.raises(ValueError, match="unknown knob.*'lrr'"):
        run_tiny(tmp_path, {"lrr": 0.1})
    with pytest.raises(ValueError, match="unknown preset"):
        lab.run("test-tiny", "tpu", store=tmp_path / "lab.db")
    with pytest.raises(ValueError, match="unknown lab workload"):
        lab.run("no-such-workload", store=tmp_path / "lab.db")
    assert not (tmp_path / "lab.db").exists()


def test_crash_marks_the_run_crashed_keeps_its_points_and_reraises(tmp_path):
    with pytest.raises(RuntimeError, match="boom at step 30"):
        run_tiny(tmp_path, {"crash_at": 30})
    with open_store(tmp_path / "lab.db") as store:
        stored = store.load_run("r")
    assert stored.status == "crashed"
    assert stored["train/loss"].steps.tolist() == list(range(30))


def test_train_that_never_watches_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="without asking for the monitor"):
        run_tiny(tmp_path, {"skip_watch": True})


def test_importing_lab_does_not_import_torch():
    code = "import sys, foreshock.lab; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
