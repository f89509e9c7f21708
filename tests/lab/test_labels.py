import csv
from pathlib import Path

import numpy as np
import pytest

import foreshock
from foreshock.lab.labels import eos_label, grokking_label, loss_label
from foreshock.run import RunBuilder

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def make_run(**series):
    """A run from ``name=(steps, values)`` pairs or ``name=values`` (steps 0..n-1)."""
    b = RunBuilder()
    for name, s in series.items():
        steps, values = s if isinstance(s, tuple) else (np.arange(len(s)), s)
        b.add_array(name.replace("__", "/"), steps, values)
    return b.build("t", source="test", format="test")


def curve(n=400, seed=0, noise=0.02):
    """A noisy decaying loss, 3 -> about 1, with multiplicative noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (1.0 + 2.0 * np.exp(-t / 60)) * np.exp(noise * rng.standard_normal(n))


def test_clean_run_is_none():
    label = loss_label(make_run(train__loss=curve()))
    assert label.event == "none" and label.onset_step is None and "400 points" in label.rule


def test_spike_with_recovery_at_a_known_step():
    loss = curve()
    loss[250:253] *= 2.2
    label = loss_label(make_run(train__loss=loss))
    assert (label.event, label.onset_step) == ("spike", 250)
    assert "step 250" in label.rule and "back under 1.5x at step 253" in label.rule


def test_spike_needs_window_points_of_history():
    loss = curve()
    loss[30] *= 3  # a warm-up blip: fewer than 50 points before it
    assert loss_label(make_run(train__loss=loss)).event == "none"
    assert loss_label(make_run(train__loss=loss), window=20).onset_step == 30


def test_divergence_at_a_known_step():
    loss = curve()
    loss[300:] = loss[300:] * np.exp(np.arange(100) / 20)  # up from step 300, never back
    label = loss_label(make_run(train__loss=loss))
    assert label.event == "divergence"
    # the rise needs a few steps to pass 1.5x the best: onset is the first step past it, not before
    expected = 300 + int(np.argmax(loss[300:] >= 1.5 * np.median(loss[295:300])))
    assert abs(label.onset_step - expected) <= 2
    assert "to the end" in label.rule


def test_spike_that_never_recovers_is_a_divergence_not_a_spike():
    loss = curve()
    loss[350:] *= 3
    assert (loss_label(make_run(train__loss=loss)).event, loss_label(make_run(train__loss=loss)).onset_step) == (
        "divergence", 350)


def test_one_lucky_batch_does_not_make_the_rest_a_divergence():
    loss = curve()
    loss[200] = 0.3  # a batch far easier than the rest: a new "best" three times lower
    assert loss_label(make_run(train__loss=loss)).event == "none"


def test_tiny_rise_of_a_converged_loss_is_not_a_divergence():
    loss = np.concatenate([np.geomspace(4.0, 1e-7, 300), np.full(100, 1e-6)])  # x10, but 0.00002% of 4
    assert loss_label(make_run(train__loss=loss)).event == "none"


def test_nan_at_a_known_step_and_the_divergence_before_it():
    loss = curve()
    loss[300:340] = loss[300:340] * np.exp(np.arange(40) / 4)
    loss[340:] = np.nan
    label = loss_label(make_run(train__loss=loss))
    assert (label.event, label.onset_step) == ("nan", 340)
    assert "60 of 400" in label.rule and "diverged from step" in label.rule
    inf = curve()
    inf[123] = np.inf
    assert loss_label(make_run(train__loss=inf)).onset_step == 123


def test_edge_cases_all_nan_too_short_missing():
    assert loss_label(make_run(train__loss=(np.array([5, 6, 7]), np.full(3, np.nan)))).onset_step == 5
    short = loss_label(make_run(train__loss=np.array([2.0])))
    assert short.event == "none" and "too short" in short.rule
    assert loss_label(make_run(train__loss=curve(30))).event == "none"
    with pytest.raises(ValueError, match="train/loss"):
        loss_label(make_run(val__loss=curve()))


def grok_run(n=3000, every=50, fit_at=200, rise_from=1480, grok_at=2000, final=0.99):
    """Train acc saturates at ``fit_at``; val acc sits at chance, rises linearly from ``rise_from``
    and passes 0.9 at ``grok_at``."""
    steps = np.arange(0, n, every)
    train_acc = np.where(steps >= fit_at, 1.0, steps / fit_at * 0.9)
    slope = (0.9 - 0.01) / (grok_at - rise_from)
    val_acc = np.clip(0.01 + slope * (steps - rise_from), 0.01, final)
    loss = np.exp(-steps / 300.0) + 1e-3
    return make_run(train__loss=(steps, loss), train__acc=(steps, train_acc), val__acc=(steps, val_acc))


def test_grokking_onset_is_the_start_of_the_rise():
    label = grokking_label(grok_run())
    assert label.event == "grokking"
    # rise threshold 0.01 + 0.1 * 0.89 = 0.099; val/acc is 0.044 at step 1500, 0.130 at 1550
    assert label.onset_step == 1550
    assert "val/acc>=0.9@2000" in label.rule and "train/acc>=0.99@200" in label.rule


def test_generalising_with_training_is_not_grokking():
    together = grokking_label(grok_run(fit_at=1000, rise_from=1000, grok_at=1500))  # 1500 < 2 * 1000
    assert together.event == "none" and "not after 2x" in together.rule
    never = grokking_label(grok_run(final=0.6))
    assert never.event == "none" and "never" in never.rule


def test_grokking_run_whose_loss_diverges_is_a_divergence():
    run = grok_run()
    steps, loss = run.series("train/loss")
    loss = loss.copy()
    loss[-10:] = 5.0
    run.metrics["train/loss"] = type(run["train/loss"])(steps, loss)
    assert grokking_label(run).event == "divergence"


def eos_run(lr=0.02, n=600, probe_every=20, cross_at=300, nan_at=None):
    """Sharpness rising linearly to 2/lr at ``cross_at`` and staying there (progressive sharpening)."""
    steps = np.arange(n)
    loss = curve(n, noise=0.005)
    if nan_at is not None:
        loss[nan_at:] = np.nan
    probes = np.arange(0, n, probe_every)
    lam = np.minimum(probes / cross_at, 1.0) * (2.0 / lr) * 1.02
    return make_run(train__loss=(steps, loss), opt__lr=(steps, np.full(n, lr)),
                    probe__hessian__lambda_max=(probes, lam))


def test_eos_at_the_known_crossing():
    label = eos_label(eos_run())
    assert label.event == "edge_of_stability"
    # lambda * lr / 2 = 1.02 * step / 300 >= 0.9 from step 264.7: the first probe at or after is 280
    assert label.onset_step == 280
    assert "3 consecutive probes from step 280" in label.rule


def test_eos_needs_k_consecutive_probes():
    run = eos_run()
    probes, lam = run.series("probe/hessian/lambda_max")
    lam = np.where(probes > 300, 1.0, lam)  # at the edge for two probes (280, 300), then far below it
    run.metrics["probe/hessian/lambda_max"] = type(run["probe/hessian/lambda_max"])(probes, lam)
    assert eos_label(run).event == "none"
    assert eos_label(run, probes=2).onset_step == 280


def test_eos_lr_from_config_and_blow_up_first():
    run = eos_run()
    del run.metrics["opt/lr"]
    assert eos_label(run, {"lr": 0.02}).onset_step == 280
    assert eos_label(run).event == "none"  # no learning rate: no edge to measure against
    assert eos_label(eos_run(nan_at=400)).event == "nan"


@pytest.mark.skipif(not (SHARED / "LABELS.csv").is_file(), reason="shared training logs not present")
def test_loss_labels_agree_with_the_shared_labels():
    rows = {r["run_file"]: r for r in csv.DictReader(open(SHARED / "LABELS.csv"))}
    cases = {  # run file -> the label our rule gives; each agrees with LABELS.csv on the event
        "learning_rate__unstable_phase.csv": ("divergence", 155),
        "learning_rate__default_phase.csv": ("spike", 1520),  # shared: 1521
        "depth__toydim_no_eos_depth1.csv": ("none", None),
    }
    for name, (event, step) in cases.items():
        run = foreshock.read(SHARED / "eos-browser" / f"{name}.gz")
        label = loss_label(run)
        assert (label.event, label.onset_step) == (event, step), (name, label.rule)
        assert rows[name]["event"] == event
    grok = foreshock.read(SHARED / "muon-grokking" / "seedstudy_adamw_stable_seed_0.csv.gz")
    assert rows["seedstudy_adamw_stable_seed_0.csv"]["event"] == "grokking"
    label = grokking_label(grok)
    assert label.event == "grokking" and label.onset_step < int(rows["seedstudy_adamw_stable_seed_0.csv"]["event_step"])
    collapse = foreshock.read(SHARED / "muon-grokking" / "seedstudy_adamw_unstable_seed_0.csv.gz")
    assert (grokking_label(collapse).event, grokking_label(collapse).onset_step) == ("divergence", 4100)
