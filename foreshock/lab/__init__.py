"""Reproducible training workloads, in numpy, that produce real runs with known outcomes."""

from foreshock.lab.sample import SampleConfig, sample_lines, sample_path, write_sample

__all__ = ["SampleConfig", "sample_lines", "sample_path", "write_sample"]
