"""ChangePointDetector: a planted change of level found within a few steps, with its posterior and levels."""

import numpy as np
import pytest
from detect_curves import DATA, run_of

from foreshock.detect import Monitor
from foreshock.detect.changepoint import ChangePointDetector


def replay(x, det=None, metric="train/loss", steps=None, fast=True):
    steps = np.arange(len(x)) if steps is None else steps
    return Monitor([det or ChangePointDetector()]).replay(run_of({metric: (steps, x)}), fast=fast)


def levels(sizes, values, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([v * np.exp(noise * rng.standard_normal(n)) for n, v in zip(sizes, values, strict=True)])


@pytest.mark.parametrize("seed", range(4))
def test_planted_level_changes_are_found_within_a_few_steps_with_their_evidence(seed):
    x = levels([400, 300, 300], [3.0, 2.0, 2.6], seed=seed)
    events = replay(x)
    assert [e.onset_step for e in events] == pytest.approx([400, 700], abs=2)
    assert all(e.kind == "change_point" and e.severity == "info" for e in events)
    assert all(0 <= e.step - e.onset_step <= 10 for e in events)
    down, up = events
    assert down.evidence["level_before"] == pytest.approx(3.0, rel=0.01)
    assert down.evidence["level_after"] == pytest.approx(2.0, rel=0.03)
    assert down.evidence["shift"] == pytest.approx(2 / 3, rel=0.03) and "better" in down.message
    assert up.evidence["shift"] == pytest.approx(1.3, rel=0.03) and "worse" in up.message
    ev = down.evidence
    assert ev["probability"] >= ev["threshold"] == 0.9 and ev["hazard"] == 1e-3 and ev["min_shift"] == 1.1
    assert ev["observations_before"] == pytest.approx(400, abs=2) and ev["segment_start"] == 0
    assert ev["block"] == 1 and ev["metric"] == "train/loss" and up.evidence["segment_start"] == down.onset_step
    assert ev["value"] == x[down.step]


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
def test_quiet_on_stationary_noise_of_any_scale(scale):
    rng = np.random.default_rng(int(np.log10(scale)) + 20)
    for noise in (0.001, 0.05):
        assert replay(scale * 2.0 * np.exp(noise * rng.standard_normal(3000))) == []


def test_outliers_are_not_changes_of_level():
    rng = np.random.default_rng(1)
    x = 2.0 * np.exp(0.02 * rng.standard_normal(2000))
    x[rng.choice(np.arange(100, 2000), 15, replace=False)] *= 3.0  # single-step spikes
    assert replay(x) == []


def test_small_shifts_are_left_out_by_min_shift_but_found_without_it():
    x = levels([500, 500], [2.0, 1.9], noise=0.005, seed=3)  # 5%: many noise SDs, below min_shift=1.1
    assert replay(x) == []
    found = replay(x, ChangePointDetector(min_shift=1.0))
    assert [e.onset_step for e in found] == pytest.approx([500], abs=2)


def test_steps_and_blocks_locate_the_change():
    x = levels([300, 300], [5.0, 3.0], seed=4)
    steps = np.arange(600) * 10
    events = replay(x, ChangePointDetector(block=4), steps=steps)
    assert len(events) == 1 and events[0].onset_step in (2960, 3000, 3040)
    assert events[0].evidence["block"] == 4 and events[0].step > events[0].onset_step


def test_the_automatic_block_grows_with_the_run_and_bounds_its_cost():
    x = levels([15000, 5000], [3.0, 2.0], seed=8)
    det = ChangePointDetector()
    events = [e for i, v in enumerate(x) for e in det.update(i, {"train/loss": v})]
    # 2048 observations of 1 point, 2048 of 2, 2048 of 4 (14336 points), then blocks of 8
    assert det._models["train/loss"].t == 3 * 2048 + (20000 - 14336) // 8
    assert len(events) == 1 and events[0].evidence["block"] == 8
    assert 15000 - 8 <= events[0].onset_step <= 15000 and events[0].step - events[0].onset_step <= 10 * 8


def test_scan_equals_step_by_step_and_skips_bad_values():
    x = levels([400, 400, 400], [3.0, 1.5, 2.5], seed=5)
    x[[10, 450, 900]] = [np.nan, 0.0, np.inf]
    slow = replay(x, fast=False)
    assert replay(x, fast=True) == slow and len(slow) == 2


def test_state_stays_bounded_on_a_long_run():
    det = ChangePointDetector(max_hypotheses=20)
    rng = np.random.default_rng(6)
    for i, v in enumerate(2.0 * np.exp(0.01 * rng.standard_normal(3000))):
        det.update(i, {"train/loss": v})
        if i in (500, 2999):
            model = det.state_dict()["_tracks"]["train/loss"]["model"]
            assert len(model["log_post"]) == 20 and len(model["recent"]) <= 64


def test_bad_parameters_are_refused():
    for kw in ({"min_shift": 0.9}, {"block": -1}, {"hazard": 2.0}, {"delay": 2, "min_length": 3}):
        with pytest.raises(ValueError):
            ChangePointDetector(**kw)


@pytest.mark.skipif(not DATA.exists(), reason="shared logs not found")
def test_on_a_shared_run_the_spike_episode_is_a_change_for_the_worse():
    import foreshock

    run = foreshock.read(DATA / "eos-browser" / "learning_rate__default_phase.csv.gz")
    events = Monitor([ChangePointDetector()]).replay(run)
    assert events and all(e.onset_step <= e.step for e in events)
    assert any(e.evidence["shift"] > 1.1 and e.step >= 1521 for e in events)  # the labelled spike at 1521
