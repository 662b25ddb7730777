"""RectifyStep, OptimalExtract1dStep and NodCombinePipeline on simulated visits."""

import logging

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

from helpers import run_chain, true_flux_jy
from nodcombine import NodCombinePipeline, NodDiffStep, OptimalExtract1dStep, RectifyStep
from nodcombine.simulate import simulate_nodded_visit, write_visit


@pytest.fixture(scope="module")
def visit():
    return simulate_nodded_visit(
        "nrs_msa_prism", n_slits=3, n_points=3, source_peak=[1.0, 0.1, 0.0], seed=11
    )


@pytest.fixture(scope="module")
def chain(visit):
    models, _ = visit
    return run_chain([m.copy() for m in models])


def test_spectra_match_the_truth_within_their_errors(visit, chain):
    _, truth = visit
    s2d, x1d = chain
    area = s2d.slits[0].meta.photometry.pixelarea_steradians
    for spec, slit_truth in zip(x1d.spec, truth.slits[0], strict=True):
        table = spec.spec_table
        z = (table["FLUX"] - true_flux_jy(spec, slit_truth, area)) / table["FLUX_ERROR"]
        z = z[5:-5]
        assert np.isfinite(z).mean() > 0.97
        assert abs(np.nanmean(z)) < 0.2
        assert 0.85 < np.nanstd(z) < 1.15


def test_products_are_standard(chain):
    s2d, x1d = chain
    assert isinstance(s2d, datamodels.MultiSlitModel) and len(s2d.slits) == 3
    assert s2d.meta.cal_step.rectify == "COMPLETE"
    assert x1d.meta.cal_step.optimal_extract_1d == "COMPLETE"
    spec = x1d.spec[0]
    assert spec.spec_table.columns["flux"].unit == "Jy"
    assert spec.spec_table.columns["wavelength"].unit == "um"
    assert spec.source_id == s2d.slits[0].source_id == 1000
    table = spec.spec_table
    total = table["FLUX_VAR_POISSON"] + table["FLUX_VAR_RNOISE"] + table["FLUX_VAR_FLAT"]
    np.testing.assert_allclose(table["FLUX_ERROR"] ** 2, total, rtol=1e-5)
    assert np.all(np.diff(table["WAVELENGTH"]) > 0)
    # the rectified image and profile are independent bins with a unit profile
    profile = s2d.slits[0].instance["rectified_profile"]
    assert profile.shape == s2d.slits[0].data.shape


def test_pathloss_off_gives_in_slit_flux(chain):
    s2d, _ = chain
    on = OptimalExtract1dStep.call(s2d, apply_pathloss=True)
    off = OptimalExtract1dStep.call(s2d, apply_pathloss=False)
    factor = np.asarray(on.spec[0].instance["extract_1d_extras"]["pathloss"])
    np.testing.assert_allclose(
        on.spec[0].spec_table["FLUX"] * factor, off.spec[0].spec_table["FLUX"], rtol=1e-6
    )
    assert 0.5 < np.median(factor) < 1.0


def test_pathloss_recovers_the_total_flux_of_an_off_centre_source():
    models, truth = simulate_nodded_visit(
        "nrs_msa_prism",
        n_slits=1,
        n_points=3,
        source_peak=3.0,
        source_xpos=0.25,
        slit_loss=True,
        emission_lines=False,
        seed=5,
    )
    s2d, _ = run_chain(models)
    x1d = OptimalExtract1dStep.call(s2d, apply_pathloss=True)
    spec = x1d.spec[0]
    area = s2d.slits[0].meta.photometry.pixelarea_steradians
    ratio = spec.spec_table["FLUX"] / true_flux_jy(spec, truth.slits[0][0], area, total=True)
    assert abs(np.nanmedian(ratio[5:-5]) - 1.0) < 0.02


def test_rectify_needs_trace_fit(visit, caplog):
    models, _ = visit
    nod = NodDiffStep.call([m.copy() for m in models])
    with caplog.at_level(logging.WARNING):
        result = RectifyStep.call(nod)
    assert result.meta.cal_step.rectify == "SKIPPED"
    assert "run trace_fit first" in caplog.text


def test_one_bad_slit_is_skipped_and_the_rest_extracted(chain, caplog):
    s2d, _ = chain
    broken = s2d.copy()
    broken.slits[1].var_rnoise = np.zeros((2, 2), dtype=np.float32)
    before = broken.slits[0].data.copy()
    with caplog.at_level(logging.WARNING):
        x1d = OptimalExtract1dStep.call(broken)
    assert [s.name for s in x1d.spec] == [broken.slits[0].name, broken.slits[2].name]
    assert "var_rnoise" in caplog.text and "SKIPPED" in caplog.text
    np.testing.assert_array_equal(broken.slits[0].data, before)


def test_stock_s2d_without_profile_is_fitted(chain):
    s2d = chain[0]
    stock = s2d.copy()
    for slit in stock.slits:
        del slit.instance["rectified_profile"]
    fitted = OptimalExtract1dStep.call(stock, apply_pathloss=False)
    ours = OptimalExtract1dStep.call(s2d, apply_pathloss=False)
    ratio = fitted.spec[0].spec_table["FLUX"] / ours.spec[0].spec_table["FLUX"]
    assert abs(np.nanmedian(ratio) - 1.0) < 0.05
    assert fitted.spec[0].instance["extract_1d_extras"]["profile_origin"] == "none"


