"""NodDiffStep end to end on simulated visits: products, statuses, bad input."""

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from helpers import away_from_traces, flagged_fraction
from nodcombine import NodDiffStep
from nodcombine.contract import NodSlitRecord
from nodcombine.simulate import simulate_nodded_visit, write_association, write_visit


def _z(slit):
    with np.errstate(invalid="ignore", divide="ignore"):
        z = slit.data / slit.err
    return z[np.isfinite(z)]


@pytest.fixture(scope="module")
def mos_visit(tmp_path_factory):
    models, truth = simulate_nodded_visit(
        "nrs_msa_prism",
        n_slits=3,
        n_points=3,
        source_peak=[0.0, 0.0, 0.5],
        cosmic_ray_fraction=0.003,
        jitter_cutouts=True,
        seed=5,
    )
    asn, paths = write_visit(models, tmp_path_factory.mktemp("mos"))
    return asn, paths, truth


def test_call_on_association(mos_visit, tmp_path):
    asn, paths, _truth = mos_visit
    result = NodDiffStep.call(str(asn), output_dir=str(tmp_path), save_results=True)
    assert len(result) == 3
    for model in result:
        assert model.meta.cal_step.nod_diff == "COMPLETE"
        assert len(model.slits) == 3
    # sky-only slits: calibrated errors, sky gone
    z = np.concatenate([_z(m.slits[k]) for m in result for k in (0, 1)])
    assert np.std(z[np.abs(z) < 6]) == pytest.approx(1.0, abs=0.03)
    assert abs(np.median(z)) < 0.03
    # products are named per exposure and re-open with stdatamodels
    saved = sorted(tmp_path.glob("*_nod.fits"))
    assert [p.name.replace("_nod", "_cal") for p in saved] == [p.name for p in paths]
    with datamodels.open(saved[0]) as reopened:
        slit = reopened.slits[2]
        assert slit.data.shape == result[0].slits[2].data.shape
        record = NodSlitRecord.from_tree(slit.instance)
        assert record.ref_variances["var_rnoise"].shape == slit.data.shape
        assert reopened.meta.cal_step.nod_diff == "COMPLETE"
        assert slit.nod_diff_status == "COMPLETE"
        assert slit.nod_position == result[0].slits[2].nod_position


def test_source_difference_matches_truth(mos_visit):
    asn, _, truth = mos_visit
    result = NodDiffStep.call(str(asn))
    # positive trace of exposure 0, slit 2: column sums near the trace equal the injected flux
    slit = result[0].slits[2]
    trace = truth.slits[0][2].trace_row
    rows = np.arange(slit.data.shape[0])[:, None]
    window = np.abs(rows - trace[None, :]) <= 2.5
    col_sum = np.nansum(np.where(window, slit.data, 0.0), axis=0)
    col_err = np.sqrt(np.nansum(np.where(window, slit.err**2, 0.0), axis=0))
    expected = truth.slits[0][2].column_flux
    complete = np.isfinite(np.where(window, slit.data, 0.0)).all(axis=0)
    good = complete & (col_err > 0) & (expected > 0)
    assert good.sum() > 200
    pull = (col_sum - expected)[good] / col_err[good]
    # a +-2.5 px window misses only the far wings (< 1 % of the flux)
    assert abs(np.median(pull)) < 0.5


def test_cosmic_rays_flagged(mos_visit):
    asn, _, truth = mos_visit
    result = NodDiffStep.call(str(asn))
    masked = datamodels.dqflags.pixel["OTHER_BAD_PIXEL"]  # edges, bars: never differenced
    hits = found = 0
    for i, model in enumerate(result):
        for k, slit in enumerate(model.slits):
            injected = truth.slits[i][k].cosmic_rays & ((slit.dq & masked) == 0)
            hits += injected.sum()
            found += ((slit.dq & datamodels.dqflags.pixel["OUTLIER"]) > 0)[injected].sum()
    assert found / hits >= 0.95


def test_inputs_are_not_modified(mos_visit):
    _asn, paths, _ = mos_visit
    models = [datamodels.open(p) for p in paths]
    before = [m.slits[0].data.copy() for m in models]
    NodDiffStep.call(models)
    for model, data in zip(models, before, strict=True):
        np.testing.assert_array_equal(model.slits[0].data, data)
        assert getattr(model.meta.cal_step, "nod_diff", None) is None


