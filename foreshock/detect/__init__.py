"""Detectors: causal state machines over training steps, and the Monitor that runs them."""

from foreshock.detect.base import Detector
from foreshock.detect.monitor import Monitor, iter_steps, replay


def default_detectors() -> list[Detector]:
    """Fresh instances of the detectors ``analyze`` and ``watch`` run by default."""
    return []


__all__ = ["Detector", "Monitor", "default_detectors", "iter_steps", "replay"]
