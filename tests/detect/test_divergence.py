"""DivergenceDetector: a sustained rise above the run's best fires once, critical; spikes do not."""

import numpy as np
import pytest
from detect_curves import descent, run_of

from foreshock.detect import DivergenceDetector, Monitor


def replay(series, det=None):
    return Monitor([det or DivergenceDetector()]).replay(run_of(series))


def train(x, steps=None):
    return {"train/loss": (np.arange(len(x)) if steps is None else steps, x)}


def test_a_jump_that_stays_fires_once_soon_after_half_the_window():
    x = descent(2000, seed=1)
    x[1200:] *= 3.0
    events = replay(train(x))
    assert len(events) == 1
    e = events[0]
    det = DivergenceDetector()
    assert e.kind == "divergence" and e.severity == "critical" and e.evidence["metric"] == "train/loss"
    # the level (median of 31) turns after 16 high points, then it must hold for 10
    assert 1200 + det.window // 2 <= e.onset_step <= e.step == e.onset_step + det.patience - 1
    assert e.step <= 1200 + det.window // 2 + det.patience
    ev = e.evidence
    assert ev["ratio"] == pytest.approx(3.0, rel=0.1) and ev["best_step"] < 1200
    assert ev["rise"] >= ev["threshold"] * ev["scale_at_best"]
    assert ev["progress_lost"] >= ev["min_progress"]


@pytest.mark.parametrize("length", [1, 3, 10])
def test_spikes_that_recover_are_not_divergence(length):
    x = descent(2000, seed=2)
    for start in (500, 900, 1400):
        x[start:start + length] *= 6.0
    assert replay(train(x)) == []


@pytest.mark.parametrize("seed", range(6))
def test_quiet_on_noisy_descents(seed):
    rng = np.random.default_rng(seed)
    x = descent(5000, seed=seed, noise=0.08) * np.exp(0.02 * rng.standard_t(3, 5000))
    assert replay(train(x)) == []


def test_recovery_then_a_second_divergence_fires_twice():
    x = descent(3000, seed=3)
    x[800:1300] *= 2.5
    x[2200:] *= 2.5
    events = replay(train(x))
    assert [e.kind for e in events] == ["divergence", "recovery", "divergence"]
    first, recovered, second = events
    assert 800 < first.step < 900 and 1300 < recovered.step < 1400 and 2200 < second.step < 2300


def test_a_loss_creeping_up_from_nearly_zero_is_not_divergence():
    rng = np.random.default_rng(4)
    x = np.concatenate([np.geomspace(5.0, 1e-6, 300), np.geomspace(1e-6, 1e-3, 700)])
    x *= np.exp(0.1 * rng.standard_normal(1000))
    assert replay(train(x)) == []  # a thousandfold rise that gives back 0.02% of the progress
    x[600:] = 4.7  # back to the uniform predictor: everything learnt is lost
    (e,) = replay(train(x))
    assert 600 < e.step < 650 and e.evidence["progress_lost"] > 0.9


def test_val_loss_is_watched_only_when_the_log_has_no_train_loss():
    n = 200
    steps = np.arange(n) * 100
    val = descent(n, seed=5, tau=10, noise=0.005)
    val[120:] = val[119] * 2.0
    only_val = replay({"val/loss": (steps, val)})
    assert [e.evidence["metric"] for e in only_val] == ["val/loss"]
    falling = descent(n * 100, seed=6)
    with_train = replay({"val/loss": (steps, val), "train/loss": (np.arange(n * 100), falling)})
    assert with_train == []  # val rising while train falls is overfitting, not divergence


def test_checks_its_parameters():
    with pytest.raises(ValueError, match="patience"):
        DivergenceDetector(patience=0)
    with pytest.raises(ValueError, match="min_rise"):
        DivergenceDetector(min_rise=-1)
