"""Box extraction in OptimalExtract1dStep: jwst's Extract1dStep on the same aperture,
the JSON extract1d converter on every reference in ../shared/data, and physics."""

import json

import numpy as np
import pytest
from jwst.extract_1d import Extract1dStep
from stdatamodels.jwst import datamodels

from conftest import SHARED_DATA
from helpers import run_chain, true_flux_jy
from nodcombine import OptimalExtract1dStep
from nodcombine.extract_1d.aperture import BoxAperture
from nodcombine.parfiles import (
    aperture_ids,
    box_parameters,
    read_extract1d_json,
    write_parameter_file,
)
from nodcombine.simulate import simulate_nodded_visit
from nodcombine.variances import VARIANCE_COMPONENTS

REFERENCES = sorted((SHARED_DATA / "extract1d_refs").glob("*.json"))

# apertures in the _s2d's pixels (dispersion along x), as a JSON reference has them
JWST_APERTURES = {
    "rows, poly background": {
        "ystart": 11.3,
        "ystop": 19.6,
        "bkg_coeff": [[0.5], [5.5], [25.5], [30.5]],
        "bkg_order": 1,
    },
    "width, median background": {
        "ystart": 12,
        "ystop": 19,
        "extract_width": 6.5,
        "bkg_coeff": [[1.5], [6.5], [24.5], [29.5]],
        "bkg_fit": "median",
        "xstart": 20.4,
        "xstop": 300.6,
    },
    "src_coeff in wavelength, mean background": {
        "src_coeff": [[13.0, -0.1], [17.5, 0.1]],
        "independent_var": "wavelength",
        "bkg_coeff": [[2.5], [6.5], [24.5], [28.5]],
        "bkg_fit": "mean",
    },
    "src_coeff in pixels, no background": {"src_coeff": [[12.2, 0.001], [18.8, 0.002]]},
}


@pytest.fixture(scope="module")
def miri(tmp_path_factory):
    """A MIRI LRS 2-point nod through the chain; its _s2d saved for jwst."""
    models, truth = simulate_nodded_visit(
        "miri_lrs", n_points=2, source_peak=2.0, slit_loss=True, seed=4
    )
    s2d, _ = run_chain(models)
    path = tmp_path_factory.mktemp("box") / "miri_s2d.fits"
    s2d.save(path)
    return s2d, truth, path


def _reference(aperture, path):
    tree = {
        "reftype": "EXTRACT1D",
        "instrument": "MIRI",
        "apertures": [
            {
                "id": "ANY",
                "region_type": "target",
                "dispaxis": 1,
                **aperture,
                "use_source_posn": False,
            }
        ],
    }
    path.write_text(json.dumps(tree))
    return path


def _jwst(s2d_path, reference, aperture):
    # jwst 3.0 turns bkg_fit='mean' into an order-0 polynomial only when it is a
    # step parameter (from the JSON file it reaches extract1d and is refused)
    mean = {"bkg_fit": "mean"} if aperture.get("bkg_fit") == "mean" else {}
    return (
        Extract1dStep.call(
            str(s2d_path),
            override_extract1d=str(reference),
            apply_apcorr=False,
            use_source_posn=False,
            override_psf="N/A",
            **mean,
        )
        .spec[0]
        .spec_table
    )


def _ours(s2d, reference, **extra):
    # the converter is part of what is tested: jwst and we read the same file
    parameters = box_parameters(read_extract1d_json(reference), keep_position=True)
    return OptimalExtract1dStep.call(s2d, apply_pathloss=False, **parameters, **extra).spec[0]


@pytest.mark.parametrize("name", list(JWST_APERTURES))
def test_box_reproduces_jwst_extract1d(miri, tmp_path, name):
    s2d, _, s2d_path = miri
    reference = _reference(JWST_APERTURES[name], tmp_path / "ref.json")
    ref = _jwst(s2d_path, reference, JWST_APERTURES[name])
    ours = _ours(s2d, reference).spec_table
    # jwst lists the columns the aperture covers; ours all, NaN outside
    keep = np.isfinite(ours["NPIXELS"]) & (ours["NPIXELS"] > 0)
    ours = ours[keep]
    assert len(ours) == len(ref) > 200
    np.testing.assert_allclose(ours["WAVELENGTH"], ref["WAVELENGTH"], rtol=1e-6)
    for column in ("FLUX", "SURF_BRIGHT", "BACKGROUND", "NPIXELS"):
        np.testing.assert_allclose(ours[column], ref[column], rtol=1e-6, atol=0, err_msg=column)
    # in a column where a rectified bin inside the aperture is empty, jwst still
    # adds that bin's share of the background variance; elsewhere the same
    holes = _aperture_holes(s2d.slits[0], JWST_APERTURES[name], ours)
    assert (~holes).sum() > 200
    for c in VARIANCE_COMPONENTS:
        column = f"FLUX_{c.upper()}"
        np.testing.assert_allclose(ours[column][~holes], ref[column][~holes], rtol=1e-6)
        assert np.all(ours[column][holes] <= ref[column][holes] * (1 + 1e-6))
        column = f"BKGD_{c.upper()}"
        np.testing.assert_allclose(ours[column][~holes], ref[column][~holes], rtol=1e-6)


