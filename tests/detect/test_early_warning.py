"""EarlyWarningDetector: fires on growing fluctuations before a break, quiet on healthy descents, says why."""

import numpy as np
import pytest
from detect_curves import DATA, descent, run_of

from foreshock.detect import Monitor
from foreshock.detect.early_warning import EarlyWarningDetector


def replay(x, det=None, metric="train/loss", fast=True):
    return Monitor([det or EarlyWarningDetector()]).replay(run_of({metric: (np.arange(len(x)), x)}), fast=fast)


def destabilising(n=3000, onset=1500, seed=0):
    """A healthy descent whose relative fluctuations start growing at ``onset``, until it breaks at ``n``."""
    rng = np.random.default_rng(seed)
    noise = np.full(n, 0.01)
    noise[onset:] = 0.01 * np.exp(np.linspace(0.0, 4.0, n - onset))  # 55x by the end
    return descent(n, seed=seed, noise=0.0) * np.exp(noise * rng.standard_normal(n))


@pytest.mark.parametrize("seed", range(4))
def test_warns_while_fluctuations_grow_before_the_break(seed):
    x = destabilising(seed=seed)
    events = replay(x)
    assert [e.kind for e in events] == ["early_warning"]  # one event per episode
    e = events[0]
    assert 1500 < e.step < 3000 and e.severity == "info"  # positive lead on the break at step 3000
    assert 1000 <= e.onset_step <= e.step
    ev = e.evidence
    assert ev["tau_variance"] >= ev["threshold"] == 0.8
    assert ev["variance_ratio"] >= ev["min_ratio"] == 3.0
    assert ev["window"] == 100 and ev["stride"] == 10 and ev["history"] == 20 and ev["bandwidth"] == 20.0
    assert ev["metric"] == "train/loss" and ev["value"] == x[e.step] and ev["scale"] == "log"
    assert {"variance", "ac1", "skew", "tau_ac1", "tau_skew"} <= set(ev)
    assert str(round(ev["variance_ratio"], 1))[:2] in e.message or f"{ev['variance_ratio']:.3g}" in e.message


@pytest.mark.parametrize("seed", range(6))
def test_quiet_on_healthy_noisy_descents_of_any_scale(seed):
    rng = np.random.default_rng(seed)
    x = descent(4000, seed=seed, noise=0.03) * np.exp(0.01 * rng.standard_t(4, 4000))
    assert replay(x * 10.0 ** rng.uniform(-6, 6)) == []


def test_scale_and_level_do_not_matter_on_the_log_scale():
    x = destabilising(seed=7)
    a, b = replay(x), replay(x * 1e-5)
    assert [(e.step, e.onset_step) for e in a] == [(e.step, e.onset_step) for e in b] and a


def test_the_first_descent_is_not_judged():
    # relative fluctuations grow while a loss falls fast from its initial value: not instability
    rng = np.random.default_rng(3)
    n = 600
    x = 10.0 * np.exp(-np.arange(n) / 80) + 0.01
    x = x * np.exp(0.002 * np.exp(np.arange(n) / 120) * rng.standard_normal(n))
    assert replay(x, EarlyWarningDetector(min_points=0))[0].step < 450
    assert all(e.step >= 499 for e in replay(x))  # default min_points=500: the first 500 points are not judged


def test_severity_and_other_metrics_can_be_chosen():
    x = destabilising(seed=1)
    det = EarlyWarningDetector(metrics=("opt/grad_norm",), severity="warning")
    events = replay(x, det, metric="opt/grad_norm")
    assert [(e.kind, e.severity, e.evidence["metric"]) for e in events] == [
        ("early_warning", "warning", "opt/grad_norm")]


def test_scan_equals_step_by_step_and_skips_bad_values():
    x = destabilising(seed=2)
    x[[100, 2000, 2500]] = [np.nan, -1.0, np.inf]
    assert replay(x, fast=True) == replay(x, fast=False) != []


def test_bad_parameters_are_refused():
    for kw in ({"window": 2}, {"history": 2}, {"stride": 0}, {"bandwidth": 0.0}, {"threshold": 1.5},
               {"min_ratio": 0.5}, {"severity": "loud"}):
        with pytest.raises(ValueError):
            EarlyWarningDetector(**kw)


@pytest.mark.skipif(not DATA.exists(), reason="shared logs not found")
def test_on_the_shared_runs_the_labelled_eos_spike_is_warned_before_and_healthy_runs_stay_quiet():
    import foreshock

    spike = foreshock.read(DATA / "eos-browser" / "learning_rate__default_phase.csv.gz")
    first = Monitor([EarlyWarningDetector()]).replay(spike)[0]
    assert first.step < 1521  # the labelled spike step: a positive lead
    for name in ("depth__toydim_no_eos_depth1", "width__cheby_default"):
        assert Monitor([EarlyWarningDetector()]).replay(foreshock.read(DATA / "eos-browser" / f"{name}.csv.gz")) == []
