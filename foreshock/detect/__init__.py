"""Detectors: causal state machines over training steps, and the Monitor that runs them."""

from foreshock.detect.base import Detector
from foreshock.detect.divergence import DivergenceDetector
from foreshock.detect.monitor import Monitor, iter_steps, replay
from foreshock.detect.nonfinite import NonFiniteDetector
from foreshock.detect.overfitting import OverfittingDetector
from foreshock.detect.plateau import PlateauDetector
from foreshock.detect.spike import SpikeDetector


def default_detectors() -> list[Detector]:
    """Fresh instances of the detectors ``analyze`` and ``watch`` run by default."""
    return [NonFiniteDetector(), SpikeDetector(), DivergenceDetector(), PlateauDetector(), OverfittingDetector()]


__all__ = [
    "Detector",
    "DivergenceDetector",
    "Monitor",
    "NonFiniteDetector",
    "OverfittingDetector",
    "PlateauDetector",
    "SpikeDetector",
    "default_detectors",
    "iter_steps",
    "replay",
]
