"""The contract every detector keeps, checked on every one of them (and on non-default settings).

Parameters stored under their names; clone and pickle; a checkpoint (``state_dict``, through JSON)
taken mid-run resumes exactly; causality; the vectorised ``scan`` gives the events and the end state
of the step-by-step path, on many seeded synthetic runs and on real logs; every event has evidence.
"""

from __future__ import annotations

import inspect
import json
import pickle

import numpy as np
import pytest
from detect_curves import DATA, descent, messy_run, run_of, shared_runs

from foreshock.detect import (
    ChangePointDetector,
    DivergenceDetector,
    EarlyWarningDetector,
    EdgeOfStabilityDetector,
    GradSpikeDetector,
    GrokkingDetector,
    LogitGrowthDetector,
    Monitor,
    NonFiniteDetector,
    OutputDriftDetector,
    OverfittingDetector,
    PhaseDetector,
    PlateauDetector,
    SpikeDetector,
    UpdateRatioDetector,
    default_detectors,
    iter_steps,
)
from foreshock.events import SEVERITIES

DETECTORS = [
    *default_detectors(),
    SpikeDetector(metrics=("train/acc", "opt/grad_norm"), window=21, min_periods=5, threshold=4.0,
                  min_ratio=1.2, min_progress=0.0),
    DivergenceDetector(metrics=("val/loss", "train/loss"), window=11, min_periods=5, patience=3,
                       min_rise=0.1),
    PlateauDetector(window=11, span=20, min_periods=5, patience=3, min_progress=0.0),
    OverfittingDetector(window=3, train_window=21, min_periods=3, patience=2, min_rise=0.02),
    NonFiniteDetector(reset_after=5, persist=3),
    PhaseDetector(),
    PhaseDetector(bins_per_decade=8, window=3, patience=1, anneal_margin=0.0),
    GrokkingDetector(window=1, min_delay=1.0, lag_level=0.9),
    EdgeOfStabilityDetector(window=1, threshold=0.5, release=0.2),
    EarlyWarningDetector(metrics=("opt/grad_norm", "train/loss", "train/acc"), window=30, bandwidth=8.0, stride=3,
                         history=8, threshold=0.6, min_ratio=1.5, severity="warning"),
    ChangePointDetector(),
    ChangePointDetector(metrics=("opt/grad_norm", "val/loss"), hazard=0.01, threshold=0.5, delay=5, min_length=2,
                        max_hypotheses=20, min_shift=1.0, block=3),
    GradSpikeDetector(patterns=("opt/grad_norm", "train/loss"), beta=0.9, theta=4.0, min_periods=5),
    UpdateRatioDetector(patterns=("train/loss", "opt/*_norm"), window=21, min_periods=5, factor=1.5),
    LogitGrowthDetector(patterns=("train/loss", "opt/grad_norm"), skip=100, baseline_points=30, window=11,
                        min_ratio=1.3, min_growth=1.1, patience=3),
    OutputDriftDetector(patterns=("*/loss",), skip=5, baseline_points=10, window=5, min_ratio=1.2,
                        min_growth=1.02, patience=2),
    LogitGrowthDetector(patterns=("train/loss", "val/loss"), skip=50, baseline_points=20, window=7, min_ratio=2.0,
                        min_growth=1.05, patience=4, burst=1.6),
]
IDS = [repr(d) for d in DETECTORS]
SEEDS = range(24)


def names_for(det, run):
    return [n for n in (det.metrics if det.metrics is not None else run.names) if n in run]


def live(det, points):
    """Feed ``(step, values)`` points to ``det`` as the monitor would; returns the events."""
    events = []
    for step, values in points:
        want = det.metrics
        sub = values if want is None else {k: values[k] for k in want if k in values}
        if sub:
            events.extend(det.update(step, sub))
    return events


def points_of(run):
    return list(iter_steps(run))


