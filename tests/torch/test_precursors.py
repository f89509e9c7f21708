"""Precursors watch() records (output logits, attention logits) equal references computed here by hand."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import foreshock  # noqa: E402
from foreshock.torch.precursors import QUERY_SAMPLE, Precursors, find_attention, find_output_head  # noqa: E402

VOCAB, EMBD, HEADS, T = 48, 8, 2, 80  # T > QUERY_SAMPLE: the sampling is exercised


# -- a tiny nanoGPT ------------------------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.n_head, self.n_embd = HEADS, EMBD
        self.c_attn = nn.Linear(EMBD, 3 * EMBD)
        self.c_proj = nn.Linear(EMBD, EMBD)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # fused: no weights to read
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(EMBD), CausalSelfAttention(), nn.LayerNorm(EMBD)
        self.mlp = nn.Sequential(nn.Linear(EMBD, 4 * EMBD), nn.GELU(), nn.Linear(4 * EMBD, EMBD))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    def __init__(self, layers=2):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(wte=nn.Embedding(VOCAB, EMBD), wpe=nn.Embedding(T, EMBD),
                                              h=nn.ModuleList(Block() for _ in range(layers)),
                                              ln_f=nn.LayerNorm(EMBD)))
        self.lm_head = nn.Linear(EMBD, VOCAB, bias=False)

    def forward(self, idx):
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1]))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


# -- a model on nn.MultiheadAttention -------------------------------------------------------------------
class MHABlock(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.attn = nn.MultiheadAttention(EMBD, HEADS, **kwargs)

    def forward(self, x, mask):
        return x + self.attn(x, x, x, attn_mask=mask, need_weights=False)[0]


class MHAModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, EMBD)
        self.blocks = nn.ModuleList([MHABlock(batch_first=True)])
        self.head = nn.Linear(EMBD, VOCAB)

    def forward(self, idx):
        mask = torch.ones(idx.shape[1], idx.shape[1], dtype=torch.bool).triu(1)  # True: not attended to
        x = self.emb(idx)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(x)


def batch(seed, b=3, t=T):
    return torch.randint(0, VOCAB, (b, t), generator=torch.Generator().manual_seed(seed))


def sampled_positions(t):
    # the documented sample, computed independently: evenly spaced, first and last included
    return np.unique(np.round(np.linspace(0, t - 1, min(t, QUERY_SAMPLE))).astype(int))


def full_attention_logits(q, k, allowed):
    """(batch, heads, L, S) logits q . k / sqrt(d), -inf where not allowed."""
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return logits.masked_fill(~allowed, float("-inf"))


class Recorder:
    """The test's own hooks: keep the tensors a reference needs, per forward pass."""

    def __init__(self, modules):
        self.seen = {name: [] for name in modules}
        self.handles = [m.register_forward_hook(self._keep(name), with_kwargs=True) for name, m in modules.items()]

    def _keep(self, name):
        def hook(module, args, kwargs, output):
            out = output[0] if isinstance(output, tuple) else output
            self.seen[name].append(([a.detach().clone() for a in args if isinstance(a, torch.Tensor)],
                                    dict(kwargs), out.detach().clone()))
        return hook

    def pop(self):
        seen, self.seen = self.seen, {name: [] for name in self.seen}
        return seen


