"""TraceFitStep end to end on simulated visits: accuracy, forcing, products, bad input."""

import logging

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from helpers import fit_simulated_trace, prism_and_grating_nods
from nodcombine import NodDiffStep, TraceFitStep
from nodcombine.simulate import simulate_nodded_visit, write_association

SHUTTER = 0.46 * 1.15  # arcsec: MOS shutter pitch along the slit
WOBBLE = (0.0, 0.2, -0.1)  # pixels: the true trace departs from the WCS prediction


def _centre_error(slit, truth):
    """Largest |fitted - true| source position over the dispersion pixels, pixels."""
    return np.nanmax(np.abs(slit.instance["trace_fit_centre"] - truth.trace_row))


def _record(slit):
    return slit.instance["trace_fit_record"]


def _width_ratio(slit, truth):
    return np.nanmedian(slit.instance["trace_fit_sigma"] / truth.sigma_pix)


@pytest.mark.parametrize(
    "mode, n_points, peak, intra",
    [
        ("nrs_msa_prism", 3, 1.0, 0.3 * SHUTTER),
        ("nrs_msa_prism", 2, 1.3, 0.0),
        ("nrs_msa_g395m", 2, 8.0, -0.3 * SHUTTER),
    ],
)
def test_bright_point_source_centre_and_width(mode, n_points, peak, intra):
    fits = fit_simulated_trace(
        mode,
        n_points,
        source_peak=peak,
        source_offset_arcsec=intra,
        position_error_arcsec=0.03,
        trace_wobble_pix=WOBBLE,
        seed=21,
    )
    for record, slit, truth in fits:
        assert record["status"] == "FIT"
        assert record["snr_column"] >= 20
        assert "background" not in record["message"]  # none was simulated
        assert _centre_error(slit, truth) < 0.05
        assert _width_ratio(slit, truth) == pytest.approx(1.0, abs=0.03)


#: each exposure's sky off by a different smooth function of wavelength (uniform along
#: the slit), the residual the CEERS 933 exposures show (docs/benchmarks.md, 5c)
EXPOSURE_SKIES = (lambda x: 1 + x, lambda x: -1 + x**2, lambda x: 0.5 - x)


# at 0.15 the fit without the term tries every start and fails (25 s): the slow suite
@pytest.mark.parametrize("amplitude", [0.03, pytest.param(0.15, marks=pytest.mark.slow)])
def test_exposure_backgrounds_do_not_bend_the_profile(amplitude):
    # amplitude: of the source's peak surface brightness, per pixel
    models, truth = simulate_nodded_visit("nrs_msa_prism", n_points=3, source_peak=1.0, seed=21)
    for model, sky in zip(models, EXPOSURE_SKIES, strict=True):
        for slit in model.slits:
            x = np.linspace(-1, 1, slit.data.shape[1])
            slit.data = (slit.data + amplitude * sky(x)[None, :]).astype(np.float32)
    nod = NodDiffStep.call(models)
    slit = TraceFitStep.call(nod)[0].slits[0]
    record, true_slit = _record(slit), truth.slits[0][0]
    assert record["status"] == "FIT"
    assert "a background per exposure (degree 3)" in record["message"]
    assert "halo" not in record["message"] and "skew" not in record["message"]
    thirds = np.array_split(slit.instance["trace_fit_sigma"] / true_slit.sigma_pix, 3)
    assert all(np.nanmedian(t) == pytest.approx(1.0, abs=0.01) for t in thirds)
    assert _centre_error(slit, true_slit) < 0.01
    # without the term the same data bend the profile (0.03: halos, skews, 6 % in the
    # blue third; 0.15: no fit converges and the prediction is kept)
    plain = TraceFitStep.call(nod, background_degree=-1)[0].slits[0]
    thirds = np.array_split(plain.instance["trace_fit_sigma"] / true_slit.sigma_pix, 3)
    assert max(abs(np.nanmedian(t) - 1.0) for t in thirds) > 0.04


@pytest.mark.parametrize("mode", ["nrs_fs_prism", "nrs_msa_prism"])
def test_extended_source_width(mode):
    sigma_pix = 2.5
    fits = fit_simulated_trace(
        mode, 3, source_peak=0.6, source_sigma_arcsec=sigma_pix * 0.1045, seed=22
    )
    for record, slit, truth in fits:
        assert record["width_free"]
        assert record["source_sigma_pix"] == pytest.approx(sigma_pix, rel=0.05)
        assert _width_ratio(slit, truth) == pytest.approx(1.0, abs=0.05)


