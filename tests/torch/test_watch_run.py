"""A watched run end to end: warnings fire live, match the offline replay, reach the user, and the run is marked."""

import io
import json
import re
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from rich.console import Console  # noqa: E402
from torch_models import data, loss_of, mlp  # noqa: E402

import foreshock  # noqa: E402
from foreshock.store import open_store  # noqa: E402

LATENCY_KEYS = ("flush_latency_steps", "flush_every")


def exploding_run(mon, model, optimizer, steps=160, blow_up_at=90, seen=None):
    """A run that learns at a stable learning rate, then raises it 25% a step until the loss explodes."""
    x, y = data(n=64)
    for step in range(steps):
        if step >= blow_up_at:
            for group in optimizer.param_groups:
                group["lr"] *= 1.25
        loss = loss_of(model, x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        for event in mon.step(step, loss=loss):
            if seen is not None:
                seen.append((step, event))


def comparable(event):
    d = event.to_dict()
    d["evidence"] = {k: v for k, v in d["evidence"].items() if k not in LATENCY_KEYS}
    return d


def test_an_exploding_learning_rate_fires_live_the_events_a_replay_finds(tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    db = tmp_path / "runs.db"
    called, seen = [], []
    mon = foreshock.watch(model, optimizer, run="explode", store=db, flush_every=8, console=False,
                          on_event=called.append)
    with mon:
        exploding_run(mon, model, optimizer, seen=seen)
    kinds = {(e.detector, e.kind, e.severity, e.metric) for e in mon.events}
    assert ("spike", "spike", "warning", "train/loss") in kinds
    assert ("nonfinite", "nan", "critical", "train/loss") in kinds
    first_warning = min(e.step for e in mon.events if e.severity == "warning")
    broken = min(e.step for e in mon.events if e.severity == "critical")
    assert first_warning < broken  # the warning came before the loss stopped being finite
    # the run's health followed live: warning at the first warning, critical at the NaN, and the same
    # timeline as the offline one
    states = [(c.step, c.state) for c in mon.health.changes]
    assert (first_warning, "warning") in states and (broken, "critical") in states
    assert mon.health.state == "critical"
    # live: each event reached the loop at a step() call during training, at most a flush late
    assert [e for _, e in seen] == mon.events == called
    for at, event in seen:
        assert event.evidence["flush_latency_steps"] == at - event.step
        assert 0 <= at - event.step < 8 and event.evidence["flush_every"] == 8  # CPU: copy is immediate
    # offline: the stored run replays to the same events, and the store holds what fired live
    replayed = foreshock.analyze(foreshock.read(db, run="explode")).events
    assert [comparable(e) for e in replayed] == [comparable(e) for e in mon.events]
    with open_store(db) as store:
        assert [e.to_dict() for e in store.events(mon.run_id)] == [e.to_dict() for e in mon.events]
        state = store.load_state(mon.run_id)
    # the detectors' state saved with the last flush is their state at the end: a resume continues exactly
    assert json.dumps(state, sort_keys=True) == json.dumps(mon.monitor.state_dict(), sort_keys=True)
    assert state["last_step"] == 159


def test_store_none_keeps_nothing_on_disk_and_still_reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    out = io.StringIO()
    with foreshock.watch(model, optimizer, store=None, flush_every=8,
                         console=Console(file=out, width=200, color_system=None)) as mon:
        exploding_run(mon, model, optimizer)
    assert mon.run_id is None and list(tmp_path.iterdir()) == []
    printed = out.getvalue().splitlines()
    loud = [e for e in mon.events if e.severity != "info"]
    info = [e for e in mon.events if e.severity == "info"]
    assert len([p for p in printed if p.startswith(("foreshock WARNING", "foreshock CRITICAL"))]) == len(loud) > 0
    # info events that fire together (one per layer when the norms go NaN) are cut short and counted
    shown = [p for p in printed if p.startswith("foreshock INFO")]
    counted = [int(m.group(1)) for p in printed if (m := re.match(r"foreshock (\d+) more info events?", p))]
    assert counted and len(shown) + sum(counted) == len(info)
    spike = next(e for e in mon.events if e.kind == "spike")
    line = next(p for p in printed if " spike " in p)
    assert line.startswith(f"foreshock WARNING spike train/loss step {spike.step}")
    assert spike.message in line


def test_console_false_prints_nothing(capsys):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    with foreshock.watch(model, optimizer, store=None, flush_every=8, console=False) as mon:
        exploding_run(mon, model, optimizer)
    assert mon.events and capsys.readouterr() == ("", "")


def test_context_manager_marks_finished_and_an_exception_crashed_keeping_every_step(tmp_path):
    db = tmp_path / "runs.db"
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    x, y = data()
    with foreshock.watch(model, optimizer, run="ok", store=db, console=False) as mon:
        mon.step(0, loss=1.0)
    with pytest.raises(RuntimeError, match="out of data"):
        with foreshock.watch(model, optimizer, run="bad", store=db, flush_every=50, console=False) as mon:
            for step in range(7):
                loss = loss_of(model, x, y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                mon.step(step, loss=loss)
            raise RuntimeError("out of data")
    with pytest.raises(RuntimeError, match="closed"):
        mon.step(7, loss=1.0)
    assert foreshock.read(db, run="ok").status == "finished"
    bad = foreshock.read(db, run="bad")
    assert bad.status == "crashed"
    assert bad["train/loss"].steps.tolist() == list(range(7))  # the steps still buffered were flushed
    assert bad["opt/grad_norm"].steps.tolist() == list(range(7))
    loss_of(model, x, y).backward()
    optimizer.step()  # the hooks are gone with the watch: nothing is measured any more
    assert mon.stats.take() is None


def test_import_foreshock_does_not_import_torch_until_watch_is_used():
    code = ("import sys, foreshock; print('torch' in sys.modules, 'watch' in foreshock.__all__); "
            "w = foreshock.watch; from foreshock import watch; "
            "print('torch' in sys.modules, w is watch is sys.modules['foreshock.torch'].watch)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True", "True"]


def test_without_torch_watch_says_how_to_install_it():
    code = ("import sys; sys.modules['torch'] = None\n"  # as if torch were not installed
            "import foreshock\n"
            "try:\n    foreshock.watch\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "foreshock.watch needs PyTorch: pip install 'foreshock[torch]'"


def test_an_open_store_is_used_and_left_open():
    model = mlp()
    with open_store(":memory:") as store:
        with foreshock.watch(model, run="mem", store=store, console=False) as mon:
            for step in range(3):
                mon.step(step, loss=float(step))
        run = store.load_run("mem")  # still open: the caller owns it
        assert run["train/loss"].values.tolist() == [0.0, 1.0, 2.0] and run.status == "finished"
        assert run.config["model"] == "Sequential" and run.config["watch"] == {"every": 1, "flush_every": 50}


@pytest.mark.parametrize("bad", [{"every": 0}, {"flush_every": 0}])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, bad):
    with pytest.raises(ValueError, match=f"{next(iter(bad))}=0"):
        foreshock.watch(mlp(), store=tmp_path / "runs.db", **bad)
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.parametrize("ending, status", [("pass", "finished"), ("raise SystemError('boom')", "crashed")])
def test_a_script_that_never_calls_close_keeps_its_buffered_steps(tmp_path, ending, status):
    db = tmp_path / "runs.db"
    script = (
        "import torch, foreshock\n"
        "torch.manual_seed(0)\n"
        "model = torch.nn.Linear(3, 1)\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        f"mon = foreshock.watch(model, opt, run='forgot', store={str(db)!r}, flush_every=50, console=False)\n"
        "for step in range(7):\n"
        "    loss = model(torch.ones(4, 3)).pow(2).mean()\n"
        "    loss.backward(); opt.step(); opt.zero_grad()\n"
        "    mon.step(step, loss=loss)\n"
        f"{ending}\n"
    )
    subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    run = foreshock.read(db, run="forgot")
    assert run["train/loss"].steps.tolist() == list(range(7))  # fewer than flush_every: all were buffered
    assert run.status == status


def test_a_closed_or_forgotten_watch_is_not_kept_alive_by_the_exit_hook():
    import gc
    import weakref

    model = mlp()
    mon = foreshock.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), store=None, console=False)
    ref = weakref.ref(mon)
    del mon
    gc.collect()
    assert ref() is None
