"""A tiny Lightning fit on CPU under ForeshockCallback: what the run stores is what it trained."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")

import foreshock  # noqa: E402
from foreshock.integrations.lightning import ForeshockCallback  # noqa: E402


class Regressor(L.LightningModule):
    def __init__(self, fail_at=None):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        self.losses = []  # the loss of every training batch, read synchronously by the test's module
        self.fail_at = fail_at

    def training_step(self, batch, batch_idx):
        if batch_idx == self.fail_at:
            raise RuntimeError("boom")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.losses.append(loss.item())
        return {"loss": loss}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("val_loss", loss)
        self.val_losses = getattr(self, "val_losses", []) + [loss.item()]

    def on_before_optimizer_step(self, optimizer):  # after the closure's backward, before the update
        norms = [p.grad.double().norm() for p in self.parameters() if p.grad is not None]
        self.grad_norms = getattr(self, "grad_norms", []) + [float(torch.stack(norms).norm())]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def test_fit_stores_loss_at_global_step_grads_and_validation(tmp_path):
    module = Regressor()
    trainer = L.Trainer(max_steps=6, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=3,
                        limit_val_batches=1, num_sanity_val_steps=1,
                        callbacks=[ForeshockCallback(run="pl", store=tmp_path / "r.db", console=False,
                                                     flush_every=4)])
    trainer.fit(module, loader(1), loader(2))
    run = foreshock.read(tmp_path / "r.db", run="pl")
    assert run.status == "finished"
    assert run["train/loss"].steps.tolist() == [1, 2, 3, 4, 5, 6]  # global_step after each optimizer step
    assert run["train/loss"].values.tolist() == pytest.approx(module.losses, rel=1e-6)
    for name in ("opt/lr", "opt/grad_norm", "layer/net.0/grad_norm", "layer/net.2/update_ratio"):
        assert run[name].steps.tolist() == [1, 2, 3, 4, 5, 6], name
        assert np.isfinite(run[name].values).all()
    assert run["opt/lr"].values.tolist() == [0.05] * 6
    # Lightning steps with a closure that makes the gradients: they are measured after it ran
    assert run["opt/grad_norm"].values.tolist() == pytest.approx(module.grad_norms, rel=1e-5)
    # validation at steps 3 and 6; the sanity check before training is left out
    assert run["val/loss"].steps.tolist() == [3, 6]
    assert run["val/loss"].values.tolist() == pytest.approx(module.val_losses[1:], rel=1e-6)


def test_accumulation_records_once_per_optimizer_step(tmp_path):
    module = Regressor()
    trainer = L.Trainer(max_steps=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        accumulate_grad_batches=2,
                        callbacks=[ForeshockCallback(run="acc", store=tmp_path / "r.db", console=False)])
    trainer.fit(module, loader(1))
    run = foreshock.read(tmp_path / "r.db", run="acc")
    assert run["train/loss"].steps.tolist() == [1, 2, 3]
    assert run["opt/grad_norm"].steps.tolist() == [1, 2, 3]
    assert len(module.losses) == 6


def test_an_exception_marks_the_run_crashed_and_keeps_its_steps(tmp_path):
    module = Regressor(fail_at=4)
    trainer = L.Trainer(max_steps=6, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[ForeshockCallback(run="bad", store=tmp_path / "r.db", console=False)])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(module, loader(1))
    run = foreshock.read(tmp_path / "r.db", run="bad")
    assert run.status == "crashed"
    assert run["train/loss"].steps.tolist() == [1, 2, 3, 4]


def test_a_missing_framework_gets_a_clear_error(monkeypatch):
    import builtins
    import importlib
    import sys

    real_import = builtins.__import__

    def no_lightning(name, *args, **kwargs):
        if name.split(".")[0] in ("lightning", "pytorch_lightning"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lightning)
    monkeypatch.delitem(sys.modules, "foreshock.integrations.lightning")
    with pytest.raises(ImportError, match="pip install lightning"):
        importlib.import_module("foreshock.integrations.lightning")