@pytest.mark.parametrize(("mode", "n_points"), [("nrs_fs_prism", 5), ("miri_lrs", 2)])
def test_other_modes(mode, n_points, tmp_path):
    models, _truth = simulate_nodded_visit(mode, n_points=n_points, source_peak=0.0, seed=9)
    result = NodDiffStep.call(models)
    assert all(m.meta.cal_step.nod_diff == "COMPLETE" for m in result)
    z = np.concatenate([_z(m.slits[0] if hasattr(m, "slits") else m) for m in result])
    assert np.std(z) == pytest.approx(1.0, abs=0.03)
    if mode == "miri_lrs":  # dispersion along y: product keeps the input orientation
        assert result[0].data.shape == models[0].data.shape


def test_stuck_closed_and_failed_open_are_masked():
    models, _truth = simulate_nodded_visit(
        "nrs_msa_prism",
        n_points=3,
        source_peak=0.0,
        stuck_closed_shutter=1,
        failed_open=True,
        seed=4,
    )
    result = NodDiffStep.call(models)
    bad = datamodels.dqflags.pixel["OTHER_BAD_PIXEL"]
    for model in result:
        slit = model.slits[0]
        assert ((slit.dq & bad) > 0).sum() > 1000  # a whole shutter strip
        z = _z(slit)
        assert np.std(z) == pytest.approx(1.0, abs=0.05)


# --- bad input -------------------------------------------------------------------------


def test_single_exposure_is_skipped(mos_visit, caplog):
    _, paths, _ = mos_visit
    result = NodDiffStep.call(str(paths[0]))
    assert result.meta.cal_step.nod_diff == "SKIPPED"
    assert "single exposure" in caplog.text


def test_single_nod_position_is_skipped(caplog):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_points=3, source_peak=0.0, seed=1)
    result = NodDiffStep.call([models[0], models[0].copy()])
    assert all(m.meta.cal_step.nod_diff == "SKIPPED" for m in result)
    assert "one nod position" in caplog.text


def test_imaging_data_is_skipped(caplog):
    image = datamodels.ImageModel(data=np.ones((10, 10), np.float32))
    image.meta.exposure.type = "NRC_IMAGE"
    image.meta.filename = "jw_image_cal.fits"
    result = NodDiffStep.call([image, image.copy()])
    assert all(m.meta.cal_step.nod_diff == "SKIPPED" for m in result)
    assert "jw_image_cal.fits" in caplog.text and "NRC_IMAGE" in caplog.text


def test_wrong_association_type_is_skipped(mos_visit, tmp_path, caplog):
    _, paths, _ = mos_visit
    asn = write_association(paths, tmp_path / "asn.json")
    text = asn.read_text().replace('"spec3"', '"image3"')
    asn.write_text(text)
    result = NodDiffStep.call(str(asn))
    assert all(m.meta.cal_step.nod_diff == "SKIPPED" for m in result)
    assert "image3" in caplog.text


def test_bad_slits_skipped_others_processed(caplog):
    models, _ = simulate_nodded_visit(
        "nrs_msa_prism", n_slits=4, n_points=3, source_peak=0.0, seed=2
    )
    models[1].slits[0].var_rnoise = None  # missing variance: slit 100 in exposure 2
    models[0].slits[1].meta.wcs = None  # no WCS: slit 101 in exposure 1
    models[2].slits[2].data[:] = np.nan  # all-NaN: slit 102 in exposure 3
    result = NodDiffStep.call(models)
    text = caplog.text
    assert "var_rnoise" in text and "slit 100" in text
    assert "meta.wcs" in text and "slit 101" in text
    assert "all NaN" in text and "slit 102" in text
    # slit 103 is untouched by the problems and fully differenced
    assert all(m.meta.cal_step.nod_diff == "COMPLETE" for m in result)
    assert result[1].slits[0].nod_diff_status.startswith("SKIPPED: ")
    assert "var_rnoise" in result[1].slits[0].nod_diff_status
    assert result[0].slits[0].nod_diff_status == "COMPLETE"
    assert np.std(_z(result[0].slits[3])) == pytest.approx(1.0, abs=0.05)
    # slits that lost one exposure still difference the remaining positions,
    # and keep the position labels of the whole pattern
    assert np.isfinite(result[0].slits[0].data).any()
    for model in (result[0], result[2]):
        assert model.slits[0].nod_position == model.slits[3].nod_position


