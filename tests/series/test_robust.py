"""The robust band: equal streaming and vectorised, calibrated on normal noise, unmoved by spikes."""

import numpy as np
import pytest

from foreshock.series import MAD_SCALE, band_state, band_step, new_band_state, robust_band


@pytest.mark.parametrize("window,min_periods", [(1, 1), (7, 3), (8, 8), (51, 10)])
def test_band_step_equals_robust_band_and_band_state(window, min_periods):
    rng = np.random.default_rng(window)
    for n in (0, 1, 2 * min_periods, 400):
        y = np.exp(rng.standard_normal(n)) * 3.0
        band = robust_band(y, window, min_periods)
        state = new_band_state()
        meds, scales = [], []
        for v in y.tolist():
            m, s = band_step(state, v, window, min_periods)
            meds.append(np.nan if m is None else m)
            scales.append(np.nan if s is None else s)
        assert np.array_equal(band.median, np.array(meds), equal_nan=True)
        assert np.array_equal(band.scale, np.array(scales), equal_nan=True)
        assert band_state(y, band, window) == state


def test_scale_estimates_the_standard_deviation_of_normal_noise():
    rng = np.random.default_rng(0)
    y = 5.0 + 0.2 * rng.standard_normal(20000)
    band = robust_band(y, 101, 20)
    # residuals from a median of 101 points carry that median's own error too (about 1.25 / sqrt(101))
    assert np.nanmedian(band.scale) == pytest.approx(0.2, rel=0.06)
    assert MAD_SCALE == pytest.approx(1 / 0.6744897501960817, rel=1e-4)


def test_scale_needs_min_periods_residuals_after_the_first_median():
    band = robust_band(np.arange(30.0), 10, 4)
    assert np.isnan(band.median[:4]).all() and not np.isnan(band.median[4:]).any()
    assert np.isnan(band.scale[:8]).all() and not np.isnan(band.scale[8:]).any()


def test_a_few_spikes_in_the_window_do_not_move_the_band():
    rng = np.random.default_rng(1)
    clean = 3.0 + 0.05 * rng.standard_normal(300)
    spiky = clean.copy()
    spiky[[200, 207, 215, 230]] *= 20.0
    a, b = robust_band(clean, 51, 10), robust_band(spiky, 51, 10)
    after = slice(231, 300)
    assert np.max(np.abs(a.median[after] - b.median[after])) < 0.03
    assert np.max(np.abs(a.scale[after] / b.scale[after] - 1)) < 0.25
