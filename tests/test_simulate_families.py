"""The simulator's source profile families: default bit for bit, fluxes, shapes that differ."""

import dataclasses

import numpy as np
import pytest
from scipy.integrate import quad
from stdatamodels.jwst.datamodels import dqflags

from nodcombine.simulate import FAMILIES, SourceProfile, simulate_nodded_visit

_HOT = dqflags.pixel["HOT"]
_ARRAYS = ("data", "dq", "err", "var_poisson", "var_rnoise", "var_flat", "wavelength")

#: noiseless, no lines, faint sky (float32 rounding of the sky stays far below 1e-6)
_QUIET = {"noise": False, "emission_lines": False, "sky_scale": 1e-3}
#: a fixed slit with its first exposure at the slit centre, far from the slit's ends
_FS = {"mode": "nrs_fs_prism", "n_points": 3, "seed": 5, **_QUIET}
#: a 2-shutter MOS nod whose middle shutter is stuck closed (it cuts the source's
#: wing on that side), with slit loss across the slit
_MOS = {
    "mode": "nrs_msa_prism",
    "n_points": 2,
    "stuck_closed_shutter": 0,
    "slit_loss": True,
    "source_xpos": 0.2,
    "seed": 6,
    **_QUIET,
}


def _visit(kwargs, **more):
    kwargs = {**kwargs, **more}
    return simulate_nodded_visit(kwargs.pop("mode"), **kwargs)


def _source_images(kwargs, family, empty):
    """Noiseless source image of each exposure: data with the source minus ``empty``.

    ``empty`` is the same visit without a source (``source_peak=0``, the same
    for every family): the two share every random draw, so the sky, hot pixels
    and cutouts are the same; hot pixels (NaN in both) come back as a column mask.
    """
    models, truth = _visit(kwargs, source_profile=family)
    images, clean = [], []
    for model, blank in zip(models, empty, strict=True):
        slit, blank_slit = model.slits[0], blank.slits[0]
        images.append(np.nan_to_num(slit.data.astype(float) - blank_slit.data.astype(float)))
        clean.append(~((slit.dq & _HOT) > 0).any(axis=0))
    return images, clean, [slits[0] for slits in truth.slits]


def _every_family(kwargs):
    """Per family: source images, clean columns and truths of a visit."""
    empty, _ = _visit(kwargs, source_peak=0.0)
    return {family: _source_images(kwargs, family, empty) for family in FAMILIES}


@pytest.fixture(scope="module")
def fixed_slit():
    """The fixed-slit visit of every family."""
    return _every_family(_FS)


@pytest.fixture(scope="module")
def slitlet():
    """The MOS visit of every family."""
    return _every_family(_MOS)


def _sampled(truth, clean):
    """Columns free of hot pixels where the PSF law's sigma exceeds 0.6 px (PRISM ≥ 3.8 µm).

    Bluer, the cores are so undersampled that pixel moments alias.
    """
    return clean & (truth.wavelength >= 3.8)


def _moments(image):
    """Centre, variance (pixel box removed) and skewness of each column's image."""
    rows = np.arange(image.shape[0], dtype=float)[:, None]
    flux = image.sum(axis=0)
    mean = (rows * image).sum(axis=0) / flux
    var = ((rows - mean) ** 2 * image).sum(axis=0) / flux
    third = ((rows - mean) ** 3 * image).sum(axis=0) / flux
    return mean, var - 1.0 / 12.0, third / var**1.5


def _same_visit(a, b):
    """Whether two simulated visits are equal bit for bit (models and truth arrays)."""
    (models_a, truth_a), (models_b, truth_b) = a, b
    for model_a, model_b in zip(models_a, models_b, strict=True):
        for slit_a, slit_b in zip(model_a.slits, model_b.slits, strict=True):
            for name in _ARRAYS:
                if getattr(slit_a, name).tobytes() != getattr(slit_b, name).tobytes():
                    return False
    for slits_a, slits_b in zip(truth_a.slits, truth_b.slits, strict=True):
        for st_a, st_b in zip(slits_a, slits_b, strict=True):
            for field in dataclasses.fields(st_a):
                va, vb = getattr(st_a, field.name), getattr(st_b, field.name)
                if isinstance(va, np.ndarray) and va.tobytes() != vb.tobytes():
                    return False
    return True


