"""foreshock: watch a training run and tell, with evidence, whether it is about to break.

    >>> import foreshock
    >>> run = foreshock.read("train.log")          # doctest: +SKIP
    >>> result = foreshock.analyze(run)            # doctest: +SKIP
    >>> for event in result.events: print(event)   # doctest: +SKIP
"""

import importlib

from foreshock.analysis import Analysis, analyze, read
from foreshock.detect.base import Detector
from foreshock.detect.monitor import Monitor, replay
from foreshock.errors import ForeshockError, LogFormatError, NotEnoughData, StoreError
from foreshock.events import Event
from foreshock.run import Run, Series, Skipped

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "Detector",
    "Event",
    "ForeshockError",
    "LogFormatError",
    "Monitor",
    "NotEnoughData",
    "Run",
    "Series",
    "Skipped",
    "StoreError",
    "analyze",
    "read",
    "replay",
    "watch",
]

_LAZY = {"watch": "foreshock.torch"}  # names whose module imports torch: loaded on first use


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'foreshock' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        raise ImportError(f"foreshock.{name} needs PyTorch: pip install 'foreshock[torch]'") from e
