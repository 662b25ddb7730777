"""Boxcar kernel: jwst's extract_1d aperture conventions, sums and background fits."""

import numpy as np
import pytest
from jwst.extract_1d import extract as jwst_extract
from jwst.extract_1d import extract1d as jwst_extract1d

from nodcombine.extract_1d.aperture import BoxAperture, region_weights
from nodcombine.extract_1d.boxcar import boxcar_extract, smoothing_matrix
from nodcombine.variances import VARIANCE_COMPONENTS

NY, NX = 31, 180


def _image(seed=1, nan_background=False):
    """A source on a tilted, curved background, with noise and variances."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:NY, :NX].astype(float)
    wavelength = np.linspace(5.0, 12.0, NX)
    source = 40.0 * np.exp(-0.5 * ((rows - 15.3) / 1.6) ** 2) * (1 + 0.3 * np.sin(cols / 17))
    background = 3.0 + 0.08 * (rows - 15) + 0.002 * (rows - 15) ** 2 + 0.01 * cols
    variances = {
        "var_poisson": 0.02 * (source + background),
        "var_rnoise": np.full((NY, NX), 0.3),
        "var_flat": 1e-4 * (source + background) ** 2,
    }
    data = source + background + rng.normal(size=(NY, NX)) * np.sqrt(sum(variances.values()))
    if nan_background:
        data[2, 40] = data[27, 41:44] = np.nan
    return data, variances, wavelength


APERTURES = {
    "start/stop, fractional": BoxAperture(ystart=11.3, ystop=19.6),
    "extract width": BoxAperture(ystart=10, ystop=20, extract_width=7.5, xstart=12.4, xstop=150.7),
    "src_coeff in pixels": BoxAperture(src_coeff=[[11.2, 0.004], [19.9, -0.003]]),
    "src_coeff in wavelength, 2 regions": BoxAperture(
        src_coeff=[[10.1, 0.1], [13.5, 0.05], [15.0], [20.4, 0.1]], independent_var="wavelength"
    ),
    "poly background order 1": BoxAperture(
        ystart=12, ystop=18, bkg_coeff=[[0.5], [6.5], [24.5], [30.2]], bkg_order=1
    ),
    "poly background order 2": BoxAperture(
        ystart=12.5, ystop=18.5, bkg_coeff=[[0.5], [7.7], [22.5], [30.5]], bkg_order=2
    ),
    "mean background": BoxAperture(
        extract_width=5,
        ystart=13,
        ystop=17,
        bkg_coeff=[[1.5], [6.5], [24.5], [29.5]],
        bkg_fit="mean",
    ),
    "median background": BoxAperture(
        ystart=12, ystop=18, bkg_coeff=[[0.5], [6.5], [24.5], [30.5]], bkg_fit="median"
    ),
}
SMOOTHED = {
    "poly background, smoothed": BoxAperture(
        ystart=12, ystop=18, bkg_coeff=[[0.5], [6.5], [24.5], [30.5]], smoothing_length=7
    ),
    "median background, smoothed": BoxAperture(
        ystart=12,
        ystop=18,
        bkg_coeff=[[0.5], [6.5], [24.5], [30.5]],
        bkg_fit="median",
        smoothing_length=5,
    ),
}


def _jwst_params(aperture, shape):
    """The same aperture as jwst's ``extract_params`` (dispaxis 1, no trace)."""
    fit = aperture.bkg_fit if aperture.subtracts_background else None
    return {
        "dispaxis": 1,
        "xstart": 0 if aperture.xstart is None else aperture.xstart,
        "xstop": shape[1] - 1 if aperture.xstop is None else aperture.xstop,
        "ystart": 0 if aperture.ystart is None else aperture.ystart,
        "ystop": shape[0] - 1 if aperture.ystop is None else aperture.ystop,
        "extract_width": aperture.extract_width,
        "src_coeff": _listed(aperture.src_coeff),
        "bkg_coeff": _listed(aperture.bkg_coeff),
        "bkg_fit": fit,
        "independent_var": aperture.independent_var,
        "trace": None,
    }


def _listed(polynomials):
    return None if polynomials is None else [list(p) for p in polynomials]