def test_drizzled_jwst_s2d_is_extracted(visit):
    """jwst's resample_spec product (no DQ, no profile) of the same differences."""
    from jwst.resample import ResampleSpecStep

    models, truth = visit
    drizzled = ResampleSpecStep.call(NodDiffStep.call([m.copy() for m in models]))
    assert drizzled.slits[0].dq is None or not drizzled.slits[0].dq.any()
    x1d = OptimalExtract1dStep.call(drizzled, apply_pathloss=False)
    spec = x1d.spec[0]
    area = models[0].slits[0].meta.photometry.pixelarea_steradians
    ratio = spec.spec_table["FLUX"] / true_flux_jy(spec, truth.slits[0][0], area)
    assert np.isfinite(ratio[10:-10]).mean() > 0.9


def test_pipeline_writes_per_source_products(tmp_path):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_slits=2, n_points=2, seed=4)
    asn, _ = write_visit(models, tmp_path / "in")
    x1d = NodCombinePipeline.call(str(asn), output_dir=str(tmp_path), save_results=True)
    assert len(x1d.spec) == 2
    names = sorted(p.name for p in tmp_path.glob("*_s?????????_*.fits"))
    assert len(names) == 4
    assert any(name.endswith("_s000001000_x1d.fits") for name in names)
    with datamodels.open(next(tmp_path.glob("*_s000001000_x1d.fits"))) as one:
        assert isinstance(one, datamodels.MultiSpecModel) and len(one.spec) == 1
        assert one.spec[0].instance["extract_1d_extras"]["pathloss_applied"] is True
    # specutils and jdaviz recognise a JWST product by its TELESCOP card
    for name in names:
        assert fits.getheader(tmp_path / name)["TELESCOP"] == "JWST"


def _correction(shape):
    ny, nx = shape
    return (0.6 + 0.3 * np.linspace(0, 1, nx))[None, :] * np.ones((ny, 1))


def _apply_jwst_pathloss(models, kind="POINT", leave_alone=()):
    """What jwst's pathloss step does to a NIRSpec _cal: divide by a correction, record it.

    Slits in ``leave_alone`` are skipped as jwst skips a slit it has no model for.
    """
    out = []
    for model in models:
        model = model.copy()
        model.meta.cal_step.pathloss = "COMPLETE"
        for k, slit in enumerate(model.slits):
            if k in leave_alone:
                continue
            correction = _correction(slit.data.shape)
            slit.data = slit.data / correction
            for c in ("var_poisson", "var_rnoise", "var_flat"):
                setattr(slit, c, getattr(slit, c) / correction**2)
            slit.pathloss_point = correction.astype(np.float32)
            slit.pathloss_uniform = (0.9 * correction).astype(np.float32)
            slit.pathloss_correction_type = kind
        out.append(model)
    return out


def _assert_same_spectra(x1d, reference):
    assert len(x1d.spec) == len(reference.spec)
    for ours, ref in zip(x1d.spec, reference.spec, strict=True):
        np.testing.assert_allclose(
            ours.spec_table["FLUX"], ref.spec_table["FLUX"], rtol=1e-4, atol=1e-12
        )
        np.testing.assert_allclose(
            ours.spec_table["FLUX_ERROR"], ref.spec_table["FLUX_ERROR"], rtol=1e-4
        )


def test_jwst_pathloss_correction_is_undone(visit, chain):
    models, _ = visit
    corrected = _apply_jwst_pathloss(models, leave_alone=(2,))
    _, x1d_corrected = run_chain(corrected)
    _assert_same_spectra(x1d_corrected, chain[1])
    # the inputs keep their correction
    assert corrected[0].meta.cal_step.pathloss == "COMPLETE"
    assert "nod_diff_status" not in corrected[0].slits[0].instance


def test_miri_lrs_pathloss_is_multiplicative_and_undone():
    models, _ = simulate_nodded_visit("miri_lrs", n_points=2, source_peak=1.0, seed=6)
    _, reference = run_chain([m.copy() for m in models])
    corrected = []
    for model in models:
        model = model.copy()
        correction = 1.2 + 0.3 * _correction(model.data.shape)
        model.data = model.data * correction  # jwst: "LRS correction is multiplicative"
        for c in ("var_poisson", "var_rnoise", "var_flat"):
            setattr(model, c, getattr(model, c) * correction**2)
        model.pathloss_point = correction.astype(np.float32)
        model.meta.cal_step.pathloss = "COMPLETE"
        corrected.append(model)
    _, x1d = run_chain(corrected)
    _assert_same_spectra(x1d, reference)


def test_recorded_correction_without_its_array_skips_that_exposure(visit, caplog):
    models, _ = visit
    corrected = _apply_jwst_pathloss(models)
    del corrected[1].slits[0].pathloss_point
    result = NodDiffStep.call(corrected)
    assert "'pathloss_point' is missing" in caplog.text
    statuses = [m.slits[0].instance.get("nod_diff_status") for m in result]
    assert statuses[1] != "COMPLETE"
    assert statuses[0] == statuses[2] == "COMPLETE"
