"""Source image shapes: Gaussian core, halo and Moffat wings (`nodcombine.profile`).

The kernels are checked against direct integration; the chain is checked on
simulated sources whose shapes come from `nodcombine.simulate` (its own
Moffat and core + halo code), noiselessly, against the in-slit truth.
"""

import functools
import math

import numpy as np
import pytest
from scipy.integrate import quad

from nodcombine.contract import TraceFitRecord
from nodcombine.pathloss import slit_transmission
from nodcombine.profile import (
    component_fraction,
    integrated_component,
    moffat_alpha,
    source_pixel_fraction,
)
from nodcombine.trace_fit.profilemodel import ProfileModel

ALONG = np.arange(-400.0, 401.0)


def _moffat(u, alpha, beta):
    return (1.0 + (u / alpha) ** 2) ** -beta


@pytest.mark.parametrize(
    "halo",
    [(0.0, 1.0), (0.3, 3.0), (0.0, 1.0, 2.5), (0.4, 2.0, 1.6), (0.2, 4.0, 6.0, -0.3)],
)
def test_every_shape_holds_unit_flux(halo):
    assert source_pixel_fraction(ALONG, 0.37, 1.3, halo).sum() == pytest.approx(1.0, abs=2e-4)


def test_a_two_tuple_is_a_gaussian_halo_and_large_beta_tends_to_it():
    gaussian = source_pixel_fraction(ALONG, 0.2, 1.1, (0.3, 2.5))
    np.testing.assert_array_equal(
        gaussian, source_pixel_fraction(ALONG, 0.2, 1.1, (0.3, 2.5, math.inf))
    )
    errors = [
        np.abs(source_pixel_fraction(ALONG, 0.2, 1.1, (0.3, 2.5, b)) - gaussian).max()
        for b in (3.0, 30.0, 300.0)
    ]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3


def test_a_skewed_component_has_its_halves_widths_and_peak_at_the_centre():
    # split normal: the light on each side in proportion to its width (a wide
    # component, so that pixels sample it finely)
    fractions = component_fraction(ALONG, 0.0, 40.0, 1.0, math.inf, 0.25)
    left = fractions[ALONG < 0].sum() + 0.5 * fractions[ALONG == 0].sum()
    assert left == pytest.approx(0.75 / 2.0, abs=1e-3)
    assert fractions.sum() == pytest.approx(1.0, abs=1e-6)
    assert ALONG[np.argmax(fractions)] == 0.0
    mirrored = component_fraction(-ALONG, 0.0, 1.3, 1.0, 2.5, -0.2)
    np.testing.assert_allclose(
        component_fraction(ALONG, 0.0, 1.3, 1.0, 2.5, 0.2), mirrored, rtol=1e-9, atol=1e-14
    )


def test_the_moffat_pixel_fraction_is_the_integral_of_the_profile():
    alpha = moffat_alpha(1.2, 1.0, 2.5)
    norm = quad(_moffat, -np.inf, np.inf, args=(alpha, 2.5))[0]
    for pixel in (-7.0, -1.0, 0.0, 2.0, 15.0):
        direct = quad(_moffat, pixel - 0.5 - 0.3, pixel + 0.5 - 0.3, args=(alpha, 2.5))[0]
        assert component_fraction(np.array(pixel), 0.3, 1.2, 1.0, 2.5) == pytest.approx(
            direct / norm, rel=1e-8, abs=1e-14
        )


@pytest.mark.parametrize(("beta", "skew"), [(math.inf, None), (2.5, None), (math.inf, 0.3)])
def test_component_derivatives_match_finite_differences(beta, skew):
    along, centre, sigma, scale, h = np.arange(-12.0, 13.0), 0.3, 1.1, 2.0, 1e-6
    _, d_centre, d_sigma, d_scale, d_beta, d_skew = integrated_component(
        along, centre, sigma, scale, beta, skew
    )

    def numeric(name):
        args = {"centre": centre, "sigma": sigma, "scale": scale, "beta": beta}
        args["skew"] = skew or 0.0
        up, down = dict(args), dict(args)
        up[name] += h
        down[name] -= h
        return (component_fraction(along, **up) - component_fraction(along, **down)) / (2 * h)

    atol = 1e-8
    np.testing.assert_allclose(d_centre, numeric("centre"), atol=atol)
    np.testing.assert_allclose(d_sigma, numeric("sigma"), atol=atol)
    np.testing.assert_allclose(d_scale, numeric("scale"), atol=atol)
    if math.isinf(beta):
        assert d_beta is None
    else:
        np.testing.assert_allclose(d_beta, numeric("beta"), atol=1e-7)
    if skew is None:
        assert d_skew is None
    else:
        np.testing.assert_allclose(d_skew, numeric("skew"), atol=atol)


