"""The warnings people get today without foreshock, for ``bench/truth.py`` to score beside it.

One module per baseline:

- :mod:`lightning_spike`: Lightning's ``SpikeDetection`` callback, re-implemented as the causal
  per-batch rule it is (the callback stops training with ``TrainingSpikeException``);
- :mod:`kill_loss_spike`: llm-foundry's ``KillLossSpike`` callback, the same way;
- :mod:`trainspotter_peer` and :mod:`losslint_peer`: the two log-analysis tools, run as they are
  from the peers' environment (``bench/.venv-peers``) on the whole log, through :mod:`_peers`.

The two callbacks import nothing but numpy, so they run in the project's environment; the peer
modules import their tool only inside the child process.
"""
