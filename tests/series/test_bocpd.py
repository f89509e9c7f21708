"""Online change points: planted shifts found fast, none on stationary noise of any scale, bounded state."""

import json

import numpy as np
import pytest

from foreshock.series.bocpd import BOCPD, run_length_posterior, student_t_logpdf


def changes(x, **kw):
    cp = BOCPD(**kw)
    return [(cp.change.index, cp.change.detected_at) for v in x if cp.update(v).change_detected], cp


@pytest.mark.parametrize("seed", range(6))
def test_planted_mean_shifts_are_found_within_a_few_steps(seed):
    rng = np.random.default_rng(seed)
    sizes = [300, 250, 400, 200]
    levels = [0.0, 3.0, -1.0, 2.0]
    x = np.concatenate([lvl + rng.standard_normal(n) for lvl, n in zip(levels, sizes, strict=True)])
    found, _ = changes(x)
    planted = np.cumsum(sizes)[:-1]
    assert [i for i, _ in found] == pytest.approx(list(planted), abs=2)
    assert all(0 <= at - i <= 10 for i, at in found)  # declared within `delay` values of the change
    assert all(at - i <= 6 for i, at in found)  # in fact within a few


def test_the_change_carries_the_two_levels_and_the_length_before():
    rng = np.random.default_rng(7)
    x = np.concatenate([10.0 + 0.1 * rng.standard_normal(500), 9.0 + 0.1 * rng.standard_normal(100)])
    cp = BOCPD()
    for v in x:
        cp.update(v)
    c = cp.change
    assert c.index == 500 and c.length_before == 500 and c.probability >= 0.9
    assert c.mean_before == pytest.approx(10.0, abs=0.02) and c.mean_after == pytest.approx(9.0, abs=0.1)
    assert cp.run_length == 100  # restarted at the change: the model now describes the new level only


@pytest.mark.parametrize("scale", [1e-9, 1.0, 1e12])
@pytest.mark.parametrize("seed", range(2))
def test_no_change_on_stationary_noise_of_any_scale(scale, seed):
    rng = np.random.default_rng(seed)
    for noise in (rng.standard_normal(2000), rng.laplace(size=2000)):  # Gaussian and heavy-tailed
        found, cp = changes(5.0 * scale + scale * noise)
        assert found == [], (scale, found)
        assert cp.change_prob < 0.5


def test_posterior_is_the_same_whatever_the_scale_and_offset():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(200), 2.0 + rng.standard_normal(200)])
    a = BOCPD(max_hypotheses=30)
    b = BOCPD(max_hypotheses=30)
    for v in x:
        a.update(v)
        b.update(1e7 + 3e5 * v)
        assert a.change_prob == pytest.approx(b.change_prob, abs=1e-6)
    assert a.change.index == b.change.index == 200


def test_state_size_is_constant_after_r_steps():
    rng = np.random.default_rng(2)
    cp = BOCPD(max_hypotheses=25, restarts=False)
    sizes = set()
    for i, v in enumerate(rng.standard_normal(2000)):
        cp.update(v)
        if i >= 100 and i % 50 == 0:
            state = json.loads(json.dumps(cp.state(), allow_nan=False))
            sizes.add(sum(len(v) if isinstance(v, list) else 1 for v in state.values()))
            sizes.add(sum(getattr(cp, k).nbytes for k in ("lengths", "log_post", "mu", "beta", "sums")))
    assert len(sizes) == 2  # one count of values, one number of bytes, from step 100 to step 2000
    assert all(len(cp.state()[k]) == 25 for k in ("lengths", "log_post", "mu", "beta", "sums"))
    assert len(cp.posterior) == 25 and sum(cp.posterior.values()) == pytest.approx(1.0)


def test_truncated_posterior_equals_the_untruncated_recursion_on_a_short_series():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(60), 1.5 + rng.standard_normal(60)])
    exact = run_length_posterior(x)  # every run length kept: Adams & MacKay's full recursion
    assert all(len(p) == min(i + 1, len(x)) for i, p in enumerate(exact) if i >= 7)
    roomy = run_length_posterior(x, max_hypotheses=len(x) + 2)
    assert roomy == exact
    small = run_length_posterior(x, max_hypotheses=80)
    for full, kept in zip(exact, small, strict=True):
        assert set(kept) <= set(full)
        if not full:
            continue  # the first values only set the noise level
        dropped = 1.0 - sum(full[r] for r in kept)
        assert dropped < 1e-4  # what is dropped is negligible, and so is its effect on what is kept
        for r, p in kept.items():
            assert p == pytest.approx(full[r], abs=1e-4)
    assert max(exact[-1], key=exact[-1].get) == pytest.approx(60, abs=2)  # the change is in the posterior


def test_reference_recursion_matches_a_hand_written_adams_mackay():
    # an independent implementation with plain Python lists: growth and change probabilities, renormalised
    rng = np.random.default_rng(4)
    x = rng.standard_normal(40)
    h, k0, a0 = 1e-3, 0.01, 2.0
    got = run_length_posterior(x, hazard=h)
    noise = np.median(np.abs(np.diff(x[:8]))) / (0.6744897501960817 * np.sqrt(2.0))
    b0 = (a0 - 1) * noise**2
    hyps, post = [], []  # (n, mu, beta) per hypothesis
    for i, v in enumerate(x):
        if i >= 8 and (i + 1 - 8) % 16 == 0:
            noise = np.median(np.abs(np.diff(x[max(0, i - 63):i + 1]))) / (0.6744897501960817 * np.sqrt(2.0))
            b0 = (a0 - 1) * noise**2
        prev = x[i - 1] if i else v
        new = [(1, (k0 * prev + v) / (k0 + 1), b0 + k0 * (v - prev) ** 2 / (2 * (k0 + 1)))]
        if hyps:
            pred = [np.exp(student_t_logpdf(v, np.array([m]), np.array([k0 + n]), np.array([a0 + n / 2]),
                                            np.array([b]))[0]) for n, m, b in hyps]
            p0 = np.exp(student_t_logpdf(v, np.array([prev]), np.array([k0]), np.array([a0]), np.array([b0]))[0])
            grown = [p * q * (1 - h) for p, q in zip(post, pred, strict=True)]
            weights = grown + [p0 * h]
            new = [(n + 1, ((k0 + n) * m + v) / (k0 + n + 1), b + (k0 + n) * (v - m) ** 2 / (2 * (k0 + n + 1)))
                   for n, m, b in hyps] + new
        else:
            weights = [1.0]
        hyps, post = new, list(np.array(weights) / sum(weights))
        if i >= 7:
            want = {n: p for (n, _, _), p in zip(hyps, post, strict=True)}
            assert got[i] == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_state_round_trips_through_json_and_resumes_exactly():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal(300), 4 + rng.standard_normal(300)])
    whole = BOCPD()
    expected = [whole.update(v).change_prob for v in x]
    first = BOCPD()
    part = [first.update(v).change_prob for v in x[:310]]
    resumed = BOCPD().load(json.loads(json.dumps(first.state())))
    assert part + [resumed.update(v).change_prob for v in x[310:]] == expected
    assert resumed.state() == whole.state()


def test_bad_parameters_are_refused():
    for kw in ({"hazard": 0.0}, {"max_hypotheses": 1}, {"min_length": 20}, {"alpha0": 1.0}, {"threshold": 0.0},
               {"min_jump": -1.0}):
        with pytest.raises(ValueError):
            BOCPD(**kw)
