"""Metric metadata read from names, so detectors need no special cases."""

import pytest

from foreshock.detect.metadata import bad_direction, is_loss


@pytest.mark.parametrize("name,direction", [
    ("train/loss", "up"), ("val/loss", "up"), ("val_loss", "up"), ("val/bpb", "up"),
    ("opt/grad_norm", "up"), ("layer/hidden/grad_norm", "up"), ("attn/0/logit_max", "up"),
    ("probe/hessian/lambda_max", "up"), ("train/acc", "down"), ("val/acc", "down"),
    ("attn/3/entropy_min", "down"), ("probe/rank/effective", "down"), ("opt/lr", "both"),
    ("my_metric", "both"),
])
def test_bad_direction(name, direction):
    assert bad_direction(name) == direction


def test_is_loss():
    assert is_loss("train/loss") and is_loss("val_loss") and is_loss("lm_loss") and is_loss("val/ppl")
    assert not is_loss("opt/grad_norm") and not is_loss("train/acc") and not is_loss("opt/lr")
