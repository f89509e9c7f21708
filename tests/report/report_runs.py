"""Runs and events built by hand for the report tests."""

import math

from foreshock.events import Event
from foreshock.run import RunBuilder


def make_run(n=300, name="blowup", with_nonfinite=True, extra=()):
    """A loss that falls, then is +inf for 10 steps and NaN for 10; an LR; a grad norm with -inf and NaN."""
    b = RunBuilder()
    for s in range(n):
        loss = 3.0 * math.exp(-s / 50) + 0.5
        if with_nonfinite and s >= n - 20:
            loss = math.inf if s < n - 10 else math.nan
        b.add(s, "train/loss", loss)
        b.add(s, "opt/lr", 1e-3 * min(1.0, (s + 1) / 20))
        grad_norm = 1.0 + s / n
        if with_nonfinite and s == n - 15:
            grad_norm = -math.inf
        elif with_nonfinite and s > n - 10:
            grad_norm = math.nan
        b.add(s, "opt/grad_norm", grad_norm)
        if s % 25 == 0:
            b.add(s, "val/loss", loss + 0.1)
    for metric in extra:
        for s in range(0, n, 10):
            b.add(s, metric, float(s))
    b.skip(7, "expected a number in column 'value', got 'abc'")
    b.skip(8, "expected a number in column 'value', got 'abc'")
    return b.build(name, source=f"/data/{name}.csv", format="csv-long")


def make_events(n=300):
    evs = [
        Event("loss_spike", "spike", "warning", n - 40, n - 45, "train/loss jumped 4.2x above its recent median.",
              {"metric": "train/loss", "ratio": 4.213887261, "median": 0.5123456, "threshold": 3.0}),
        Event("nan_guard", "nan", "critical", n - 10, n - 20, "train/loss is NaN: the run has diverged.",
              {"metric": "train/loss", "value": "nan", "last_finite": 1.234e42}),
    ]
    evs += [Event("loss_spike", "spike", "info", s, s, f"small spike at {s}", {"metric": "train/loss", "ratio": 1.51})
            for s in range(50, 250, 20)]
    return sorted(evs, key=lambda e: e.step)
