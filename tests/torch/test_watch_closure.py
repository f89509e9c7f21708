"""optimizer.step(closure): the gradients exist only once the closure ran, inside the step."""

import math

import pytest

torch = pytest.importorskip("torch")

from torch_models import data, loss_of, mlp  # noqa: E402

import foreshock  # noqa: E402


def test_gradients_made_by_the_closure_are_the_ones_measured(tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    norms, losses = [], []

    def closure():
        optimizer.zero_grad(set_to_none=True)  # as Lightning does: no gradient before the closure
        loss = loss_of(model, x, y)
        loss.backward()
        norms.append(math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters())))
        losses.append(loss.detach())
        return loss

    with foreshock.watch(model, optimizer, run="c", store=tmp_path / "r.db", flush_every=2, console=False) as mon:
        for step in range(5):
            optimizer.step(closure) if step % 2 else optimizer.step(closure=closure)  # either spelling
            mon.step(step, loss=losses[-1])
    run = foreshock.read(tmp_path / "r.db", run="c")
    assert run["opt/grad_norm"].steps.tolist() == list(range(5))
    assert run["opt/grad_norm"].values.tolist() == pytest.approx(norms, rel=1e-6)
    assert run["opt/update_ratio"].steps.tolist() == list(range(5))  # the update after it, too
