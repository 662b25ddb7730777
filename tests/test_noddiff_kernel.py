"""Physics of the nod-difference kernel: exactness first, then statistics."""

import numpy as np
import pytest

from helpers import outlier_recovery, sky_only_z
from nodcombine.nod_diff import noddiff
from nodcombine.nod_diff.masks import MaskSettings, mask_pixels, stuck_closed_mask, usable_pixels
from nodcombine.nod_diff.noddiff import group_nod_positions, nod_difference

COMPONENTS = noddiff.VARIANCE_COMPONENTS


def _constant(shape, value):
    return np.full(shape, value, dtype=float)


def _variances(shape, poisson=0.04, rnoise=0.01, flat=1e-4):
    return {
        "var_poisson": _constant(shape, poisson),
        "var_rnoise": _constant(shape, rnoise),
        "var_flat": _constant(shape, flat),
    }


@pytest.mark.parametrize("positions", [[0, 1], [0, 1, 2], [0, 1, 2, 0, 1, 2], [0, 1, 2, 3, 4]])
def test_constant_sky_cancels_exactly(positions):
    shape = (len(positions), 20, 50)
    data = _constant(shape, 0.2371)
    result = nod_difference(data, _variances(shape), positions, n_sigma_outlier=0)
    assert np.all(result.valid)
    assert np.max(np.abs(result.data)) <= 4 * np.finfo(float).eps * 0.2371


def test_noiseless_source_recovered_exactly():
    # two positions, source in rows 5 (A) and 12 (B): A - B holds +S at 5 and -S at 12
    sky = np.linspace(0.1, 0.5, 40)[None, :] * np.ones((20, 1))
    source = np.zeros((2, 20, 40))
    source[0, 5] = 1.5
    source[1, 12] = 1.5
    data = sky[None] + source
    result = nod_difference(data, _variances(data.shape), [0, 1], n_sigma_outlier=0)
    np.testing.assert_allclose(result.data[0], source[0] - source[1], atol=1e-14)
    np.testing.assert_allclose(result.data[1], source[1] - source[0], atol=1e-14)


def test_variance_formula_with_repeats():
    # 3 positions x 2 repeats: Var(D) = V + (1/K^2) sum_q V/n_q = V + V/(2*2) * 2/2
    positions = [0, 1, 2, 0, 1, 2]
    shape = (6, 4, 5)
    var = _variances(shape, poisson=1.0, rnoise=0.5, flat=0.0)
    result = nod_difference(np.zeros(shape), var, positions, n_sigma_outlier=0)
    for c, v in (("var_poisson", 1.0), ("var_rnoise", 0.5)):
        reference = (v / 2 + v / 2) / 2**2  # two other positions, each a mean of 2
        np.testing.assert_allclose(result.ref_variances[c], reference)
        np.testing.assert_allclose(result.variances[c], v + reference)


def test_shared_reference_counted_once_when_combining_repeats():
    # Averaging the two differences at one position must have variance Var(M_p) + Var(O),
    # not half of Var(D): the reference is shared.  Monte Carlo over many pixels.
    rng = np.random.default_rng(11)
    shape = (4, 200, 500)
    positions = [0, 1, 0, 1]
    data = rng.normal(0.0, 1.0, shape)
    result = nod_difference(data, _variances(shape, 1.0, 0.0, 0.0), positions, n_sigma_outlier=0)
    mean_a = 0.5 * (result.data[0] + result.data[2])
    predicted = (
        0.25
        * (
            result.variances["var_poisson"][0]
            + result.variances["var_poisson"][2]
            - 2 * result.ref_variances["var_poisson"][0]
        )
        + result.ref_variances["var_poisson"][0]
    )
    naive = 0.25 * (result.variances["var_poisson"][0] + result.variances["var_poisson"][2])
    assert np.std(mean_a / np.sqrt(predicted)) == pytest.approx(1.0, abs=0.01)
    assert np.std(mean_a / np.sqrt(naive)) == pytest.approx(np.sqrt(1.0 / 0.75), abs=0.01)


@pytest.mark.parametrize(
    ("mode", "n_points", "repeats"),
    [
        ("nrs_msa_prism", 2, 1),
        ("nrs_msa_prism", 3, 1),
        ("nrs_msa_prism", 3, 2),
        ("nrs_msa_prism", 3, 3),
        ("nrs_msa_g395m", 3, 1),
        ("nrs_fs_prism", 2, 2),
        ("nrs_fs_prism", 3, 1),
        ("nrs_fs_prism", 5, 1),
        ("miri_lrs", 2, 1),
        ("miri_lrs", 2, 3),
    ],
)
def test_sky_only_error_calibration(mode, n_points, repeats):
    z = sky_only_z(mode, n_points, repeats, seeds=[7])
    assert z.size > 10_000
    assert np.std(z) == pytest.approx(1.0, abs=0.02)
    assert np.mean(z) == pytest.approx(0.0, abs=0.02)


def test_bad_pixel_in_one_exposure_does_not_poison_others():
    shape = (3, 10, 10)
    data = _constant(shape, 1.0)
    data[2, 4, 4] = np.nan  # exposure 2 (position 2) lost this pixel
    result = nod_difference(data, _variances(shape), [0, 1, 2], n_sigma_outlier=0)
    assert result.valid[0, 4, 4] and result.valid[1, 4, 4]
    assert not result.valid[2, 4, 4]
    # exposure 0 at that pixel now references position 1 alone
    np.testing.assert_allclose(result.variances["var_poisson"][0, 4, 4], 0.04 + 0.04)
    np.testing.assert_allclose(result.variances["var_poisson"][0, 5, 5], 0.04 + 0.04 / 2)