def test_miri_lrs_point_source():
    fits = fit_simulated_trace("miri_lrs", 2, source_peak=20.0, position_error_arcsec=0.05, seed=23)
    for record, slit, truth in fits:
        assert record["status"] == "FIT"
        assert _centre_error(slit, truth) < 0.05
        assert _width_ratio(slit, truth) == pytest.approx(1.0, abs=0.03)
        # dispersion along detector y: the model comes back in the slit's orientation
        data, model = slit.data, slit.trace_model
        assert model.shape == data.shape and data.shape[0] > data.shape[1]
        both = np.isfinite(data) & np.isfinite(model)
        assert np.sum(data[both] * model[both]) / np.sum(model[both] ** 2) == pytest.approx(
            1.0, abs=0.01
        )


@pytest.mark.parametrize("peak, snr_column", [(0.1, 3.3), (0.02, 0.9)])
def test_faint_source_degrades_gracefully(peak, snr_column):
    # S/N 3 per column is S/N ~80 over the spectrum: the source is found (the
    # injected 0.29 px position error is recovered, so this is no fallback);
    # below, a constant offset; never a runaway
    fits = fit_simulated_trace(
        "nrs_msa_prism", 2, source_peak=peak, position_error_arcsec=0.03, seed=24
    )
    for record, slit, truth in fits:
        assert record["snr_column"] == pytest.approx(snr_column, rel=0.2)
        assert record["status"] == "FIT"
        error = np.abs(slit.instance["trace_fit_centre"] - truth.trace_row)
        assert np.nanmedian(error) < 0.1  # the fallback would be 0.29 px off
        assert np.nanmax(error) < 0.3  # a quadratic is loosest at the band ends
        assert np.all(np.isfinite(record["offset_coeffs_err_pix"]))
        assert np.isfinite(slit.trace_model[np.isfinite(slit.data)]).all()
        if snr_column < 1:
            assert record["degree"] == 0


def test_empty_slit_keeps_the_prediction_and_says_so(caplog):
    models, truth = simulate_nodded_visit(
        "nrs_msa_prism", n_slits=2, n_points=3, source_peak=[0.0, 1.0], seed=25
    )
    with caplog.at_level(logging.INFO, logger="nodcombine"):
        result = TraceFitStep.call(NodDiffStep.call(models))
    empty, bright = result[0].slits[0], result[0].slits[1]
    assert _record(empty)["status"] == "FIT" and _record(empty)["degree"] == -1
    assert _record(bright)["status"] == "FIT"
    assert "predicted centre (faint)" in caplog.text
    # the centre is the WCS prediction, where the simulator put the (absent) source
    assert _centre_error(empty, truth.slits[0][0]) < 0.01
    # and the width the prior's (0.08" intrinsic), not the bare PSF's
    assert _record(empty)["source_sigma_arcsec"] == pytest.approx(0.08, abs=0.03)


def test_forced_profile_from_prism_to_grating():
    nod, truths = prism_and_grating_nods()
    forced = TraceFitStep.call(nod)
    free = TraceFitStep.call(nod, force_profile=False)
    prism_record = _record(forced[0].slits[0])
    for k in range(3, 6):
        slit, truth = forced[k].slits[0], truths[k]
        assert _record(slit)["status"] == "FORCED"
        assert _record(slit)["forced_from"] == "NRS2/NIRSPEC-PRISM/100/1000"
        assert _record(slit)["offset_coeffs_pix"] == prism_record["offset_coeffs_pix"]
        assert _centre_error(slit, truth) < 0.05
        assert _record(free[k].slits[0])["status"] == "FIT"


def test_products_round_trip(tmp_path):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_points=3, source_peak=0.5, seed=26)
    result = TraceFitStep.call(
        NodDiffStep.call(models), output_dir=str(tmp_path), save_results=True
    )
    saved = sorted(tmp_path.glob("*_trace.fits"))
    assert len(saved) == 3
    # jwst-style names: the suffix replaces _nod, it is not appended
    assert not list(tmp_path.glob("*_nod_trace.fits"))
    with datamodels.open(saved[1]) as reopened:
        slit, original = reopened.slits[0], result[1].slits[0]
        assert reopened.meta.cal_step.trace_fit == "COMPLETE"
        np.testing.assert_array_equal(slit.trace_model, original.trace_model)
        assert _record(slit) == _record(original)
        np.testing.assert_array_equal(slit.trace_fit_centre, original.trace_fit_centre)
        assert _record(slit)["status"] == "FIT"
    # trace_model is the model of the difference, positive and negative images
    data, model, err = original.data, original.trace_model, original.err
    both = np.isfinite(data) & np.isfinite(model)
    scale = np.sum(data[both] * model[both]) / np.sum(model[both] ** 2)
    assert scale == pytest.approx(1.0, abs=0.03)
    # it removes the source down to the noise; the exact likelihood's chi2 is ~1
    assert np.std((data - model)[both] / err[both]) < 1.02
    assert np.std(data[both] / err[both]) > 1.2
    record = _record(original)
    assert record["chi2"] / record["dof"] == pytest.approx(1.0, abs=4 * np.sqrt(2 / record["dof"]))


