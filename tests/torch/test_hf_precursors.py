"""Hugging Face GPT-2 and LLaMA attention logits, and block activation statistics, equal references.

The attention reference is what the model's own eager attention feeds to its softmax (the logits
after scaling and masking), captured by wrapping ``torch.nn.functional.softmax``; foreshock must
give the same numbers whether the model runs eager attention or fused SDPA.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # noqa: E402

import foreshock  # noqa: E402
from foreshock.torch.precursors import ACT_ROWS, QUERY_SAMPLE, Precursors, find_attention, find_blocks  # noqa: E402

VOCAB, T = 64, 80  # T > QUERY_SAMPLE: the sampling is exercised


def gpt2():
    # dropout off: the reference pass and the measured pass must be the same computation;
    # scaling by the inverse layer index: the logits are scaled as the module scales them
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=128, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, scale_attn_by_inverse_layer_idx=True)
    return GPT2LMHeadModel(config)


def llama():
    # grouped-query attention: 4 query heads read 2 key heads
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(config)


MODELS = {"gpt2": (gpt2, "transformer.h"), "llama": (llama, "model.layers")}


def sampled_positions(t):
    return np.unique(np.round(np.linspace(0, t - 1, min(t, QUERY_SAMPLE))).astype(int))


def eager_logits(model, ids, monkeypatch, **kwargs):
    """Per attention layer, the (batch, heads, T, T) logits eager attention gives its softmax."""
    model.set_attn_implementation("eager")
    seen = []
    softmax = torch.nn.functional.softmax

    def keep(x, *args, **kw):
        seen.append(x.detach().clone())
        return softmax(x, *args, **kw)

    with monkeypatch.context() as m:
        m.setattr(torch.nn.functional, "softmax", keep)
        model(ids, **kwargs)
    return seen


def measured(model, ids, **kwargs):
    p = Precursors(model)
    p.active = True
    model(ids, **kwargs)
    vector, present = p.take()
    p.remove()
    return dict(zip(p.names, vector.tolist(), strict=True)), dict(zip(p.names, present.tolist(), strict=True))


def loud_padding(attn):
    """Make the first sequence's first 6 inputs of ``attn`` give it logits far above the others:
    x = 100 v, with v the top eigenvector of the symmetric part of W_q^T W_k (any position pair
    m = n is allowed by causality, and rotary embeddings cancel there)."""
    if hasattr(attn, "q_proj"):
        w_q, w_k = attn.q_proj.weight, attn.k_proj.weight.repeat_interleave(2, dim=0)
    else:  # GPT-2's Conv1D: (in, out)
        w_q, w_k = attn.c_attn.weight[:, :32].T, attn.c_attn.weight[:, 32:64].T
    m = (w_q.T @ w_k).detach()
    v = torch.linalg.eigh(m + m.T).eigenvectors[:, -1]

    def hook(module, args, kwargs):
        h = (kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]).clone()
        h[0, :6] = 100 * v
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": h}
        return (h, *args[1:]), kwargs

    attn.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("padded", [False, True], ids=["causal", "left-padded"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_attention_logit_max_equals_the_eager_pre_softmax_max(kind, padded, monkeypatch):
    torch.manual_seed(0)
    make, blocks = MODELS[kind]
    model = make().train()
    assert [n for n, _ in find_attention(model)] == [f"{blocks}.0", f"{blocks}.1"]
    ids = torch.randint(0, VOCAB, (3, T), generator=torch.Generator().manual_seed(1))
    kwargs = {}
    if padded:  # the first sequence's first keys are padding, and get the largest logits if not masked
        mask = torch.ones(3, T, dtype=torch.long)
        mask[0, :6] = 0
        kwargs = {"attention_mask": mask}
        loud_padding(find_attention(model)[0][1])
        unmasked, _ = measured(model, ids)
        assert unmasked[f"attn/{blocks}.0/logit_max"] > 10 * measured(model, ids, **kwargs)[0][
            f"attn/{blocks}.0/logit_max"]
    refs = eager_logits(model, ids, monkeypatch, **kwargs)
    assert len(refs) == 2
    pos = sampled_positions(T)
    for impl in ("eager", "sdpa"):  # fused attention has no weights to read: the same numbers regardless
        model.set_attn_implementation(impl)
        got, present = measured(model, ids, **kwargs)
        for i, ref in enumerate(refs):
            name = f"attn/{blocks}.{i}/logit_max"
            assert present[name]
            assert got[name] == pytest.approx(float(ref[0][:, pos].max()), rel=1e-5, abs=1e-7), (impl, name)
            assert got[name] <= float(ref.max()) + 1e-6  # a sample of one sequence: a lower bound


def test_llama_logits_are_taken_after_rotary_and_per_key_head():
    # reading q and k before the rotary embedding, or pairing query head h with key head h,
    # would give different numbers: check the reference itself tells them apart
    torch.manual_seed(2)
    model = llama().train()
    ids = torch.randint(0, VOCAB, (1, T), generator=torch.Generator().manual_seed(3))
    attn = model.model.layers[0].self_attn
    seen = {}
    attn.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    got, _ = measured(model, ids)
    with torch.no_grad():
        h = seen["hidden_states"][0]
        q = attn.q_proj(h).view(T, 4, 8).transpose(0, 1)
        k = attn.k_proj(h).view(T, 2, 8).transpose(0, 1)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        pos = sampled_positions(T)

        def logit_max(q, k):
            return float((q @ k.transpose(-1, -2) / 8 ** 0.5).masked_fill(~causal, -torch.inf)[:, pos].max())

        no_rotary_grouped = logit_max(q, k.repeat_interleave(2, dim=0))
        cos, sin = (t[0] for t in seen["position_embeddings"])

        def rot(x):
            return x * cos + torch.cat((-x[..., 4:], x[..., :4]), -1) * sin

        rotary_grouped = logit_max(rot(q), rot(k).repeat_interleave(2, dim=0))
        rotary_tiled = logit_max(rot(q), rot(k).repeat(2, 1, 1))  # head h with key head h % 2: wrong
    value = got["attn/model.layers.0/logit_max"]
    assert value == pytest.approx(rotary_grouped, rel=1e-5)
    assert abs(value - no_rotary_grouped) > 1e-4 and abs(value - rotary_tiled) > 1e-4


@pytest.mark.parametrize("kind", list(MODELS))
def test_block_activation_rms_and_kurtosis_equal_a_reference(kind):
    torch.manual_seed(4)
    make, blocks = MODELS[kind]
    model = make().train()
    assert [n for n, _ in find_blocks(model)] == [f"{blocks}.0", f"{blocks}.1"]
    outputs = []
    for _, block in find_blocks(model):
        block.register_forward_hook(lambda m, a, out: outputs.append(
            (out[0] if isinstance(out, tuple) else out).detach().clone()))
    b = 5  # 5 * 80 = 400 rows > ACT_ROWS: every second row is measured
    ids = torch.randint(0, VOCAB, (b, T), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():  # a large outlier channel: the kurtosis must see it
        model.get_input_embeddings().weight[:, 3] += 4.0
    got, _ = measured(model, ids)
    stride = -(-b * T // ACT_ROWS)
    assert stride == 2
    for i, out in enumerate(outputs):
        rows = out.reshape(-1, out.shape[-1])[::stride].double()
        s2 = rows.square().mean(0)
        rms, kurt = float(s2.mean().sqrt()), float(s2.square().mean() / s2.mean().square())
        assert got[f"act/{blocks}.{i}/rms"] == pytest.approx(rms, rel=1e-5)
        assert got[f"act/{blocks}.{i}/kurtosis"] == pytest.approx(kurt, rel=1e-5)
        assert kurt > 5  # one channel of 32 carries most of the energy
    # every channel with the same energy: kurtosis 1, and the RMS of a +-2 signal is 2
    blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4, bias=False)])
    with torch.no_grad():
        blocks[0].weight.copy_(2 * torch.eye(4))
    p = Precursors(blocks, attention=[])
    assert p.names[-2:] == ["act/0/rms", "act/0/kurtosis"]
    p.active = True
    blocks[0](torch.randint(0, 2, (7, 30, 4)).float() * 2 - 1)
    vector, _ = p.take()
    p.remove()
    assert vector.tolist()[-2:] == pytest.approx([2.0, 1.0], rel=1e-6)


def test_watch_records_hf_precursors_on_measured_training_steps_only(tmp_path):
    torch.manual_seed(6)
    model = llama().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with foreshock.watch(model, opt, run="llama", store=tmp_path / "r.db", every=2, flush_every=2,
                         console=False) as mon:
        for step in range(4):
            ids = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(step))
            loss = model(ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            model.eval()  # an evaluation pass is not measured
            with torch.no_grad():
                model(ids)
            model.train()
            mon.step(step, loss=loss)
    run = foreshock.read(tmp_path / "r.db", run="llama")
    for name in ("attn/model.layers.1/logit_max", "act/model.layers.0/rms", "act/model.layers.1/kurtosis",
                 "out/logit_max"):
        assert run[name].steps.tolist() == [0, 2], name
        assert np.isfinite(run[name].values).all()
    assert run["train/loss"].steps.tolist() == [0, 1, 2, 3]


def test_every_spelling_of_a_padding_mask_allows_the_same_pairs():
    from foreshock.torch.precursors import _given_mask

    pos = torch.tensor([0, 3, 5, 9])
    tokens = torch.ones(2, 10, dtype=torch.long)
    tokens[0, :4] = 0  # the first sequence's first 4 keys are padding
    padding_2d = _given_mask(tokens, pos, 10)  # what flash attention is given
    boolean = tokens.bool()[:, None, None, :].expand(2, 1, 10, 10)
    additive = torch.zeros(2, 1, 10, 10).masked_fill(~boolean, torch.finfo(torch.float32).min)
    expected = torch.arange(10) >= 4
    for mask in (padding_2d, _given_mask(boolean, pos, 10), _given_mask(additive, pos, 10)):
        assert (mask.expand(1, 4, 10) == expected).all()
    assert _given_mask(None, pos, 10) is None and _given_mask(tokens[:, :7], pos, 10) is None
