"""Attention-logit growth and output-logit drift: large, sustained growth over the run's own early level."""

import doctest
import importlib

import numpy as np
import pytest
from detect_curves import run_of

from foreshock.detect import Monitor
from foreshock.detect.logit_growth import LogitGrowthDetector, OutputDriftDetector


def logits(n=1500, seed=0, level=8.0, noise=0.3):
    """An attention max-logit that rises from 2 to ``level`` in the first 100 steps, then wanders.

    The noise is lognormal and heavy (``noise`` = 0.3 is about 35% per point): the maximum is taken
    on a sample of query positions of one sequence, so it jumps from step to step.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (2.0 + (level - 2.0) * (1 - np.exp(-t / 30))) * np.exp(noise * rng.standard_normal(n))


def grow(x, start, rate):
    """``x`` multiplied by ``exp(rate * (t - start))`` from ``start`` on: exponential growth."""
    y = x.copy()
    y[start:] *= np.exp(rate * np.arange(len(x) - start))
    return y


def replay(series, det=None, fast=True):
    run = run_of({k: (np.arange(len(v)), v) for k, v in series.items()})
    return Monitor([det or LogitGrowthDetector()]).replay(run, fast=fast)


def live(series, det):
    names = sorted(series)
    return [e for i in range(len(series[names[0]])) for e in det.update(i, {k: series[k][i] for k in names})]


def test_exponential_growth_fires_once_while_rising_with_its_evidence():
    x = grow(logits(seed=1), 800, 0.03)  # x1.35 every 10 steps from step 800
    events = replay({"attn/h.1/logit_max": x})
    assert [e.kind for e in events] == ["logit_growth"]
    e = events[0]
    # the level (a 10-point median) is 4x its early level about 45 steps in, then 10 more points
    assert 830 < e.step < 900 and e.onset_step == e.step - 9
    ev = e.evidence
    assert ev["layer"] == "h.1" and ev["metric"] == "attn/h.1/logit_max" and e.severity == "info"
    clean = logits(seed=1, noise=0.0)
    assert ev["baseline"] == pytest.approx(np.median(clean[20:70]), rel=0.15) and ev["ratio"] >= ev["min_ratio"] == 4.0
    assert ev["growth"] >= ev["min_growth"] == 1.25 and ev["slope"] == pytest.approx(30.0, rel=0.3)
    assert ev["value"] == x[e.step] and ev["points"] == ev["patience"] == 10


@pytest.mark.parametrize("seed", range(6))
def test_quiet_on_noisy_logits_and_on_slow_healthy_growth(seed):
    x = logits(seed=seed, noise=0.5)
    slow = x * np.linspace(1.0, 2.0, len(x))  # doubles over the run: ordinary learning
    assert replay({"attn/h.0/logit_max": x, "attn/h.1/logit_max": slow}) == []


def test_growth_that_has_stopped_is_not_reported():
    # the same rise as a growing run, but it stopped 100 steps before the threshold was crossed
    x = logits(seed=2)
    y = x.copy()
    y[600:] *= np.minimum(np.exp(0.01 * np.arange(900)), 3.5)
    assert replay({"attn/h.0/logit_max": y}) == []


def test_only_the_growing_layer_fires_and_other_names_are_ignored():
    series = {f"attn/h.{i}/logit_max": logits(seed=10 + i) for i in range(3)}
    series["attn/h.2/logit_max"] = grow(series["attn/h.2/logit_max"], 700, 0.03)
    series["act/h.2/rms"] = grow(logits(seed=20), 700, 0.03)
    series["out/logit_max"] = grow(logits(seed=21), 700, 0.03)
    events = replay(series)
    assert [(e.kind, e.metric) for e in events] == [("logit_growth", "attn/h.2/logit_max")]


def test_a_recovery_rearms_the_detector():
    x = logits(seed=3)
    y = grow(x, 500, 0.03)
    y[700:] = x[700:]  # back to its level after 200 steps of growth; then it grows again
    y[1100:] = grow(x, 1100, 0.03)[1100:]
    events = replay({"attn/h.0/logit_max": y})
    assert [e.kind for e in events] == ["logit_growth", "recovery", "logit_growth"]
    assert events[1].evidence["ratio"] < 4.0 and events[1].evidence["growth_step"] == events[0].step
    assert 700 < events[1].step < 750 and events[2].step > 1100


def test_output_drift_of_the_log_partition_away_from_its_early_level():
    rng = np.random.default_rng(4)
    lse = 5.5 * np.exp(0.05 * rng.standard_normal(1500))  # log(256) at the start: z-loss would pull it to 0
    drifting = grow(lse, 900, 0.03)
    negative = -grow(lse, 900, 0.03)  # its magnitude is what counts
    for series in (drifting, negative):
        events = replay({"out/lse_mean": series, "out/logit_max": 3 * lse}, OutputDriftDetector())
        assert [(e.kind, e.metric) for e in events] == [("logit_drift", "out/lse_mean")]
        assert events[0].evidence["layer"] == "out" and events[0].detector == "output_drift"
    assert replay({"out/lse_mean": lse}, OutputDriftDetector()) == []


def test_logits_near_zero_at_initialisation_do_not_make_ordinary_values_look_huge():
    x = logits(seed=5, level=0.05)  # an early level of 0.05: floored at min_baseline = 1
    x[700:] = logits(seed=6, level=2.0)[700:]  # forty times the early level, three times the floor
    assert replay({"attn/h.0/logit_max": x}) == []


def test_live_updates_and_the_vectorised_replay_agree_with_gaps_and_nans():
    rng = np.random.default_rng(7)
    series = {f"attn/{k}/logit_max": grow(logits(seed=40 + i), int(rng.integers(300, 900)), 0.03)
              for i, k in enumerate(("b", "a"))}
    series["attn/a/logit_max"][rng.random(1500) < 0.05] = np.nan
    series["attn/b/logit_max"][1000:1010] = 0.0
    events = replay(series)
    assert len(events) >= 2
    assert live(series, LogitGrowthDetector()) == events == replay(series, fast=False)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        LogitGrowthDetector(min_ratio=1.0)
    with pytest.raises(ValueError):
        OutputDriftDetector(min_baseline=0.0)
    with pytest.raises(ValueError):
        LogitGrowthDetector(patterns=())


@pytest.mark.parametrize("name", ["foreshock.detect.logit_growth"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_an_explosion_in_the_first_steps_fires_as_a_burst_before_any_baseline():
    x = logits(seed=8, n=300)
    x[20:] *= np.exp(0.3 * np.minimum(np.arange(280), 40))  # x160000 between steps 20 and 60, then flat
    events = replay({"attn/h.0/logit_max": x})
    assert [e.kind for e in events] == ["logit_growth"]
    e = events[0]
    ev = e.evidence
    assert ev["rule"] == "burst" and ev["baseline"] is None and ev["ratio"] is None
    assert ev["growth"] >= ev["burst"] == 10.0 and e.onset_step == e.step - 10
    assert 30 < e.step < 50  # the baseline would only have existed from step 70
    # without the burst rule the explosion is missed: it is over by step 60, and it is its own early level
    assert replay({"attn/h.0/logit_max": x}, LogitGrowthDetector(burst=1e9)) == []



def _tiny_gpt(torch, width=64, heads=4, length=64, vocab=256, depth=2):
    nn = torch.nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn, self.c_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.n_head, self.n_embd = heads, width

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = (z.view(b, t, heads, c // heads).transpose(1, 2) for z in self.c_attn(x).split(c, 2))
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).reshape(b, t, c))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.attn, self.ln2 = nn.LayerNorm(width), Attention(), nn.LayerNorm(width)
            self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(length, width)
            self.h = nn.ModuleList([Block() for _ in range(depth)])
            self.ln_f, self.lm_head = nn.LayerNorm(width), nn.Linear(width, vocab, bias=False)

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    return GPT()


def _train(lr, steps=50, seed=0):
    """Train the tiny GPT on the bytes of a standard-library module with AdamW, no weight decay."""
    torch = pytest.importorskip("torch")
    import inspect as inspect_module

    import foreshock
    from foreshock.detect import DivergenceDetector, SpikeDetector

    torch.manual_seed(seed)
    text = open(inspect_module.getsourcefile(inspect_module), "rb").read()
    data = torch.tensor(np.frombuffer(text, dtype=np.uint8).astype(np.int64))
    model = _tiny_gpt(torch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.95))
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))
    g = torch.Generator().manual_seed(seed)
    dets = [LogitGrowthDetector(), OutputDriftDetector(), SpikeDetector(), DivergenceDetector()]
    with foreshock.watch(model, opt, store=None, console=False, detectors=dets, flush_every=10) as mon:
        for step in range(steps):
            ix = torch.randint(len(data) - 65, (16,), generator=g)
            x = torch.stack([data[i:i + 64] for i in ix])
            y = torch.stack([data[i + 1:i + 65] for i in ix])
            loss = torch.nn.functional.cross_entropy(model(x).view(-1, 256), y.view(-1))
            loss.backward()
            opt.step()
            opt.zero_grad()
            warmup.step()
            mon.step(step, loss=loss)
    return mon.events


@pytest.mark.slow
def test_attention_logits_explode_before_the_loss_of_a_tiny_gpt_at_a_too_high_learning_rate():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    events = _train(lr=1.0)
    growth = [e for e in events if e.kind == "logit_growth"]
    alarms = [e for e in events if e.detector in ("spike", "divergence") and e.severity != "info"]
    assert growth and alarms, [(e.step, e.kind) for e in events]
    assert growth[0].evidence["layer"].startswith("h.") and growth[0].step < alarms[0].step
    assert [e for e in _train(lr=1e-3) if e.detector in ("logit_growth", "output_drift")] == []
