import pytest
from hypothesis import given
from hypothesis import strategies as st

from foreshock.logs.names import canonical_name, is_known_metric


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("loss", "train/loss"), ("train_loss", "train/loss"), ("trl", "train/loss"), ("train/loss", "train/loss"),
        ("val_loss", "val/loss"), ("eval_loss", "val/loss"), ("tel", "val/loss"), ("test_loss", "val/loss"),
        ("valid_loss", "val/loss"), ("validation_loss", "val/loss"), ("eval/loss", "val/loss"),
        ("lr", "opt/lr"), ("learning_rate", "opt/lr"), ("lr_mult", "opt/lr_mult"), ("lr-AdamW", "opt/lr"),
        ("grad_norm", "opt/grad_norm"), ("norm", "opt/grad_norm"), ("gradient_norm", "opt/grad_norm"),
        ("train_acc", "train/acc"), ("train_accuracy", "train/acc"),
        ("val_acc", "val/acc"), ("test_accuracy", "val/acc"), ("eval_accuracy", "val/acc"),
        ("sharpness", "probe/hessian/lambda_max"),
        ("grad_norm_hidden", "layer/hidden/grad_norm"), ("grad_norm_aux", "layer/aux/grad_norm"),
        ("grad_norm_unembed", "layer/unembed/grad_norm"), ("param_norm_hidden", "layer/hidden/param_norm"),
        # muon-grokking originals spell the same groups out; they must meet the converted names
        ("auxiliary_gradient_norm", "layer/aux/grad_norm"), ("unembedding_parameter_norm", "layer/unembed/param_norm"),
        ("muon_applied_update_norm", "opt/muon/update_norm"), ("update_norm_muon", "opt/muon/update_norm"),
        # TensorBoard and Hugging Face spellings
        ("Loss/train", "train/loss"), ("accuracy/val", "val/acc"), ("train/learning_rate", "opt/lr"),
        ("train/grad_norm", "opt/grad_norm"), ("validation/epoch_loss", "val/loss"), ("train_loss_step", "train/loss"),
        ("testLoss", "val/loss"), ("eval_rouge1", "val/rouge1"), ("val_bpb", "val/bpb"),
        # timing keeps its unit and is never a loss
        ("train_time_ms", "time/train_ms"), ("step_avg_ms", "time/step_avg_ms"),
    ],
)
def test_common_spellings_map_onto_the_canonical_names(raw, canonical):
    assert canonical_name(raw) == canonical


@pytest.mark.parametrize("raw", ["my_metric", "generalization_collapse_detected", "epoch", "MixedCase", "layer/x/grad_norm"])
def test_unknown_or_canonical_names_are_kept_as_they_are(raw):
    assert canonical_name(raw) == raw


@given(st.text(alphabet=st.sampled_from(list("abtrainvlosgdmu_/-.ATLE0123")), max_size=30))
def test_mapping_is_idempotent(raw):
    once = canonical_name(raw)
    assert canonical_name(once) == once


def test_known_metrics_are_told_from_hyper_parameters():
    assert is_known_metric("lr") and is_known_metric("loss") and is_known_metric("hidden_parameter_norm")
    assert not is_known_metric("modulus") and not is_known_metric("train_fraction") and not is_known_metric("d_model")
