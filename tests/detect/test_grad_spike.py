"""Gradient-norm spikes (SPAM) and update-ratio excursions: what fires, when, with what evidence."""

import doctest
import importlib

import numpy as np
import pytest
from detect_curves import DATA, run_of

from foreshock.detect import Monitor
from foreshock.detect.grad_spike import GradSpikeDetector, UpdateRatioDetector


def norms(n=2000, seed=0, scale=1.0):
    """A gradient norm that settles from 3 to 1 with lognormal noise (about 20% per step)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return scale * (1.0 + 2.0 * np.exp(-t / 200)) * np.exp(0.2 * rng.standard_normal(n))


def replay(series, det=None, fast=True):
    run = run_of({k: (np.arange(len(v)), v) for k, v in series.items()})
    return Monitor([det or GradSpikeDetector()]).replay(run, fast=fast)


def live(series, det):
    names = sorted(series)
    return [e for i in range(len(series[names[0]])) for e in det.update(i, {k: series[k][i] for k in names})]


def test_a_planted_spike_fires_once_at_its_step_with_its_evidence_then_recovers():
    g = norms()
    g[1200] *= 8.0
    g[1500:1503] *= 10.0
    events = replay({"opt/grad_norm": g})
    assert [(e.kind, e.step) for e in events] == [("grad_spike", 1200), ("recovery", 1201),
                                                  ("grad_spike", 1500), ("recovery", 1503)]
    ev = events[0].evidence
    assert events[0].severity == "info" and events[0].onset_step == 1200
    assert ev["value"] == g[1200] and ev["ratio_sq"] > ev["theta"] == 25.0
    assert ev["rms"] == pytest.approx(np.sqrt(np.mean(g[1000:1200] ** 2)), rel=0.15)
    assert ev["ratio"] == pytest.approx(ev["value"] / ev["rms"])
    assert events[3].evidence["points_outside"] == 3 and events[3].evidence["peak"] == g[1500:1503].max()


@pytest.mark.parametrize("seed", range(6))
def test_quiet_on_noisy_norms_and_on_the_early_fall(seed):
    assert replay({"opt/grad_norm": norms(seed=seed)}) == []


def test_scale_free_the_same_events_at_any_scale():
    g = norms(seed=3)
    g[[700, 1100, 1600]] *= [6.0, 12.0, 30.0]
    base = [(e.kind, e.step) for e in replay({"opt/grad_norm": g})]
    assert len(base) == 6
    for scale in (1e-6, 1e3):
        assert [(e.kind, e.step) for e in replay({"opt/grad_norm": g * scale})] == base


def test_a_huge_spike_does_not_hide_the_next_one():
    # SPAM clips the spike before it enters the average: the 100x spike does not lift it 100-fold
    g = norms(seed=4)
    g[1000] *= 100.0
    g[1010] *= 8.0
    assert [e.step for e in replay({"opt/grad_norm": g}) if e.kind == "grad_spike"] == [1000, 1010]


def test_a_lasting_rise_fires_once_then_becomes_the_normal_level():
    g = norms(seed=5)
    g[1000:] *= 10.0
    events = replay({"opt/grad_norm": g})
    assert events[0].kind == "grad_spike" and events[0].step == 1000
    assert [e.kind for e in events[1:]] == ["recovery"] and events[1].step < 1030


def test_every_layer_on_its_own_and_only_the_names_that_match():
    g = {f"layer/h.{i}/grad_norm": norms(seed=10 + i) for i in range(3)}
    g["layer/h.1/grad_norm"][900] *= 9.0
    g["layer/h.1/param_norm"] = norms(seed=20) * np.where(np.arange(2000) == 800, 50.0, 1.0)
    g["opt/grad_norm"] = norms(seed=21)
    events = replay(g)
    assert [(e.step, e.metric) for e in events if e.kind == "grad_spike"] == [(900, "layer/h.1/grad_norm")]


def test_live_updates_and_the_vectorised_replay_agree_across_layers_with_gaps():
    rng = np.random.default_rng(6)
    g = {f"layer/{k}/grad_norm": norms(seed=30 + i) * np.where(rng.random(2000) < 0.01, 20.0, 1.0)
         for i, k in enumerate(("b", "a", "c"))}
    g["layer/a/grad_norm"][rng.random(2000) < 0.02] = np.nan
    events = replay(g)
    assert len(events) > 20
    assert live(g, GradSpikeDetector()) == events == replay(g, fast=False)


def test_update_ratio_excursions_against_the_trailing_median():
    rng = np.random.default_rng(7)
    r = 1e-3 * np.exp(0.1 * rng.standard_normal(600))
    r[300] *= 8.0
    r[400] *= 3.0  # three times the typical ratio: under the default factor of 5
    det = UpdateRatioDetector()
    events = replay({"opt/update_ratio": r, "layer/h.0/update_ratio": r[::-1].copy()}, det)
    assert [(e.kind, e.step, e.metric) for e in events] == [
        ("update_excursion", 299, "layer/h.0/update_ratio"), ("recovery", 300, "layer/h.0/update_ratio"),
        ("update_excursion", 300, "opt/update_ratio"), ("recovery", 301, "opt/update_ratio")]
    ev = events[2].evidence
    assert ev["ratio"] == pytest.approx(8.0, rel=0.3) and ev["factor"] == 5.0
    assert ev["median"] == pytest.approx(np.median(r[249:300]), rel=0.05) and ev["window"] == 51
    assert live({"opt/update_ratio": r}, UpdateRatioDetector()) == [e for e in events if e.metric == "opt/update_ratio"]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        GradSpikeDetector(theta=1.0)
    with pytest.raises(ValueError):
        GradSpikeDetector(patterns=())
    with pytest.raises(ValueError):
        UpdateRatioDetector(min_periods=60, window=51)


@pytest.mark.skipif(not DATA.exists(), reason="shared logs not found")
def test_on_the_shared_divergences_grad_spikes_come_before_the_labelled_step():
    # the muon-grokking AdamW runs that diverge: the per-layer gradient norms spike long before
    import foreshock

    for name, event_step in (("depth_sweep_v2_depth_4_adamw_seed_0", 30500),
                             ("adamw_sweep_lr_1em2_wd_0p1_seed_0", 94800)):
        run = foreshock.read(DATA / "muon-grokking" / f"{name}.csv.gz")
        first = [e for e in Monitor([GradSpikeDetector()]).replay(run) if e.kind == "grad_spike"][0]
        assert first.step < event_step and first.metric.endswith("grad_norm")


@pytest.mark.parametrize("name", ["foreshock.detect.grad_spike", "foreshock.series.moment"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
