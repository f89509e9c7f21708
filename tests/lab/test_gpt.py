import math
import sysconfig

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import foreshock  # noqa: E402
from foreshock.lab import base  # noqa: E402
from foreshock.lab.corpus import CorpusError, _read, corpus_bytes, source_files, train_val_split  # noqa: E402
from foreshock.lab.gpt import GPT, WORKLOAD, fit, lm_loss, lr_table  # noqa: E402

TINY = {"depth": 1, "width": 32, "heads": 2, "seq_len": 16, "batch": 4, "steps": 30, "eval_every": 10,
        "corpus_bytes": 200_000, "lr": 1e-2, "warmup": 0, "device": "cpu"}


def test_corpus_is_the_stdlib_sources_in_a_fixed_order():
    files = source_files()
    rel = [f.relative_to(sysconfig.get_paths()["stdlib"]).as_posix() for f in files]
    assert rel == sorted(rel) and len(rel) > 100
    assert not any(part in ("test", "tests", "site-packages") for r in rel for part in r.split("/"))
    data = corpus_bytes(100_000)
    assert data.dtype == np.uint8 and len(data) == 100_000
    assert corpus_bytes(100_000) is data  # cached
    _read.cache_clear()
    assert np.array_equal(corpus_bytes(100_000), data)  # read again from disk: the same bytes
    assert bytes(data[:1000]) == files[0].read_bytes()[:1000]
    train, val = train_val_split(data, 0.1)
    assert len(train) == 90_000 and len(val) == 10_000
    assert np.array_equal(np.concatenate([train, val]), data)


def test_corpus_names_the_directory_when_the_sources_are_missing(tmp_path):
    with pytest.raises(CorpusError, match=str(tmp_path)):
        corpus_bytes(1000, root=tmp_path)
    with pytest.raises(CorpusError, match="nowhere"):
        corpus_bytes(1000, root=tmp_path / "nowhere")


def test_model_shapes_and_causality():
    torch.manual_seed(0)
    model = GPT(depth=2, width=32, heads=4, seq_len=16)
    idx = torch.randint(0, 256, (3, 16))
    logits = model(idx)
    assert logits.shape == (3, 16, 256)
    changed = idx.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 256  # a future token for positions 0..9
    again = model(changed)
    assert torch.allclose(logits[:, :10], again[:, :10], atol=1e-6)
    assert not torch.allclose(logits[:, 10:], again[:, 10:])
    with pytest.raises(ValueError, match="longer"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_qk_norm_normalises_each_heads_q_and_k():
    torch.manual_seed(0)
    model = GPT(depth=1, width=32, heads=4, seq_len=8, qk_norm=True)
    c_attn = model.blocks[0].attn.c_attn
    with torch.no_grad():
        c_attn.weight.mul_(50.0)  # raw q and k far from unit scale
        qkv = c_attn(torch.randn(2, 8, 32))
    q, k, v = qkv.split(32, dim=-1)
    for z in (q, k):
        heads = z.reshape(2, 8, 4, 8)
        assert torch.allclose(heads.mean(-1), torch.zeros(2, 8, 4), atol=1e-4)
        assert torch.allclose(heads.pow(2).mean(-1), torch.ones(2, 8, 4), atol=1e-3)  # unit variance
    assert v.abs().max() > 10  # v is left as projected
    plain = GPT(depth=1, width=32, heads=4, seq_len=8, qk_norm=False).blocks[0].attn.c_attn
    assert plain.q_norm is None and type(plain(torch.randn(1, 2, 32))) is torch.Tensor


def test_z_loss_is_the_mean_squared_logsumexp():
    logits = torch.tensor([[[0.0, math.log(3.0)], [2.0, 2.0]]])  # lse: log 4, 2 + log 2
    targets = torch.tensor([[1, 0]])
    ce, objective = lm_loss(logits, targets, z_loss=0.5)
    want_ce = (-(math.log(3.0) - math.log(4.0)) - (2.0 - (2.0 + math.log(2.0)))) / 2
    want_z = 0.5 * (math.log(4.0) ** 2 + (2.0 + math.log(2.0)) ** 2) / 2
    assert ce.item() == pytest.approx(want_ce, rel=1e-6)
    assert objective.item() == pytest.approx(want_ce + want_z, rel=1e-6)
    assert lm_loss(logits, targets)[1].item() == pytest.approx(want_ce, rel=1e-6)


def test_schedules_follow_the_knobs():
    config = WORKLOAD.config("cpu", {"lr": 0.1, "warmup": 10, "steps": 100, "schedule": "cosine"})
    lrs = lr_table(config)
    assert len(lrs) == 100 and lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert lrs[-1] == pytest.approx(0.01, rel=0.01)
    wsd = lr_table({**config, "schedule": "wsd"})
    assert wsd[80] == pytest.approx(0.1) and wsd[-1] < 0.01  # linear decay over the last 18 steps
    with pytest.raises(ValueError, match="schedule"):
        lr_table({**config, "schedule": "linear"})


def test_workload_is_registered_with_presets():
    assert base.get("gpt-instability") is WORKLOAD
    gpu = WORKLOAD.config("gpu")
    assert (gpu["depth"], gpu["width"], gpu["heads"]) == (12, 768, 12) and 256 <= gpu["seq_len"] <= 1024
    with pytest.raises(ValueError, match="unknown knob"):
        WORKLOAD.config("cpu", {"learning_rate": 1.0})


def test_tiny_run_is_watched_and_stored_with_attention_precursors(tmp_path):
    torch.set_num_threads(1)
    db = tmp_path / "runs.db"
    config = WORKLOAD.config("cpu", {**TINY, "qk_norm": True, "z_loss": 1e-4})
    monitors = []
    result = fit(config, lambda model, opt: monitors.append(
        foreshock.watch(model, opt, run="tiny", store=db, console=False, flush_every=7)) or monitors[0])
    monitors[0].close()  # train leaves closing to its caller
    assert result.stopped == "finished" and result.steps_run == 30
    assert result.losses[0] == pytest.approx(math.log(256), abs=0.1)
    assert result.min_loss < result.losses[0] - 0.5  # it learns
    run = foreshock.read(db, run="tiny")
    steps, loss = run.series("train/loss")
    assert list(steps) == list(range(30)) and np.allclose(loss, result.losses, rtol=1e-6)
    assert list(run["val/loss"].steps) == [0, 10, 20, 29]
    assert "attn/blocks.0/logit_max" in run.names and "out/lse_mean" in run.names
    _, attn = run.series("attn/blocks.0/logit_max")
    # with qk_norm the hook sees the normed q and k: logits bounded by the LayerNorm gains
    assert np.all(np.isfinite(attn)) and attn.max() < 4 * math.sqrt(16)


def test_a_run_that_blows_up_stops_and_records_it():
    torch.set_num_threads(1)
    config = WORKLOAD.config("cpu", {**TINY, "lr": 30.0, "steps": 200, "patience": 20})
    seen = []

    class Recorder:
        def step(self, step, loss=None, **metrics):
            seen.append((step, float(loss)))

    result = fit(config, lambda model, opt: Recorder())
    assert result.diverged and result.steps_run < 200
    assert [x for _, x in seen] == pytest.approx(result.losses, nan_ok=True)
    bad = [x for x in result.losses[-20:] if not x <= math.log(256)]
    assert len(bad) == 20 or not math.isfinite(result.losses[-1])
