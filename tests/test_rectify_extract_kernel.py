"""Rectification, optimal extraction and path-loss kernels: exactness and variances."""

import numpy as np
import pytest
from scipy.special import erf

from nodcombine.extract_1d.optimal import flux_information, optimal_extract, window_bins
from nodcombine.nod_diff.noddiff import nod_difference
from nodcombine.pathloss import slit_transmission
from nodcombine.profile import pixel_integrated_gaussian
from nodcombine.rectify.nearest_bin import bin_edges, pixel_weights, rectify, wavelength_grid
from nodcombine.variances import VARIANCE_COMPONENTS

NY, NX = 13, 6
SOURCE_ROWS = {0: 2.0, 1: 10.0}  # source row of each nod position


def _exposures(positions, rng, *, flux=50.0, sky=7.0, noise=True):
    """Exposures of a two-position nod: sky + a Gaussian source at the position's row."""
    rows = np.arange(NY, dtype=float)[:, None]
    data, var = [], []
    for p in positions:
        profile = pixel_integrated_gaussian(rows, SOURCE_ROWS[p], 0.8)[0]
        truth = sky + flux * profile * np.ones((1, NX))
        variance = {
            "var_poisson": 0.02 * truth,
            "var_rnoise": np.full((NY, NX), 0.5),
            "var_flat": np.full((NY, NX), 0.01),
        }
        sd = np.sqrt(sum(variance.values()))
        data.append(truth + (rng.normal(size=truth.shape) * sd if noise else 0.0))
        var.append(variance)
    stack = {c: np.stack([v[c] for v in var]) for c in VARIANCE_COMPONENTS}
    return np.stack(data), stack


def _geometry(positions):
    rows = np.arange(NY, dtype=float)[None, :, None]
    centre = np.array([SOURCE_ROWS[p] for p in positions])[:, None, None]
    offset = np.broadcast_to(rows - centre, (len(positions), NY, NX))
    profile = pixel_integrated_gaussian(offset, 0.0, 0.8)[0]
    wave = np.broadcast_to(1.0 + 0.1 * np.arange(NX)[None, None, :], offset.shape)
    return offset, profile, wave


def _rectified(data, variances, positions, weight_type="ivm"):
    result = nod_difference(data, variances, positions, n_sigma_outlier=0)
    offset, profile, wave = _geometry(positions)
    weights = pixel_weights(weight_type, result.variances, np.ones(len(positions)))
    return rectify(
        result.data,
        result.variances,
        result.ref_variances,
        weights,
        wave,
        offset,
        profile,
        np.asarray(positions),
        wave_grid=wavelength_grid(wave[:, 0, :], linear=True),
        half_height=10,
    )


def test_constant_sky_cancels_exactly():
    positions = [0, 1, 0, 1]
    data, variances = _exposures(positions, None, flux=0.0, sky=123.456, noise=False)
    image = _rectified(data, variances, positions)
    filled = ~image.empty
    assert filled.sum() > 0
    np.testing.assert_allclose(image.data[filled], 0.0, atol=1e-12)


def test_every_usable_pixel_lands_in_exactly_one_bin():
    positions = [0, 1, 0, 1]
    data, variances = _exposures(positions, np.random.default_rng(0))
    image = _rectified(data, variances, positions)
    # offsets span -10 .. +10: every difference pixel of every exposure is inside
    assert image.npixels.sum() == data.size
    assert image.weight[image.empty].sum() == 0


def test_noiseless_source_is_rectified_to_flux_times_profile():
    positions = [0, 1]
    data, variances = _exposures(positions, None, flux=50.0, noise=False)
    image = _rectified(data, variances, positions)
    core = np.abs(image.offset) <= 2
    np.testing.assert_allclose(image.data[core], 50.0 * image.profile[core], rtol=1e-10)


