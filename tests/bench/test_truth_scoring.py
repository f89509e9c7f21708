"""The arithmetic of bench/scoring.py and the input handling of bench/truth.py, on hand-made outcomes."""

import json

import numpy as np
import pytest
import truth
from baselines import _peers, losslint_peer
from scoring import Rate, RunOutcome, leads, summarise

from foreshock.detect import SpikeDetector, default_detectors
from foreshock.run import RunBuilder


def out(label, event_step, first, k_step=None, run="r", near=None):
    return RunOutcome(run, label, event_step, first, k_step, near_warning=near)


@pytest.mark.parametrize(("label", "event_step", "first", "k_step", "verdict", "lead"), [
    ("spike", 100, 90, 110, "early", 10),
    ("spike", 100, 100, 110, "early", 0),        # at the labelled step counts as caught
    ("spike", 100, 110, 110, "within_k", -10),   # the last step of the grace still counts
    ("spike", 100, 111, 110, "late", -11),
    ("divergence", 100, None, 110, "missed", None),
    ("none", None, 5, None, "false_alarm", None),
    ("none", None, None, None, "quiet", None),
    ("plateau", 50, 10, 60, "warned", None),      # not a failure: neither a catch nor a false alarm
    ("plateau", 50, None, 60, "quiet", None),
])
def test_verdict_and_lead(label, event_step, first, k_step, verdict, lead):
    o = out(label, event_step, first, k_step)
    assert o.verdict == verdict
    assert o.lead == lead


def test_summary_counts_recall_grace_false_alarms_and_leads():
    outcomes = [
        out("spike", 100, 90, 110, near=95), out("spike", 100, 105, 110, near=105),
        out("spike", 100, None, 110),
        out("spike", 100, 2, 110),  # warned about something else long before: a catch, not near
        out("spike", 100, 200, 110),
        out("divergence", 1000, 700, 1010), out("divergence", 1000, 1000, 1010, near=1000),
        out("grokking", 500, 400, 510),
        out("none", None, 3), out("none", None, None), out("none", None, None), out("none", None, None),
        out("plateau", 50, 10, 60),
    ]
    s = summarise(outcomes, ["spike", "divergence", "nan", "grokking"])
    assert s.recall["spike"] == Rate(2, 5)
    assert s.by_k["spike"] == Rate(3, 5)
    assert s.near["spike"] == Rate(2, 5)
    assert s.recall["divergence"] == Rate(2, 2)
    assert s.recall["nan"] == Rate(0, 0) and s.recall["nan"].fraction is None
    assert s.recall["grokking"] == Rate(1, 1)
    assert s.false_alarms == Rate(1, 4) and s.false_alarms.fraction == 0.25
    assert s.plateau_warned == Rate(1, 1)
    # pooled leads: spike/divergence/nan runs caught at or before the step: 10, 98, 300, 0 (grokking apart)
    assert s.leads.n == 4 and s.leads.median == 54
    assert s.leads.q1 == 7.5 and s.leads.q3 == 148.5
    assert s.leads_by_kind["grokking"].median == 100
    # leads of the warnings near the event: 5, -5, 0
    assert (s.near_leads.n, s.near_leads.median, s.near_leads.q1, s.near_leads.q3) == (3, 0, -2.5, 2.5)
    assert s.n_runs == len(outcomes)
    json.dumps(s.to_dict())  # the summary goes into truth.json as it is


def test_leads_quartiles_are_numpy_linear_percentiles():
    ld = leads([0, 10, 20, 30])
    assert (ld.q1, ld.median, ld.q3) == (7.5, 15.0, 22.5)
    assert leads([]).median is None


def _run(steps, values, name="train/loss"):
    b = RunBuilder()
    b.add_array(name, steps, values)
    return b.build("r", source="test", format="test")


def test_k_step_counts_logged_loss_points_after_the_event():
    run = _run(np.arange(0, 1000, 25), np.ones(40))
    assert truth.k_step(run, 100, 10) == 350          # every 25 steps: 10 points after 100
    assert truth.k_step(run, 110, 1) == 125
    assert truth.k_step(run, 990, 10) == 990          # nothing after: the event step itself
    assert truth.k_step(run, 900, 10) == 975          # fewer than k left: the last point
    assert truth.k_step(run, None, 10) is None
    assert truth.k_before(run, 300, 4) == 200          # 4 points before 300
    assert truth.k_before(run, 50, 10) == 0            # fewer than k before: the first point
    assert truth.k_before(run, 0, 10) == 0


