"""The trace-fit kernel on numpy inputs: exactness, the likelihood, calibrated errors."""

import numpy as np
import pytest

from helpers import synthetic_trace, trace_pulls
from nodcombine.nod_diff.noddiff import nod_difference
from nodcombine.profile import pixel_integrated_gaussian
from nodcombine.trace_fit.likelihood import sky_free_exposures
from nodcombine.trace_fit.solution import TraceFitSettings, transfer_profile
from nodcombine.trace_fit.tracefit import fit_trace
from nodcombine.trace_fit.tracemodel import prepare_trace


def test_pixel_integrated_gaussian_sums_to_one_and_derivatives_match():
    along = np.arange(-30, 31, dtype=float)
    profile, d_centre, d_sigma = pixel_integrated_gaussian(along, 0.37, 1.3)
    assert profile.sum() == pytest.approx(1.0, abs=1e-12)
    step = 1e-6
    numeric_c = (
        pixel_integrated_gaussian(along, 0.37 + step, 1.3)[0]
        - pixel_integrated_gaussian(along, 0.37 - step, 1.3)[0]
    ) / (2 * step)
    numeric_s = (
        pixel_integrated_gaussian(along, 0.37, 1.3 + step)[0]
        - pixel_integrated_gaussian(along, 0.37, 1.3 - step)[0]
    ) / (2 * step)
    np.testing.assert_allclose(d_centre, numeric_c, atol=1e-8)
    np.testing.assert_allclose(d_sigma, numeric_s, atol=1e-8)


@pytest.mark.parametrize("n_points, repeats", [(2, 1), (3, 1), (3, 2)])
def test_sky_free_exposures_are_exposures_minus_one_constant(n_points, repeats):
    inputs, truth = synthetic_trace(n_points=n_points, repeats=repeats, seed=4)
    positions = inputs["positions"]
    # a masked pixel in one exposure changes the means nod_diff used there
    usable = np.ones(truth.exposures.shape, bool)
    usable[0, 10, 20] = False
    ones = np.ones_like(truth.exposures)
    variances = {"var_poisson": ones, "var_rnoise": ones, "var_flat": ones}
    result = nod_difference(truth.exposures, variances, positions, usable=usable)
    contrast = sky_free_exposures(result.data, result.valid, positions)
    common = truth.exposures - contrast  # must not depend on the exposure
    finite = np.isfinite(common)
    spread = np.where(finite, common, -np.inf).max(axis=0) - np.where(finite, common, np.inf).min(
        axis=0
    )
    assert finite.any(axis=0).sum() >= common[0].size - 1
    assert np.max(spread[finite.any(axis=0)]) < 1e-9
    assert np.isnan(contrast[0, 10, 20])


def test_noiseless_curved_trace_recovered_exactly():
    inputs, truth = synthetic_trace(noise=False, curvature=3.0)
    solution = fit_trace(**inputs)
    assert solution.status == "FIT"
    assert solution.degree == 2 and solution.width_free
    np.testing.assert_allclose(solution.coeffs, truth.coeffs, atol=2e-5)
    assert solution.source_sigma2 == pytest.approx(truth.source_sigma2, abs=2e-5)
    np.testing.assert_allclose(solution.amplitudes, np.tile(truth.flux, (3, 1)), rtol=1e-5)
    # the model of the differences is the differences
    valid = inputs["valid"]
    np.testing.assert_allclose(solution.model[valid], inputs["data"][valid], atol=1e-3)
    assert solution.chi2 < 1e-4


def test_straight_and_curved_traces_give_the_same_width():
    straight = fit_trace(**synthetic_trace(curvature=0.0, noise=False)[0])
    curved = fit_trace(**synthetic_trace(curvature=4.0, noise=False)[0])
    assert curved.source_sigma2 == pytest.approx(straight.source_sigma2, abs=1e-5)
    np.testing.assert_allclose(curved.coeffs, straight.coeffs, atol=1e-5)
    # with noise: the same width within the errors, the curve costs no precision
    widths = {}
    for curvature in (0.0, 4.0):
        fits = [fit_trace(**synthetic_trace(curvature=curvature, seed=s)[0]) for s in range(8)]
        widths[curvature] = [f.source_sigma2 for f in fits], fits[0].source_sigma2_err
    (w_straight, e_straight), (w_curved, e_curved) = widths.values()
    assert np.mean(w_curved) == pytest.approx(np.mean(w_straight), abs=3 * e_straight / 2)
    assert e_curved == pytest.approx(e_straight, rel=0.1)


def test_fit_is_deterministic():
    inputs = synthetic_trace(seed=11)[0]
    first, second = fit_trace(**inputs), fit_trace(**inputs)
    np.testing.assert_array_equal(first.coeffs, second.coeffs)
    assert first.source_sigma2 == second.source_sigma2
    np.testing.assert_array_equal(first.model, second.model)


