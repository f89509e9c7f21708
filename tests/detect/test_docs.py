"""The examples in the detector and series docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["foreshock.detect.spike", "foreshock.detect.nonfinite", "foreshock.detect.metadata",
           "foreshock.series.rolling", "foreshock.series.runs", "foreshock.series.ews", "foreshock.series.bocpd",
           "foreshock.detect.early_warning", "foreshock.detect.changepoint", "foreshock.detect.grad_spike",
           "foreshock.detect.logit_growth", "foreshock.detect.health", "foreshock.series.moment"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
