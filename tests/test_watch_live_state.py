"""What a watched run shows while it trains: its phase, found as the offline replay finds it, and the
forecast of its final loss, refreshed on a worker thread without holding the training loop up."""

import io
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rich.console import Console  # noqa: E402

import foreshock  # noqa: E402
from foreshock.analysis import Analysis  # noqa: E402
from foreshock.forecast import (  # noqa: E402
    ScheduleError,
    live,  # noqa: E402
    parse_schedule,
)
from foreshock.forecast.laws import annealing_law  # noqa: E402
from foreshock.report.html import render_html  # noqa: E402
from foreshock.report.terminal import print_analysis  # noqa: E402
from foreshock.store import open_store  # noqa: E402

LATENCY_KEYS = ("flush_latency_steps", "flush_every")
SPEC = "cosine:peak=0.01,final=0.001,warmup=20,total=600"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: a second thread only waits for the first
    yield
    torch.set_num_threads(threads)


def tiny():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def train_step(model, optimizer, lr):
    """One real optimizer step (the hooks measure it); the loss passed to the monitor is made up."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)
    for group in optimizer.param_groups:
        group["lr"] = lr
    torch.nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()
    optimizer.zero_grad()


def comparable(event):
    d = event.to_dict()
    d["evidence"] = {k: v for k, v in d["evidence"].items() if k not in LATENCY_KEYS}
    return d


def law_curve():
    """A loss that follows the annealing law under SPEC (the truth a forecast should find), with 0.5% noise."""
    lr = parse_schedule(SPEC).table(600)
    truth = annealing_law(np.arange(1, 601), lr, 1.0, 0.5, 0.5, 0.05)
    noise = 1 + 0.005 * np.random.default_rng(0).standard_normal(600)
    return lr, np.concatenate([[3.0], truth[:-1]]) * noise, float(truth[-1])


def test_phases_live_are_the_phases_of_the_offline_replay(tmp_path):
    model, optimizer = tiny()
    db = tmp_path / "runs.db"
    out = io.StringIO()
    rng = np.random.default_rng(0)
    seen = []  # (step, phase) as the loop saw it
    with foreshock.watch(model, optimizer, run="shape", store=db, flush_every=20,
                         console=Console(file=out, width=400)) as mon:
        for step in range(700):  # LR warm-up, a fast fall of the loss, then a plateau
            train_step(model, optimizer, 0.01 * min(1.0, (step + 1) / 60))
            mon.step(step, loss=(0.5 + 5.0 / (1.0 + (step / 25.0) ** 2)) * (1 + 0.01 * rng.standard_normal()))
            seen.append((step, mon.phase))
    analysed = foreshock.analyze(foreshock.read(db, run="shape"))
    offline = [(p.start_step, p.end_step, p.phase) for p in analysed.phases]
    assert mon.phases == offline
    phases = [p for _, _, p in offline]
    assert phases[0] == "warmup" and phases[-1] == "plateau" and "fast_descent" in phases
    assert [comparable(e) for e in mon.phase_events] == [comparable(e) for e in analysed.phase_events]
    assert mon.phase == "plateau"
    # as analyze keeps them: phase events describe the run, they are not findings
    assert not any(e.kind == "phase" for e in mon.events)
    # live: the loop saw each phase from the flush that decided it on
    for event in mon.phase_events:
        first = next(step for step, phase in seen if phase == event.evidence["phase"])
        assert event.step <= first < event.step + 20
        assert event.evidence["flush_latency_steps"] == first - event.step
    # one console line per change, with the comparison that decided it
    lines = [line for line in out.getvalue().splitlines() if "PHASE" in line]
    assert len(lines) == len(mon.phase_events)
    fast = next(e for e in mon.phase_events if e.evidence["phase"] == "fast_descent")
    line = next(line for line in lines if "-> fast descent" in line)
    assert f"at step {fast.onset_step}" in line and f"decided at step {fast.step}" in line
    assert f"log-log slope {fast.evidence['slope']:.3g} <= fast threshold {fast.evidence['fast_threshold']:.3g}" in line
    assert "-> plateau" in lines[-1] and "flat threshold" in lines[-1]


def test_forecast_refreshes_on_a_worker_thread_while_training_goes_on(monkeypatch):
    lr, loss, truth = law_curve()
    calls, waited = [], []  # (thread, last loss step given to the fit); whether the loop ran on meanwhile
    started, released = threading.Event(), threading.Event()
    real = live.fit_forecast

    def fit_and_record(run, **kwargs):
        calls.append((threading.get_ident(), int(run.series("train/loss")[0][-1])))
        if len(calls) == 1:  # hold the first fit until the training loop has run past a few flushes
            started.set()
            waited.append(released.wait(60))
        return real(run, **kwargs)

    monkeypatch.setattr(live, "fit_forecast", fit_and_record)
    model, optimizer = tiny()
    out = io.StringIO()
    mon = foreshock.watch(model, optimizer, store=None, flush_every=10, forecast_every=2, schedule=SPEC,
                          console=Console(file=out, width=400))
    step, started_at, released_at = 0, None, None
    while len(calls) < 2 and step < 5000:  # until a second fit has started
        train_step(model, optimizer, float(lr[min(step, 599)]))
        mon.step(step, loss=float(loss[min(step, 599)]))
        if started.is_set() and started_at is None:
            started_at = step
        if started_at is not None and released_at is None and step >= started_at + 40 and step % 10 == 4:
            released_at = step  # between flushes: the last one was at step released_at - 5
            released.set()
        step += 1
    mon.close()
    assert waited == [True]  # the loop ran 40+ steps (4+ flushes) while the first fit was running
    assert len(calls) == 2 and all(thread != threading.get_ident() for thread, _ in calls)
    # refreshes due while a fit ran were skipped, not queued: the next fit has points from after it
    assert calls[1][1] > released_at
    # close() waited for the second fit: the forecast is there, fitted up to where that fit began
    f = mon.forecast
    assert f is not None and f.at_step == calls[1][1] and f.target_step == 600
    assert f.lo <= f.value <= f.hi and abs(f.value - truth) < 0.05
    event = mon.forecast_events[-1]
    assert (event.detector, event.kind, event.severity, event.step) == ("forecast", "forecast", "info", f.at_step)
    assert {k: v for k, v in event.evidence.items() if k in f.to_dict()} == f.to_dict()
    assert "curve" not in event.evidence
    assert f"FORECAST train/loss at step 600: {f.value:.4g}" in out.getvalue()


def test_forecast_events_are_stored_and_the_reports_show_them(tmp_path):
    lr, loss, _ = law_curve()
    model, optimizer = tiny()
    db = tmp_path / "runs.db"
    with foreshock.watch(model, optimizer, run="fc", store=db, flush_every=10, forecast_every=1, schedule=SPEC,
                         console=False) as mon:
        for step in range(200):
            train_step(model, optimizer, float(lr[step]))
            mon.step(step, loss=float(loss[step]))
    assert mon.forecast_events and mon.forecast is not None
    with open_store(db) as store:
        stored = store.events(mon.run_id)
        records = store.forecasts(mon.run_id)
        run = store.load_run(mon.run_id)
    assert [e.to_dict() for e in stored if e.kind == "forecast"] == [e.to_dict() for e in mon.forecast_events]
    assert [(r.at_step, r.target_step, r.value, r.law) for r in records] == \
        [(e.evidence["fit_until"], e.evidence["at"], e.evidence["value"], e.evidence["law"])
         for e in mon.forecast_events]
    assert run.config["watch"]["schedule"] == SPEC and run.config["watch"]["forecast_every"] == 1
    # the reports take a run's stored events, forecasts among them
    analysis = Analysis(run=run, events=stored)
    out = io.StringIO()
    print_analysis(analysis, Console(file=out, width=200))
    assert "forecast" in out.getvalue()
    assert ">forecast</td>" in render_html([analysis])


def test_schedule_log_forecasts_the_constant_continuation_and_a_fit_that_cannot_work_is_turned_off():
    model, optimizer = tiny()
    rng = np.random.default_rng(0)
    with foreshock.watch(model, optimizer, store=None, flush_every=10, forecast_every=1, schedule="log",
                         forecast_at=500, console=False) as mon:
        for step in range(60):
            train_step(model, optimizer, 0.01)
            mon.step(step, loss=(1.0 + 2.0 / np.sqrt(step + 1)) * (1 + 0.005 * rng.standard_normal()))
    assert mon.forecast is not None and mon.forecast.target_step == 500
    assert mon.forecast.schedule == "from-log:opt/lr"
    # no optimizer and no LR passed in: the log has no LR, so "log" cannot work; training goes on
    with pytest.warns(RuntimeWarning, match="turned off.*logged no learning rate") as caught:
        with foreshock.watch(model, store=None, flush_every=10, forecast_every=1, schedule="log",
                             forecast_at=500, console=False) as mon:
            for step in range(100):
                mon.step(step, loss=1.0 + 2.0 / np.sqrt(step + 1))
    assert len([w for w in caught if "live forecast" in str(w.message)]) == 1
    assert mon.forecast is None and not mon.forecast_events and len(mon.phase_events) >= 1


def test_a_bad_schedule_fails_at_watch_before_any_run_is_stored(tmp_path):
    model, optimizer = tiny()
    with open_store(tmp_path / "runs.db") as store:
        with pytest.raises(ScheduleError, match="missing total"):
            foreshock.watch(model, optimizer, store=store, schedule="cosine:peak=6e-4,warmup=700")
        with pytest.raises(ScheduleError, match="unknown schedule 'cosinus'"):
            foreshock.watch(model, optimizer, store=store, schedule="cosinus:peak=6e-4,total=100")
        with pytest.raises(ValueError, match="forecast_at="):
            foreshock.watch(model, optimizer, store=store, schedule="log")
        with pytest.raises(ValueError, match="forecast_every must be an int >= 0"):
            foreshock.watch(model, optimizer, store=store, schedule=SPEC, forecast_every=-1)
        with pytest.raises(TypeError, match="schedule must be a Schedule"):
            foreshock.watch(model, optimizer, store=store, schedule=0.01)
        assert store.runs() == []