def test_diagnostic_figure(tmp_path):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_points=2, source_peak=0.5, seed=27)
    TraceFitStep.call(NodDiffStep.call(models), save_diagnostics=True, output_dir=str(tmp_path))
    (png,) = tmp_path.glob("*_trace_fit.png")
    assert png.stat().st_size > 10_000


def test_failed_figure_keeps_the_fit(monkeypatch, caplog, tmp_path):
    from nodcombine import plotting

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(plotting, "save_trace_fit_figure", disk_full)
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_points=2, source_peak=0.5, seed=39)
    with caplog.at_level(logging.WARNING, logger="nodcombine"):
        result = TraceFitStep.call(
            NodDiffStep.call(models), save_diagnostics=True, output_dir=str(tmp_path)
        )
    assert _record(result[0].slits[0])["status"] == "FIT"
    assert result[0].meta.cal_step.trace_fit == "COMPLETE"
    assert "no diagnostic figure (OSError: disk full)" in caplog.text


def test_input_without_nod_diff_is_skipped(caplog):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_points=2, seed=28)
    with caplog.at_level(logging.WARNING, logger="nodcombine"):
        result = TraceFitStep.call(models)
    assert [m.meta.cal_step.trace_fit for m in result] == ["SKIPPED"] * 2
    assert "run nod_diff first" in caplog.text


def test_single_exposure_is_skipped(caplog, tmp_path):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_points=2, seed=29)
    nod = NodDiffStep.call(models)
    with caplog.at_level(logging.WARNING, logger="nodcombine"):
        result = TraceFitStep.call(nod[0])
    assert result.meta.cal_step.trace_fit == "SKIPPED"
    assert "single exposure" in caplog.text


def test_bad_sources_do_not_stop_the_others(caplog):
    models, _ = simulate_nodded_visit(
        "nrs_msa_prism", n_slits=3, n_points=3, source_peak=0.5, seed=30
    )
    nod = NodDiffStep.call(models)
    for model in nod:
        model.slits[0].dq[...] |= 1  # slit 0: every pixel DO_NOT_USE
    del nod[1].slits[1].instance["nod_geometry"]  # slit 1: one exposure lost nod_diff's maps
    with caplog.at_level(logging.WARNING, logger="nodcombine"):
        result = TraceFitStep.call(nod)
    assert [m.meta.cal_step.trace_fit for m in result] == ["COMPLETE"] * 3
    for model in result:
        assert _record(model.slits[0])["status"] == "SKIPPED"
        assert "no pixel" in _record(model.slits[0])["message"]
        assert _record(model.slits[1])["status"] == "SKIPPED"
        assert _record(model.slits[2])["status"] == "FIT"
    assert "'nod_geometry' is missing" in caplog.text and "slit 101" in caplog.text


def test_slit_skipped_by_nod_diff_is_left_out_exactly(caplog):
    # a slit nod_diff could not use entered no reference: the rest is fitted
    models, truth = simulate_nodded_visit(
        "nrs_msa_prism", n_points=3, exposures_per_position=2, source_peak=0.5, seed=31
    )
    models[4].slits[0].meta.wcs = None
    nod = NodDiffStep.call(models)
    assert nod[4].slits[0].instance["nod_diff_status"].startswith("SKIPPED")
    with caplog.at_level(logging.WARNING, logger="nodcombine"):
        result = TraceFitStep.call(nod)
    assert _record(result[4].slits[0])["status"] == "SKIPPED"
    assert "not a difference" in caplog.text
    for k in (0, 1, 2, 3, 5):
        record = _record(result[k].slits[0])
        assert record["status"] == "FIT"
        assert _centre_error(result[k].slits[0], truth.slits[k][0]) < 0.05
    assert record["chi2"] / record["dof"] == pytest.approx(1.0, abs=0.05)


def test_differences_changed_after_nod_diff_are_refused(caplog):
    # dropping a difference that entered the others' references would bias the
    # fit (X_A - X_B = 4/3 of what the rest implies); the closure test says so
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_points=3, source_peak=0.5, seed=31)
    nod = NodDiffStep.call(models)
    nod[2].slits[0].instance["nod_diff_status"] = "SKIPPED: changed by hand"
    with caplog.at_level(logging.WARNING, logger="nodcombine"):
        result = TraceFitStep.call(nod)
    for model in result:
        assert _record(model.slits[0])["status"] == "SKIPPED"
    assert "do not sum to zero over the nod positions" in caplog.text