def nanogpt_reference(c_attn_out):
    b, t, _ = c_attn_out.shape
    q, k, _ = c_attn_out.split(EMBD, dim=2)
    q, k = (z.view(b, t, HEADS, EMBD // HEADS).transpose(1, 2) for z in (q, k))
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    logits = full_attention_logits(q, k, causal)
    return float(logits[0][:, sampled_positions(t)].max()), float(logits.max())


def output_reference(logits):
    return float(logits.max()), float(torch.logsumexp(logits.double(), dim=-1).mean())


def recorded(db, name):
    run = foreshock.read(db, run=name)
    return {m: dict(zip(run[m].steps.tolist(), run[m].values.tolist(), strict=True)) for m in run.names}


def train(model, db, steps, every=1, precursors="auto", micro=1, eval_between=False, reference=None):
    """Train ``model`` under watch(); returns what the test's own hooks saw (or ``reference`` of it,
    computed before the optimizer step, with the weights of the forward pass), per step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    watched = {"lm_head": model.lm_head} if hasattr(model, "lm_head") else {"head": model.head}
    watched.update({f"attn{i}": m for i, (_, m) in enumerate(find_attention(model))})
    if isinstance(model, TinyGPT):  # the nanoGPT reference needs c_attn's output
        watched.update({f"c_attn{i}": blk.attn.c_attn for i, blk in enumerate(model.transformer.h)})
    rec = Recorder(watched)
    seen = {}
    with foreshock.watch(model, optimizer, run="p", store=db, every=every, flush_every=3, console=False,
                         precursors=precursors) as mon:
        for step in range(steps):
            for m in range(micro):
                idx = batch(100 * step + m)
                loss = F.cross_entropy(model(idx).flatten(0, 1), idx.roll(-1, 1).flatten()) / micro
                loss.backward()
            if eval_between:  # an evaluation pass, not training, with logits far larger: left out
                model.eval()
                with torch.no_grad():
                    saved = model.lm_head.weight.clone()
                    model.lm_head.weight.mul_(100)
                    model(batch(7))
                    model.lm_head.weight.copy_(saved)
                model.train()
            seen[step] = {k: v[:micro] for k, v in rec.pop().items()}
            if reference is not None:
                seen[step] = reference(model, seen[step])
            optimizer.step()
            optimizer.zero_grad()
            mon.step(step, loss=loss)
    for h in rec.handles:
        h.remove()
    return seen, recorded(db, "p"), mon


def test_discovery_names_the_output_head_and_attention_blocks():
    gpt = TinyGPT()
    assert find_output_head(gpt)[0] == "lm_head"
    assert [name for name, _ in find_attention(gpt)] == ["transformer.h.0", "transformer.h.1"]
    p = Precursors(gpt)
    assert p.names == ["out/logit_max", "out/lse_mean", "attn/transformer.h.0/logit_max",
                       "attn/transformer.h.1/logit_max", "act/transformer.h.0/rms", "act/transformer.h.0/kurtosis",
                       "act/transformer.h.1/rms", "act/transformer.h.1/kurtosis"]
    p.remove()
    mha = MHAModel()
    assert find_output_head(mha)[0] == "head"  # no lm_head: the last, widest Linear
    assert [name for name, _ in find_attention(mha)] == ["blocks.0"]
    # a regressor whose last layer is narrow has no vocabulary projection
    assert find_output_head(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))) is None
    # two attention modules in one block are told apart by their own names
    two = nn.ModuleList([nn.ModuleDict(dict(self_attn=nn.MultiheadAttention(EMBD, HEADS),
                                            cross_attn=nn.MultiheadAttention(EMBD, HEADS)))])
    assert [n for n, _ in find_attention(two)] == ["0.self_attn", "0.cross_attn"]


def test_nanogpt_values_equal_a_reference_on_measured_steps_only(tmp_path):
    torch.manual_seed(0)
    seen, got, mon = train(TinyGPT(), tmp_path / "r.db", steps=5, every=2)
    assert {"out/logit_max", "out/lse_mean", "attn/transformer.h.0/logit_max",
            "attn/transformer.h.1/logit_max"} <= set(got)
    for step in range(5):
        if step % 2:  # every=2 skips it: recorded nothing, while the loss is there
            assert all(step not in got[n] for n in got if n.startswith(("out/", "attn/")))
            assert step in got["train/loss"]
            continue
        top, lse = output_reference(seen[step]["lm_head"][0][2])
        assert got["out/logit_max"][step] == pytest.approx(top, rel=1e-6)
        assert got["out/lse_mean"][step] == pytest.approx(lse, rel=1e-6)
        for i in range(2):
            sampled, full = nanogpt_reference(seen[step][f"c_attn{i}"][0][2])
            value = got[f"attn/transformer.h.{i}/logit_max"][step]
            assert value == pytest.approx(sampled, rel=1e-5, abs=1e-6)
            assert value <= full + 1e-5  # a sample's max is a lower bound


@torch.no_grad()
def mha_reference(mha, query, key, value, attn_mask=None, key_padding_mask=None, check_output=None):
    """Full logits of every sequence, from the weights as MHA documents them; checked against its output."""
    if not mha.batch_first:
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    e = mha.embed_dim
    w_q = mha.in_proj_weight[:e] if mha._qkv_same_embed_dim else mha.q_proj_weight
    w_k = mha.in_proj_weight[e:2 * e] if mha._qkv_same_embed_dim else mha.k_proj_weight
    q = (query @ w_q.T + mha.in_proj_bias[:e]).unflatten(-1, (HEADS, -1)).transpose(1, 2)
    k = (key @ w_k.T + mha.in_proj_bias[e:2 * e]).unflatten(-1, (HEADS, -1)).transpose(1, 2)
    allowed = torch.ones(q.shape[0], 1, q.shape[2], k.shape[2], dtype=torch.bool)
    if attn_mask is not None:
        allowed = allowed & ~attn_mask
    if key_padding_mask is not None:
        allowed = allowed & ~key_padding_mask[:, None, None, :]
    logits = full_attention_logits(q, k, allowed)
    if check_output is not None:  # these q and k are the ones MHA attends with
        value = value @ (mha.in_proj_weight[2 * e:] if mha._qkv_same_embed_dim else mha.v_proj_weight).T
        v = (value + mha.in_proj_bias[2 * e:]).unflatten(-1, (HEADS, -1)).transpose(1, 2)
        out = mha.out_proj((logits.softmax(-1) @ v).transpose(1, 2).flatten(2))
        expected = check_output if mha.batch_first else check_output.transpose(0, 1)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    return float(logits[0][:, sampled_positions(q.shape[2])].max()), float(logits.max())


def test_multihead_attention_values_equal_a_reference(tmp_path):
    torch.manual_seed(1)

    def reference(model, seen):
        (args, kwargs, out), = seen["attn0"]
        return {"attn": mha_reference(model.blocks[0].attn, *args, attn_mask=kwargs["attn_mask"], check_output=out),
                "out": output_reference(seen["head"][0][2])}

    refs, got, _ = train(MHAModel(), tmp_path / "r.db", steps=3, reference=reference)
    for step, ref in refs.items():
        sampled, full = ref["attn"]
        assert got["attn/blocks.0/logit_max"][step] == pytest.approx(sampled, rel=1e-5)
        assert got["attn/blocks.0/logit_max"][step] <= full + 1e-5
        assert got["out/logit_max"][step] == pytest.approx(ref["out"][0], rel=1e-6)
        assert got["out/lse_mean"][step] == pytest.approx(ref["out"][1], rel=1e-6)


@pytest.mark.parametrize("kind", ["sequence-first, separate kdim, padding", "is_causal, float mask",
                                  "per-head mask", "unbatched"])
def test_multihead_attention_variants(kind):
    torch.manual_seed(2)
    t, s = 70, 90
    if kind.startswith("sequence-first"):
        mha = nn.MultiheadAttention(EMBD, HEADS, kdim=6, vdim=5)  # cross-attention: separate q, k, v weights
        query, key, value = torch.randn(t, 2, EMBD), torch.randn(s, 2, 6), torch.randn(s, 2, 5)
        padding = torch.zeros(2, s, dtype=torch.bool)
        padding[0, -7:] = True
        key[-7:, 0] *= 50  # padded keys with the largest logits: they must be left out
        kwargs = dict(key_padding_mask=padding)
        ref = dict(key_padding_mask=padding)
    elif kind.startswith("is_causal"):
        mha = nn.MultiheadAttention(EMBD, HEADS, batch_first=True)
        query = key = value = torch.randn(2, t, EMBD)
        float_mask = nn.Transformer.generate_square_subsequent_mask(t)  # 0 and -inf
        kwargs = dict(attn_mask=float_mask, is_causal=True)
        ref = dict(attn_mask=torch.ones(t, t, dtype=torch.bool).triu(1))
    elif kind == "per-head mask":  # (batch * heads, L, S): head 1 of the first sequence sees no late keys
        mha = nn.MultiheadAttention(EMBD, HEADS, batch_first=True)
        query, key, value = torch.randn(2, t, EMBD), torch.randn(2, s, EMBD), torch.randn(2, s, EMBD)
        key[0, -10:] *= 50
        mask = torch.zeros(2 * HEADS, t, s, dtype=torch.bool)
        mask[1, :, -10:] = True
        kwargs = dict(attn_mask=mask)
        ref = dict(attn_mask=mask.view(2, HEADS, t, s))
    else:
        mha = nn.MultiheadAttention(EMBD, HEADS)
        query, key, value = torch.randn(t, EMBD), torch.randn(s, EMBD), torch.randn(s, EMBD)
        kwargs, ref = {}, {}
    p = Precursors(mha, attention=[""])
    p.active = True
    out = mha(query, key, value, need_weights=False, **kwargs)[0]
    (vector, present) = p.take()
    p.remove()
    if query.dim() == 2:  # unbatched: a batch of one
        query, key, value, out = query[:, None], key[:, None], value[:, None], out[:, None]
    sampled, full = mha_reference(mha, query, key, value, check_output=out.detach(), **ref)
    assert present.tolist() == [True]
    assert float(vector[0]) == pytest.approx(sampled, rel=1e-5)
    assert float(vector[0]) <= full + 1e-5


def test_accumulated_passes_take_the_max_and_the_mean_and_eval_passes_are_left_out(tmp_path):
    torch.manual_seed(3)
    seen, got, _ = train(TinyGPT(layers=1), tmp_path / "r.db", steps=2, micro=2, eval_between=True)
    for step in range(2):
        passes = seen[step]["lm_head"]
        assert len(passes) == 2
        refs = [output_reference(p[2]) for p in passes]
        assert got["out/logit_max"][step] == pytest.approx(max(r[0] for r in refs), rel=1e-6)
        assert got["out/lse_mean"][step] == pytest.approx(np.mean([r[1] for r in refs]), rel=1e-6)
        attn = max(nanogpt_reference(p[2])[0] for p in seen[step]["c_attn0"])
        assert got["attn/transformer.h.0/logit_max"][step] == pytest.approx(attn, rel=1e-5)


def test_precursors_none_records_none_and_close_removes_the_hooks(tmp_path):
    torch.manual_seed(4)
    _, got, _ = train(TinyGPT(layers=1), tmp_path / "off.db", steps=2, precursors=None)
    assert not [n for n in got if n.startswith(("out/", "attn/"))]
    assert "opt/grad_norm" in got
    model = TinyGPT(layers=1)
    hooked = [model.lm_head, model.transformer.h[0].attn.c_attn]
    _, got, mon = train(model, tmp_path / "on.db", steps=2)
    assert "attn/transformer.h.0/logit_max" in got
    assert mon.precursors.names[:2] == ["out/logit_max", "out/lse_mean"]
    assert all(not m._forward_hooks for m in hooked)  # closed: the model runs as before watch()
    mha = MHAModel()
    with foreshock.watch(mha, store=None, console=False):
        assert mha.blocks[0].attn._forward_pre_hooks
    assert not mha.blocks[0].attn._forward_pre_hooks and not mha.head._forward_hooks


def test_modules_can_be_named_and_a_wrong_name_leaves_no_run(tmp_path):
    torch.manual_seed(5)
    model = TinyGPT(layers=2)
    spec = {"output": "transformer.h.0.mlp.0", "attention": ["transformer.h.1.attn"]}
    _, got, _ = train(model, tmp_path / "r.db", steps=2, precursors=spec)
    assert {n for n in got if n.startswith(("out/", "attn/"))} == {
        "out/logit_max", "out/lse_mean", "attn/transformer.h.1.attn/logit_max"}
    db = tmp_path / "bad.db"
    with pytest.raises(ValueError, match="no module named"):
        foreshock.watch(model, store=db, console=False, precursors={"output": "nope"})
    with pytest.raises(ValueError, match="not an attention module"):
        foreshock.watch(model, store=None, console=False, precursors={"attention": ["lm_head"]})
    with pytest.raises(ValueError, match="precursors must be"):
        foreshock.watch(model, store=None, console=False, precursors="all")
    assert not model.lm_head._forward_hooks and not model.transformer.h[0].mlp[0]._forward_hooks
    assert not db.exists()  # checked before the store was opened


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=str)
def test_other_precisions_are_reduced_at_float32_or_wider(dtype):
    torch.manual_seed(6)
    model = TinyGPT(layers=1).to(dtype)
    rec = Recorder({"lm_head": model.lm_head, "c_attn": model.transformer.h[0].attn.c_attn})
    p = Precursors(model)
    p.active = True
    model(batch(0))
    vector, present = p.take()
    p.remove()
    seen = rec.pop()
    assert present.all()
    assert vector.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    top, lse = output_reference(seen["lm_head"][0][2].double())
    sampled, _ = nanogpt_reference(seen["c_attn"][0][2].double())
    rel = 1e-12 if dtype == torch.float64 else 1e-2  # bfloat16: q . k is rounded to 8 bits before widening
    assert vector.tolist()[:3] == pytest.approx([top, lse, sampled], rel=rel)


def test_wrapped_blocks_keep_the_names_of_the_model_they_wrap():
    # activation checkpointing (and FSDP1, whose wrappers name modules the same way) inserts a module
    # whose name is no layer of the user's: the metrics are named as for the bare model
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    bare = Precursors(TinyGPT())
    want = bare.names
    bare.remove()
    gpt = TinyGPT()
    for i, block in enumerate(gpt.transformer.h):
        gpt.transformer.h[i] = checkpoint_wrapper(block)
    wrapped = checkpoint_wrapper(gpt)  # the whole model too, as FSDP1 wraps its root
    assert any(n.startswith("_checkpoint_wrapped_module.") for n, _ in wrapped.named_modules())
    p = Precursors(wrapped)
    assert p.names == want
    p.remove()
