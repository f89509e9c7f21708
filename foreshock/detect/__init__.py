"""Detectors: causal state machines over training steps, and the Monitor that runs them.

One module per family: loss breaks (``nonfinite``, ``spike``, ``divergence``), progress
(``plateau``, ``overfitting``, ``phases``: phases, grokking, edge of stability), early warnings
(``early_warning``: critical slowing down; ``changepoint``: Bayesian online change points),
model-internal precursors (``logit_growth``, ``grad_spike``) and the run's combined ``health``.
"""

from foreshock.detect.base import Detector
from foreshock.detect.changepoint import ChangePointDetector
from foreshock.detect.divergence import DivergenceDetector
from foreshock.detect.early_warning import EarlyWarningDetector
from foreshock.detect.grad_spike import GradSpikeDetector, UpdateRatioDetector
from foreshock.detect.health import Health, HealthChange, health_timeline
from foreshock.detect.logit_growth import LogitGrowthDetector, OutputDriftDetector
from foreshock.detect.monitor import Monitor, iter_steps, replay
from foreshock.detect.nonfinite import NonFiniteDetector
from foreshock.detect.overfitting import OverfittingDetector
from foreshock.detect.phases import (
    PHASES,
    EdgeOfStabilityDetector,
    GrokkingDetector,
    PhaseDetector,
    phase_timeline,
)
from foreshock.detect.plateau import PlateauDetector
from foreshock.detect.spike import SpikeDetector


def default_detectors() -> list[Detector]:
    """Fresh instances of the detectors ``analyze`` and ``watch`` run by default.

    The loss-break detectors warn; the early-warning and precursor families emit ``info`` events
    (their severity is earned on ``bench/truth.py``, and until a family earns ``warning`` there it
    feeds the run's health instead). The change-point detector is opt-in: it costs more than all
    the others together on long runs and its events are context rather than alarms.
    """
    return [NonFiniteDetector(), SpikeDetector(), DivergenceDetector(), PlateauDetector(), OverfittingDetector(),
            GrokkingDetector(), EdgeOfStabilityDetector(), EarlyWarningDetector(), GradSpikeDetector(),
            UpdateRatioDetector(), LogitGrowthDetector(), OutputDriftDetector()]


__all__ = [
    "PHASES",
    "ChangePointDetector",
    "Detector",
    "DivergenceDetector",
    "EarlyWarningDetector",
    "EdgeOfStabilityDetector",
    "GradSpikeDetector",
    "GrokkingDetector",
    "Health",
    "HealthChange",
    "LogitGrowthDetector",
    "Monitor",
    "NonFiniteDetector",
    "OutputDriftDetector",
    "OverfittingDetector",
    "PhaseDetector",
    "PlateauDetector",
    "SpikeDetector",
    "UpdateRatioDetector",
    "default_detectors",
    "health_timeline",
    "iter_steps",
    "phase_timeline",
    "replay",
]