@pytest.mark.parametrize("n_points", [2, 3])
def test_errors_are_calibrated_not_double_counted(n_points):
    # A-B and B-A are the same pixels: fitting them as independent data would
    # shrink the errors by sqrt(2) and give pulls of std 1.41 (2-point).
    pulls, chi2, counted = trace_pulls(40, n_points=n_points, flux=30.0, shape=(25, 80))
    assert counted == 1.0
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.5)
    assert np.all(np.abs(pulls.std(axis=0) - 1.0) < 0.25)
    assert np.mean(chi2) == pytest.approx(1.0, abs=0.02)


def test_empty_slit_keeps_the_prediction_and_the_prior_width():
    # no switch to the bare PSF at low S/N: the width is fitted, held by its prior
    inputs, _ = synthetic_trace(flux=0.0, seed=2)
    solution = fit_trace(**inputs, pixel_scale=0.1)
    assert solution.status == "FIT" and solution.degree == -1
    assert "predicted centre" in solution.message and "width prior" in solution.message
    assert np.all(solution.centre == 0.0)
    # prior: intrinsic sigma 0.08" +- 0.08" at 0.1"/px, s2 = 0.64 +- 1.28 px2; pure
    # noise moves it by less than the prior's width and hardly narrows it
    assert solution.source_sigma2 == pytest.approx(0.64, abs=1.28)
    assert solution.source_sigma2_err == pytest.approx(1.28, rel=0.3)
    assert np.all(np.isfinite(solution.model[inputs["valid"]]))


def test_faint_source_uses_a_simpler_model():
    bright = fit_trace(**synthetic_trace(flux=60.0, seed=3)[0])
    faint = fit_trace(**synthetic_trace(flux=2.0, seed=3)[0])
    # the truth's source width is constant: the BIC keeps a constant width²
    assert bright.degree == 2 and bright.width_degree == 0
    # the faint source's width is still fitted (constant), its offset too
    assert faint.status == "FIT" and faint.degree == 0 and faint.width_degree == 0
    assert abs(faint.coeffs[0] - 0.3) < 5 * faint.coeffs_err[0]


def test_unflagged_cosmic_ray_is_rejected():
    clean = fit_trace(**synthetic_trace(seed=5, flux=40.0)[0])
    # on exposure 0's source, in exposure 1's raw data, missed by nod_diff
    cosmic_ray = (1, slice(12, 14), slice(40, 43), 400.0)
    hit = fit_trace(**synthetic_trace(seed=5, flux=40.0, hits=[cosmic_ray])[0])
    assert hit.clipped[:, 12:14, 40:43].any(axis=0).all()
    np.testing.assert_allclose(hit.coeffs, clean.coeffs, atol=0.5 * clean.coeffs_err.max())


def test_pixels_that_do_not_close_are_left_out():
    # a difference changed after nod_diff at a few pixels: those pixels leave the fit
    inputs, truth = synthetic_trace(noise=False)
    data = inputs["data"].copy()
    data[1, 12:14, 40:43] += 400.0
    solution = fit_trace(**{**inputs, "data": data})
    np.testing.assert_allclose(solution.coeffs, truth.coeffs, atol=2e-5)
    assert solution.chi2 < 1e-4


def test_forced_profile_is_used_unchanged():
    source = fit_trace(**synthetic_trace(seed=6)[0])
    forced = transfer_profile(source, scale_ratio=1.0, label="bright one")
    target_inputs, _ = synthetic_trace(seed=8, flux=3.0)
    target = fit_trace(**target_inputs, forced=forced)
    assert target.status == "FORCED" and "bright one" in target.message
    np.testing.assert_allclose(target.coeffs, source.coeffs)
    assert target.source_sigma2 == source.source_sigma2
    # errors stay those of the fit they came from, even where the target's
    # variances are understated (chi2/dof ~2)
    understated = {**target_inputs, "variance": 0.5 * target_inputs["variance"]}
    target = fit_trace(**understated, forced=forced)
    assert target.chi2 / target.dof > 1.5
    np.testing.assert_array_equal(target.coeffs_err, source.coeffs_err)


def test_transfer_profile_keeps_the_sky_position():
    source = fit_trace(**synthetic_trace(seed=6)[0])
    forced = transfer_profile(source, scale_ratio=2.0)
    np.testing.assert_allclose(forced.coeffs, 2.0 * source.coeffs)
    np.testing.assert_allclose(forced.width_coeffs, 4.0 * source.width_coeffs)


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("variance", np.ones((3, 25, 10)), "variance must have shape"),
        ("wavelength", np.ones((3, 5)), "wavelength must have shape"),
        ("positions", np.zeros(3, int), "at least two positions"),
    ],
)
def test_bad_inputs_name_the_parameter(name, value, match):
    inputs = synthetic_trace()[0]
    with pytest.raises(ValueError, match=match):
        fit_trace(**{**inputs, name: value})


