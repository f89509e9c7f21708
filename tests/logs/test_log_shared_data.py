"""Every shared real log loads, originals agree with their converted twins, and cut copies of
them read up to the cut or fail cleanly."""

import numpy as np
import pytest
from logsamples import DATA, HAVE_DATA, same, shared_files, twin_of

from foreshock.errors import LogFormatError
from foreshock.logs import read_log

pytestmark = pytest.mark.skipif(not HAVE_DATA, reason="shared logs not found beside the repository")

FILES = shared_files()
SCHEDULES = [p for p in FILES if p.name.endswith(".schedule.txt")]
LOGS = [p for p in FILES if p not in SCHEDULES]
ORIGINALS = [p for p in LOGS if p.parent.name == "orig" and twin_of(p) is not None]

# what a converted twin holds that its original does not: modded-nanogpt's lr_mult was computed
# from the schedule function saved beside the log, not read from the log
DERIVED = {"modded-nanogpt": {"opt/lr_mult"}}


def _id(p):
    return f"{p.parent.parent.name}/{p.name}" if p.parent.name == "orig" else f"{p.parent.name}/{p.name}"


@pytest.mark.parametrize("path", LOGS, ids=_id)
def test_every_shared_log_loads_with_a_loss(path):
    run = read_log(path)
    assert "train/loss" in run or "val/loss" in run
    assert run.skipped == [] and len(run) > 0


@pytest.mark.parametrize("path", SCHEDULES, ids=_id)
def test_schedule_functions_are_not_training_logs(path):
    with pytest.raises(LogFormatError, match="a schedule file is not a training log") as e:
        read_log(path)
    assert path.name in str(e.value)


def test_there_are_originals_with_twins_in_every_format():
    formats = {read_log(p).format for p in ORIGINALS}
    assert formats == {"json-columns", "hf-trainer-state", "text", "csv-wide"}


@pytest.mark.parametrize("orig", ORIGINALS, ids=_id)
def test_original_and_its_converted_twin_agree(orig):
    original, twin = read_log(orig), read_log(twin_of(orig))
    expected = set(twin.names) - DERIVED.get(orig.parent.parent.name, set())
    assert expected and expected <= set(original.names)
    for name in expected:
        assert same(original[name].steps, twin[name].steps), name
        assert same(original[name].values, twin[name].values), name


def _samples():
    """One shared file per reader and style, plus its bytes."""
    picks = [
        "multipowerlaw/orig/100M__cosine_24000.csv", "muon-grokking/orig/adamw_sweep_lr_1em2_wd_3p0_seed_0.csv",
        "hf-trainer-state/orig/tinyllama-finetune.trainer_state.json",
        "eos-browser/orig/learning_rate__unstable_phase.json",
        "modded-nanogpt/orig/t1_short__2024-10-10_Muon__eb5659d0-fb6a.txt",
        "modded-nanogpt/orig/t1_short__2024-06-06_AdamW__f66d43d7-e449.log",
        "hf-trainer-state/t5-summarization-demo.csv.gz", "eos-browser/learning_rate__unstable_phase.csv.gz",
    ]
    return [DATA / p for p in picks] if HAVE_DATA else []


@pytest.mark.parametrize("path", _samples(), ids=_id)
def test_cut_copies_read_a_good_prefix_or_fail_cleanly(path, tmp_path):
    full = read_log(path)
    data = path.read_bytes()
    for fraction in (0.13, 0.37, 0.5, 0.81, 0.997):
        at = int(len(data) * fraction)
        if not path.name.endswith(".gz"):
            while data[at - 1: at] == b"\n":  # make it a cut inside a line
                at -= 1
        cut = tmp_path / f"{fraction}_{path.name}"
        cut.write_bytes(data[:at])
        try:
            run = read_log(cut, format=full.format)
        except LogFormatError as e:
            assert cut.name in str(e)
            continue
        assert run.skipped, f"{cut.name}: a cut file must say that something was skipped"
        for name in set(run.names) & set(full.names):
            n = len(run[name])
            assert n <= len(full[name])
            assert np.array_equal(run[name].steps, full[name].steps[:n]), name
            assert same(run[name].values, full[name].values[:n]), name
