"""Event messages stay one short readable sentence when the numbers explode; evidence keeps them exact."""

import re

import numpy as np
import pytest
from detect_curves import descent, run_of

from foreshock.detect import (
    DivergenceDetector,
    Monitor,
    NonFiniteDetector,
    OverfittingDetector,
    PlateauDetector,
    SpikeDetector,
)

HUGE = 7.136e37  # what a loss reaches a few steps before it overflows to inf in float32
LONG_NUMBER = re.compile(r"\d{9,}")


def spiking():
    x = descent(600, seed=1)
    x[500] = HUGE
    return {"train/loss": (np.arange(600), x)}


def diverging():
    # rises to HUGE, then comes back: the divergence and its recovery both quote the level
    x = descent(900, seed=2)
    x[400:600] = HUGE * (1 + 0.01 * np.random.default_rng(2).standard_normal(200))
    return {"train/loss": (np.arange(900), x)}


def blowing_up():
    x = descent(400, seed=3)
    x[300], x[301] = 2.279e41, np.nan
    return {"train/loss": (np.arange(400), x)}


def stalling():
    # a huge-scale loss that falls, then stops: the improvements quoted are ~1e37
    x = HUGE * descent(600, seed=4, noise=0.005)
    x[300:] = x[300] * (1 + 0.005 * np.random.default_rng(4).standard_normal(300))
    return {"train/loss": (np.arange(600), x)}


def overfitting():
    steps = np.arange(3000)
    val_steps = steps[::50]
    val = descent(len(val_steps), seed=5, tau=5, noise=0.005)
    val[30:] = HUGE
    return {"train/loss": (steps, descent(3000, seed=6)), "val/loss": (val_steps, val)}


CASES = [
    (SpikeDetector(), spiking, {"spike"}),
    (DivergenceDetector(), diverging, {"divergence", "recovery"}),
    (NonFiniteDetector(), blowing_up, {"nan"}),
    (PlateauDetector(), stalling, {"plateau"}),
    (OverfittingDetector(), overfitting, {"overfitting"}),
]


@pytest.mark.parametrize(("det", "curve", "kinds"), CASES, ids=[c[0].name for c in CASES])
def test_messages_with_enormous_values_stay_short_and_compact(det, curve, kinds):
    events = Monitor([det]).replay(run_of(curve()))
    assert kinds <= {e.kind for e in events}, [e.message for e in events]
    for e in events:
        assert len(e.message) < 200, e.message
        assert not LONG_NUMBER.search(e.message), e.message
    alarm = next(e for e in events if e.kind in kinds - {"recovery"})
    assert "e+" in alarm.message, alarm.message  # the enormous value is there, in exponent form


def test_spike_message_rounds_but_evidence_keeps_full_precision():
    (spike,) = [e for e in Monitor([SpikeDetector()]).replay(run_of(spiking())) if e.kind == "spike"]
    ev = spike.evidence
    assert ev["value"] == HUGE
    assert ev["ratio"] == HUGE / ev["median"] and ev["score"] == (HUGE - ev["median"]) / ev["scale"]
    assert f"{ev['ratio']:.3g}x its recent median" in spike.message
    assert f"{ev['score']:.3g} robust SDs" in spike.message


def test_ordinary_values_read_as_before():
    x = descent(600, seed=1)
    x[500] *= 6.0
    (spike, _) = Monitor([SpikeDetector()]).replay(run_of({"train/loss": (np.arange(600), x)}))
    ratio = spike.evidence["ratio"]
    assert 5.5 < ratio < 6.5
    assert re.search(r": \d\.\d{1,2}x its recent median \d\.\d{1,3}, \d+(\.\d)? robust SDs", spike.message), \
        spike.message
