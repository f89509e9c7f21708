"""The Monitor routes steps to detectors the same way live and in replay."""

import pickle

import pytest

from foreshock.detect.base import Detector
from foreshock.detect.monitor import Monitor, iter_steps
from foreshock.run import RunBuilder


class AboveMax(Detector):
    """Fires when a metric exceeds its running maximum by ``factor``: a tiny test detector."""

    name = "above_max"

    def __init__(self, metric: str = "train/loss", factor: float = 2.0):
        super().__init__()
        self.metric = metric
        self.factor = factor
        self.metrics = (metric,)
        self._add_state("_max", None)
        self._add_state("_seen", 0)

    def update(self, step, values):
        x = values[self.metric]
        self._seen += 1
        events = []
        if self._max is not None and x > self.factor * self._max:
            events.append(self._event("spike", "warning", step, step, "above max", metric=self.metric,
                                      value=x, max=self._max))
        self._max = x if self._max is None else max(self._max, x)
        return events


class CountAll(Detector):
    name = "count_all"

    def __init__(self):
        super().__init__()
        self._add_state("_n", 0)

    def update(self, step, values):
        self._n += len(values)
        return []


def run_of(points):
    b = RunBuilder()
    for s, n, v in points:
        b.add(s, n, v)
    return b.build("t", source="mem", format="test")


POINTS = [(s, "train/loss", v) for s, v in enumerate([1, 1, 3, 1, 1, 9, 1, 30])] + [(2, "val/loss", 5.0), (6, "val/loss", 4.0)]


def test_replay_equals_live_updates():
    run = run_of(POINTS)
    live = Monitor([AboveMax(), CountAll()])
    fired_live = []
    for step, values in iter_steps(run):
        fired_live += live.update(step, values)
    offline = Monitor([AboveMax(), CountAll()])
    replayed = offline.replay(run)
    assert fired_live == replayed
    assert live.state_dict() == offline.state_dict()
    assert [e.step for e in replayed] == [2, 5, 7]


def test_detectors_only_receive_their_metrics():
    seen = []

    class Spy(Detector):
        name = "spy"
        metrics = ("val/loss",)

        def update(self, step, values):
            seen.append((step, dict(values)))
            return []

    Monitor([Spy()]).replay(run_of(POINTS))
    assert seen == [(2, {"val/loss": 5.0}), (6, {"val/loss": 4.0})]


def test_state_dict_round_trip_resumes_exactly():
    run = run_of(POINTS)
    steps = list(iter_steps(run))
    first = Monitor([AboveMax(), CountAll()])
    for step, values in steps[:4]:
        first.update(step, values)
    resumed = Monitor([AboveMax(), CountAll()])
    resumed.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
    tail = [e for s, v in steps[4:] for e in resumed.update(s, v)]
    whole = Monitor([AboveMax(), CountAll()]).replay(run)
    assert tail == [e for e in whole if e.step >= steps[4][0]]


def test_steps_must_not_go_backwards():
    m = Monitor([CountAll()])
    m.update(5, {"train/loss": 1.0})
    with pytest.raises(ValueError, match="backwards: got 4 after 5"):
        m.update(4, {"train/loss": 1.0})


def test_duplicate_detector_names_are_refused():
    with pytest.raises(ValueError, match="unique"):
        Monitor([CountAll(), CountAll()])


def test_on_event_callback_sees_every_event():
    got = []
    Monitor([AboveMax()], on_event=got.append).replay(run_of(POINTS))
    assert [e.step for e in got] == [2, 5, 7]


def test_clone_and_reset_keep_parameters_and_drop_state():
    d = AboveMax(factor=3.0)
    d.update(0, {"train/loss": 1.0})
    c = d.clone()
    assert c.factor == 3.0 and c._max is None and d._max == 1.0
    d.reset()
    assert d._max is None and d.factor == 3.0
    assert repr(c) == "AboveMax(metric='train/loss', factor=3.0)"
