"""Phases of a run, grokking and the edge of stability: on planted curves and on the shared real logs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from detect_curves import DATA

import foreshock
from foreshock.detect import Monitor, iter_steps
from foreshock.detect.phases import (
    PHASES,
    EdgeOfStabilityDetector,
    GrokkingDetector,
    PhaseDetector,
    phase_timeline,
)
from foreshock.events import Event
from foreshock.run import Run, Series


def run_of(name: str = "synthetic", **series: tuple[np.ndarray, np.ndarray]) -> Run:
    return Run(name=name, metrics={k.replace("__", "/"): Series(np.asarray(s, dtype=np.int64),
                                                                 np.asarray(v, dtype=np.float64))
                                   for k, (s, v) in series.items()})


def lm_run(seed: int = 0, n: int = 20_000) -> Run:
    """Warm-up to step 500, loss slope -1 in log-log up to step 1000 then -0.25, LR cooldown from 16000."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = np.log10(t + 1.0)
    log_loss = np.where(t < 1000, 1.0 - 1.0 * (x - 3), 1.0 - 0.25 * (x - 3))
    lr = np.minimum(1.0, (t + 1) / 500)
    lr = np.where(t > 16_000, 1 - (t - 16_000) / 4000, lr) * 3e-4
    loss = 10 ** log_loss * (1 - 0.15 * np.clip((t - 16_000) / 4000, 0, 1)) * (1 + 0.01 * rng.standard_normal(n))
    return run_of("lm", train__loss=(t, loss), opt__lr=(t, lr))


def replay(det, run):
    return Monitor([det]).replay(run)


# -- phases -----------------------------------------------------------------------------------------

def test_a_language_model_run_goes_through_warmup_fast_and_slow_descent_then_annealing():
    run = lm_run()
    events = replay(PhaseDetector(), run)
    timeline = phase_timeline(events, last_step=19_999)
    assert [p for _, _, p in timeline] == ["warmup", "fast_descent", "slow_descent", "annealing"]
    (_, warm_end, _), (_, _, _), (decel, _, _), (anneal, end, _) = timeline
    assert 500 <= warm_end <= 700  # the LR stops rising at step 500
    assert 16_000 <= anneal <= 16_500 and end == 19_999  # the cooldown starts at 16000
    slow = next(e for e in events if e.evidence["phase"] == "slow_descent")
    # the break of slope is at step 1000: reported within a bin or two, long before it is certain
    assert 800 <= slow.evidence["deceleration_step"] <= 1250 and slow.onset_step == decel
    assert slow.evidence["slope_before_break"] == pytest.approx(-1.0, abs=0.15)
    assert slow.evidence["slope_after_break"] == pytest.approx(-0.25, abs=0.1)
    assert "Loss deceleration" in slow.message


def test_phase_events_are_info_with_the_phase_the_slope_and_the_thresholds():
    events = replay(PhaseDetector(), lm_run(seed=1))
    assert events and all(e.kind == "phase" and e.severity == "info" for e in events)
    for e in events:
        ev = e.evidence
        assert ev["phase"] in PHASES and ev["metric"] == "train/loss" and e.onset_step <= e.step
        if ev["phase"] in ("fast_descent", "slow_descent", "plateau", "rising"):
            assert {"slope", "fast_threshold", "flat_threshold", "steepest_slope"} <= set(ev)
        if ev["phase"] == "annealing":
            assert ev["drop_below_trend"] >= ev["anneal_threshold"] > 0 and ev["lr"] < ev["lr_peak"]
        json.dumps(ev)  # plain JSON
    fast = next(e for e in events if e.evidence["phase"] == "fast_descent")
    assert fast.evidence["slope"] <= fast.evidence["fast_threshold"]


def test_phases_do_not_depend_on_the_units_of_the_loss():
    run = lm_run(seed=2)
    steps, loss = run.series("train/loss")
    scaled = run_of("scaled", train__loss=(steps, 1e-4 * loss), opt__lr=run.series("opt/lr"))
    assert (phase_timeline(replay(PhaseDetector(), run), 19_999)
            == phase_timeline(replay(PhaseDetector(), scaled), 19_999))


