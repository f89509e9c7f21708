"""Runs of a boolean series and chunked first-index search, against plain Python."""

import numpy as np

from foreshock.series import first_true, running_streak, true_runs


def brute_runs(mask):
    starts, lengths, i = [], [], 0
    while i < len(mask):
        if mask[i]:
            j = i
            while j < len(mask) and mask[j]:
                j += 1
            starts.append(i)
            lengths.append(j - i)
            i = j
        else:
            i += 1
    return starts, lengths


def test_true_runs_and_running_streak_match_plain_python():
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 17, 500):
        for p in (0.1, 0.5, 0.95):
            mask = rng.random(n) < p
            starts, lengths = true_runs(mask)
            assert (starts.tolist(), lengths.tolist()) == brute_runs(mask.tolist())
            ones = zeros = 0
            for v in mask.tolist():
                ones, zeros = (ones + 1, 0) if v else (0, zeros + 1)
            assert running_streak(mask) == ones
            assert running_streak(~mask) == zeros


def test_first_true_finds_the_first_hit_across_chunk_boundaries():
    x = np.zeros(10_000, dtype=bool)
    for hit in (0, 63, 64, 65, 191, 192, 5000, 9999):
        x[:] = False
        x[hit] = True
        calls = []

        def cond(lo, hi, x=x, calls=calls):
            calls.append((lo, hi))
            return x[lo:hi]

        assert first_true(cond, 0, len(x)) == hit
        assert first_true(cond, hit + 1, len(x)) is None
        assert first_true(cond, hit, hit) is None
        # chunks double, so a far hit costs a handful of calls, not one per point
        assert len(calls) < 40
