"""One intra-op thread for these tiny models: on a machine shared by several test processes, two
threads spend a step waiting for each other (tens of times slower than one)."""

try:
    import torch
except ImportError:  # the torch tests skip themselves
    pass
else:
    torch.set_num_threads(1)