@pytest.fixture(scope="module")
def synthetic():
    return [messy_run(seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def real():
    if not DATA.exists():
        pytest.skip(f"shared logs not found at {DATA}")
    return shared_runs()  # every real run: 119 logs, 0.8 M points


@pytest.mark.parametrize("det", DETECTORS, ids=IDS)
def test_parameters_are_stored_under_their_names_and_clone_starts_fresh(det, synthetic):
    params = {n: p for n, p in inspect.signature(type(det).__init__).parameters.items() if n != "self"}
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty for p in params.values())
    used = det.clone()
    live(used, points_of(synthetic[1]))
    assert used.state_dict() != det.clone().state_dict()
    clone = used.clone()
    assert {n: getattr(clone, n) for n in params} == {n: getattr(det, n) for n in params}
    assert clone.state_dict() == type(det)(**{n: getattr(det, n) for n in params}).state_dict()
    assert repr(clone) == repr(det) and repr(det).startswith(type(det).__name__ + "(")
    assert det.metrics is None or isinstance(det.metrics, tuple)


@pytest.mark.parametrize("det", DETECTORS, ids=IDS)
def test_pickle_and_state_dict_mid_run_resume_exactly(det, synthetic):
    for run in synthetic[:8]:
        points = points_of(run)
        whole = det.clone()
        expected = live(whole, points)
        for cut in (len(points) // 5, len(points) // 2, len(points) - 3):
            first = det.clone()
            before = live(first, points[:cut])
            pickled = pickle.loads(pickle.dumps(first))
            resumed = det.clone()
            resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
            tail_a = live(pickled, points[cut:])
            tail_b = live(resumed, points[cut:])
            assert before + tail_a == expected
            assert before + tail_b == expected
            assert resumed.state_dict() == whole.state_dict() == pickled.state_dict()


@pytest.mark.parametrize("det", DETECTORS, ids=IDS)
def test_reset_forgets_everything(det, synthetic):
    d = det.clone()
    live(d, points_of(synthetic[0]))
    d.reset()
    assert d.state_dict() == det.clone().state_dict()


@pytest.mark.parametrize("det", DETECTORS, ids=IDS)
def test_causal_events_on_a_prefix_are_those_of_the_full_run(det, synthetic):
    for run in synthetic[:8]:
        points = points_of(run)
        full = live(det.clone(), points)
        for cut in (len(points) // 3, 2 * len(points) // 3):
            part = live(det.clone(), points[:cut])
            last = points[cut - 1][0]
            assert part == [e for e in full if e.step <= last]


@pytest.mark.parametrize("det", DETECTORS, ids=IDS)
def test_scan_equals_step_by_step_on_synthetic_runs(det, synthetic):
    assert callable(getattr(det, "scan", None))
    fired = 0
    for run in synthetic:
        names = names_for(det, run)
        fast, slow = det.clone(), det.clone()
        got = fast.scan({n: run.series(n) for n in names})
        want = live(slow, points_of(run))
        assert got == want, run.name
        assert fast.state_dict() == slow.state_dict(), run.name
        fired += len(want)
    assert fired > 0, "the synthetic runs must make every detector fire, or the comparison proves little"


@pytest.mark.parametrize("det", DETECTORS, ids=IDS)
def test_scan_equals_step_by_step_on_shared_logs(det, real):
    for run in real:
        names = names_for(det, run)
        if not names:
            continue
        fast = Monitor([det.clone()])
        slow = Monitor([det.clone()])
        assert fast.replay(run, fast=True) == slow.replay(run, fast=False), run.name
        assert fast.state_dict() == slow.state_dict(), run.name


@pytest.mark.parametrize("det", DETECTORS, ids=IDS)
def test_scan_after_live_updates_continues_the_same_run(det, synthetic):
    run = synthetic[3]
    points = points_of(run)
    cut = len(points) // 2
    a, b = det.clone(), det.clone()
    live(a, points[:cut])
    live(b, points[:cut])
    rest = {}
    for step, values in points[cut:]:
        for k, v in values.items():
            rest.setdefault(k, ([], []))
            rest[k][0].append(step)
            rest[k][1].append(v)
    names = names_for(det, run)
    got = a.scan({k: (np.array(s), np.array(v)) for k, (s, v) in rest.items() if k in names})
    assert got == live(b, points[cut:])
    assert a.state_dict() == b.state_dict()


@pytest.mark.parametrize("det", DETECTORS, ids=IDS)
def test_every_event_says_why_in_one_sentence(det, synthetic):
    for run in synthetic:
        for e in Monitor([det.clone()]).replay(run):
            assert e.detector == det.name
            assert e.severity in SEVERITIES
            assert e.onset_step <= e.step
            assert "metric" in e.evidence and e.evidence["metric"] in run
            assert e.message.endswith(".") and "\n" not in e.message and e.message[0].isalnum()
            json.dumps(e.to_dict(), allow_nan=False)


@pytest.mark.parametrize("det", [d for d in DETECTORS if d.metrics is not None], ids=lambda d: repr(d))
def test_reads_only_the_metrics_it_lists(det, synthetic):
    run = synthetic[5]
    points = points_of(run)
    noisy = [(s, {**v, "opt/other": 1.0, "misc": float("nan")}) for s, v in points]
    d1, d2 = det.clone(), det.clone()
    assert [e for s, v in points for e in d1.update(s, v)] == [e for s, v in noisy for e in d2.update(s, v)]


def test_every_default_detector_has_a_vectorised_scan_and_a_unique_name():
    dets = default_detectors()
    assert all(callable(getattr(d, "scan", None)) for d in dets)
    assert len({d.name for d in dets}) == len(dets)
    Monitor(dets)  # refuses duplicates


def test_default_monitor_live_fast_and_slow_replay_agree(synthetic):
    for run in synthetic[:6]:
        live_monitor = Monitor()
        fired = [e for step, values in iter_steps(run) for e in live_monitor.update(step, values)]
        fast, slow = Monitor(), Monitor()
        assert fast.replay(run, fast=True) == fired == slow.replay(run, fast=False)
        assert fast.state_dict() == live_monitor.state_dict() == slow.state_dict()


def test_replay_of_a_fresh_monitor_never_steps_through_update(monkeypatch):
    # speed comes from the vectorised scan (bench/replay.py measures it); a per-step loop in replay
    # would be 10-100x slower, so replay must not fall back to update for the default detectors
    n = 20_000
    rng = np.random.default_rng(0)
    steps = np.arange(n)
    loss = descent(n, seed=0)
    loss[rng.choice(n, 20, replace=False)] *= 3.0
    run = run_of({"train/loss": (steps, loss), "val/loss": (steps[::100], loss[::100]),
                  "opt/lr": (steps, np.full(n, 1e-3)), "opt/grad_norm": (steps, np.exp(rng.standard_normal(n))),
                  "train/acc": (steps, np.clip(1 - loss / 8, 0, 1))})
    monitor = Monitor()
    for det in monitor.detectors:
        monkeypatch.setattr(det, "update", lambda *a, **k: pytest.fail("replay stepped through update"))
    events = monitor.replay(run)
    assert sum(e.kind == "spike" for e in events) == 20
