"""On a GPU, a watched training loop never waits for the device (torch's sync debug mode raises if it does)."""

import pytest

torch = pytest.importorskip("torch")

from torch_models import data, loss_of, mlp  # noqa: E402

import foreshock  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_no_step_synchronises_with_the_gpu(tmp_path):
    model = mlp().cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = (t.cuda() for t in data())
    db = tmp_path / "runs.db"
    mon = foreshock.watch(model, optimizer, run="gpu", store=db, flush_every=4, console=False)

    def train(steps):
        for step in steps:
            loss = loss_of(model, x, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            mon.step(step, loss=loss)

    train(range(2))  # the first steps allocate: optimizer state, the layer index
    torch.cuda.set_sync_debug_mode("error")
    try:
        train(range(2, 30))  # seven flushes, each read back without waiting
    finally:
        torch.cuda.set_sync_debug_mode("default")
    mon.close()
    run = foreshock.read(db, run="gpu")
    for name in ("train/loss", "opt/lr", "opt/grad_norm", "opt/update_ratio", "layer/2/grad_norm"):
        assert run[name].steps.tolist() == list(range(30)), name
    assert run.status == "finished"