def test_families_stay_within_one_pointing():
    # the same source id in two observations: each keeps its own offset
    first, first_truth = simulate_nodded_visit(
        "nrs_msa_prism", n_points=3, source_peak=0.8, position_error_arcsec=0.04, seed=33
    )
    second, second_truth = simulate_nodded_visit(
        "nrs_msa_prism", n_points=3, source_peak=0.3, position_error_arcsec=-0.05, seed=34
    )
    for model in second:
        model.meta.observation.observation_number = "002"
    result = TraceFitStep.call(NodDiffStep.call(first + second))
    truths = [t[0] for t in first_truth.slits + second_truth.slits]
    for model, truth in zip(result, truths, strict=True):
        assert _record(model.slits[0])["status"] == "FIT"
        assert _centre_error(model.slits[0], truth) < 0.06


def test_fixed_slit_sources_in_different_slits_are_not_forced():
    # jwst gives the primary source of every fixed slit the same source_id
    star, _ = simulate_nodded_visit("nrs_fs_prism", n_points=3, source_peak=1.0, seed=36)
    galaxy, galaxy_truth = simulate_nodded_visit(
        "nrs_fs_prism", n_points=3, source_peak=0.4, source_sigma_arcsec=0.25, seed=37
    )
    for model in galaxy:
        model.slits[0].name = "S1600A1"
    result = TraceFitStep.call(NodDiffStep.call(star + galaxy))
    for model, truth in zip(result[3:], galaxy_truth.slits, strict=True):
        record = _record(model.slits[0])
        assert record["status"] == "FIT"
        assert _width_ratio(model.slits[0], truth[0]) == pytest.approx(1.0, abs=0.05)


def test_fully_masked_exposure_is_left_out(caplog):
    models, truth = simulate_nodded_visit(
        "nrs_msa_prism", n_points=3, exposures_per_position=2, source_peak=0.5, seed=38
    )
    models[0].slits[0].dq[...] |= 1  # DO_NOT_USE everywhere in one exposure
    with caplog.at_level(logging.WARNING, logger="nodcombine"):
        result = TraceFitStep.call(NodDiffStep.call(models))
    assert _record(result[0].slits[0])["status"] == "SKIPPED"
    assert "every pixel masked" in caplog.text
    for k in range(1, 6):
        assert _record(result[k].slits[0])["status"] == "FIT"
        assert _centre_error(result[k].slits[0], truth.slits[k][0]) < 0.05


def test_unexpected_failure_of_one_source_spares_the_others(monkeypatch, caplog):
    from nodcombine.trace_fit import step as trace_fit_step

    models, _ = simulate_nodded_visit(
        "nrs_msa_prism", n_slits=2, n_points=2, source_peak=0.5, seed=35
    )
    nod = NodDiffStep.call(models)
    real_fit = trace_fit_step.fit_trace
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise FloatingPointError("injected")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(trace_fit_step, "fit_trace", failing_once)
    with caplog.at_level(logging.WARNING, logger="nodcombine"):
        result = TraceFitStep.call(nod)
    statuses = [_record(slit)["status"] for slit in result[0].slits]
    assert statuses == ["SKIPPED", "FIT"]
    assert "unexpected FloatingPointError: injected" in _record(result[0].slits[0])["message"]
    assert [m.meta.cal_step.trace_fit for m in result] == ["COMPLETE"] * 2


def test_inputs_not_modified(tmp_path):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_points=2, source_peak=0.5, seed=32)
    nod = NodDiffStep.call(models, output_dir=str(tmp_path), save_results=True)
    paths = sorted(tmp_path.glob("*_nod.fits"))
    before = [p.read_bytes() for p in paths]
    asn = write_association(paths, tmp_path / "nod_asn.json")
    TraceFitStep.call(str(asn))
    assert [p.read_bytes() for p in paths] == before
    data = nod[0].slits[0].data.copy()
    TraceFitStep.call(nod)
    np.testing.assert_array_equal(nod[0].slits[0].data, data)
    assert nod[0].slits[0].instance.get("trace_fit_record") is None


def test_pipeline_diagnostics_go_to_its_output_dir(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from nodcombine import NodCombinePipeline

    models, _ = simulate_nodded_visit("nrs_msa_prism", n_points=2, source_peak=0.5, seed=39)
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    out.mkdir()
    monkeypatch.chdir(cwd)
    NodCombinePipeline.call(
        models, output_dir=str(out), steps={"trace_fit": {"save_diagnostics": True}}
    )
    assert not list(cwd.iterdir())
    (figure,) = out.glob("*_trace_fit.png")
    # the first exposure's stem (program, observation, visit, exposure, detector), the slit
    # and the source: unique per visit and source
    assert figure.name == "jw09999001001_03101_00001_nrs2_slit100_source1000_trace_fit.png"