def _aperture_holes(slit, aperture, ours):
    """Columns of ``ours`` with an empty (flagged) bin inside the aperture."""
    wavelength = np.asarray(slit.wavelength[0], dtype=float)
    keys = ("ystart", "ystop", "extract_width", "src_coeff", "independent_var", "xstart", "xstop")
    box = BoxAperture(**{k: v for k, v in aperture.items() if k in keys})
    inside = box.source_weights(slit.data.shape, wavelength) > 0
    flagged = (np.asarray(slit.dq) & 1) > 0
    holes = (inside & flagged).any(axis=0)
    columns = np.searchsorted(wavelength, np.asarray(ours["WAVELENGTH"]) - 1e-7)
    return holes[columns]


def test_smoothed_background_matches_jwst_flux(miri, tmp_path):
    s2d, _, s2d_path = miri
    aperture = {
        "ystart": 12,
        "ystop": 19,
        "bkg_coeff": [[0.5], [5.5], [25.5], [30.5]],
        "smoothing_length": 7,
    }
    reference = _reference(aperture, tmp_path / "ref.json")
    ref = _jwst(s2d_path, reference, aperture)
    ours = _ours(s2d, reference).spec_table
    ours = ours[ours["NPIXELS"] > 0]
    np.testing.assert_allclose(ours["FLUX"], ref["FLUX"], rtol=1e-6)
    np.testing.assert_allclose(ours["BACKGROUND"], ref["BACKGROUND"], rtol=1e-6)
    # jwst propagates the raw pixels' variance into the smoothed background
    assert np.median(ours["BKGD_VAR_RNOISE"] / ref["BKGD_VAR_RNOISE"]) < 0.3


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda p: p.name)
def test_every_extract1d_reference_converts_and_runs(miri, tmp_path, reference, caplog):
    s2d, truth, _ = miri
    tree = read_extract1d_json(reference)
    ids = aperture_ids(tree)
    assert ids
    for aperture_id in ids:
        path = tmp_path / f"{aperture_id}.asdf"
        parameters = write_parameter_file(tree, path, aperture_id)
        assert parameters["extraction_type"] == "box" and parameters["use_source_posn"]
        step = OptimalExtract1dStep.from_config_file(str(path))
        for key, value in parameters.items():
            assert getattr(step, key) == value
        spec = step.run(s2d).spec[0]
        table = spec.spec_table
        assert np.isfinite(table["FLUX"]).mean() > 0.9, aperture_id
        # moved onto the source and corrected by its profile fraction and the
        # slit loss, every aperture measures the source's total flux
        area = s2d.slits[0].meta.photometry.pixelarea_steradians
        expected = true_flux_jy(spec, truth.slits[0][0], area, total=True)
        pulls = ((table["FLUX"] - expected) / table["FLUX_ERROR"])[10:-10]
        if "negative nod images" in caplog.text:
            # a slitless aperture's background regions at the nod throw: flux high
            assert np.nanmedian(pulls) > 5, aperture_id
            caplog.clear()
            continue
        assert abs(np.nanmedian(pulls)) < 0.3, aperture_id
        # background regions spanning the nod throw hold pairs of bins with
        # anti-correlated noise (one detector pixel, + in one difference and - in
        # the other): the independent-bin errors are then conservative
        assert 0.75 < np.nanstd(pulls) < 1.1, aperture_id


def test_converter_swaps_axes_and_reports_unknown_keys(tmp_path):
    tree = read_extract1d_json(SHARED_DATA / "extract1d_refs" / "x1d_reffile_example3a.json")
    parameters = box_parameters(tree, "MIR_LRS-FIXEDSLIT")
    # MIRI LRS disperses along y: its xstart/xstop are our rows
    assert (parameters["ystart"], parameters["ystop"]) == (9.0, 16.0)
    assert parameters["bkg_coeff"] == [[0.5], [6.5], [20.5], [26.5]]
    assert parameters["bkg_order"] == 1 and parameters["bkg_fit"] == "poly"
    with pytest.raises(ValueError, match="2 apertures"):
        box_parameters(tree)
    tree["apertures"][0]["bkg_ordr"] = 1
    with pytest.raises(
        ValueError, match=r"example3a.json\[MIR_LRS-FIXEDSLIT\]: unknown key.*bkg_ordr"
    ):
        box_parameters(tree, "MIR_LRS-FIXEDSLIT")


