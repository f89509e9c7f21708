import importlib.util
import subprocess
import sys

import pytest

import foreshock

LAZY = {"watch"}  # imports torch: resolved on first use, not at ``import foreshock``


def test_all_is_sorted_and_every_name_exists():
    assert foreshock.__all__ == sorted(foreshock.__all__)
    for name in set(foreshock.__all__) - LAZY:
        assert hasattr(foreshock, name), name


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_lazy_names_exist_with_torch():
    for name in LAZY:
        assert callable(getattr(foreshock, name)), name


def test_public_names_are_complete():
    public = {n for n in vars(foreshock) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(foreshock, n)).__name__ == "module"}
    assert public - modules == set(foreshock.__all__) - LAZY
    assert LAZY <= set(foreshock.__all__)


def test_log_analysis_does_not_import_torch():
    code = ("import sys, foreshock, foreshock.logs, foreshock.store, foreshock.detect, foreshock.cli; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