def test_a_plateau_then_a_drop_is_seen_as_such_and_without_an_lr_the_start_is_the_early_transient():
    t = np.arange(3000)
    rng = np.random.default_rng(3)
    loss = np.where(t < 300, 0.52, 0.52 * ((t + 1) / 301.0) ** -1.5) * (1 + 0.002 * rng.standard_normal(len(t)))
    events = replay(PhaseDetector(), run_of(train__loss=(t, loss)))
    phases = [p for _, _, p in phase_timeline(events, 2999)]
    assert phases[:3] == ["warmup", "plateau", "fast_descent"]
    assert events[0].evidence["reason"].startswith("early transient")
    drop = next(e for e in events if e.evidence["phase"] == "fast_descent")
    assert 300 <= drop.onset_step <= 450


def test_phases_are_causal_and_resume_from_a_json_checkpoint():
    run = lm_run(seed=4, n=8000)
    points = list(iter_steps(run))
    full = PhaseDetector()
    events = [e for s, v in points for e in full.update(s, v)]
    cut = 3000
    first = PhaseDetector()
    early = [e for s, v in points[:cut] for e in first.update(s, v)]
    assert early == [e for e in events if e.step < points[cut][0]]
    resumed = PhaseDetector()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    late = [e for s, v in points[cut:] for e in resumed.update(s, v)]
    assert early + late == events


def test_timeline_from_events():
    def ev(step, onset, phase):
        return Event("phase", "phase", "info", step, onset, "", {"metric": "train/loss", "phase": phase})

    events = [ev(3, 0, "warmup"), ev(700, 520, "fast_descent"), ev(900, 650, "slow_descent"),
              ev(950, 600, "fast_descent"),  # onset before the phase it follows: starts where that one did
              ev(990, 990, "fast_descent"), ev(5000, 4000, "plateau"),
              Event("spike", "spike", "warning", 4500, 4500, "", {"metric": "train/loss"})]
    assert phase_timeline(events, last_step=9000) == [
        (0, 520, "warmup"), (520, 4000, "fast_descent"), (4000, 9000, "plateau")]
    assert phase_timeline(events[:2]) == [(0, 520, "warmup"), (520, 700, "fast_descent")]
    assert phase_timeline([]) == []


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        PhaseDetector(window=2)
    with pytest.raises(ValueError):
        PhaseDetector(flat_fraction=0.6, fast_fraction=0.5)
    with pytest.raises(ValueError):
        GrokkingDetector(onset_rise=0.2, rise=0.1)
    with pytest.raises(ValueError):
        EdgeOfStabilityDetector(threshold=0.5, release=0.7)


# -- grokking ---------------------------------------------------------------------------------------

