"""Fast opening of a visit: the same models as stdatamodels, in less time."""

import functools
import json

import numpy as np
import pytest
from astropy.io import fits
from jwst.datamodels import ModelContainer
from stdatamodels.jwst import datamodels

from nodcombine.modelio import IndexedHDUList, open_exposure, open_visit
from nodcombine.profile import pixel_fraction, pixel_integrated_gaussian
from nodcombine.simulate import simulate_nodded_visit, write_visit
from nodcombine.slitwcs import interp_columns


@pytest.fixture(scope="module")
def written_visit(tmp_path_factory):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_slits=3, n_points=3, seed=4)
    return write_visit(models, tmp_path_factory.mktemp("visit"))


def _assert_same_model(stock, ours):
    assert type(ours) is type(stock)
    flat_stock, flat_ours = stock.to_flat_dict(), ours.to_flat_dict()
    assert flat_ours.keys() == flat_stock.keys()
    for key, value in flat_stock.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(flat_ours[key], value, err_msg=key)
        elif not key.endswith(".wcs"):
            assert flat_ours[key] == value, key
    for slit_stock, slit_ours in zip(stock.slits, ours.slits, strict=True):
        ny, nx = slit_stock.data.shape
        yy, xx = np.mgrid[:ny, :nx]
        np.testing.assert_array_equal(slit_ours.meta.wcs(xx, yy), slit_stock.meta.wcs(xx, yy))


def test_exposures_open_as_stdatamodels_opens_them(written_visit):
    _, paths = written_visit
    for path in paths:
        with datamodels.open(path) as stock:
            _assert_same_model(stock, open_exposure(path))


def test_association_keeps_its_bookkeeping(written_visit):
    asn_path, _ = written_visit
    asn = json.loads(asn_path.read_text())
    for k, member in enumerate(asn["products"][0]["members"]):
        member["group_id"] = f"group{k}"
    asn_path = asn_path.with_name("grouped_asn.json")
    asn_path.write_text(json.dumps(asn))
    stock = ModelContainer(str(asn_path))
    ours = open_visit(str(asn_path))
    assert ours.asn_table == stock.asn_table
    assert ours.asn_table_name == stock.asn_table_name
    assert ours.asn_pool_name == stock.asn_pool_name
    for model_stock, model_ours in zip(stock, ours, strict=True):
        assert model_ours.meta.filename == model_stock.meta.filename
        assert model_ours.meta.asn.exptype == model_stock.meta.asn.exptype
        assert model_ours.meta.asn.table_name == model_stock.meta.asn.table_name
        assert model_ours.meta.group_id == model_stock.meta.group_id
    assert [m.meta.group_id for m in ours] == ["group0", "group1", "group2"]


def test_list_of_files_is_named_as_jwst_names_it(written_visit):
    _, paths = written_visit
    stock = ModelContainer([str(p) for p in paths])
    ours = open_visit([str(p) for p in paths])
    assert ours.asn_table_name == stock.asn_table_name
    assert ours.asn_table["products"][0]["name"] == stock.asn_table["products"][0]["name"]
    assert [m.meta.filename for m in ours] == [m.meta.filename for m in stock]


def test_models_and_single_files_are_left_to_the_step(written_visit):
    _, paths = written_visit
    assert open_visit(ModelContainer()) is None
    assert open_visit(str(paths[0])) is None
    assert open_visit([]) is None


def test_indexed_lookup_agrees_with_astropy(tmp_path):
    hdus = [fits.PrimaryHDU()]
    for ver in (1, 2):
        for name in ("SCI", "DQ", "SCI"):  # a duplicate pair: the first one wins
            hdus.append(fits.ImageHDU(np.full(2, len(hdus)), name=name, ver=ver))
    path = tmp_path / "dup.fits"
    fits.HDUList(hdus).writeto(path)
    with fits.open(path) as plain, IndexedHDUList.fromfile(path) as indexed:
        for key in (("SCI", 1), ("sci", 2), ("DQ", 2), 3, "DQ"):
            assert indexed.index_of(key) == plain.index_of(key)
        with pytest.raises(KeyError):
            indexed.index_of(("ERR", 1))


def test_column_interpolation_matches_numpy_interp():
    rng = np.random.default_rng(1)
    for _ in range(300):
        n_rows, n_cols = rng.integers(2, 12), rng.integers(1, 30)
        image = rng.normal(size=(n_rows, n_cols))
        image[rng.random(image.shape) < 0.2] = np.nan
        rows = rng.uniform(-2, n_rows + 1, n_cols)
        exact = rng.random(n_cols) < 0.3  # rows hit exactly, including the first and last
        rows[exact] = rng.integers(-1, n_rows + 1, exact.sum())
        expected = [
            np.interp(rows[x], np.arange(n_rows), image[:, x], left=np.nan, right=np.nan)
            for x in range(n_cols)
        ]
        np.testing.assert_allclose(interp_columns(image, rows), expected, rtol=1e-12, atol=1e-15)


def test_pixel_fraction_is_the_integrated_gaussian():
    along = np.arange(-6.0, 7.0)[:, None]
    centre, sigma = np.array([-0.3, 0.0, 1.7]), np.array([0.4, 1.0, 2.5])
    np.testing.assert_array_equal(
        pixel_fraction(along, centre, sigma), pixel_integrated_gaussian(along, centre, sigma)[0]
    )


def test_the_chain_evaluates_each_slit_map_once(written_visit, monkeypatch):
    """nod_diff evaluates every slit's WCS maps once; the later steps read its record."""
    from nodcombine import NodCombinePipeline, slitwcs

    asn_path, paths = written_visit
    counted = []
    for name in ("slit_frame_y", "trace", "pixel_scale"):
        original = slitwcs.SlitWcs.__dict__[name].func

        def counting(self, original=original, name=name):
            counted.append(name)
            return original(self)

        prop = functools.cached_property(counting)
        prop.__set_name__(slitwcs.SlitWcs, name)
        monkeypatch.setattr(slitwcs.SlitWcs, name, prop)
    NodCombinePipeline.call(str(asn_path))
    n_slits = 3 * len(paths)
    for name in ("slit_frame_y", "trace", "pixel_scale"):
        assert counted.count(name) == n_slits, name


def test_steps_after_nod_diff_need_no_wcs(written_visit):
    """trace_fit, rectify and the extraction read the maps nod_diff recorded, not the WCS."""
    from nodcombine import NodDiffStep, OptimalExtract1dStep, RectifyStep, TraceFitStep

    asn_path, _ = written_visit
    nod = NodDiffStep.call(str(asn_path))
    for model in nod:
        for slit in model.slits:
            slit.meta.wcs = None
    traced = TraceFitStep.call(nod)
    assert [m.meta.cal_step.trace_fit for m in traced] == ["COMPLETE"] * len(traced)
    x1d = OptimalExtract1dStep.call(RectifyStep.call(traced))
    assert len(x1d.spec) == len(nod[0].slits)
    assert all(np.isfinite(spec.spec_table["FLUX"]).sum() > 100 for spec in x1d.spec)
