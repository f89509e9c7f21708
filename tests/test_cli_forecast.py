import json
from pathlib import Path

import numpy as np
import pytest

from foreshock.cli import main

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SPEC = "cosine:peak=1e-3,final=1e-4,warmup=10,total=1000"


@pytest.fixture
def log(tmp_path):
    """A long-CSV log: a power-law train/loss every 10 steps, val/loss every 100, lr every 10."""
    lines = ["step,name,value"]
    for s in range(10, 801, 10):
        lines.append(f"{s},train_loss,{2.0 + 3.0 * s ** -0.5:.6f}")
        lines.append(f"{s},lr,1e-3")
        if s % 100 == 0:
            lines.append(f"{s},val_loss,{2.1 + 3.0 * s ** -0.5:.6f}")
    path = tmp_path / "run.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_json_has_the_documented_keys_and_defaults(log, capsys):
    assert main(["forecast", str(log), "--schedule", SPEC, "--law", "power", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"law", "metric", "fit_until", "at", "value", "lo", "hi", "params"} <= set(out)
    assert out["metric"] == "val/loss" and out["at"] == 1000 and out["fit_until"] == 800
    assert out["lo"] <= out["value"] <= out["hi"]
    assert out["value"] == pytest.approx(2.1 + 3.0 * 1000 ** -0.5, abs=0.02)


def test_text_output_and_metric_choice(log, capsys):
    assert main(["forecast", str(log), "--metric", "train/loss", "--at", "1600", "--fit-until", "400",
                 "--law", "power"]) == 0
    out = capsys.readouterr().out
    assert "train/loss at step 1600" in out and "90% interval" in out and "L_inf=" in out


def test_lr_from_log(log, capsys):
    assert main(["forecast", str(log), "--lr-from-log", "--law", "annealing", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["at"] == 800 and out["law"] == "annealing" and set(out["params"]) == {"L0", "A", "alpha", "C"}


@pytest.mark.parametrize("args, words", [
    (["--schedule", "cosine:peak=1e-3"], ["missing total"]),
    (["--law", "multi-power", "--at", "900"], ["needs the LR schedule"]),
    (["--law", "power"], ["give at="]),
    (["--metric", "val/acc", "--at", "900"], ["no metric 'val/acc'"]),
])
def test_bad_input_exits_2_with_a_reason(log, capsys, args, words):
    assert main(["forecast", str(log), *args]) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err
    assert str(log) in err


def test_schedule_and_lr_from_log_exclude_each_other(log, capsys):
    assert main(["forecast", str(log), "--schedule", SPEC, "--lr-from-log"]) == 2


@pytest.mark.skipif(not (SHARED / "multipowerlaw").is_dir(), reason="shared data not present")
def test_real_wsd_run_from_its_logged_lr(capsys):
    path = SHARED / "multipowerlaw" / "25M__constant_24000.csv.gz"
    assert main(["forecast", str(path), "--lr-from-log", "--fit-until", "12000", "--law", "annealing",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    truth = 3.3473  # the run's logged final train/loss (step 23936)
    assert out["at"] == 23936 and abs(out["value"] - truth) / truth < 0.02
    assert np.isfinite(out["lo"]) and np.isfinite(out["hi"])


@pytest.mark.skipif(not (SHARED / "multipowerlaw").is_dir(), reason="shared data not present")
def test_reference_run_supplies_the_decay_response(capsys):
    mpl = SHARED / "multipowerlaw"
    assert main(["forecast", str(mpl / "25M__wsd_20000_24000.csv.gz"), "--lr-from-log", "--fit-until", "8000",
                 "--law", "annealing", "--reference", str(mpl / "25M__cosine_24000.csv.gz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    truth = 3.2766  # the run's logged final train/loss (step 23904)
    assert abs(out["value"] - truth) / truth < 0.01
    assert out["sources"]["C"].startswith("reference: 25M__cosine_24000 (prior median")
    assert out["sources"]["L0"].startswith("fit on")
