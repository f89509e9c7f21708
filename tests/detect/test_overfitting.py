"""OverfittingDetector: val loss rising beyond noise while train loss falls (warning)."""

import numpy as np
import pytest
from detect_curves import descent, run_of

from foreshock.detect import Monitor, OverfittingDetector


def series(val, train=None, every=100):
    n = len(val) * every
    train = descent(n, seed=9, noise=0.02) if train is None else train
    return run_of({"train/loss": (np.arange(n), train), "val/loss": (np.arange(len(val)) * every, val)})


def u_shaped(n=80, turn=40, rise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    v = 2.0 + 3.0 * np.exp(-np.arange(n) / 10.0)
    v[turn:] = v[turn] * (1 + rise * np.arange(n - turn))
    return v * (1 + 0.002 * rng.standard_normal(n))


def test_val_turning_up_while_train_falls_warns_once_from_its_best():
    events = Monitor([OverfittingDetector()]).replay(series(u_shaped()))
    assert len(events) == 1
    e = events[0]
    assert e.kind == "overfitting" and e.severity == "warning" and e.evidence["metric"] == "val/loss"
    assert 3800 <= e.onset_step <= 4300 and e.onset_step == e.evidence["best_step"]
    assert e.step <= 4000 + 100 * 12  # a few evaluations after the rise passes 5%
    ev = e.evidence
    assert ev["relative_rise"] >= ev["min_rise"] and ev["train_level"] < ev["train_level_at_best"]
    assert "while train/loss fell" in e.message


def test_val_that_never_improved_has_not_fitted_yet():
    v = 5.0 * (1 + 0.02 * np.arange(80))  # rises from the first evaluation on
    assert Monitor([OverfittingDetector()]).replay(series(v)) == []


def test_val_and_train_rising_together_is_not_overfitting():
    v = u_shaped()
    n = len(v) * 100
    train = descent(n, seed=9)
    train[4000:] *= np.linspace(1.0, 3.0, n - 4000)
    assert Monitor([OverfittingDetector()]).replay(series(v, train)) == []


@pytest.mark.parametrize("seed", range(5))
def test_quiet_on_val_noise(seed):
    rng = np.random.default_rng(seed)
    v = descent(80, seed=seed, tau=5, noise=0.01) * np.exp(0.01 * rng.standard_t(3, 80))
    assert Monitor([OverfittingDetector()]).replay(series(v)) == []


def test_a_new_best_ends_the_episode_and_a_later_rise_warns_again():
    first = u_shaped(n=70, turn=30)
    back = 1.5 + (first[-1] - 1.5) * np.exp(-np.arange(60) / 8.0)  # recovers below the first best
    again = back[-1] * (1 + 0.02 * np.arange(40))
    events = Monitor([OverfittingDetector()]).replay(series(np.concatenate([first, back, again])))
    assert [e.kind for e in events] == ["overfitting", "overfitting"]
    assert events[1].onset_step >= 12000