@pytest.mark.parametrize("positions", [[0, 1, 0, 1], [0, 1, 0, 1, 0, 1], [0, 1]])
def test_bin_variance_matches_monte_carlo_with_shared_reference(positions):
    rng = np.random.default_rng(42)
    draws = [
        _rectified(*_exposures(positions, rng, flux=30.0), positions).data for _ in range(3000)
    ]
    reported = _rectified(*_exposures(positions, rng, flux=30.0), positions).variance
    empirical = np.var(np.stack(draws), axis=0, ddof=1)
    ratio = empirical / reported
    # 3000 draws: the variance ratio scatters by sqrt(2/3000) = 2.6 % per bin
    assert abs(np.nanmedian(ratio) - 1.0) < 0.02
    assert np.nanmax(np.abs(ratio - 1.0)) < 0.15


def test_shared_reference_matters_for_repeated_exposures():
    """Counting the shared reference as independent would understate the variance."""
    positions = [0, 1, 0, 1]
    data, variances = _exposures(positions, np.random.default_rng(1))
    result = nod_difference(data, variances, positions, n_sigma_outlier=0)
    offset, profile, wave = _geometry(positions)
    weights = pixel_weights("ivm", result.variances, np.ones(4))
    args = (result.data, result.variances)
    grid = {"wave_grid": wave[0, 0], "half_height": 10}
    exact = rectify(
        *args, result.ref_variances, weights, wave, offset, profile, np.array(positions), **grid
    )
    zero_ref = {c: np.zeros_like(v) for c, v in result.ref_variances.items()}
    naive = rectify(*args, zero_ref, weights, wave, offset, profile, np.array(positions), **grid)
    ratio = np.nanmedian(np.sqrt(exact.variance / naive.variance))
    # two exposures a position, reference = mean of two: the shared term adds ~1/4
    assert ratio > 1.05


def test_wavelength_grids():
    wave = np.array([[1.0, 1.1, 1.3, 1.6], [1.02, 1.12, 1.32, 1.62]])
    native = wavelength_grid(wave, linear=False)
    np.testing.assert_allclose(native, [1.01, 1.11, 1.31, 1.61])
    linear = wavelength_grid(wave, linear=True)
    np.testing.assert_allclose(np.diff(linear), np.median(np.diff(wave, axis=1)))
    edges = bin_edges(native)
    assert np.all((edges[:-1] < native) & (native < edges[1:]))


def test_weight_types():
    variances = {
        c: np.full((2, 1, 3), v) for c, v in zip(VARIANCE_COMPONENTS, (1.0, 2.0, 0.5), strict=True)
    }
    variances["var_rnoise"][0, 0, 0] = np.nan
    np.testing.assert_allclose(pixel_weights("ivm", variances, [1, 1])[1], 0.5)
    assert pixel_weights("ivm", variances, [1, 1])[0, 0, 0] == 0.0
    np.testing.assert_allclose(pixel_weights("poisson", variances, [1, 1])[1], 1 / 3.5)
    np.testing.assert_allclose(pixel_weights("exptime", variances, [10, 20])[1], 20.0)
    np.testing.assert_allclose(pixel_weights("mask", variances, [1, 1])[1], 1.0)
    with pytest.raises(ValueError, match="weight_type"):
        pixel_weights("drizzle", variances, [1, 1])


def _column(rng=None, *, flux=100.0, n=11, sigma=1.2):
    offset = np.arange(n, dtype=float) - n // 2
    profile = pixel_integrated_gaussian(offset, 0.3, sigma)[0][:, None] * np.ones((1, 200))
    variances = {
        "var_poisson": 0.1 * np.abs(flux * profile) + 0.0,
        "var_rnoise": np.full(profile.shape, 4.0),
        "var_flat": np.full(profile.shape, 0.25),
    }
    data = flux * profile
    if rng is not None:
        data = data + rng.normal(size=data.shape) * np.sqrt(sum(variances.values()))
    return offset, data, variances, profile


def test_horne_recovers_noiseless_flux_even_with_masked_bins():
    _, data, variances, profile = _column()
    usable = np.ones(data.shape, bool)
    usable[5, ::2] = False  # the peak bin of every other column masked
    spectrum = optimal_extract(data, variances, profile, usable)
    np.testing.assert_allclose(spectrum.flux, 100.0, rtol=1e-12)
    assert np.all(spectrum.profile_used[::2] < spectrum.profile_used[1::2])


