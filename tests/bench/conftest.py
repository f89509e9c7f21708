import sys
from pathlib import Path

# the benchmark scripts import each other by module name, as they do when run from bench/
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