def test_settings_are_validated():
    with pytest.raises(ValueError, match="max_offset"):
        TraceFitSettings(max_offset=0.0)
    with pytest.raises(ValueError, match="degree_snr"):
        TraceFitSettings(degree_snr=(80.0, 40.0))


def test_all_masked_source_is_an_error():
    inputs = synthetic_trace()[0]
    with pytest.raises(ValueError, match="no pixel"):
        fit_trace(**{**inputs, "valid": np.zeros_like(inputs["valid"])})


def test_coverage_narrower_than_nod_diff_leaves_fluxes_unbiased():
    # wavelengths missing for one exposure in most columns remove its pixels
    # from the fit, not from the sky-free reconstruction
    inputs, truth = synthetic_trace(noise=False)
    wavelength = inputs["wavelength"].copy()
    wavelength[2, :90] = np.nan
    solution = fit_trace(**{**inputs, "wavelength": wavelength})
    np.testing.assert_allclose(solution.amplitudes[:2], np.tile(truth.flux, (2, 1)), rtol=1e-4)
    assert solution.chi2 < 1e-4
    # the model of every difference, exposure 2's columns included, is the data
    valid = inputs["valid"]
    scale = np.abs(inputs["data"][valid]).max()
    np.testing.assert_allclose(solution.model[valid], inputs["data"][valid], atol=1e-3 * scale)


def test_usable_mask_only_removes_entries():
    inputs, truth = synthetic_trace(noise=False)
    usable = np.ones(inputs["data"].shape, bool)
    usable[1, 10:14, 30:60] = False  # flagged after nod_diff
    solution = fit_trace(**inputs, usable=usable)
    np.testing.assert_allclose(solution.coeffs, truth.coeffs, atol=2e-5)
    assert solution.chi2 < 1e-4


def test_missing_exposure_is_refused():
    inputs, _ = synthetic_trace(n_points=3, repeats=2)
    keep = [0, 1, 2, 3, 4]  # exposure 5 entered the references of the others
    cut = {k: v[keep] for k, v in inputs.items() if k != "positions"}
    with pytest.raises(ValueError, match="do not sum to zero"):
        fit_trace(**cut, positions=inputs["positions"][keep])


def test_clip_threshold_is_in_sigma_for_a_two_point_nod():
    # A hit of h in exposure A far from the source is h/sqrt(2) sigma of the A-B
    # pixel; its whitened residual is only 0.71 of that. A 6.5 sigma hit must be
    # clipped at clip_sigma = 5 (unscaled it would sit at 4.6 and stay).
    read_noise = 1.0
    excess = 6.5 * np.sqrt(2.0) * read_noise
    inputs = synthetic_trace(
        n_points=2, noise=False, hits=[(0, slice(2, 3), slice(70, 71), excess)]
    )[0]
    solution = fit_trace(**inputs)
    assert solution.clipped[:, 2, 70].any()
    assert solution.clipped.sum() <= 2


def test_source_beyond_the_offset_bound_falls_back():
    # 2.3 px off with offsets bounded at 2 px: no fit may creep back inside the
    # bound by rejecting the pixels it cannot reach
    inputs = synthetic_trace(coeffs=(2.3,), flux=200.0, seed=12)[0]
    solution = fit_trace(**inputs, settings=TraceFitSettings(max_offset=2.0))
    assert solution.status == "FALLBACK"
    assert "no fit converged inside the bounds" in solution.message


def test_scan_finds_an_extended_source_width():
    from nodcombine.trace_fit import tracefit

    inputs = synthetic_trace(source_sigma=3.0, coeffs=(0.3,), flux=30.0, seed=13)[0]
    arguments = [inputs[k] for k in ("data", "variance", "valid")]
    arguments += [None] + [inputs[k] for k in ("positions", "along", "wavelength", "sigma_psf")]
    geom, cdata = prepare_trace(*arguments)
    start, _, _, _ = tracefit._scan(geom, cdata, TraceFitSettings())
    assert start[1] == 9.0  # 3 px squared, from the grid 0, 1, 2, 3 px


@pytest.mark.parametrize("total_flux", [2.0, 3.0])
def test_low_snr_errors_are_not_too_small(total_flux):
    # S/N ~1.4 per column: per-column fluxes would make the errors 2-3x too small
    # (the incidental-parameter problem); flux blocks keep them honest
    pulls, _, counted = trace_pulls(40, flux=total_flux, shape=(25, 340))
    assert counted > 0.75
    assert np.std(pulls[:, 0]) < 1.35


