"""DivergenceDetector: a divergence that ends is followed by one info ``recovery``; one that does not, by none."""

import numpy as np
import pytest
from detect_curves import descent, run_of

import foreshock
from foreshock.detect import DivergenceDetector, Monitor
from foreshock.lab.sample import sample_path


def replay(series, det=None, fast=True):
    return Monitor([det or DivergenceDetector()]).replay(run_of(series), fast=fast)


def train(x, steps=None):
    return {"train/loss": (np.arange(len(x)) if steps is None else steps, x)}


def lower_median_at(x, i, window):
    """The level at point ``i``: the lower median of the last ``window`` points, computed directly."""
    last = np.sort(x[max(0, i - window + 1):i + 1])
    return float(last[(len(last) - 1) // 2])


def test_a_rise_that_recovers_fires_divergence_then_one_info_recovery():
    det = DivergenceDetector()
    x = descent(3000, seed=7)
    x[1000:1400] *= 3.0
    diverged, recovered = replay(train(x))
    assert diverged.kind == "divergence" and diverged.severity == "critical"
    assert recovered.detector == "divergence" and recovered.kind == "recovery" and recovered.severity == "info"
    # the level (median of 31) comes down once 16 of its points are back low, at 1415; the
    # episode ends after ``patience`` points that do not count
    assert recovered.step == 1400 + det.window // 2 + det.patience - 1 == 1424
    assert recovered.onset_step == diverged.onset_step == 1015
    ev = recovered.evidence
    assert ev["metric"] == "train/loss"
    assert ev["divergence_step"] == diverged.step == 1024
    assert ev["steps"] == recovered.step - diverged.onset_step == 409
    assert ev["patience"] == det.patience
    assert ev["level"] == lower_median_at(x, 1424, det.window)  # full precision, not the rounded text
    levels = [lower_median_at(x, i, det.window) for i in range(det.min_periods - 1, 1425)]
    assert ev["best"] == min(levels) and ev["best"] <= diverged.evidence["best"]
    assert ev["level"] < diverged.evidence["level"] / 2
    msg = recovered.message
    assert msg.startswith("train/loss has recovered at step 1424") and msg.endswith(".")
    assert "409 steps after the divergence that began at step 1015" in msg
    assert f"{ev['level']:.4g}" in msg


@pytest.mark.parametrize("after", [3.0, 1.8])
def test_a_rise_that_does_not_recover_reports_no_recovery(after):
    # 3.0: the loss stays up; 1.8: it comes partly down, still far above its best
    x = descent(3000, seed=7)
    x[1000:1400] *= 3.0
    x[1400:] *= after
    events = replay(train(x))
    assert [(e.kind, e.step) for e in events] == [("divergence", 1024)]


def test_recovery_waits_for_patience_calm_points_and_counts_finite_points_only():
    det = DivergenceDetector(window=5, min_periods=3, patience=4)
    x = descent(600, seed=8, noise=0.01)
    x[300:400] *= 3.0
    x[403] = np.nan  # non-finite points are skipped: they neither count nor calm
    events = replay(train(x), det)
    assert [e.kind for e in events] == ["divergence", "recovery"]
    # the level (median of 5) is low again from point 402; the 4th finite calm point is 406
    assert events[1].step == 406
    assert replay(train(x[:406]), det.clone()) == events[:1]  # one calm point short: still diverging


def test_the_sample_run_reports_recovery_from_its_warm_up_divergence():
    events = foreshock.analyze(sample_path()).events
    div = [e for e in events if e.detector == "divergence"]
    assert [e.kind for e in div] == ["divergence", "recovery", "divergence"]
    first, recovered, _ = div
    assert first.step == 125 and first.step < recovered.step < 400
    assert recovered.evidence["divergence_step"] == first.step
    assert recovered.evidence["steps"] == recovered.step - first.onset_step


def humps(seed):
    """A seeded curve with several rises, some that recover and one that may last to the end."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(800, 2500))
    x = descent(n, seed, noise=rng.uniform(0.005, 0.05))
    for _ in range(int(rng.integers(1, 5))):
        a = int(rng.integers(50, n - 20))
        x[a:a + int(rng.integers(5, 300))] *= rng.uniform(1.5, 5.0)
    x[rng.random(n) < 0.01] = rng.choice([np.nan, np.inf, -np.inf])
    gaps = rng.integers(1, 4, n) if rng.random() < 0.5 else np.ones(n, dtype=np.int64)
    return np.cumsum(gaps), x


@pytest.mark.parametrize("det", [DivergenceDetector(),
                                 DivergenceDetector(window=7, min_periods=3, patience=3, min_rise=0.1),
                                 DivergenceDetector(window=11, min_periods=11, patience=1)],
                         ids=repr)
def test_scan_and_step_by_step_give_the_same_recoveries_and_state(det):
    recoveries = 0
    for seed in range(30):
        steps, x = humps(seed)
        series = train(x, steps) if seed % 3 else {"val/loss": (steps, x)}
        fast, slow = Monitor([det.clone()]), Monitor([det.clone()])
        got = fast.replay(run_of(series), fast=True)
        assert got == slow.replay(run_of(series), fast=False), seed
        assert fast.state_dict() == slow.state_dict(), seed
        recoveries += sum(e.kind == "recovery" for e in got)
        # the series cut so that it ends on the recovery point: the episode ends on the last point
        for e in got:
            if e.kind == "recovery":
                cut = int(np.searchsorted(steps, e.step)) + 1
                part = {k: (s[:cut], v[:cut]) for k, (s, v) in series.items()}
                a, b = Monitor([det.clone()]), Monitor([det.clone()])
                assert a.replay(run_of(part), fast=True) == b.replay(run_of(part), fast=False)
                assert a.state_dict() == b.state_dict()
                break
    assert recoveries >= 10, "the curves must recover often, or the comparison proves little"
