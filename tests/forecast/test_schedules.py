import numpy as np
import pytest

from foreshock.forecast import ScheduleError, parse_schedule, schedule_from_run
from foreshock.run import RunBuilder


def test_cosine_warmup_peak_and_final():
    s = parse_schedule("cosine:peak=6e-4,final=6e-5,warmup=700,total=20000")
    assert s.name == "cosine" and s.total == 20000
    lr = s([0, 349, 699, 700, 10350, 20000, 30000])
    assert lr[0] == pytest.approx(6e-4 / 700)
    assert lr[1] == pytest.approx(6e-4 * 350 / 700)
    assert lr[2] == pytest.approx(6e-4) and lr[3] == pytest.approx(6e-4)
    assert lr[4] == pytest.approx((6e-4 + 6e-5) / 2)  # half-way through the decay
    assert lr[5] == pytest.approx(6e-5) and lr[6] == pytest.approx(6e-5)  # held after total


def test_constant_and_linear():
    assert np.allclose(parse_schedule("constant:peak=1e-3,total=100")([0, 50, 100]), 1e-3)
    lin = parse_schedule("linear:peak=1.0,final=0,total=100")
    assert np.allclose(lin([0, 25, 100]), [1.0, 0.75, 0.0])


@pytest.mark.parametrize("shape, mid", [("linear", 0.55), ("cosine", 0.55), ("exp", 0.1 ** 0.5)])
def test_wsd_shapes(shape, mid):
    s = parse_schedule(f"wsd:peak=1,final=0.1,decay=100,total=1000,shape={shape}")
    lr = s([0, 899, 900, 950, 1000])
    assert np.allclose(lr[:3], 1.0)
    assert lr[3] == pytest.approx(mid)
    assert lr[4] == pytest.approx(0.1)


def test_step_milestones_every_and_two_stage():
    s = parse_schedule("step:peak=1,at=10/20,gamma=0.5,total=30")
    assert np.allclose(s([0, 9, 10, 19, 20, 30]), [1, 1, 0.5, 0.5, 0.25, 0.25])
    e = parse_schedule("multi-step:peak=1,every=10,gamma=0.1,total=30")
    assert np.allclose(e([9, 10, 25]), [1, 0.1, 0.01])
    t = parse_schedule("two-stage:peak=3e-4,low=3e-5,at=8000,warmup=2160,total=16000")
    assert np.allclose(t([2159, 7999, 8000, 16000]), [3e-4, 3e-4, 3e-5, 3e-5])


@pytest.mark.parametrize("spec, words", [
    ("cosne:peak=1,total=10", ["unknown schedule 'cosne'", "cosine"]),
    ("cosine:peak=1", ["missing total"]),
    ("cosine:peak=1,total=10,decay=3", ["unknown key 'decay'", "final"]),
    ("cosine:peak=abc,total=10", ["peak='abc'", "expected a number"]),
    ("cosine:peak=1,total=10.5", ["total='10.5'", "integer step"]),
    ("cosine:peak=1,total=10,warmup=20", ["total=10 must exceed warmup=20"]),
    ("cosine:peak=1,total", ["expected key=value", "'total'"]),
    ("wsd:peak=1,decay=50,total=40", ["decay=50"]),
    ("wsd:peak=1,decay=5,total=40,shape=exp", ["final > 0"]),
    ("wsd:peak=1,decay=5,total=40,shape=square", ["shape='square'", "linear, cosine, exp"]),
    ("step:peak=1,total=40", ["exactly one of at="]),
    ("step:peak=1,at=20/10,total=40", ["increasing"]),
    ("two-stage:peak=1,low=0.1,at=50,total=40", ["at=50"]),
    ("constant:peak=0,total=10", ["peak=0"]),
])
def test_bad_specs_name_the_problem(spec, words):
    with pytest.raises(ScheduleError) as err:
        parse_schedule(spec)
    for w in words:
        assert w in str(err.value)
    assert isinstance(err.value, ValueError)


def _run(name, steps, values):
    b = RunBuilder()
    b.add_array("train/loss", steps, np.ones(len(steps)))
    b.add_array(name, steps, values)
    return b.build("r", source="mem", format="test")


def test_from_log_interpolates_and_warms_up():
    run = _run("opt/lr", [100, 200, 300], [1.0, 0.5, np.nan])
    s = schedule_from_run(run)
    assert s.total == 200 and s.spec == "from-log:opt/lr"
    assert np.allclose(s([150, 200, 250]), [0.75, 0.5, 0.5])  # NaN dropped, last value held
    assert s([0])[0] == pytest.approx(1.0 / 101) and s([99])[0] == pytest.approx(100 / 101)
    assert schedule_from_run(run, before="hold")([0])[0] == 1.0


def test_from_log_multiplier_times_base():
    s = schedule_from_run(_run("opt/lr_mult", [0, 10], [1.0, 0.0]), base_lr=2e-3)
    assert np.allclose(s([0, 5, 10]), [2e-3, 1e-3, 0.0])


def test_from_log_without_lr_says_what_it_has():
    b = RunBuilder()
    b.add_array("train/loss", [0, 1], [1.0, 0.9])
    with pytest.raises(ScheduleError, match="opt/lr.*train/loss"):
        schedule_from_run(b.build("r", source="x.csv", format="test"))