def test_the_default_family_is_the_psf_law_bit_for_bit():
    kwargs = {
        "mode": "nrs_msa_prism",
        "n_slits": 2,
        "n_points": 2,
        "source_sigma_arcsec": [0.0, 0.1],
        "slit_loss": True,
        "source_xpos": 0.1,
        "cosmic_ray_fraction": 0.003,
        "jitter_cutouts": True,
        "seed": 4,
    }
    default = _visit(kwargs)
    for explicit in ("psf_law", [SourceProfile(), "psf_law"]):
        assert _same_visit(default, _visit(kwargs, source_profile=explicit))
    assert default[1].slits[0][0].profile == SourceProfile()


@pytest.mark.parametrize("family", FAMILIES)
def test_the_source_image_sums_to_the_in_slit_flux(family, fixed_slit, slitlet):
    for visit in (fixed_slit, slitlet):
        images, clean, truths = visit[family]
        for image, ok, truth in zip(images, clean, truths, strict=True):
            assert ok.sum() > 0.9 * ok.size
            summed = image.sum(axis=0)[ok]
            np.testing.assert_allclose(summed, truth.in_slit_flux[ok], rtol=1e-6, atol=0)
            assert np.all(truth.in_slit_flux <= truth.total_flux)
            assert np.all(truth.total_flux <= truth.infinite_slit_flux * (1 + 1e-12))
            assert truth.profile.family == family


def test_a_stuck_shutter_and_the_slit_width_take_flux_out_of_the_slit(slitlet):
    for family in ("psf_law", "moffat"):
        _, _, truths = slitlet[family]
        for truth in truths:
            along = truth.total_flux / truth.infinite_slit_flux
            across = truth.in_slit_flux / truth.total_flux
            assert np.all(along < 1) and np.all((across > 0.3) & (across < 0.99))
            # the Moffat's wings reach the closed shutter, the Gaussian's hardly
            if family == "moffat":
                assert np.median(1 - along) > 0.01
            else:
                assert np.median(1 - along) < 1e-3


def test_the_width_truth_is_the_image_second_moment(fixed_slit):
    for family, (images, clean, truths) in fixed_slit.items():
        _, var, _ = _moments(images[0])
        sampled = _sampled(truths[0], clean[0])
        width = np.sqrt(var[sampled])
        # the Moffat's far wings are cut by the slit's ends (~0.7 %)
        rtol = 0.015 if family == "moffat" else 0.01
        np.testing.assert_allclose(width, truths[0].width_pix[sampled], rtol=rtol, err_msg=family)


def test_the_constant_width_does_not_follow_the_psf(fixed_slit):
    spread = {}
    for family in ("constant", "psf_law"):
        images, clean, truths = fixed_slit[family]
        _, var, _ = _moments(images[0])
        width = np.sqrt(var[clean[0]])  # over the whole band
        spread[family] = np.ptp(width) / np.median(width)
    assert spread["constant"] < 0.01
    assert spread["psf_law"] > 0.5
    # by default the constant width is the PSF law's at mid-band (3.894 µm)
    middle = np.argmin(np.abs(truths[0].wavelength - 3.894))
    constant_width = fixed_slit["constant"][2][0].width_pix
    np.testing.assert_allclose(constant_width, truths[0].sigma_pix[middle], rtol=1e-3)


def test_the_steep_width_grows_faster_than_the_psf_law(fixed_slit):
    ratios = {}
    for family in ("psf_law", "steep"):
        images, _, truths = fixed_slit[family]
        _, var, _ = _moments(images[0])
        wave = truths[0].wavelength
        mid, red = np.argmin(np.abs(wave - 3.9)), np.argmin(np.abs(wave - 5.2))
        ratios[family] = np.sqrt(var[red] / var[mid])
        expected = truths[0].width_pix[red] / truths[0].width_pix[mid]
        assert ratios[family] == pytest.approx(expected, rel=0.02)
    assert ratios["steep"] > 1.1 * ratios["psf_law"]
    # the intrinsic part (total width in quadrature less the PSF law's) grows as λ^1.5
    law, steep = fixed_slit["psf_law"][2][0].width_pix, fixed_slit["steep"][2][0].width_pix
    intrinsic = np.sqrt(steep**2 - law**2)
    assert intrinsic[red] / intrinsic[mid] == pytest.approx((5.2 / 3.9) ** 1.5, rel=0.01)


