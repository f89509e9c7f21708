"""A tiny Hugging Face Trainer fit on CPU under ForeshockCallback: what the run stores is what it trained."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402
from transformers.utils import logging  # noqa: E402

import foreshock  # noqa: E402
from foreshock.integrations.hf import ForeshockCallback  # noqa: E402

VOCAB = 64


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        self.ids = torch.randint(0, VOCAB, (n, 24), generator=torch.Generator().manual_seed(seed))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def fit(tmp_path, crash_at=None, **options):
    logging.set_verbosity_error()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=32,
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=4,
                             per_device_eval_batch_size=4, learning_rate=1e-3, lr_scheduler_type="linear",
                             logging_steps=2, eval_strategy="steps", eval_steps=3, save_strategy="no",
                             report_to=[], use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, **options)
    callback = ForeshockCallback(run="hf", store=tmp_path / "r.db", console=False, flush_every=4)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(64, 1), eval_dataset=Tokens(8, 2),
                      callbacks=[callback])
    if crash_at is not None:
        passes = []

        def fail(module, args):
            passes.append(module.training)
            if passes.count(True) == crash_at:  # the training forward pass of step crash_at
                raise RuntimeError("CUDA out of memory (a stand-in)")

        model.register_forward_pre_hook(fail)
    trainer.train()
    return trainer, foreshock.read(tmp_path / "r.db", run="hf")


def logged(trainer, key):
    return {h["step"]: h[key] for h in trainer.state.log_history if key in h}


@pytest.mark.parametrize("accumulation", [1, 2])
def test_trainer_fit_stores_per_step_loss_lr_grads_precursors_and_eval(tmp_path, accumulation):
    trainer, run = fit(tmp_path, gradient_accumulation_steps=accumulation)
    assert run.status == "finished"
    steps = [1, 2, 3, 4, 5, 6]
    for name in ("train/loss", "opt/lr", "opt/grad_norm", "layer/transformer.h.1/grad_norm",
                 "attn/transformer.h.0/logit_max", "act/transformer.h.1/rms", "out/logit_max"):
        assert run[name].steps.tolist() == steps, name
        assert np.isfinite(run[name].values).all(), name
    loss = dict(zip(*run.series("train/loss"), strict=True))
    # the Trainer logs the mean of the step losses since its last log: the per-step losses stored
    # here must average to it
    for step, value in logged(trainer, "loss").items():
        assert np.mean([loss[s] for s in (step - 1, step)]) == pytest.approx(value, abs=2e-4)
    lr = dict(zip(*run.series("opt/lr"), strict=True))
    for step, value in logged(trainer, "learning_rate").items():
        assert lr[step] == pytest.approx(value, rel=1e-9)
    evals = logged(trainer, "eval_loss")
    assert sorted(evals) == [3, 6]
    assert dict(zip(*run.series("val/loss"), strict=True)) == pytest.approx(evals, rel=1e-9)
    assert "epoch" in run.names and not [n for n in run.names if "runtime" in n or "per_second" in n]


def test_a_run_whose_training_raises_is_marked_crashed_when_train_raises(tmp_path):
    with pytest.raises(RuntimeError, match="out of memory"):
        fit(tmp_path, crash_at=5)
    # still in the process that trained, long before its exit: the run is over, and says so
    run = foreshock.read(tmp_path / "r.db", run="hf")
    assert run.status == "crashed"
    for name in ("train/loss", "opt/grad_norm", "opt/lr"):  # the four steps done are all stored
        assert run[name].steps.tolist() == [1, 2, 3, 4], name
    assert run["val/loss"].steps.tolist() == [3]


def test_a_missing_framework_gets_a_clear_error(monkeypatch):
    import builtins
    import importlib
    import sys

    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    monkeypatch.delitem(sys.modules, "foreshock.integrations.hf")
    with pytest.raises(ImportError, match="pip install transformers"):
        importlib.import_module("foreshock.integrations.hf")
