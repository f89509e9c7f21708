"""What a metric's name says about it: which direction is bad, and whether it is a loss.

Detectors read these instead of special-casing names, so one spike detector serves a loss (bad
when it goes up) and an accuracy (bad when it goes down) alike. The rules look at the last part of
the canonical name (``train/loss`` -> ``loss``) and also understand common raw spellings that
readers keep as they are (``val_loss``, ``grad_norm_hidden``).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Direction", "bad_direction", "is_loss", "sign"]

Direction = Literal["up", "down", "both"]

# substrings of the last name part, checked in order; the first match decides
_UP = ("loss", "perplexity", "ppl", "bpb", "grad_norm", "update_ratio", "update_norm", "logit_max",
       "lambda_max", "lse", "sharpness", "trace", "rms")
_DOWN = ("acc", "accuracy", "f1", "auc", "entropy_min", "effective", "rank")


def _leaf(name: str) -> str:
    return name.rsplit("/", 1)[-1].lower()


def is_loss(name: str) -> bool:
    """True for loss-like metrics (``train/loss``, ``val_loss``, ``lm_loss``, ``val/bpb``...).

    >>> is_loss("train/loss"), is_loss("opt/grad_norm")
    (True, False)
    """
    leaf = _leaf(name)
    return any(k in leaf for k in ("loss", "perplexity", "ppl", "bpb"))


def bad_direction(name: str) -> Direction:
    """``"up"`` when a rise is the bad news (losses, norms), ``"down"`` for accuracies, else ``"both"``.

    >>> bad_direction("val/loss"), bad_direction("train/acc"), bad_direction("opt/lr")
    ('up', 'down', 'both')
    """
    leaf = _leaf(name)
    if any(k in leaf for k in _UP):
        return "up"
    if any(k in leaf for k in _DOWN):
        return "down"
    return "both"


def sign(name: str) -> float:
    """+1 when a rise is bad, -1 when a fall is; detectors multiply by it and look for rises.

    A metric with no bad direction (``opt/lr``) cannot be watched for spikes: ValueError.
    """
    direction = bad_direction(name)
    if direction == "both":
        raise ValueError(f"{name!r} has no bad direction (a loss, a norm or an accuracy has one); "
                         "detectors that look for bad moves cannot watch it")
    return 1.0 if direction == "up" else -1.0
