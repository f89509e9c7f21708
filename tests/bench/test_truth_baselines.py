"""The re-implemented callbacks fire at the step their documented rule says, on hand-built losses."""

import math

import pytest
from baselines import kill_loss_spike, lightning_spike
from baselines.kill_loss_spike import KillLossSpike
from baselines.lightning_spike import LightningSpikeDetection

# -- Lightning SpikeDetection: |loss - mean of the last 10| >= 2 x mean, worse than the last loss --


def steps(n):
    return range(0, 10 * n, 10)


def test_lightning_fires_at_three_times_the_running_mean_and_stops():
    # 2.9 is below 3x the mean of 1.0 (and joins the mean); once ten 1.0s have pushed it out, 3.1 is above
    losses = [1.0] * 5 + [2.9] + [1.0] * 10 + [3.1, 1.0]
    assert lightning_spike.fire_steps(steps(len(losses)), losses) == [160]
    det = LightningSpikeDetection()
    assert [det.update(x) for x in losses[:17]] == [False] * 16 + [True]
    with pytest.raises(RuntimeError):  # the callback raised: training is over
        det.update(1.0)


def test_lightning_mean_covers_only_the_last_ten_accepted_losses():
    # after ten 1.0s the 10.0s have left the window: 3.5 is a spike against 1.0, not against 5.5
    losses = [10.0] * 10 + [1.0] * 10 + [3.5]
    assert lightning_spike.fire_steps(steps(len(losses)), losses) == [200]
    assert lightning_spike.fire_steps(steps(len(losses)), losses, window=20) == []


def test_lightning_warmup_first_batch_and_improvements_never_fire():
    assert lightning_spike.fire_steps(steps(3), [100.0, 1.0, 1.0]) == []      # batch 0 only feeds the mean
    assert lightning_spike.fire_steps(steps(4), [1.0, 50.0, 40.0, 30.0]) == [10]
    # a falling loss is never a spike, however far it is from the mean (mode="min")
    assert lightning_spike.fire_steps(steps(5), [1.0, 0.5, 0.1, -5.0, -6.0]) == []


def test_lightning_non_finite_loss_is_a_spike_with_finite_only():
    assert lightning_spike.fire_steps(steps(4), [1.0, 1.0, math.nan, 1.0]) == [20]
    # without finite_only a NaN fails every comparison and passes; +inf is still 2x beyond the mean
    assert lightning_spike.fire_steps(steps(4), [1.0, 1.0, math.nan, 1.0], finite_only=False) == []
    assert lightning_spike.fire_steps(steps(4), [1.0, 1.0, math.inf, 1.0], finite_only=False) == [20]


def test_lightning_absolute_tolerance_when_set():
    losses = [1.0] * 5 + [3.5]
    assert lightning_spike.fire_steps(steps(6), losses, atol=3.0) == []   # 2.5 above the mean < atol
    assert lightning_spike.fire_steps(steps(6), losses, atol=2.0) == [50]


# -- llm-foundry KillLossSpike: 5 consecutive losses >= 2x the window mean; half the window > cap --


def test_kill_loss_spike_fires_on_the_fifth_consecutive_outlier():
    losses = [1.0] * 100 + [3.0] * 6
    # judging starts at the 101st loss; outliers 1..5 at indices 100..104: fires at 104, and again at 105
    assert kill_loss_spike.fire_steps(range(len(losses)), losses) == [(104, "loss_spike"), (105, "loss_spike")]


def test_kill_loss_spike_counter_resets_on_a_normal_loss():
    losses = [1.0] * 100 + [3.0] * 4 + [1.0] + [3.0] * 4
    assert kill_loss_spike.fire_steps(range(len(losses)), losses) == []


def test_kill_loss_spike_window_grows_with_the_planned_run_length():
    losses = [1.0] * 150 + [3.0] * 5
    assert kill_loss_spike.fire_steps(range(155), losses, total_batches=155) == [(154, "loss_spike")]
    # 4000 planned batches: window max(100, 0.05 x 4000) = 200, so nothing is judged before the 201st loss
    assert kill_loss_spike.fire_steps(range(155), losses, total_batches=4000) == []
    det = KillLossSpike(total_batches=4000)
    for x in [1.0] * 101:
        det.update(x)
    assert det.window_size == 200 and det.loss_window.maxlen == 200


def test_kill_loss_spike_high_losses_from_twice_the_window():
    losses = [12.0] * 250  # never 2x its mean, but above the cap of 10 from the start
    fired = kill_loss_spike.fire_steps(range(250), losses)
    assert fired[0] == (199, "high_loss")  # the 200th batch: current_step >= 2 x window_size
    assert {kind for _, kind in fired} == {"high_loss"} and len(fired) == 51


def test_kill_loss_spike_cap_stays_at_ten_as_composer_counts_batches():
    # the first window's maximum (4.0) never becomes the cap: 5.0 is not a high loss
    assert kill_loss_spike.fire_steps(range(300), [4.0] * 100 + [5.0] * 200) == []
    assert kill_loss_spike.fire_steps(range(300), [4.0] * 100 + [5.0] * 200, loss_cap=4.5)[0] == (199, "high_loss")


def test_kill_loss_spike_is_silent_after_a_nan():
    losses = [1.0] * 100 + [math.nan] + [50.0] * 10
    assert kill_loss_spike.fire_steps(range(len(losses)), losses) == []


def test_kill_loss_spike_stops_the_run_when_not_log_only():
    losses = [1.0] * 100 + [3.0] * 8
    assert kill_loss_spike.fire_steps(range(len(losses)), losses, log_only=False) == [(104, "loss_spike")]
