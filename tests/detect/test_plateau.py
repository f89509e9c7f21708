"""PlateauDetector: progress that stops, against the run's own earlier rate; once per plateau (info)."""

import numpy as np
from detect_curves import descent, run_of

from foreshock.detect import Monitor, PlateauDetector


def replay(x, det=None, steps=None):
    steps = np.arange(len(x)) if steps is None else steps
    return Monitor([det or PlateauDetector()]).replay(run_of({"train/loss": (steps, x)}))


def stalled(n=1500, flat=(500, 1000), seed=0):
    """A descent that stops at ``flat[0]`` and starts again at ``flat[1]``."""
    rng = np.random.default_rng(seed)
    clean = 2.0 + 4.0 * np.exp(-np.arange(n) / 250.0)
    a, b = flat
    clean[a:b] = clean[a]
    clean[b:] = clean[a] - (clean[a] - 2.0) * (1 - np.exp(-(np.arange(n - b)) / 150.0))
    return clean * (1 + 0.01 * rng.standard_normal(n))


def test_a_stalled_descent_gives_one_plateau_then_says_progress_resumed():
    events = replay(stalled())
    assert [e.kind for e in events] == ["plateau", "plateau_end"]
    p, r = events
    det = PlateauDetector()
    assert p.severity == r.severity == "info"
    assert 500 <= p.onset_step <= 500 + det.window // 2
    assert p.step <= 500 + det.span + det.window + det.patience
    assert p.evidence["improvement"] <= det.fraction * p.evidence["earlier_improvement"]
    assert 1000 < r.step < 1000 + det.span + det.window and r.onset_step == p.onset_step
    assert r.evidence["plateau_step"] == p.step


def test_one_event_however_long_the_plateau():
    events = replay(stalled(n=6000, flat=(500, 6000)))
    assert [e.kind for e in events] == ["plateau"]


def test_quiet_during_a_normal_slow_late_descent():
    for seed in range(4):
        x = descent(30000, seed=seed, noise=0.03, alpha=0.4, tau=100.0)
        assert replay(x) == []


def test_quiet_when_flat_from_the_start_or_far_below_what_was_learnt():
    rng = np.random.default_rng(1)
    assert replay(3.0 * (1 + 0.01 * rng.standard_normal(2000))) == []
    # a loss that fell from 5 to 1e-3 at once, then gains orders of magnitude that are worth little
    x = np.concatenate([[5.0, 2.0, 0.5, 0.05, 0.005], np.geomspace(1e-3, 1e-6, 1200), np.full(800, 1e-6)])
    assert replay(x) == []


def test_sparse_irregular_steps_count_points():
    rng = np.random.default_rng(2)
    x = stalled(seed=2)
    steps = np.cumsum(rng.integers(50, 150, len(x)))
    events = replay(x, steps=steps)
    assert [e.kind for e in events] == ["plateau", "plateau_end"]
    assert steps[500] <= events[0].onset_step <= steps[500 + PlateauDetector().window // 2]
