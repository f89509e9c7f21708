import argparse
import json
import math
from pathlib import Path

import pytest

import foreshock
import foreshock.detect
from foreshock.cli import build_parser, main
from foreshock.detect.base import Detector

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
JSON_KEYS = {"run", "source", "format", "steps", "metrics", "events", "skipped_records", "skipped", "phases", "health",
             "forecast"}
EVENT_KEYS = {"detector", "kind", "severity", "step", "onset_step", "message", "evidence"}


def write_log(path, losses, *, lr=1e-3, extra_lines=""):
    """A long-CSV log written by hand: train/loss and lr every step, val/loss every 10 steps."""
    lines = ["step,name,value"]
    for step, loss in enumerate(losses):
        lines.append(f"{step},train_loss,{loss}")
        lines.append(f"{step},lr,{lr}")
        if step % 10 == 0:
            lines.append(f"{step},val_loss,{loss + 0.05}")
    path.write_text("\n".join(lines) + "\n" + extra_lines)
    return path


@pytest.fixture
def healthy(tmp_path):
    return write_log(tmp_path / "healthy.csv", [round(4.0 * math.exp(-s / 60) + 1.0, 5) for s in range(200)])


@pytest.fixture
def diverged(tmp_path):
    losses = [round(4.0 * math.exp(-s / 60) + 1.0, 5) for s in range(150)]
    losses += [2.0 * 3.0**k for k in range(1, 20)] + [math.inf] + [math.nan] * 30
    return write_log(tmp_path / "diverged.csv", losses)


