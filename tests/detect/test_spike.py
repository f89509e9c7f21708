"""SpikeDetector on seeded curves: what fires, when, with what evidence, and what stays quiet."""

import numpy as np
import pytest
from detect_curves import descent, run_of

from foreshock.detect import Monitor, SpikeDetector


def replay(x, det=None, metric="train/loss", steps=None):
    steps = np.arange(len(x)) if steps is None else steps
    return Monitor([det or SpikeDetector()]).replay(run_of({metric: (steps, x)}))


def test_each_planted_spike_fires_once_at_its_step_and_recovery_follows():
    x = descent(2000, seed=1)
    for i in (400, 900, 1500):
        x[i] *= 2.0
    x[1200:1203] *= 3.0  # a three-point spike
    events = replay(x)
    assert [(e.kind, e.step) for e in events] == [
        ("spike", 400), ("recovery", 401), ("spike", 900), ("recovery", 901),
        ("spike", 1200), ("recovery", 1203), ("spike", 1500), ("recovery", 1501)]
    spike = events[0]
    ev = spike.evidence
    assert spike.severity == "warning" and spike.onset_step == 400
    assert ev["value"] == x[400] and ev["ratio"] == pytest.approx(2.0, rel=0.1)
    assert ev["score"] >= ev["threshold"] == 5.0 and ev["min_ratio"] == 1.5
    assert ev["median"] == pytest.approx(x[350:400].mean(), rel=0.03)
    long = events[5]
    assert long.severity == "info" and long.onset_step == 1200
    assert long.evidence["points_outside"] == 3 and long.evidence["peak"] == pytest.approx(x[1200:1203].max())


@pytest.mark.parametrize("seed", range(8))
def test_quiet_on_noisy_descents_with_heavy_tails(seed):
    rng = np.random.default_rng(seed)
    x = descent(3000, seed=seed, noise=0.05) * np.exp(0.01 * rng.standard_t(3, 3000))
    assert replay(x) == []


@pytest.mark.parametrize("seed", range(4))
def test_quiet_on_1_3x_outliers_however_far_outside_the_noise(seed):
    rng = np.random.default_rng(seed)
    x = descent(3000, seed=seed, noise=0.005)
    x[rng.choice(np.arange(100, 3000), 10, replace=False)] *= 1.3  # 60 SDs out, yet 1.3x: not a spike
    assert replay(x) == []


def test_spike_points_do_not_corrupt_the_baseline():
    x = descent(1500, seed=2, noise=0.02)
    burst = list(range(800, 840, 3))  # 14 spikes, one every third point
    x[burst] *= 4.0
    events = [e for e in replay(x) if e.kind == "spike"]
    assert [e.step for e in events] == burst
    clean = descent(1500, seed=2, noise=0.02)
    # each is judged against a baseline and a scale of the clean points around it
    for e in events:
        assert e.evidence["median"] == pytest.approx(np.median(clean[e.step - 51:e.step]), rel=0.02)
    assert events[-1].evidence["scale"] < 2 * events[0].evidence["scale"]


def test_a_loss_that_has_learnt_everything_is_quiet_about_tiny_jumps():
    rng = np.random.default_rng(3)
    x = np.concatenate([np.geomspace(5.0, 1e-6, 300), 1e-6 * np.exp(0.3 * rng.standard_normal(300))])
    tiny = x.copy()
    tiny[450] = 1e-3  # a thousandfold jump that gives back 0.02% of what was learnt
    assert replay(tiny) == []
    big = x.copy()
    big[450] = 2.0  # gives back 40%
    assert [(e.kind, e.step) for e in replay(big)] == [("spike", 450), ("recovery", 451)]


def test_a_level_shift_fires_once_then_becomes_the_new_baseline():
    x = np.full(1200, 3.0) * (1 + 0.01 * np.random.default_rng(4).standard_normal(1200))
    x[500:] *= 2.0
    x[1000] *= 2.0  # a spike over the new level
    events = replay(x)
    assert [(e.kind, e.step) for e in events] == [("spike", 500), ("spike", 1000), ("recovery", 1001)]
    assert events[1].evidence["median"] == pytest.approx(6.0, rel=0.03)


def test_an_accuracy_is_watched_for_drops():
    rng = np.random.default_rng(5)
    acc = np.clip(0.8 + 0.01 * rng.standard_normal(600), 0, 1)
    acc[300] = 0.3
    events = replay(acc, SpikeDetector(metrics=("train/acc",)), metric="train/acc")
    assert [(e.kind, e.step) for e in events] == [("spike", 300), ("recovery", 301)]
    assert "dropped to 0.3" in events[0].message
    assert events[0].evidence["ratio"] == pytest.approx(0.3 / 0.8, rel=0.03)


def test_sparse_irregular_validation_points():
    rng = np.random.default_rng(6)
    steps = np.cumsum(rng.integers(200, 300, 120))
    val = descent(120, seed=6, tau=40, noise=0.01)
    val[90] *= 2.2
    events = replay(val, metric="val/loss", steps=steps)
    assert [(e.kind, e.step) for e in events] == [("spike", int(steps[90])), ("recovery", int(steps[91]))]


def test_non_finite_points_are_skipped_not_judged():
    x = descent(800, seed=7)
    x[[300, 301, 500]] = [np.nan, np.inf, -np.inf]
    x[600] *= 2.5
    det = SpikeDetector()
    assert [(e.kind, e.step) for e in replay(x, det)] == [("spike", 600), ("recovery", 601)]


def test_scores_expose_the_last_statistic():
    det = SpikeDetector(metrics=("train/loss",))
    x = descent(200, seed=8)
    for i, v in enumerate(x.tolist()):
        det.update(i, {"train/loss": v})
    assert abs(det.scores["train/loss"]) < 5
    det.update(200, {"train/loss": 10 * x[-1]})
    assert det.scores["train/loss"] > 50


def test_refuses_a_metric_without_a_bad_direction_and_bad_thresholds():
    with pytest.raises(ValueError, match="opt/lr"):
        SpikeDetector(metrics=("opt/lr",))
    with pytest.raises(ValueError, match="min_ratio"):
        SpikeDetector(min_ratio=0.5)
    with pytest.raises(ValueError, match="min_periods"):
        SpikeDetector(window=5, min_periods=10)