def test_horne_variance_is_analytic_and_calibrated():
    rng = np.random.default_rng(7)
    _, _, variances, profile = _column()
    total = sum(variances.values())
    analytic = 1.0 / np.sum(profile**2 / total, axis=0)
    fluxes = []
    for _ in range(50):
        data = _column(rng)[1]
        spectrum = optimal_extract(data, variances, profile, np.ones(data.shape, bool))
        np.testing.assert_allclose(spectrum.variance, analytic, rtol=1e-12)
        fluxes.append(spectrum.flux)
    pulls = (np.concatenate(fluxes) - 100.0) / np.sqrt(np.tile(analytic, 50))
    assert abs(pulls.std() - 1.0) < 0.03
    assert abs(pulls.mean()) < 0.03
    components = sum(spectrum.variances[c] for c in VARIANCE_COMPONENTS)
    np.testing.assert_allclose(components, spectrum.variance)


def test_outlier_bins_are_rejected_and_clean_columns_untouched():
    rng = np.random.default_rng(3)
    _, data, variances, profile = _column(rng)
    sigma = np.sqrt(sum(variances.values()))
    usable = np.ones(data.shape, bool)
    clean = optimal_extract(data, variances, profile, usable, clip_sigma=5.0)
    assert not clean.rejected.any()
    np.testing.assert_array_equal(
        clean.flux, optimal_extract(data, variances, profile, usable).flux
    )
    hit = data.copy()
    rows, cols = np.array([3, 5, 7, 4]), np.array([2, 10, 17, 30])
    hit[rows, cols] += 40.0 * sigma[rows, cols]  # unflagged cosmic rays
    plain = optimal_extract(hit, variances, profile, usable)
    clipped = optimal_extract(hit, variances, profile, usable, clip_sigma=5.0)
    assert np.all(np.abs(plain.flux - clean.flux)[cols] > 5 * plain.error[cols])
    assert set(zip(*np.nonzero(clipped.rejected), strict=True)) == set(zip(rows, cols, strict=True))
    assert np.all(np.abs(clipped.flux - 100.0)[cols] < 4 * clipped.error[cols])
    np.testing.assert_array_equal(np.delete(clipped.flux, cols), np.delete(clean.flux, cols))
    # a hit whose row neighbours are all masked is judged on its own
    lonely = usable.copy()
    lonely[5, [8, 9, 11, 12]] = False
    assert optimal_extract(hit, variances, profile, lonely, clip_sigma=5.0).rejected[5, 10]


@pytest.mark.parametrize("flux", [1e4, 1e6])
def test_a_slightly_wrong_profile_of_a_bright_source_keeps_its_bins(flux):
    """Profile mismatch is smooth along the dispersion: not an outlier."""
    rng = np.random.default_rng(5)
    offset = np.arange(11, dtype=float) - 5
    true = pixel_integrated_gaussian(offset, 0.0, 1.0)[0][:, None] * np.ones((1, 400))
    model = pixel_integrated_gaussian(offset, 0.0, 1.15)[0][:, None] * np.ones((1, 400))
    variances = {
        "var_poisson": flux * true + 1.0,
        "var_rnoise": np.full(true.shape, 4.0),
        "var_flat": np.zeros(true.shape),
    }
    data = flux * true + rng.normal(size=true.shape) * np.sqrt(sum(variances.values()))
    usable = np.ones(true.shape, bool)
    clipped = optimal_extract(data, variances, model, usable, clip_sigma=5.0)
    assert clipped.rejected.sum() == 0
    hit = data.copy()
    hit[6, 100] += 1e3 * np.sqrt(sum(variances.values())[6, 100])
    assert optimal_extract(hit, variances, model, usable, clip_sigma=5.0).rejected[6, 100]


def _faint_narrow_columns(rng):
    """A faint source (S/N 2 per column) whose core bin holds 80 % of the information."""
    offset = np.arange(11, dtype=float) - 5
    profile = pixel_integrated_gaussian(offset, 0.0, 0.6)[0][:, None] * np.ones((1, 300))
    variances = {c: np.full(profile.shape, 1.0 / 3.0) for c in VARIANCE_COMPONENTS}
    data = 3.0 * profile + rng.normal(size=profile.shape)
    return data, variances, profile


