import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import foreshock  # noqa: E402
from foreshock.lab.gpt import (  # noqa: E402
    GPT,
    WORKLOAD,
    adam_edge_ratio,
    fit,
    lanczos_top,
    lm_loss,
    preconditioned_sharpness,
)

TINY = {"depth": 1, "width": 32, "heads": 2, "seq_len": 16, "batch": 4, "steps": 21, "eval_every": 10,
        "corpus_bytes": 200_000, "lr": 1e-2, "warmup": 0, "device": "cpu"}


def test_lanczos_finds_the_largest_eigenvalue_not_the_largest_in_size():
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(60, 60, generator=gen, dtype=torch.float64))
    eigs = torch.linspace(-10.0, 3.0, 60, dtype=torch.float64)  # the most negative one dominates in size
    a = q @ torch.diag(eigs) @ q.T
    lam, vec = lanczos_top(lambda v: a @ v, torch.randn(60, generator=gen, dtype=torch.float64), iters=40)
    assert float(lam) == pytest.approx(3.0, rel=1e-6)
    assert torch.allclose(a @ vec, lam * vec, atol=1e-5) and float(vec.norm()) == pytest.approx(1.0)
    nan, start = lanczos_top(lambda v: v * math.nan, vec, iters=5)  # a diverged model
    assert math.isnan(float(nan)) and torch.equal(start, vec)
    with pytest.raises(ValueError, match="iters"):
        lanczos_top(lambda v: a @ v, vec, iters=0)


def test_probe_returns_the_top_eigenvalue_of_the_exactly_computed_preconditioned_hessian():
    torch.manual_seed(0)
    model = GPT(depth=1, width=4, heads=2, seq_len=6, vocab=5)  # a few hundred parameters
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):  # give Adam a second moment
        idx = torch.randint(0, 5, (3, 7), generator=gen)
        opt.zero_grad()
        lm_loss(model(idx[:, :-1]), idx[:, 1:])[1].backward()
        opt.step()
    x, y = idx[:, :-1], idx[:, 1:]
    params = [p for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    flat = torch.cat([p.detach().flatten() for p in params])

    def objective(w):
        chunks, i = {}, 0
        for n, p in zip(names, params, strict=True):
            chunks[n] = w[i:i + p.numel()].view_as(p)
            i += p.numel()
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            return lm_loss(torch.func.functional_call(model, chunks, (x,)), y, 1e-3)[1]

    h = torch.autograd.functional.hessian(objective, flat, vectorize=True).double()
    v_hat = torch.cat([opt.state[p]["exp_avg_sq"].flatten() for p in params]).double() / (1 - 0.95 ** 3)
    d = 1 / torch.sqrt(v_hat.sqrt() + 1e-8)
    want = torch.linalg.eigvalsh(d[:, None] * h * d[None, :])
    lam, vec = preconditioned_sharpness(model, opt, x, y, z_loss=1e-3, iters=60)
    assert float(lam) == pytest.approx(float(want[-1]), rel=1e-3)
    # warm-started from its own eigenvector, one step gives the same value again
    lam1, _ = preconditioned_sharpness(model, opt, x, y, z_loss=1e-3, start=vec, iters=1)
    assert float(lam1) == pytest.approx(float(want[-1]), rel=1e-3)
    assert model.training  # the probe's evaluation-mode forward leaves the model as it found it


def test_sharpness_every_logs_the_probe_and_adams_edge_ratio_without_changing_training(tmp_path):
    torch.set_num_threads(1)
    assert WORKLOAD.defaults["sharpness_every"] == 0  # off unless asked for
    db = tmp_path / "runs.db"
    config = WORKLOAD.config("cpu", {**TINY, "sharpness_every": 10, "sharpness_iters": 4})
    monitors = []
    probed = fit(config, lambda model, opt: monitors.append(
        foreshock.watch(model, opt, run="probed", store=db, console=False)) or monitors[0])
    monitors[0].close()
    plain = fit(WORKLOAD.config("cpu", TINY), lambda model, opt: _Null())
    assert probed.losses == plain.losses  # the probe reads the model and the optimizer, never moves them
    run = foreshock.read(db, run="probed")
    steps, lam = run.series("probe/hessian/lambda_max_precond")
    assert list(steps) == [10, 20] and np.all(np.isfinite(lam)) and np.all(lam > 0)
    r_steps, ratio = run.series("probe/eos_ratio")
    assert list(r_steps) == [10, 20]
    assert ratio == pytest.approx([adam_edge_ratio(x, 1e-2, 0.9) for x in lam], rel=1e-5)
    assert adam_edge_ratio(38.0, 1.0, 0.9) == pytest.approx(1.0)  # the edge is 38 / lr
    with pytest.raises(ValueError, match="sharpness_every"):
        fit(WORKLOAD.config("cpu", {**TINY, "sharpness_every": -1}), lambda model, opt: _Null())


class _Null:
    def step(self, step, loss=None, **metrics):
        assert all(math.isfinite(float(v)) for v in metrics.values())