@pytest.mark.parametrize("family", ["moffat", "core_halo"])
def test_wings_carry_more_flux_than_a_gaussian(family, fixed_slit):
    _, _, psf_truths = fixed_slit["psf_law"]
    core = psf_truths[0].sigma_pix  # the PSF law's sigma: the core of both families

    def beyond_3_sigma(name):
        images, clean, truths = fixed_slit[name]
        rows = np.arange(images[0].shape[0], dtype=float)[:, None]
        far = np.abs(rows - truths[0].trace_row) > 3 * core + 0.5
        fraction = (images[0] * far).sum(axis=0) / images[0].sum(axis=0)
        return np.median(fraction[clean[0]])

    assert beyond_3_sigma("psf_law") < 0.003
    assert beyond_3_sigma(family) > 10 * beyond_3_sigma("psf_law")


def test_the_asymmetric_profile_is_skewed_and_mean_centred(fixed_slit):
    for family, skewed in (("psf_law", False), ("asymmetric", True)):
        images, clean, truths = fixed_slit[family]
        mean, _, skew = _moments(images[0])
        good = _sampled(truths[0], clean[0])
        np.testing.assert_allclose(mean[good], truths[0].trace_row[good], atol=0.01)
        if skewed:
            # σ_hi / σ_lo = 1.3: the longer tail towards increasing row
            assert np.all((skew[good] > 0.1) & (skew[good] < 0.3))
        else:
            assert np.all(np.abs(skew[good]) < 0.01)


@pytest.mark.parametrize(
    "profile",
    [
        SourceProfile("constant", sigma_arcsec=0.3),
        SourceProfile("steep", sigma_arcsec=0.1, power=2.0),
        SourceProfile("moffat", fwhm_arcsec=0.2, beta=3.5),
        SourceProfile("core_halo", sigma_arcsec=0.1, halo_fraction=0.3, halo_scale=2.5),
        SourceProfile("asymmetric", sigma_arcsec=0.15, sigma_ratio=0.7),
    ],
    ids=lambda p: p.family,
)
def test_shapes_are_normalised_with_their_stated_width(profile):
    _, truth = simulate_nodded_visit("nrs_fs_prism", n_points=2, source_profile=profile, **_QUIET)
    shape = truth.slits[0][0].shape.select(slice(100, 101))
    cdf = shape.cdf
    # the mean is 0 and the variance the width squared, from the distribution function
    mean = quad(lambda u: 1 - cdf(u)[0], 0, np.inf)[0] - quad(lambda u: cdf(u)[0], -np.inf, 0)[0]
    var = 2 * quad(lambda u: u * (1 - cdf(u)[0]), 0, np.inf)[0]
    var += 2 * quad(lambda u: -u * cdf(u)[0], -np.inf, 0)[0]
    assert cdf(np.array([-1e9]))[0] == pytest.approx(0, abs=1e-12)
    assert cdf(np.array([1e9]))[0] == pytest.approx(1, abs=1e-12)
    assert mean == pytest.approx(0, abs=1e-6)
    assert np.sqrt(var) == pytest.approx(shape.width()[0], rel=1e-5)
    if profile.sigma_arcsec is not None and profile.family in ("constant", "asymmetric"):
        assert shape.width()[0] == pytest.approx(profile.sigma_arcsec / 0.1045)


def test_families_differ_per_slit():
    profiles = ["psf_law", SourceProfile("moffat", beta=3.0), "asymmetric"]
    _, truth = simulate_nodded_visit(
        "nrs_msa_prism", n_slits=3, n_points=2, source_profile=profiles, **_QUIET
    )
    assert [st.profile.family for st in truth.slits[0]] == ["psf_law", "moffat", "asymmetric"]
    assert truth.slits[0][1].shape.beta == 3.0


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("gaussian", ValueError, "family must be one of"),
        (["moffat"], ValueError, "one profile or one per slit"),
        (3, TypeError, "a family name or a SourceProfile"),
    ],
)
def test_bad_profiles_are_refused(value, error, message):
    with pytest.raises(error, match=message):
        simulate_nodded_visit("nrs_msa_prism", n_slits=2, source_profile=value)


def test_a_parameter_the_family_does_not_use_is_refused():
    with pytest.raises(ValueError, match="does not use beta"):
        SourceProfile("constant", beta=3.0)


@pytest.mark.parametrize(
    "params", [{"beta": 1.5}, {"halo_fraction": 1.0}, {"sigma_ratio": 0.0}, {"sigma_arcsec": -1}]
)
def test_parameters_out_of_range_are_refused(params):
    family = next(f for f, used in FAMILIES.items() if set(params) <= set(used))
    with pytest.raises(ValueError, match="out of range"):
        SourceProfile(family, **params)