def test_a_hit_in_the_bin_that_dominates_a_faint_column_is_the_one_rejected():
    """Its allowance comes from the flux of the other bins, not the inflated F̂."""
    data, variances, profile = _faint_narrow_columns(np.random.default_rng(11))
    usable = np.ones(data.shape, bool)
    share = (profile[:, 0] ** 2) / np.sum(profile[:, 0] ** 2)
    assert share[5] > 0.75
    hit = data.copy()
    cols = np.arange(20, 280, 20)
    hit[5, cols] += 20.0  # 20 sigma in the core bin, 8.6 sigma against the other bins
    clean = optimal_extract(data, variances, profile, usable, clip_sigma=5.0)
    clipped = optimal_extract(hit, variances, profile, usable, clip_sigma=5.0)
    assert np.all(clipped.rejected[5, cols])
    assert not np.delete(clipped.rejected, 5, axis=0)[:, cols].any()
    assert np.all(np.abs(clipped.flux[cols] - 3.0) < 4 * clipped.error[cols])
    np.testing.assert_array_equal(np.delete(clipped.flux, cols), np.delete(clean.flux, cols))


def test_a_negative_hit_shaped_like_the_source_is_rejected():
    """A track along the slit through the core follows the profile; below zero it is no source."""
    data, variances, profile = _faint_narrow_columns(np.random.default_rng(12))
    usable = np.ones(data.shape, bool)
    hit = data.copy()
    cols = np.arange(20, 280, 20)
    hit[5:7, cols] -= 40.0 * profile[5:7, cols]  # a track along the slit: F̂ ~ -20 sigma
    plain = optimal_extract(hit, variances, profile, usable)
    assert np.all(plain.flux[cols] < -5 * plain.error[cols])
    clipped = optimal_extract(hit, variances, profile, usable, clip_sigma=5.0)
    assert np.all(clipped.rejected[5, cols])
    # the track's second bin goes too unless what is left of the column looks like a source
    assert clipped.rejected[6, cols].sum() >= 10
    assert np.all(np.abs(clipped.flux[cols] - 3.0) < 4 * clipped.error[cols])
    # a real absorption line goes down to zero, not below: kept whole
    trough = data.copy()
    trough[:, cols] -= 3.0 * profile[:, cols]
    kept = optimal_extract(trough, variances, profile, usable, clip_sigma=5.0)
    assert not kept.rejected.any()


def test_window_excludes_far_bins():
    offset = np.arange(-6, 7, dtype=float)
    window = window_bins(offset, (13, 4), half_width=2.5)
    assert window[:, 0].sum() == 5 and window.shape == (13, 4)


def test_flux_information_of_a_simple_nod():
    # exposure 0 sees the source in the pixel, exposure 1 only sky; equal variance V:
    # I = P²/V − (P/V)² / (2/V) = P² / (2V)
    profiles = np.array([[[0.4]], [[0.0]]])
    variances = np.full((2, 1, 1), 3.0)
    np.testing.assert_allclose(flux_information(profiles, variances), 0.4**2 / 6.0)
    # an unobserved exposure leaves no sky estimate: no information
    variances[1] = np.nan
    np.testing.assert_allclose(flux_information(profiles, variances), 0.0, atol=1e-15)


def test_slit_transmission_of_a_centred_gaussian():
    sigma = np.array([0.05, 0.1])
    expected = erf(0.1 / (np.sqrt(2) * sigma))
    np.testing.assert_allclose(slit_transmission(sigma, 0.0, 0.2), expected, rtol=1e-12)
    # symmetric, and smaller off centre
    assert slit_transmission(0.07, 0.05, 0.2) == pytest.approx(slit_transmission(0.07, -0.05, 0.2))
    assert slit_transmission(0.07, 0.05, 0.2) < slit_transmission(0.07, 0.0, 0.2)
    assert np.isnan(slit_transmission(0.0, 0.0, 0.2))
    with pytest.raises(ValueError, match="width_arcsec"):
        slit_transmission(0.1, 0.0, 0.0)