def test_load_labels_resolves_lab_folders_and_lists_missing_logs(tmp_path):
    (tmp_path / "gpt-instability").mkdir()
    (tmp_path / "gpt-instability" / "a.csv.gz").write_bytes(b"")
    (tmp_path / "LABELS.csv").write_text(
        "source,run_file,steps,has_val,schedule_known,event,event_step,notes\n"
        "lab-gpt-instability,a.csv,10,0,no,divergence,7,rule\n"
        "lab-gpt-instability,b.csv,10,0,no,none,,\n"
        "lab-gpt-instability,c.csv,10,0,no,,,\n")  # a row still being written
    labs = truth.load_labels(tmp_path, "lab")
    assert [(lab.name, lab.event, lab.event_step) for lab in labs] == [
        ("lab-gpt-instability/a", "divergence", 7), ("lab-gpt-instability/b", "none", None)]
    assert labs[0].path == tmp_path / "gpt-instability" / "a.csv.gz"
    assert labs[1].path is None
    assert truth.load_labels(tmp_path / "absent", "lab") == []


def test_foreshock_and_peer_warnings_take_the_first_warning_step():
    curve = [3.0 + 0.05 * ((i * 7) % 5) for i in range(60)] + [6.0, 3.1]
    run = _run(np.arange(len(curve)) * 10, curve)
    w = truth.foreshock_warned(run, [SpikeDetector()])
    assert w.steps == [600] and (w.first["detector"], w.first["kind"]) == ("spike", "spike")
    record = {"findings": [
        {"what": "lr_schedule", "severity": "warning", "metric": "lr", "step": 0},
        {"what": "spikes", "severity": "error", "metric": "grad_norm", "step": 30},
        {"what": "spikes", "severity": "error", "metric": "train/loss", "step": 40},
        {"what": "spikes", "severity": "info", "metric": "train/loss", "step": 10},
    ]}
    assert truth.peer_warned(record).steps == [0, 30, 40]
    assert truth.peer_warned(record, ("spikes",)).steps == [40]
    assert truth.peer_warned({"error": "timed out"}).error == "timed out"


def test_every_default_detector_is_discovered():
    classes, _ = truth.detector_classes()
    assert {type(d) for d in default_detectors()} <= set(classes)


def test_losslint_steps_come_from_each_findings_details():
    assert losslint_peer._steps("loss_spike", {"steps": [160, 162]}) == [160, 162]
    assert losslint_peer._steps("step_backtrack", {"backtracks": [[4, 90]], "count": 1}) == [90]
    assert losslint_peer._steps("divergence", {"ratio": 6.3}) == []


def test_peer_child_records_a_timeout_and_goes_on(tmp_path):
    import time

    def findings(path):
        if path == "slow":
            time.sleep(5)
        return [{"what": path}]

    dest = tmp_path / "o.json"
    assert _peers.child_main(findings, [str(dest), "1", "slow", "fast"]) == 0
    res = json.loads(dest.read_text())
    assert res["slow"]["error"] == "timed out after 1 s"
    assert res["fast"]["findings"] == [{"what": "fast"}]


def test_evaluate_scores_first_warning_and_warnings_near_the_event():
    run = _run(np.arange(0, 1000, 10), np.ones(100))
    lab = truth.Labelled("lab", "src", "a.csv", "divergence", 500, None)
    healthy = truth.Labelled("lab", "src", "b.csv", "none", None, None)

    def contestant(steps):
        return truth.Contestant("c", "test", "", lambda r, lb: truth.Warned(steps=list(steps)))

    def broken(r, lb):
        raise ValueError("boom")

    cands = [contestant([20, 480]), truth.Contestant("x", "test", "", broken)]
    res = truth.evaluate([lab, healthy], {lab.name: run, healthy.name: run}, cands, k=3)
    o, _ = res["c"][0]
    assert (o.first_warning, o.k_step, o.verdict, o.lead, o.near_warning, o.near_lead) == (20, 530, "early", 480, 480, 20)
    assert res["c"][1][0].verdict == "false_alarm" and not res["c"][1][0].near
    far = truth.evaluate([lab], {lab.name: run}, [contestant([20, 460, 540])], k=3)["c"][0][0]
    assert far.near is False  # 460 and 540 are 4 points away
    failed = res["x"][0]
    assert failed[0].first_warning is None and failed[1].error == "ValueError: boom"


def test_json_has_one_line_per_outcome_and_reads_back():
    doc = {"datasets": {"s": {"runs": [{"run": "a", "x": float("nan")}],
                              "contestants": {"c": {"summary": {"n": 2},
                                                    "outcomes": [{"run": "a", "msg": 'say "hi"'}, {"run": "b"}]}}}}}
    text = truth.dump_json(doc)
    assert '{"run": "a", "msg": "say \\"hi\\""},' in [line.strip() for line in text.splitlines()]
    back = json.loads(text)
    assert back["datasets"]["s"]["contestants"]["c"]["outcomes"][1] == {"run": "b"}
    assert back["datasets"]["s"]["runs"][0]["x"] == "nan"  # non-finite floats spelled as foreshock spells them
