import numpy as np
import pytest

from foreshock.forecast import annealing_law, multi_power_law, parse_schedule, power_law
from foreshock.forecast.laws import annealing_area, design, lr_area

LR = np.array([1.0, 1.0, 0.5, 0.5])  # peak for two updates, then halved


def test_power_law_by_hand():
    assert np.allclose(power_law(np.array([1, 4]), 2.0, 3.0, 0.5), [5.0, 3.5])


def test_areas_by_hand():
    assert np.allclose(lr_area(LR), [0, 1, 2, 2.5, 3])
    # d = [0, 0, 0.5, 0]; lam = 0.5: m = [0, 0, 0.5, 0.25]; S2 = cumulative sums
    assert np.allclose(annealing_area(LR, 0.5), [0, 0, 0, 0.5, 0.75])


def test_warmup_rise_is_not_annealing():
    assert np.allclose(annealing_area(np.array([0.5, 1.0, 1.0, 0.5]), 0.5), [0, 0, 0, 0, 0.5])


def test_annealing_law_by_hand():
    # s = 4: S1 = 3, S2 = 0.75 -> 1 + 2 / sqrt(3) - 0.4 * 0.75
    got = annealing_law(np.array([2, 4]), LR, 1.0, 2.0, 0.5, 0.4, lam=0.5)
    assert np.allclose(got, [1 + 2 / np.sqrt(2), 1 + 2 / np.sqrt(3) - 0.3])


def test_multi_power_law_by_hand():
    # t = 4: one decrease, at update k = 2 (0.5); S_k = lr[2] + lr[3] = 1; x = 0.5**-1 * 1 = 2;
    # G = 1 - (C x + 1)**-beta = 1 - 3**-1 = 2/3; LD = B * 0.5 * 2/3
    L0, A, alpha, B, C, beta, gamma = 1.0, 2.0, 0.5, 0.9, 1.0, 1.0, 1.0
    got = multi_power_law(np.array([2, 3, 4]), LR, L0, A, alpha, B, C, beta, gamma)
    # t = 3: S_k = lr[2] = 0.5, x = 1, G = 1/2
    want = [1 + 2 / np.sqrt(2), 1 + 2 / np.sqrt(2.5) - 0.9 * 0.5 * 0.5, 1 + 2 / np.sqrt(3) - 0.9 * 0.5 * 2 / 3]
    assert np.allclose(got, want)


def test_multi_power_on_constant_lr_is_a_power_law_in_lr_area():
    lr = np.full(100, 0.1)
    s = np.array([10, 50, 100])
    got = multi_power_law(s, lr, 1.0, 2.0, 0.5, 100.0, 1.0, 0.5, 0.5)
    assert np.allclose(got, 1.0 + 2.0 * (0.1 * s) ** -0.5)


def test_grouped_terms_stay_close_to_exact():
    lr = parse_schedule("cosine:peak=3e-4,final=3e-5,warmup=200,total=20000").table(20000)
    s = np.array([1000, 5000, 12000, 20000])
    theta = (3.0, 0.5, 0.5, 600.0, 2.0, 0.5, 0.6)
    exact = multi_power_law(s, lr, *theta)
    from foreshock.forecast.laws import LAWS

    grouped = LAWS["multi-power"](np.array(theta), design(s, lr, max_terms=200))
    assert np.max(np.abs(grouped - exact)) < 1e-3 * np.ptp(exact) + 1e-6


def test_design_rejects_steps_outside_the_table():
    with pytest.raises(ValueError, match="1..4"):
        design(np.array([0, 2]), LR)