def test_slit_transmission_of_wings_is_the_integral_across_the_slit():
    sigma, offset, width, beta = 0.08, 0.03, 0.2, 2.5
    alpha = moffat_alpha(sigma, 1.0, beta)
    norm = quad(_moffat, -np.inf, np.inf, args=(alpha, beta))[0]
    inside = quad(_moffat, -0.1 - offset, 0.1 - offset, args=(alpha, beta))[0] / norm
    assert slit_transmission(sigma, offset, width, (0.0, 1.0, beta)) == pytest.approx(inside)
    # wings put more light outside the slit than a Gaussian of the same core
    assert slit_transmission(sigma, offset, width) > inside


def test_the_record_carries_the_wings():
    plain = TraceFitRecord("FIT", halo_fraction=0.2, halo_scale=3.0)
    assert plain.halo == (0.2, 3.0, math.inf, 0.0)
    winged = TraceFitRecord("FIT", halo_fraction=0.0, halo_scale=1.0, wings_beta=2.4, skew=0.1)
    back = TraceFitRecord.from_tree(winged.to_tree())
    assert back.halo == (0.0, 1.0, 2.4, 0.1)


def test_wings_and_halo_parameters_come_last_and_start_sensibly():
    model = ProfileModel(1, 0, halo=True, wings=True, skewed=True)
    assert model.names[-4:] == ("halo_fraction", "halo_scale", "halo_beta", "skew")
    theta = model.embed(np.array([0.1, 0.0, 0.5]), ProfileModel(1, 0))
    fraction, scale, beta, skew = model.halo_of(theta)
    assert (fraction, scale, skew) == (0.2, 3.0, 0.0) and 1.0 < beta < 20.0
    wings = ProfileModel(0, 0, wings=True)
    assert wings.halo_of(np.array([0.0, 0.0, 2.5])) == (0.0, 1.0, 2.5, 0.0)
    # shared shape parameters keep their values from one model to the next
    assert model.embed(np.array([0.0, 0.0, 2.2]), wings)[-2] == 2.2


# --- the chain on shapes it does not assume --------------------------------------------

#: PRISM 3-point, one exposure per position, brightest pixel S/N ~60 (bench_profiles §0)
_BRIGHT_PEAK = 4.6


@functools.cache
def _noiseless_bias(family):
    """FLUX / in-slit truth − 1 per tenth of the band, and the trace-fit record."""
    from nodcombine import NodDiffStep, OptimalExtract1dStep, RectifyStep, TraceFitStep
    from nodcombine.simulate import SourceProfile, simulate_nodded_visit

    models, truth = simulate_nodded_visit(
        "nrs_msa_prism",
        n_slits=1,
        n_points=3,
        source_peak=_BRIGHT_PEAK,
        emission_lines=False,
        noise=False,
        seed=0,
        source_profile=SourceProfile(family),
    )
    traced = TraceFitStep.call(NodDiffStep.call(models))
    s2d = RectifyStep.call(traced)
    x1d = OptimalExtract1dStep.call(s2d, apply_pathloss=False)
    table = x1d.spec[0].spec_table
    wave = np.asarray(table["WAVELENGTH"], dtype=float)
    area = s2d.slits[0].meta.photometry.pixelarea_steradians
    # the exposures' in-slit fluxes differ (an outer shutter loses a wing): their mean
    in_slit = [np.interp(wave, s[0].wavelength, s[0].in_slit_flux) for s in truth.slits]
    truth_jy = np.mean(in_slit, axis=0) * area * 1e6
    flux = np.asarray(table["FLUX"], dtype=float)
    kept = np.flatnonzero(np.isfinite(flux))[5:-5]
    tenths = np.array_split(kept, 10)
    bias = [flux[t].sum() / truth_jy[t].sum() - 1.0 for t in tenths]
    return np.array(bias), TraceFitRecord.from_tree(traced[0].slits[0].instance)


@pytest.mark.parametrize(
    "family", ["psf_law", "constant", "steep", "moffat", "core_halo", "asymmetric"]
)
def test_noiseless_flux_is_the_in_slit_flux_for_shapes_the_fit_does_not_assume(family):
    bias, record = _noiseless_bias(family)
    assert record.status == "FIT"
    assert np.abs(bias).max() < 0.005, np.round(100 * bias, 2)


def test_the_shape_terms_go_where_the_source_needs_them():
    _, moffat = _noiseless_bias("moffat")
    assert moffat.wings_beta == pytest.approx(2.5, abs=0.1)  # the simulator's beta
    _, skewed = _noiseless_bias("asymmetric")
    # the simulator's halves: sigma towards increasing row 1.3 times the other's
    assert skewed.skew == pytest.approx(0.3 / 2.3, abs=0.01)
    _, gaussian = _noiseless_bias("psf_law")
    assert gaussian.wings_beta is None and gaussian.halo_fraction == 0.0
    assert gaussian.skew is None