def test_unknown_grating_is_skipped(caplog):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_points=3, source_peak=0.0, seed=2)
    # bypass schema validation, as a file written by another tool could
    models[0].meta.instrument.instance["grating"] = "G999X"
    result = NodDiffStep.call(models)
    assert "'meta.instrument.grating' 'G999X' is unknown" in caplog.text
    # that exposure is untouched and says so; the other two still difference each other
    assert result[0].meta.cal_step.nod_diff == "SKIPPED"
    assert result[0].slits[0].nod_diff_status.startswith("SKIPPED: ")
    assert [m.meta.cal_step.nod_diff for m in result[1:]] == ["COMPLETE", "COMPLETE"]
    # position labels come from the whole pattern, not from the exposures left
    complete, _ = simulate_nodded_visit("nrs_msa_prism", n_points=3, source_peak=0.0, seed=2)
    reference = NodDiffStep.call(complete)
    assert [m.slits[0].nod_position for m in result[1:]] == [
        m.slits[0].nod_position for m in reference[1:]
    ]


def test_mismatched_cutouts_are_aligned():
    n_slits = 4
    models, truth = simulate_nodded_visit(
        "nrs_msa_prism",
        n_slits=n_slits,
        n_points=3,
        source_peak=0.5,
        jitter_cutouts=True,
        seed=12,
    )
    cutouts = {(m.slits[0].xstart, m.slits[0].ystart, m.slits[0].data.shape) for m in models}
    assert len(cutouts) == 3  # origins and sizes differ
    result = NodDiffStep.call(models, n_sigma_outlier=0)
    zs = []
    for i, model in enumerate(result):
        for k, slit in enumerate(model.slits):
            assert slit.data.shape == models[i].slits[k].data.shape
            zs.append(away_from_traces(slit, models, truth, k))
    z = np.concatenate(zs)
    # sky cancels on the aligned grid: what is left away from the traces is noise
    assert z.size > 4000
    assert abs(np.median(z)) < 0.05
    assert 1.4826 * np.median(np.abs(z - np.median(z))) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(
    ("mode", "n_points", "peak"),
    [("nrs_fs_prism", 2, 5.0), ("nrs_fs_prism", 3, 20.0), ("nrs_msa_prism", 3, 20.0)],
)
def test_bright_undersampled_source_not_flagged(mode, n_points, peak):
    # noise-free: every flag is a false one; the cores differ between nods only by the
    # sub-pixel phase, which the outlier test must tolerate
    models, _ = simulate_nodded_visit(
        mode, n_points=n_points, source_peak=peak, noise=False, seed=5
    )
    result = NodDiffStep.call(models, stuck_threshold=0)
    assert flagged_fraction(result) < 2e-3


@pytest.mark.parametrize("sigma_arcsec", [0.2, 0.3])
def test_extended_source_wings_not_flagged(sigma_arcsec):
    models, _ = simulate_nodded_visit(
        "nrs_msa_prism",
        n_slits=3,
        n_points=3,
        source_peak=1.0,
        source_sigma_arcsec=sigma_arcsec,
        seed=5,
    )
    result = NodDiffStep.call(models, stuck_threshold=0)
    assert flagged_fraction(result) < 1e-2


def test_bright_source_does_not_trigger_stuck_shutter_mask():
    models, _ = simulate_nodded_visit(
        "nrs_msa_prism", n_points=3, source_peak=5.0, source_sigma_arcsec=0.2, seed=5
    )
    default = NodDiffStep.call(models)
    without = NodDiffStep.call(models, stuck_threshold=0)
    for a, b in zip(default, without, strict=True):
        assert np.isfinite(a.slits[0].data).sum() == np.isfinite(b.slits[0].data).sum()