def test_background_columns_of_the_jacobian_are_exact():
    # the backgrounds enter the residuals linearly and not through the profile, so the
    # projected (Kaufman) derivative is exact for them: it must equal finite differences,
    # and sit in the parameter vector's order (after the width's, before a halo's)
    from nodcombine.trace_fit.profilemodel import ProfileModel
    from nodcombine.trace_fit.solution import TraceFitSettings
    from nodcombine.trace_fit.tracemodel import ProfileObjective, prepare_trace

    inputs, _ = synthetic_trace(n_points=3, shape=(25, 60), seed=7)
    geom, cdata = prepare_trace(**inputs, usable=None)
    model = ProfileModel(0, 1, halo=True, background_degree=2, background_exposures=2)
    objective = ProfileObjective(geom, cdata, model, TraceFitSettings())
    theta = np.array([0.3, 0.6, 0.1, 0.4, -0.2, 0.1, -0.3, 0.2, 0.05, 0.2, 3.0])
    assert model.names[3:9] == ("c1_0", "c1_1", "c1_2", "c2_0", "c2_1", "c2_2")
    jacobian = objective.jacobian(theta)
    step = 1e-6
    for k in range(3, 9):
        up, down = theta.copy(), theta.copy()
        up[k] += step
        down[k] -= step
        numeric = (objective.residuals(up) - objective.residuals(down)) / (2 * step)
        np.testing.assert_allclose(jacobian[:, k], numeric, rtol=1e-5, atol=1e-7)
    # a model without backgrounds is the same model with them at zero
    plain = ProfileObjective(geom, cdata, ProfileModel(0, 1, halo=True), TraceFitSettings())
    at_zero = theta.copy()
    at_zero[3:9] = 0.0
    np.testing.assert_allclose(
        objective.residuals(at_zero), plain.residuals(np.delete(at_zero, range(3, 9))), atol=1e-12
    )


def test_linearised_gain_and_cost_are_exact_for_a_linear_model():
    # for residuals linear in the parameters one Gauss-Newton step is the optimum, and
    # holding parameters at 0 costs exactly the Wald statistic
    from nodcombine.trace_fit.modelfit import gauss_newton_gain, wald_cost

    rng = np.random.default_rng(3)
    design = rng.normal(size=(200, 5)) * [1.0, 10.0, 0.1, 1.0, 3.0]  # badly scaled columns
    data = design @ [0.5, -0.2, 3.0, 0.0, 0.1] + rng.normal(size=200)
    best, *_ = np.linalg.lstsq(design, data, rcond=None)
    at_zero = -data  # residuals design @ 0 - data
    assert gauss_newton_gain(at_zero, design) == pytest.approx(
        data @ data - np.sum((design @ best - data) ** 2), rel=1e-10
    )
    dropped = [2, 3]
    kept = [0, 1, 4]
    refit, *_ = np.linalg.lstsq(design[:, kept], data, rcond=None)
    cost = np.sum((design[:, kept] @ refit - data) ** 2) - np.sum((design @ best - data) ** 2)
    assert wald_cost(best, design, dropped) == pytest.approx(cost, rel=1e-10)


def test_candidates_left_unfitted_do_not_change_the_fit(monkeypatch, caplog):
    # the linearised screen only spares fits whose outcome it can predict: with it off
    # every candidate is fitted, and the chosen models and their parameters must not
    # move.  The sources take width laws, wings and skews the screen must let through.
    import logging

    from nodcombine import NodDiffStep, TraceFitStep
    from nodcombine.contract import TraceFitRecord
    from nodcombine.simulate import simulate_nodded_visit
    from nodcombine.trace_fit import modelfit

    families = ["steep", "asymmetric"]
    models, _ = simulate_nodded_visit(
        "nrs_msa_prism",
        n_slits=len(families),
        source_profile=families,
        source_peak=3.0,
        emission_lines=False,
        seed=1,
    )
    nod = NodDiffStep.call(models)

    def records():
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger=modelfit.__name__):
            traced = TraceFitStep.call(nod)
        unfitted = sum("not fitted" in message for message in caplog.messages)
        return [TraceFitRecord.from_tree(slit.instance) for slit in traced[0].slits], unfitted

    screened, unfitted = records()
    assert unfitted > 0
    monkeypatch.setattr(modelfit, "_SCREEN_GAIN", 0.0)
    monkeypatch.setattr(modelfit, "_SCREEN_LOSS", np.inf)
    fitted, unfitted = records()
    assert unfitted == 0
    assert [r.message for r in screened] == [r.message for r in fitted]
    for one, other in zip(screened, fitted, strict=True):
        np.testing.assert_allclose(one.offset_coeffs_pix, other.offset_coeffs_pix, rtol=1e-6)
        np.testing.assert_allclose(one.width_coeffs_pix2, other.width_coeffs_pix2, rtol=1e-6)
