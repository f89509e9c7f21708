import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # logsamples, whatever pytest's import mode