def test_two_point_nod_without_partner_pixel_is_invalid():
    shape = (2, 5, 5)
    data = _constant(shape, 1.0)
    data[1, 2, 2] = np.nan
    result = nod_difference(data, _variances(shape), [0, 1], n_sigma_outlier=0)
    assert not result.valid[0, 2, 2] and np.isnan(result.data[0, 2, 2])


def test_single_position_is_an_error():
    shape = (2, 5, 5)
    with pytest.raises(ValueError, match="at least two nod positions"):
        nod_difference(np.ones(shape), _variances(shape), [0, 0])


def test_mismatched_variance_shape_is_an_error():
    shape = (2, 5, 5)
    variances = _variances(shape)
    variances["var_rnoise"] = np.ones((2, 5, 4))
    with pytest.raises(ValueError, match="var_rnoise"):
        nod_difference(np.ones(shape), variances, [0, 1])


def test_group_nod_positions_clusters_dithers():
    offsets = [0.0, 0.529, -0.529, 0.01, 0.535, -0.52]
    np.testing.assert_array_equal(group_nod_positions(offsets, tolerance=0.1), [1, 2, 0, 1, 2, 0])
    with pytest.raises(ValueError, match="tolerance"):
        group_nod_positions(offsets, tolerance=0)


def test_masks_failed_open_dilation_bar_floor_and_edges():
    shape = (2, 9, 6)
    data = _constant(shape, 1.0)
    data[:, 0] = np.nan  # uncovered first row
    dq = np.zeros(shape, dtype=np.uint32)
    dq[0, 5, 3] = 8  # failed-open bit in this test
    bar = _constant(shape, 1.0)
    bar[:, 7] = 0.3
    settings = MaskSettings(
        do_not_use=1,
        failed_open=8,
        other_bad=64,
        failed_open_dilation=1,
        min_bar=0.4,
        edge_pixels=1,
    )
    usable, flags, _ = mask_pixels(data, _variances(shape), dq, settings, barshadow=bar)
    assert not usable[0, 5, 3] and not usable[0, 4, 3] and not usable[0, 6, 3]
    assert not usable[0, 5, 2] and usable[1, 5, 3]
    assert not usable[:, 7].any()  # bar floor
    assert not usable[:, 1].any()  # edge next to the uncovered row
    assert not usable[:, 8].any()  # edge at the end of the cutout
    assert usable[:, 3, 0].all()
    assert flags[0, 5, 3] == 1 | 64 and flags[0, 0, 0] == 0


def test_edge_mask_ignores_interior_holes():
    shape = (2, 12, 4)
    data = _constant(shape, 1.0)
    data[:, :2] = np.nan  # off the slit
    data[0, 6, 1] = np.nan  # a bad pixel inside the slit
    usable = usable_pixels(
        data, _variances(shape), np.zeros(shape, np.uint32), do_not_use=1, edge_pixels=1
    )
    assert not usable[:, 2].any() and not usable[:, 11].any()  # the slit edges
    assert usable[0, 5, 1] and usable[0, 7, 1]  # neighbours of the hole stay


def test_stuck_closed_shutter_found():
    shape = (3, 15, 40)
    data = _constant(shape, 0.3) + np.random.default_rng(1).normal(0, 0.02, shape)
    shutters = np.repeat(np.repeat(np.arange(3), 5)[:, None], 40, axis=1)
    shutters = np.broadcast_to(shutters, shape)
    data[:, 10:15] = np.random.default_rng(2).normal(0, 0.02, (3, 5, 40))  # shutter 2 dark
    mask, stuck = stuck_closed_mask(data, shutters, np.ones(shape, bool), threshold=0.3)
    assert stuck == [2]
    assert mask[:, 10:15].all() and not mask[:, :10].any()


def test_bright_source_does_not_make_open_shutters_look_stuck():
    # each exposure has the source in a different shutter; the others are sky
    shape = (3, 15, 40)
    data = _constant(shape, 0.3) + np.random.default_rng(1).normal(0, 0.02, shape)
    shutters = np.broadcast_to(np.repeat(np.repeat(np.arange(3), 5)[:, None], 40, axis=1), shape)
    for e in range(3):
        data[e, 5 * e + 1 : 5 * e + 4] += 30.0  # bright source, 100x the sky
    mask, stuck = stuck_closed_mask(data, shutters, np.ones(shape, bool), threshold=0.3)
    assert stuck == [] and not mask.any()


@pytest.mark.parametrize("n_points", [2, 3])
def test_outliers_found_and_source_spared(n_points):
    counts = outlier_recovery(n_points, n_slits=8)
    assert counts["found"] / counts["hits"] >= 0.95
    assert counts["false_on_trace"] / counts["trace_pixels"] < 1e-3


def test_inputs_not_modified():
    shape = (3, 6, 6)
    data = np.random.default_rng(0).normal(1.0, 0.1, shape)
    variances = _variances(shape)
    before = data.copy(), {c: v.copy() for c, v in variances.items()}
    nod_difference(data, variances, [0, 1, 2], trace_rows=np.full((3, 6), 2.0))
    np.testing.assert_array_equal(data, before[0])
    for c in COMPONENTS:
        np.testing.assert_array_equal(variances[c], before[1][c])


def test_equal_wavelength_mapping_uses_the_monotonic_part():
    from nodcombine.nod_diff.outliers import _matching_columns

    wave = np.linspace(14.0, 5.0, 10)
    folded = wave.copy()
    folded[-2:] = [4.8, 5.2]  # MIRI LRS folds back at the blue end
    mapped = _matching_columns(wave, folded)
    np.testing.assert_allclose(mapped[:8], np.arange(8.0))
    assert np.isnan(mapped[-1]) or mapped[-1] <= 8.0
