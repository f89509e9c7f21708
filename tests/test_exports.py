import subprocess
import sys

import foreshock


def test_all_is_sorted_and_every_name_exists():
    assert foreshock.__all__ == sorted(foreshock.__all__)
    for name in foreshock.__all__:
        assert hasattr(foreshock, name), name


def test_public_names_are_complete():
    public = {n for n in vars(foreshock) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(foreshock, n)).__name__ == "module"}
    assert public - modules == set(foreshock.__all__)


def test_log_analysis_does_not_import_torch():
    code = ("import sys, foreshock, foreshock.logs, foreshock.store, foreshock.detect, foreshock.cli; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
