"""Reproducible training workloads that produce real, labelled runs with known outcomes.

``names()`` lists the workloads, ``get(name)`` gives one, and ``run(name, preset, overrides)``
trains it watched, stores it and labels it in hindsight (:mod:`foreshock.lab.labels`). Importing
this package does not import torch; running a workload does.
"""

from foreshock.lab.base import Label, Workload, get, names, register
from foreshock.lab.runner import LabResult, run
from foreshock.lab.sample import SampleConfig, sample_lines, sample_path, write_sample

__all__ = ["LabResult", "Label", "SampleConfig", "Workload", "get", "names", "register", "run", "sample_lines",
           "sample_path", "write_sample"]