@pytest.fixture
def garbage(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes\nnothing here is a training log\n")
    return path


class LossAlarm(Detector):
    """Warning when train/loss exceeds a limit, critical when it is not finite: a known trigger."""

    name = "loss_alarm"
    metrics = ("train/loss",)

    def __init__(self, limit: float = 10.0):
        super().__init__()
        self.limit = limit

    def update(self, step, values):
        v = values["train/loss"]
        if not math.isfinite(v):
            return [self._event("nan", "critical", step, step, "train/loss is not finite.", metric="train/loss", value=v)]
        if v > self.limit:
            return [self._event("spike", "warning", step, step, "train/loss is over the limit.", metric="train/loss",
                                value=v, limit=self.limit)]
        return []


@pytest.fixture
def alarm(monkeypatch):
    """Make the default detectors one whose firing the test controls, whatever the shipped ones do."""
    monkeypatch.setattr(foreshock.detect, "default_detectors", lambda: [LossAlarm()])


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    # rich wraps at 80 columns when it is not writing to a terminal; paths in tmp dirs are longer
    monkeypatch.setenv("COLUMNS", "200")


def run_main(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- help and version -----------------------------------------------------------------------------


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_command_and_option_has_help(capsys):
    parser = build_parser()
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    commands = _subparsers(parser)
    assert set(commands) == {"analyze", "check", "demo", "forecast", "lab", "runs"}
    for name, sub in commands.items():
        assert name in out
        code, sub_out, _ = run_main(capsys, name, "--help")
        assert code == 0 and sub.description and sub.description.split()[0] in sub_out
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
            for flag in action.option_strings:
                assert flag in sub_out
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            assert action.help, action.dest


def test_version(capsys):
    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and out.strip() == f"foreshock {foreshock.__version__}"


def test_no_command_or_no_path_is_a_usage_error(capsys):
    code, out, _ = run_main(capsys)
    assert code == 2 and "analyze" in out
    code, _, err = run_main(capsys, "analyze")
    assert code == 2 and "give at least one PATH" in err
    code, _, err = run_main(capsys, "check", "x.csv", "--fail-on", "bad")
    assert code == 2 and "invalid choice" in err


# -- analyze ----------------------------------------------------------------------------------------


def test_analyze_prints_a_terminal_summary(capsys, healthy):
    code, out, err = run_main(capsys, "analyze", healthy)
    assert code == 0, err
    assert "run healthy" in out and str(healthy) in out
    for name in ("train/loss", "val/loss", "opt/lr"):
        assert name in out
    assert "0 - 199" in out and "verdict" in out


def test_analyze_json_is_one_strict_object_per_run(capsys, healthy, diverged):
    code, out, err = run_main(capsys, "analyze", healthy, diverged, "--json")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2

    def refuse(constant):
        raise AssertionError(f"{constant} is not strict JSON")

    objs = [json.loads(line, parse_constant=refuse) for line in lines]
    assert [o["run"] for o in objs] == ["healthy", "diverged"]
    for o in objs:
        assert set(o) == JSON_KEYS
        assert {"train/loss", "val/loss", "opt/lr"} <= set(o["metrics"])
        assert o["steps"][0] == 0 and o["skipped_records"] == 0
        for e in o["events"]:
            assert set(e) == EVENT_KEYS and "metric" in e["evidence"]


def test_analyze_json_with_a_known_detector_reports_its_events(capsys, diverged, alarm):
    code, out, _ = run_main(capsys, "analyze", diverged, "--json")
    events = json.loads(out)["events"]
    assert code == 0
    assert events[0]["kind"] == "spike" and events[0]["evidence"]["value"] > 10
    nonfinite = [e for e in events if e["severity"] == "critical"]
    assert nonfinite[0]["step"] == 169 and nonfinite[0]["evidence"]["value"] == "inf"
    assert nonfinite[1]["evidence"]["value"] == "nan"  # strict JSON: non-finite floats as strings


def test_terminal_events_table_with_a_known_detector(capsys, diverged, alarm):
    code, out, _ = run_main(capsys, "analyze", diverged)
    assert code == 0
    assert "CRITICAL" in out and "first critical: nan at step 169" in " ".join(out.split())
    assert "train/loss is not finite." in out and "value=inf" in out


def test_skipped_records_are_reported_with_their_line(capsys, tmp_path):
    path = write_log(tmp_path / "cut.csv", [3.0, 2.9, 2.8], extra_lines="3,train_loss,2.")  # cut mid-write
    code, out, _ = run_main(capsys, "analyze", path, "--json")
    obj = json.loads(out)
    assert code == 0 and obj["skipped_records"] >= 1
    assert obj["skipped"][0]["line"] == 9
    code, out, _ = run_main(capsys, "analyze", path)
    assert "skipped" in out and "line 9" in out


def test_unreadable_path_is_a_one_line_error_and_exit_2(capsys, garbage, healthy, tmp_path):
    code, out, err = run_main(capsys, "analyze", garbage)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(garbage) in err and err.startswith("foreshock: error:")
    # the readable one is still analysed and printed
    code, out, err = run_main(capsys, "analyze", healthy, tmp_path / "missing.csv", "--json")
    assert code == 2 and json.loads(out)["run"] == "healthy"
    assert "missing.csv" in err and len(err.strip().splitlines()) == 1


def test_store_keeps_one_copy_of_a_run_analysed_twice(capsys, tmp_path, diverged, healthy, alarm):
    db = tmp_path / "runs.db"
    for _ in range(2):
        code, _, err = run_main(capsys, "analyze", diverged, healthy, "--store", db)
        assert code == 0, err
    code, out, _ = run_main(capsys, "runs", "--store", db, "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert sorted(r["name"] for r in rows) == ["diverged", "healthy"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["diverged"]["worst_severity"] == "critical" and by_name["healthy"]["n_events"] == 0
    assert by_name["diverged"]["first_step"] == 0 and by_name["diverged"]["last_step"] == 199
    code, out, _ = run_main(capsys, "runs", "--store", db)
    assert code == 0 and "diverged" in out and "healthy" in out and "2 run(s)" in out
    # the stored run reads back through the same command
    code, out, _ = run_main(capsys, "analyze", db, "--json")
    assert code == 0 and json.loads(out)["run"] == "healthy"


def test_runs_on_a_missing_or_foreign_file_is_exit_2(capsys, tmp_path, garbage):
    code, _, err = run_main(capsys, "runs", "--store", tmp_path / "none.db")
    assert code == 2 and "does not exist" in err
    code, _, err = run_main(capsys, "runs", "--store", garbage)
    assert code == 2 and "not a run store" in err


def test_html_report_is_one_offline_file(capsys, tmp_path, healthy, diverged, alarm):
    report = tmp_path / "report.html"
    code, out, _ = run_main(capsys, "analyze", healthy, diverged, "--html", report)
    assert code == 0 and f"wrote {report}" in " ".join(out.split())
    text = report.read_text(encoding="utf-8")
    assert '<script src="http' not in text
    assert "* plotly.js v" in text  # the bundle itself, inlined
    assert "<h2>healthy</h2>" in text and "<h2>diverged</h2>" in text
    assert "train/loss is not finite." in text


def test_json_and_html_together_keep_stdout_json(capsys, tmp_path, healthy):
    code, out, err = run_main(capsys, "analyze", healthy, "--json", "--html", tmp_path / "r.html")
    assert code == 0 and json.loads(out)["run"] == "healthy" and "wrote" in err


# -- check ------------------------------------------------------------------------------------------


def test_check_exit_codes(capsys, healthy, diverged, garbage, alarm):
    code, out, _ = run_main(capsys, "check", healthy)
    assert code == 0 and out.startswith("ok   healthy: no event at or above warning")
    code, out, _ = run_main(capsys, "check", healthy, diverged)
    assert code == 1
    verdicts = out.strip().splitlines()
    assert len(verdicts) == 2 and verdicts[1].startswith("FAIL diverged:") and "critical nan at step 169" in verdicts[1]
    code, out, _ = run_main(capsys, "check", diverged, "--fail-on", "critical")
    assert code == 1
    code, _, err = run_main(capsys, "check", healthy, garbage)
    assert code == 2 and str(garbage) in err
    code, _, _ = run_main(capsys, "check", diverged, garbage)
    assert code == 2  # unreadable input wins: the gate cannot vouch for what it could not read


def test_check_fail_on_threshold(capsys, tmp_path, alarm):
    warn_only = write_log(tmp_path / "warn.csv", [1.0] * 20 + [50.0] + [1.0] * 20)
    assert run_main(capsys, "check", warn_only, "--fail-on", "warning")[0] == 1
    code, out, _ = run_main(capsys, "check", warn_only, "--fail-on", "critical")
    assert code == 0 and "(1 below critical)" in out
    assert run_main(capsys, "check", warn_only, "--fail-on", "info")[0] == 1


# -- with the shipped detectors and data ------------------------------------------------------------


def test_sample_works_on_a_fresh_install(capsys):
    code, out, err = run_main(capsys, "analyze", "--sample", "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert obj["run"] == "sample_run" and set(obj) == JSON_KEYS
    assert {"train/loss", "val/loss", "opt/lr", "opt/grad_norm"} <= set(obj["metrics"])
    assert obj["steps"] == [0, 1378]
    # the sample diverges to NaN: the shipped detectors must say so at warning or above
    assert run_main(capsys, "check", "--sample")[0] == 1


def test_sample_terminal_report(capsys):
    code, out, _ = run_main(capsys, "analyze", "--sample")
    assert code == 0 and "run sample_run" in out and "non-finite from step" in out


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared training logs not present")
def test_real_logs_end_to_end(capsys):
    healthy = SHARED / "modded-nanogpt" / "t1_short__2024-11-24_WindowWarmup__3151f69a-f89e.csv.gz"
    text_log = SHARED / "modded-nanogpt" / "orig" / "t1_short__2024-10-10_Muon__eb5659d0-fb6a.txt"
    code, out, err = run_main(capsys, "analyze", healthy, text_log, "--json")
    assert code == 0, err
    objs = [json.loads(line) for line in out.strip().splitlines()]
    assert {"train/loss", "val/loss"} <= set(objs[0]["metrics"]) and objs[0]["steps"][1] >= 1700
    assert {"train/loss", "val/loss"} <= set(objs[1]["metrics"]) and objs[1]["steps"][1] == 6200
    code, out, _ = run_main(capsys, "check", healthy, "--fail-on", "critical")
    assert code in (0, 1) and out.startswith(("ok", "FAIL"))  # the verdict, whatever the calibration
