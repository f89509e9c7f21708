import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from foreshock.cli import build_parser, main, parse_knobs

torch = pytest.importorskip("torch")

from foreshock.lab.base import Workload, register  # noqa: E402
from foreshock.lab.labels import loss_label  # noqa: E402
from foreshock.store import open_store  # noqa: E402


def tiny_train(config, watch):
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    mon = watch(model, optimizer)
    x = torch.randn(64, 4)
    y = x.sum(dim=1, keepdim=True)
    for step in range(config["steps"]):
        if step == config["crash_at"]:
            raise RuntimeError(f"out of memory at step {step}")
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        mon.step(step, loss=loss.detach())


register(Workload(name="test-cli-tiny", description="a four-weight regression for the command line's tests",
                  defaults={"lr": 0.05, "steps": 60, "seed": 0, "nesterov": False, "crash_at": -1},
                  presets={"cpu": {"steps": 80}, "gpu": {}}, train=tiny_train, label=loss_label))


def run_main(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_lab_list_names_each_workload_with_its_knobs(capsys):
    code, out, _ = run_main(capsys, "lab", "list")
    assert code == 0
    assert "test-cli-tiny" in out and "a four-weight regression" in out and "steps=80" in out
    code, out, _ = run_main(capsys, "lab", "list", "--json")
    rows = {r["name"]: r for r in map(json.loads, out.strip().splitlines())}
    assert rows["test-cli-tiny"]["knobs"] == {"lr": 0.05, "steps": 80, "seed": 0, "nesterov": False, "crash_at": -1}


def test_lab_run_json_shape_and_store(capsys, tmp_path):
    db = tmp_path / "lab.db"
    code, out, err = run_main(capsys, "lab", "run", "test-cli-tiny", "--set", "lr=0.1", "--set", "nesterov=true",
                              "--store", db, "--run", "cli-run", "--json")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1  # stdout is the JSON object only: no live event lines
    d = json.loads(lines[0])
    assert list(d) == ["run", "store", "workload", "config", "steps", "label", "events"]
    assert d["run"] == "cli-run" and d["store"] == str(db) and d["workload"] == "test-cli-tiny"
    assert d["config"] == {"lr": 0.1, "steps": 80, "seed": 0, "nesterov": True, "crash_at": -1}
    assert d["steps"] == 79 and d["label"]["event"] == "none" and d["label"]["onset_step"] is None
    assert isinstance(d["events"], list)
    with open_store(db) as store:
        assert store.load_run("cli-run").config["lab"]["knobs"]["nesterov"] is True


def test_lab_run_terminal_summary(capsys, tmp_path):
    code, out, _ = run_main(capsys, "lab", "run", "test-cli-tiny", "--store", tmp_path / "lab.db", "--run", "x")
    assert code == 0
    assert out.startswith("x: last step 79,") and "label: none" in out and "rule: none:" in out


def test_crashed_training_is_one_error_line_and_a_crashed_run(capsys, tmp_path):
    db = tmp_path / "lab.db"
    code, out, err = run_main(capsys, "lab", "run", "test-cli-tiny", "--set", "crash_at=7", "--store", db, "--run", "c")
    errors = [line for line in err.splitlines() if not line.startswith("foreshock ")]  # live lines may come first
    assert code == 2 and errors == [next(e for e in errors if "out of memory at step 7" in e)]
    assert "Traceback" not in err
    with open_store(db) as store:
        run = store.load_run("c")
    assert run.status == "crashed" and run["train/loss"].steps[-1] == 6


@pytest.mark.parametrize("item, message", [
    ("lrr=0.1", "unknown knob 'lrr'"),
    ("lr", "expected KNOB=VALUE"),
    ("lr=fast", "expected a float"),
    ("steps=1.5", "expected an int"),
    ("nesterov=maybe", "expected a bool"),
])
def test_bad_set_is_a_one_line_error_and_nothing_runs(capsys, tmp_path, item, message):
    db = tmp_path / "lab.db"
    code, out, err = run_main(capsys, "lab", "run", "test-cli-tiny", "--set", item, "--store", db)
    assert code == 2 and message in err and err.count("\n") == 1 and out == ""
    assert not db.exists()


def test_unknown_workload_is_exit_2(capsys, tmp_path):
    code, _, err = run_main(capsys, "lab", "run", "no-such", "--store", tmp_path / "lab.db")
    assert code == 2 and "unknown lab workload 'no-such'" in err


def test_parse_knobs_types_values_like_their_defaults():
    defaults = {"lr": 1e-3, "steps": 10, "qk_norm": False, "schedule": "constant"}
    assert parse_knobs(["lr=3e-3", "steps=20", "qk_norm=1", "schedule=cosine"], defaults) == {
        "lr": 3e-3, "steps": 20, "qk_norm": True, "schedule": "cosine"}
    assert parse_knobs(["qk_norm=False", "lr=1"], defaults) == {"qk_norm": False, "lr": 1.0}
    assert isinstance(parse_knobs(["lr=1"], defaults)["lr"], float)


def test_lab_and_demo_without_torch_say_what_to_install(capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    for argv in (("demo",), ("lab", "list"), ("lab", "run", "test-cli-tiny")):
        code, out, err = run_main(capsys, *argv)
        assert code == 2 and 'pip install "foreshock[torch]"' in err and err.count("\n") == 1, argv


def test_demo_passes_its_folder_and_report_on(capsys, monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("foreshock.lab.demo")
    fake.run_demo = lambda **kw: calls.append(kw) or {}
    monkeypatch.setitem(sys.modules, "foreshock.lab.demo", fake)
    code, _, err = run_main(capsys, "demo", "--out", tmp_path / "d", "--html", tmp_path / "r.html")
    assert code == 0, err
    code, _, _ = run_main(capsys, "demo")
    assert code == 0
    assert calls == [{"out_dir": tmp_path / "d", "html": tmp_path / "r.html"}, {"out_dir": Path(".")}]


def test_lab_commands_have_help(capsys):
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"lab", "demo"} <= set(subs)
    lab = next(a for a in subs["lab"]._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in [*lab.choices.items(), ("demo", subs["demo"])]:
        for action in sub._actions:
            assert action.help, (name, action.dest)
    code, out, _ = run_main(capsys, "lab")
    assert code == 2 and "list" in out and "run" in out