def _jwst_box(aperture, data, variances, wavelength):
    params = _jwst_params(aperture, data.shape)
    wl2d = np.broadcast_to(wavelength, data.shape).copy()
    profile = jwst_extract.box_profile(data.shape, params, wl2d)
    bkg = None
    if aperture.subtracts_background:
        bkg = jwst_extract.box_profile(data.shape, params, wl2d, coefficients="bkg_coeff")
    result = jwst_extract1d.extract1d(
        data,
        [profile],
        variances["var_rnoise"],
        variances["var_poisson"],
        variances["var_flat"],
        profile_bg=bkg,
        bg_smooth_length=aperture.smoothing_length,
        fit_bkg=aperture.subtracts_background,
        bkg_fit_type=aperture.bkg_fit,
        bkg_order=aperture.bkg_order,
    )
    flux, v_rn, v_ph, v_flat, background, b_rn, b_ph, b_flat, npixels, _ = result
    return {
        "flux": flux[0],
        "var_rnoise": v_rn[0],
        "var_poisson": v_ph[0],
        "var_flat": v_flat[0],
        "background": background[0],
        "bvar_rnoise": b_rn[0],
        "bvar_poisson": b_ph[0],
        "bvar_flat": b_flat[0],
        "npixels": npixels[0],
    }


def _ours(aperture, data, variances, wavelength):
    usable = np.ones(data.shape, bool)
    return boxcar_extract(data, variances, usable, wavelength, aperture)


