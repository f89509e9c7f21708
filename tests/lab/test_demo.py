import math

import numpy as np
import pytest

pytest.importorskip("torch")

import foreshock  # noqa: E402
from foreshock.events import Event  # noqa: E402
from foreshock.lab.demo import run_demo, verdict  # noqa: E402
from foreshock.run import RunBuilder  # noqa: E402

TINY = {"depth": 1, "width": 32, "heads": 2, "seq_len": 16, "batch": 4, "steps": 40, "eval_every": 10,
        "corpus_bytes": 200_000, "warmup": 0, "device": "cpu"}


def _run(values):
    b = RunBuilder()
    b.add_array("train/loss", np.arange(len(values)), np.asarray(values, dtype=float))
    return b.build("r", source="test", format="test")


def _warning(step, latency=3):
    return Event(detector="spike", kind="spike", severity="warning", step=step, onset_step=step,
                 message="Spike.", evidence={"flush_latency_steps": latency})


# 60 points coming down from 5 to about 2, then a climb to 20 that lasts to the end
DIVERGING = [5.0 - 3.0 * (1 - math.exp(-i / 10)) for i in range(60)] + [3.0 + 0.5 * i for i in range(35)]


def test_verdict_measures_the_lead_of_the_first_warning_before_the_turn():
    run = _run(DIVERGING)
    info = Event(detector="plateau", kind="plateau", severity="info", step=10, onset_step=10, message="x.")
    v = verdict(run, [_warning(70), info, _warning(55)])
    assert v["broke"] and v["label"]["event"] == "divergence"
    turn = v["turned_up"]
    assert 59 <= turn <= 62  # the first point 1.5x the best (about 2.1) to the end
    assert v["first_warning"]["step"] == 55 and v["lead_steps"] == turn - 55 and v["warnings"] == 2
    assert f"came {turn - 55} steps before" in v["line"] and "seen 3 steps later" in v["line"]


def test_verdict_says_when_the_warning_came_late_or_never():
    run = _run(DIVERGING)
    late = verdict(run, [_warning(80)])
    assert late["lead_steps"] < 0 and "came late" in late["line"]
    none = verdict(run, [])
    assert none["first_warning"] is None and none["lead_steps"] is None and "no warning fired" in none["line"]


def test_verdict_of_a_nan_run_dates_the_turn_from_the_divergence_before_it():
    run = _run(DIVERGING + [math.nan] * 5)
    v = verdict(run, [_warning(50)])
    assert v["label"]["event"] == "nan" and v["label"]["onset_step"] == 95
    assert 59 <= v["turned_up"] <= 62 and v["line"].startswith("NaN")


def test_verdict_of_a_stable_run():
    v = verdict(_run([5.0 - 3.0 * (1 - math.exp(-i / 10)) for i in range(80)]), [])
    assert not v["broke"] and v["turned_up"] is None
    assert v["line"].startswith("stable") and "no warning" in v["line"]


# in two spawned processes (as `foreshock demo` runs) each imports torch anew: slow
@pytest.mark.parametrize("parallel", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_demo_trains_both_runs_stores_them_and_writes_the_report(tmp_path, capfd, parallel):
    result = run_demo(out_dir=tmp_path, console=True, overrides=TINY, parallel=parallel)
    assert set(result["runs"]) == {"stable", "unstable"}
    html = (tmp_path / "foreshock-demo.html").read_text(encoding="utf-8")
    for r in result["runs"].values():
        assert r["run"] in html
        run = foreshock.read(result["store"], run=r["run_id"])
        assert np.allclose(run.series("opt/lr")[1], r["lr"])  # warmup 0: each run trained at its own lr
        _, loss = run.series("train/loss")
        assert r["broke"] == (r["label"]["event"] in ("divergence", "nan"))
        assert len(loss) == r["steps_run"] and r["cpu_s"] > 0
    stable = result["runs"]["stable"]
    assert not stable["broke"] and stable["stopped"] == "finished"
    out = capfd.readouterr().out
    assert out.count("lr=") == 2 and "wrote" in out