def acc_run(val_rise_at: int, n: int = 20_000, every: int = 100, seed: int = 0) -> Run:
    """Train accuracy saturated by step 300; validation near chance until ``val_rise_at``, then a sigmoid."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, n + 1, every)
    train = np.clip(1.0 / (1 + np.exp(-(t - 150) / 30.0)) + 0.002 * rng.standard_normal(len(t)), 0, 1)
    val = 0.01 + 0.99 / (1 + np.exp(-(t - val_rise_at - 1500) / 300.0)) + 0.003 * np.abs(rng.standard_normal(len(t)))
    return run_of(train__acc=(t, train), val__acc=(t, np.clip(val, 0, 1)))


def test_grokking_is_reported_when_validation_starts_to_rise_before_it_passes_ninety_percent():
    run = acc_run(val_rise_at=8000)
    events = replay(GrokkingDetector(), run)
    assert [e.kind for e in events] == ["grokking"]
    e = events[0]
    steps, val = run.series("val/acc")
    passes_90 = int(steps[np.argmax(val >= 0.9)])
    assert e.step < passes_90 and e.severity == "info"
    assert 7000 <= e.onset_step <= e.step and e.evidence["memorised_step"] <= 500
    assert e.evidence["value"] >= e.evidence["threshold"] and e.evidence["delay_ratio"] >= e.evidence["min_delay"]


def test_a_run_that_generalises_right_after_memorising_is_not_grokking():
    assert replay(GrokkingDetector(), acc_run(val_rise_at=-1000)) == []


def with_dips(run: Run, at: tuple[int, ...]) -> Run:
    """``run`` with training accuracy falling to 0.3 at each step of ``at``."""
    steps, train = run.series("train/acc")
    train = train.copy()
    train[np.isin(steps, at)] = 0.3
    return run_of(train__acc=(steps, train), val__acc=run.series("val/acc"))


def test_brief_dips_of_training_accuracy_do_not_restart_the_memorisation_clock():
    # a transformer trained to near zero loss with AdamW spikes now and then: a dip is not forgetting
    run = with_dips(acc_run(val_rise_at=8000), at=(3000, 3100, 6000, 6100))
    events = replay(GrokkingDetector(), run)
    assert [e.kind for e in events] == ["grokking"] and events[0].evidence["memorised_step"] <= 500
    # a dip that is a restart (patience 1) makes the later rise look prompt after the last dip: silent
    assert replay(GrokkingDetector(patience=1), run) == []


def test_grokking_is_reported_before_ninety_percent_on_the_lab_transformer_runs():
    lab = Path(__file__).resolve().parents[2] / "bench" / "lab_runs" / "grokking"
    runs = sorted(lab.glob("grokking_model-transformer_seed-*.csv.gz"))
    assert runs, f"no lab transformer grokking runs in {lab}"
    for path in runs:  # training accuracy dips to 0.03-0.6 several times while validation waits
        run = foreshock.read(path)
        steps, val = run.series("val/acc")
        passes_90 = int(steps[np.argmax(val >= 0.9)])
        fired = [e.step for e in replay(GrokkingDetector(), run)]
        assert fired and fired[0] < passes_90, (path.name, fired, passes_90)


@pytest.fixture(scope="module")
def labelled():
    if not DATA.exists():
        pytest.skip(f"shared logs not found at {DATA}")
    with open(DATA / "LABELS.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_grokking_fires_before_validation_passes_ninety_percent_on_the_shared_grokking_runs(labelled):
    rows = [r for r in labelled if r["event"] == "grokking"]
    early = 0
    for r in rows:
        run = foreshock.read(DATA / r["source"] / f"{r['run_file']}.gz")
        steps, val = run.series("val/acc")
        passes_90 = int(steps[np.argmax(val >= 0.9)])
        fired = [e.step for e in replay(GrokkingDetector(), run)]
        early += bool(fired) and fired[0] < passes_90
    assert len(rows) >= 20 and early >= 0.8 * len(rows)


# -- edge of stability ------------------------------------------------------------------------------

def test_edge_of_stability_fires_once_as_sharpness_reaches_two_over_lr_and_ends_when_it_falls():
    lr = 0.1
    t = np.arange(600)
    sharp = np.where(t < 300, 5 + 15 * t / 300, 20 * (1 + 0.05 * (-1) ** t))  # sharpening, then oscillating at 2/lr
    sharp = np.where(t >= 500, 8.0, sharp)
    run = run_of(probe__hessian__lambda_max=(t, sharp), opt__lr=(t, np.full(len(t), lr)))
    events = replay(EdgeOfStabilityDetector(), run)
    assert [e.kind for e in events] == ["edge_of_stability", "edge_of_stability_end"]
    eos, end = events
    first_near = int(t[np.argmax(sharp * lr / 2 >= 0.9)])
    assert first_near <= eos.step <= first_near + 5 and eos.onset_step == first_near
    assert eos.evidence["two_over_lr"] == pytest.approx(20.0) and eos.evidence["ratio"] >= 0.9
    assert "preconditioned" in eos.evidence["sharpness_kind"]
    assert 500 <= end.step <= 505


def test_preconditioned_sharpness_is_compared_with_adams_edge():
    # Adam, beta1 = 0.5, lr = 0.1: the edge is (2 + 1) / (0.5 * 0.1) = 60; gradient descent's would be 20
    t = np.arange(40)
    sharp = np.where(t < 20, 30.0, 57.0)  # ratio 0.5 then 0.95 against Adam's edge; both above 2/lr
    run = run_of(probe__hessian__lambda_max_precond=(t, sharp), opt__lr=(t, np.full(len(t), 0.1)))
    det = EdgeOfStabilityDetector(sharpness="probe/hessian/lambda_max_precond", preconditioned=True, beta1=0.5,
                                  window=3)
    events = replay(det, run)
    assert [(e.kind, e.step, e.onset_step) for e in events] == [("edge_of_stability", 21, 20)]
    ev = events[0].evidence
    assert ev["edge"] == pytest.approx(60.0) and ev["ratio"] == pytest.approx(0.95) and ev["beta1"] == 0.5
    assert ev["edge_rule"] == "(2 + 2 beta1) / ((1 - beta1) lr)" and ev["preconditioned"] is True
    assert "two_over_lr" not in ev and "Adam's preconditioned" in ev["sharpness_kind"]
    # the same series read as a raw Hessian eigenvalue is past 2/lr from the start
    raw = replay(EdgeOfStabilityDetector(sharpness="probe/hessian/lambda_max_precond", window=3), run)
    assert raw[0].step == 2 and raw[0].evidence["edge"] == pytest.approx(20.0)
    with pytest.raises(ValueError, match="beta1"):
        EdgeOfStabilityDetector(preconditioned=True, beta1=1.0)


def test_edge_of_stability_on_the_shared_runs_fires_only_where_sharpness_reaches_the_edge(labelled):
    for r in (r for r in labelled if r["source"] == "eos-browser"):
        run = foreshock.read(DATA / r["source"] / f"{r['run_file']}.gz")
        _, lam = run.series("probe/hessian/lambda_max")
        _, lr = run.series("opt/lr")
        reaches = np.nanmax(lam * lr[0] / 2) >= 0.9
        events = [e for e in replay(EdgeOfStabilityDetector(), run) if e.kind == "edge_of_stability"]
        assert bool(events) == bool(reaches), r["run_file"]


# -- the vectorised replay equals the step-by-step one ----------------------------------------------

def eos_run(seed: int) -> Run:
    rng = np.random.default_rng(seed)
    t = np.arange(800)
    lam = 20 * np.minimum(1.0, np.linspace(0.3, 1.3, len(t))) * (1 + 0.05 * (-1.0) ** t)
    lam[500 + seed * 20:] *= 0.4
    lam[rng.random(len(t)) < 0.02] = np.nan
    lr = np.full(len(t), 0.1)
    lr[:3] = np.nan  # no LR yet: nothing to compare with
    return run_of(probe__hessian__lambda_max=(t, lam), opt__lr=(t[::2], lr[::2]))


@pytest.mark.parametrize("det, run", [
    (PhaseDetector(), lm_run(seed=5)),
    (PhaseDetector(bins_per_decade=8, window=3, patience=1), lm_run(seed=6, n=5000)),
    (GrokkingDetector(), acc_run(val_rise_at=6000, seed=1)),
    (GrokkingDetector(window=1), acc_run(val_rise_at=-1000, seed=2)),
    (GrokkingDetector(), with_dips(acc_run(val_rise_at=7000, seed=3), at=(2000, 2100, 4000))),
    (EdgeOfStabilityDetector(), eos_run(0)),
    (EdgeOfStabilityDetector(window=1, threshold=0.8, release=0.5), eos_run(3)),
    (EdgeOfStabilityDetector(threshold=0.7, release=0.4, preconditioned=True, beta1=0.1), eos_run(1)),
], ids=lambda x: type(x).__name__)
def test_scan_gives_the_events_and_the_state_of_update(det, run):
    names = [n for n in det.metrics if n in run]
    fast, slow = det.clone(), det.clone()
    got = fast.scan({n: run.series(n) for n in names})
    want = [e for s, v in iter_steps(run, names) for e in slow.update(s, v)]
    assert got == want and (want or isinstance(det, GrokkingDetector))
    assert fast.state_dict() == slow.state_dict()