@pytest.mark.parametrize("name", list(APERTURES))
def test_box_matches_jwst_extract1d(name):
    aperture = APERTURES[name]
    data, variances, wavelength = _image()
    ours = _ours(aperture, data, variances, wavelength)
    ref = _jwst_box(aperture, data, variances, wavelength)
    finite = np.isfinite(ref["flux"])
    assert finite.sum() > 100
    np.testing.assert_array_equal(np.isfinite(ours.flux), finite)
    np.testing.assert_allclose(ours.npixels, ref["npixels"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.flux[finite], ref["flux"][finite], rtol=1e-10)
    np.testing.assert_allclose(ours.background, ref["background"], rtol=1e-10, atol=1e-10)
    for c in VARIANCE_COMPONENTS:
        np.testing.assert_allclose(ours.variances[c], ref[c], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(
            ours.background_variances[c], ref[f"b{c}"], rtol=1e-10, atol=1e-14
        )


@pytest.mark.parametrize("name", list(SMOOTHED))
def test_smoothed_background_matches_jwst_level_not_its_variance(name):
    aperture = SMOOTHED[name]
    data, variances, wavelength = _image(nan_background=True)
    ours = _ours(aperture, data, variances, wavelength)
    ref = _jwst_box(aperture, data, variances, wavelength)
    np.testing.assert_allclose(ours.flux, ref["flux"], rtol=1e-10)
    np.testing.assert_allclose(ours.background, ref["background"], rtol=1e-10)
    # jwst propagates the raw pixels' variance; the smoothed image's is about
    # 1/smoothing_length of it away from the edges
    inner = slice(20, NX - 20)
    ratio = ours.background_variances["var_rnoise"][inner] / ref["bvar_rnoise"][inner]
    assert np.allclose(ratio, 1.0 / aperture.smoothing_length, rtol=0.15)


def test_poly_background_with_nan_pixels_matches_jwst_flux():
    aperture = APERTURES["poly background order 2"]
    data, variances, wavelength = _image(nan_background=True)
    ours = _ours(aperture, data, variances, wavelength)
    ref = _jwst_box(aperture, data, variances, wavelength)
    np.testing.assert_allclose(ours.flux, ref["flux"], rtol=1e-10)
    np.testing.assert_allclose(ours.variances["var_rnoise"], ref["var_rnoise"], rtol=1e-10)


def test_partial_pixels_follow_the_inclusive_limits():
    weights = region_weights((8, 1), [(2.3 - 0.5, 5.6 + 0.5)])[:, 0]
    np.testing.assert_allclose(weights, [0, 0, 0.7, 1, 1, 1, 0.6, 0])
    whole = region_weights((8, 1), [(2.3 - 0.5, 5.6 + 0.5)], partial=False)[:, 0]
    np.testing.assert_allclose(whole, [0, 0, 0, 1, 1, 1, 0, 0])


def test_constant_background_is_removed_exactly():
    data = np.full((NY, NX), 7.25)
    variances = {c: np.ones((NY, NX)) for c in VARIANCE_COMPONENTS}
    for fit, order in (("poly", 0), ("poly", 2), ("median", 0)):
        aperture = BoxAperture(
            ystart=12.4,
            ystop=18.2,
            bkg_coeff=[[0.5], [6.5], [24.5], [30.5]],
            bkg_fit=fit,
            bkg_order=order,
        )
        spectrum = boxcar_extract(data, variances, np.ones(data.shape, bool), None, aperture)
        np.testing.assert_allclose(spectrum.flux, 0.0, atol=1e-10)
        np.testing.assert_allclose(spectrum.background / spectrum.npixels, 7.25, rtol=1e-12)


def test_shift_moves_aperture_and_background_together():
    aperture = BoxAperture(
        extract_width=5, bkg_coeff=[[0.5], [4.5], [26.5], [30.5]], src_coeff=None
    )
    moved = aperture.shifted(3.0, NY)
    assert moved.centre((NY, NX), None) == pytest.approx(aperture.centre((NY, NX), None) + 3.0)
    assert moved.bkg_coeff == ((3.5,), (7.5,), (29.5,), (33.5,))


def test_smoothing_matrix_counts_extended_edges():
    taps = smoothing_matrix(6, 5).toarray()
    np.testing.assert_array_equal(taps[0], [3, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(taps[3], [0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(taps.sum(axis=1), 5)


@pytest.mark.parametrize("smoothing", [0, 5])
def test_background_variance_is_calibrated(smoothing):
    """Monte Carlo: the flux variance with a fitted background matches the scatter."""
    rng = np.random.default_rng(11)
    variances = {
        "var_poisson": np.full((NY, 60), 0.5),
        "var_rnoise": np.full((NY, 60), 1.0),
        "var_flat": np.zeros((NY, 60)),
    }
    aperture = BoxAperture(
        ystart=12,
        ystop=18,
        bkg_coeff=[[0.5], [6.5], [24.5], [30.5]],
        bkg_order=1,
        smoothing_length=smoothing,
    )
    usable = np.ones((NY, 60), bool)
    fluxes = []
    for _ in range(1500):
        data = 5.0 + rng.normal(size=(NY, 60)) * np.sqrt(1.5)
        spectrum = boxcar_extract(data, variances, usable, None, aperture)
        fluxes.append(spectrum.flux[10:50])
    empirical = np.var(fluxes, axis=0)
    predicted = sum(spectrum.variances.values())[10:50]
    # 1500 draws: each column's variance to ~3.7 %; their mean to ~0.6 % (correlated)
    assert np.mean(empirical / predicted) == pytest.approx(1.0, abs=0.03)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="smoothing_length"):
        BoxAperture(smoothing_length=4)
    with pytest.raises(ValueError, match="bkg_fit"):
        BoxAperture(bkg_fit="spline")
    with pytest.raises(ValueError, match="src_coeff must alternate"):
        BoxAperture(src_coeff=[[1.0], [2.0], [3.0]])


def test_centre_of_an_aperture_outside_the_image_is_its_own():
    aperture = BoxAperture(ystart=40, ystop=50)
    assert aperture.centre((NY, NX), None) == 45.0
    moved = aperture.shifted(15.0 - 45.0, NY)
    data, variances, wavelength = _image()
    spectrum = boxcar_extract(data, variances, np.ones(data.shape, bool), wavelength, moved)
    assert np.isfinite(spectrum.flux).all()


def test_wavelength_apertures_skip_columns_without_wavelength():
    data, variances, wavelength = _image()
    wavelength = wavelength.copy()
    wavelength[:3] = np.nan
    aperture = BoxAperture(src_coeff=[[13.0, -0.1], [17.5, 0.1]], independent_var="wavelength")
    centre = aperture.centre(data.shape, wavelength)
    assert np.isfinite(centre)
    moved = aperture.shifted(1.0, NY)
    spectrum = boxcar_extract(data, variances, np.ones(data.shape, bool), wavelength, moved)
    assert np.isnan(spectrum.flux[:3]).all() and np.isfinite(spectrum.flux[3:]).all()
    with pytest.raises(ValueError, match="needs the wavelengths"):
        aperture.source_weights(data.shape, None)