def test_converter_command_line(tmp_path):
    from nodcombine.parfiles import main

    out = tmp_path / "lrs.asdf"
    assert main([str(REFERENCES[0]), "MIR_LRS-FIXEDSLIT", str(out)]) == 0
    step = OptimalExtract1dStep.from_config_file(str(out))
    assert step.extraction_type == "box" and step.ystart is not None


def test_box_on_the_source_recovers_the_total_flux(miri):
    """A box moved onto the source, corrected by its profile fraction and the slit loss."""
    s2d, truth, _ = miri
    spec = OptimalExtract1dStep.call(
        s2d, extraction_type="box", extract_width=9, use_source_posn=True, apply_pathloss=True
    ).spec[0]
    table = spec.spec_table
    area = s2d.slits[0].meta.photometry.pixelarea_steradians
    expected = true_flux_jy(spec, truth.slits[0][0], area, total=True)
    z = (table["FLUX"] - expected) / table["FLUX_ERROR"]
    z = z[10:-10][np.isfinite(z[10:-10])]
    assert z.size > 200
    assert abs(np.mean(z)) < 0.15
    assert 0.85 < np.std(z) < 1.15
    extras = spec.instance["extract_1d_extras"]
    assert 0.7 < np.median(extras["aperture_profile_fraction"]) < 1.0


def test_box_parameters_given_on_the_command_line(miri):
    from configobj import ConfigObj

    s2d, _, _ = miri
    listed = OptimalExtract1dStep.call(
        s2d, extraction_type="box", src_coeff=[[12.0, 0.01], [19.0, 0.01]], use_source_posn=False
    )
    # what strun makes of --src_coeff="[[12.0, 0.01], [19.0, 0.01]]": split at the commas
    given, _ = ConfigObj()._handle_value("[[12.0, 0.01], [19.0, 0.01]]")
    assert given == ["[[12.0", "0.01]", "[19.0", "0.01]]"]
    as_text = OptimalExtract1dStep.call(
        s2d, extraction_type="box", src_coeff=given, use_source_posn=False
    )
    np.testing.assert_array_equal(
        listed.spec[0].spec_table["FLUX"], as_text.spec[0].spec_table["FLUX"]
    )


def test_bad_box_parameters_name_the_parameter(miri, caplog):
    s2d, _, _ = miri
    result = OptimalExtract1dStep.call(s2d, extraction_type="box", smoothing_length=4)
    assert len(result.spec) == 0
    assert "smoothing_length=4" in caplog.text


def test_box_product_reopens(miri, tmp_path):
    s2d, _, _ = miri
    result = OptimalExtract1dStep.call(s2d, extraction_type="box", extract_width=7)
    path = tmp_path / "box_x1d.fits"
    result.save(path)
    with datamodels.open(path) as reopened:
        assert reopened.spec[0].spec_table.columns["background"].unit == "MJy/sr"
        assert reopened.spec[0].extraction_ystop - reopened.spec[0].extraction_ystart == 6


def test_override_extract1d_beats_parameters_and_files(miri, tmp_path):
    """``override_extract1d``: the reference's aperture over a parameter file and keywords."""
    import asdf

    from nodcombine.errors import RefusedError

    s2d, _, _ = miri
    reference = SHARED_DATA / "extract1d_refs" / "jwst_miri_extract1d_0005.json"
    expected = OptimalExtract1dStep.call(
        s2d, **box_parameters(read_extract1d_json(reference), "MIR_LRS-FIXEDSLIT")
    ).spec[0]
    user = tmp_path / "optimal.asdf"
    tree = {
        "class": "nodcombine.extract_1d.OptimalExtract1dStep",
        "name": "optimal_extract_1d",
        "parameters": {"extraction_type": "optimal", "extract_width": 3.0},
    }
    asdf.AsdfFile(tree).write_to(user)
    overridden = OptimalExtract1dStep.call(
        s2d, config_file=str(user), extract_width=1.0, override_extract1d=str(reference)
    ).spec[0]
    np.testing.assert_array_equal(overridden.spec_table["FLUX"], expected.spec_table["FLUX"])
    assert overridden.extraction_ystop - overridden.extraction_ystart == (
        expected.extraction_ystop - expected.extraction_ystart
    )
    # the step instance keeps its own parameters: a second run without the override is optimal
    step = OptimalExtract1dStep(override_extract1d=str(reference))
    assert step.run(s2d).spec[0].extraction_ystart == expected.extraction_ystart
    assert step.extraction_type == "optimal"
    # a reference without an aperture for this input is refused, naming the parameter
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"apertures": [{"id": "A"}, {"id": "B"}]}))
    with pytest.raises(RefusedError, match="override_extract1d"):
        OptimalExtract1dStep.call(s2d, override_extract1d=str(other))
