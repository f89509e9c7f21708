"""Thin adapters that run :func:`foreshock.watch` from a training framework's callbacks.

- :mod:`foreshock.integrations.lightning`: ``ForeshockCallback`` for Lightning (``lightning`` or
  ``pytorch_lightning``);
- :mod:`foreshock.integrations.hf`: ``ForeshockCallback`` for the Hugging Face ``Trainer``.

Each module imports its framework when it is imported, and says which package to install when
the framework is missing; this package imports neither.
"""
