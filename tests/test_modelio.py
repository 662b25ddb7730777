"""Fast opening of a visit: the same models as stdatamodels, in less time."""

import functools
import io
import json
import re
import struct

import asdf
import numpy as np
import pytest
from asdf.tags.core import NDArrayType
from astropy.io import fits
from astropy.modeling.models import Scale, Shift
from jwst.datamodels import ModelContainer
from stdatamodels.jwst import datamodels

from nodcombine.asdfshare import share_repeated_wcs
from nodcombine.modelio import IndexedHDUList, open_exposure, open_visit
from nodcombine.profile import pixel_fraction, pixel_integrated_gaussian
from nodcombine.simulate import simulate_nodded_visit, write_visit
from nodcombine.simulate.realslits import write_mos_exposures
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
        if isinstance(value, (np.ndarray, NDArrayType)):
            np.testing.assert_array_equal(
                np.asarray(flat_ours[key]), np.asarray(value), err_msg=key
            )
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


@pytest.fixture(scope="module", params=[False, True], ids=["same_wcs", "own_slit_wcs"])
def real_mos_exposure(request, ceers_files, tmp_path_factory):
    """A 4-slit MOS exposure of CEERS slits, the real NIRSpec chain in each slit."""
    folder = tmp_path_factory.mktemp("realmos")
    (path,) = write_mos_exposures(ceers_files[:1], 4, folder, distinct_wcs=request.param)
    return path


def _asdf_cell(path):
    with fits.open(path) as hdulist:
        return hdulist["ASDF"].data["ASDF_METADATA"][0].tobytes()


def test_real_geometry_opens_as_stdatamodels_opens_it(real_mos_exposure):
    """Every array, every key and the whole transform chain on every pixel, slit by slit."""
    ours = open_exposure(real_mos_exposure)
    with datamodels.open(real_mos_exposure) as stock:
        _assert_same_model(stock, ours)
        for slit_stock, slit_ours in zip(stock.slits, ours.slits, strict=True):
            ny, nx = slit_stock.data.shape
            yy, xx = np.mgrid[:ny, :nx]
            for frame in ("sca", "gwa", "slit_frame", "msa_frame", "v2v3"):
                np.testing.assert_array_equal(
                    slit_ours.meta.wcs.get_transform("detector", frame)(xx, yy),
                    slit_stock.meta.wcs.get_transform("detector", frame)(xx, yy),
                    err_msg=frame,
                )
            assert slit_ours.meta.wcs.bounding_box.bounding_box(
                order="F"
            ) == slit_stock.meta.wcs.bounding_box.bounding_box(order="F")


def test_repeated_transform_trees_are_read_once(real_mos_exposure):
    """The YAML asdf parses shrinks: repeats of the chain become aliases of the first copy."""
    original = _asdf_cell(real_mos_exposure)
    shared = share_repeated_wcs(original)
    tree, shared_tree = original.split(b"\n...\n")[0], shared.split(b"\n...\n")[0]
    # the binary blocks are untouched, so every block index still points at the same bytes
    blocks = original[len(tree) : original.rfind(b"#ASDF BLOCK INDEX")]
    assert shared[len(shared_tree) :].startswith(blocks)
    assert shared_tree.count(b"*nc") >= 3
    assert len(shared_tree) < 0.5 * len(tree)


def test_a_tree_without_repeats_is_returned_as_is():
    buffer = io.BytesIO()
    asdf.AsdfFile({"transform": Shift(1.0) | Scale(2.0), "array": np.arange(5.0)}).write_to(buffer)
    original = buffer.getvalue()
    assert share_repeated_wcs(original) is original
    assert share_repeated_wcs(b"no tree here") == b"no tree here"


def test_one_real_slit_opens_as_stdatamodels_opens_it(ceers_files):
    """Its chain repeats sub-trees within itself (forward and inverse): still the same model."""
    assert share_repeated_wcs(_asdf_cell(ceers_files[0])).count(b"*nc") > 0
    ours = open_exposure(ceers_files[0])
    with datamodels.open(ceers_files[0]) as stock:
        ny, nx = stock.data.shape
        yy, xx = np.mgrid[:ny, :nx]
        for frame in ("slit_frame", "world"):
            np.testing.assert_array_equal(
                ours.meta.wcs.get_transform("detector", frame)(xx, yy),
                stock.meta.wcs.get_transform("detector", frame)(xx, yy),
            )
            np.testing.assert_array_equal(
                ours.meta.wcs.get_transform(frame, "detector")(
                    *stock.meta.wcs.get_transform("detector", frame)(xx, yy)
                ),
                stock.meta.wcs.get_transform(frame, "detector")(
                    *stock.meta.wcs.get_transform("detector", frame)(xx, yy)
                ),
            )
        np.testing.assert_array_equal(ours.data, stock.data)


def test_a_bad_transform_in_one_slit_fails_as_stdatamodels_fails(ceers_files, tmp_path):
    """A parameter of the wrong type in one slit's chain: stdatamodels' own error, naming it."""
    (path,) = write_mos_exposures(ceers_files[:1], 3, tmp_path / "good")
    with fits.open(path) as hdulist:
        text = hdulist["ASDF"].data["ASDF_METADATA"][0].tobytes()
        second_wcs = [m.start() for m in re.finditer(rb"\n    wcs: ", text)][1]
        start = text.index(b"offset: ", second_wcs)
        broken = text[:start] + b"offset: abc" + text[text.index(b"\n", start) :]
        column = fits.Column(
            name="ASDF_METADATA", format=f"{len(broken)}B", array=[np.frombuffer(broken, np.uint8)]
        )
        hdulist[hdulist.index_of("ASDF")] = fits.BinTableHDU.from_columns([column], name="ASDF")
        bad = tmp_path / "bad_cal.fits"
        hdulist.writeto(bad)
    with pytest.raises(Exception) as stock_error:
        datamodels.open(bad)
    with pytest.raises(type(stock_error.value)) as our_error:
        open_exposure(bad)
    assert str(our_error.value) == str(stock_error.value)
    assert "abc" in str(our_error.value)


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


def _asdf_with_two_blocks(body):
    """An ASDF file: ``body`` as its tree, then two binary blocks of the same bytes."""
    header = struct.pack(">I4sQQQ16s", 0, b"\0\0\0\0", 8, 8, 8, bytes(16))
    block = b"\xd3BLK" + struct.pack(">H", len(header)) + header + bytes(range(8))
    return b"#ASDF 1.0.0\n%YAML 1.1\n---\n" + body + b"\n...\n" + block + block


def _pair(first, second, key):
    lines = [b"  offset: 1.0", b"  x1: 1", b"  x2: 2", b"  x3: 3", b"  x4: 4", b"  x5: 5"]
    a = [b"a: !transform/shift-1.2.0", *lines, key % first]
    b = [b"b: !transform/shift-1.2.0", *lines, key % second]
    return b"\n".join(a + b)


def test_arrays_are_compared_by_their_bytes_and_other_numbers_as_written():
    same_bytes = _asdf_with_two_blocks(
        _pair(0, 1, b"  coefficients: !core/ndarray-1.1.0 {source: %d, shape: [8]}")
    )
    shared = share_repeated_wcs(same_bytes)
    assert b"b: *nc1" in shared and b"a: &nc1 !transform/shift-1.2.0" in shared
    # a 'source' that is not an array's block index: 0 and 1 differ, whatever the blocks hold
    plain = _asdf_with_two_blocks(_pair(0, 1, b"  source: %d"))
    assert share_repeated_wcs(plain) is plain
