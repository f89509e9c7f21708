"""NonFiniteDetector: severity by what a non-finite value means, and once per episode."""

import numpy as np
from detect_curves import run_of

from foreshock.detect import Monitor, NonFiniteDetector


def replay(series, det=None):
    return Monitor([det or NonFiniteDetector()]).replay(run_of(series))


def test_a_nan_loss_is_critical_with_the_last_finite_value():
    x = np.linspace(5, 3, 100)
    x[60:] = np.nan
    (e,) = replay({"train/loss": (np.arange(100) * 10, x)})
    assert (e.kind, e.severity, e.step, e.onset_step) == ("nan", "critical", 600, 600)
    assert e.evidence == {"metric": "train/loss", "value": "nan", "last_finite": x[59],
                          "last_finite_step": 590, "reset_after": 100}
    assert "NaN at step 600" in e.message


def test_skipped_fp16_steps_are_info_once_per_episode():
    g = np.ones(1000)
    g[[100, 130, 160]] = np.inf  # one episode: fewer than reset_after finite points apart
    g[[500, 900]] = [np.inf, -np.inf]
    events = replay({"opt/grad_norm": (np.arange(1000), g)})
    assert [(e.severity, e.step, e.evidence["value"]) for e in events] == [
        ("info", 100, "inf"), ("info", 500, "inf"), ("info", 900, "-inf")]


def test_a_metric_that_stays_non_finite_escalates_once():
    g = np.ones(300)
    g[100:200] = np.nan
    events = replay({"opt/grad_norm": (np.arange(300), g)}, NonFiniteDetector(persist=10))
    assert [(e.severity, e.step, e.onset_step) for e in events] == [("info", 100, 100), ("warning", 109, 100)]
    assert events[1].evidence["points"] == 10


def test_a_metric_never_computed_is_info_only():
    g = np.full(300, np.nan)  # e.g. an optimizer that does not report it
    events = replay({"opt/muon/update_norm": (np.arange(300), g)})
    assert [(e.severity, e.step) for e in events] == [("info", 0)]
    assert events[0].evidence["last_finite"] is None and "no finite value before" in events[0].message


def test_every_metric_is_watched_and_losses_are_told_apart():
    nan = np.full(5, np.nan)
    events = replay({"val/loss": (np.arange(5), nan), "layer/hidden/grad_norm": (np.arange(5), nan),
                     "train_loss": (np.arange(5), nan)})
    assert sorted((e.evidence["metric"], e.severity) for e in events) == [
        ("layer/hidden/grad_norm", "info"), ("train_loss", "critical"), ("val/loss", "critical")]
