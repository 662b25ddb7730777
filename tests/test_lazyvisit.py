"""A MOS visit opened part by part: each part's slits as stdatamodels reads them."""

import io
import json
import re

import asdf
import numpy as np
import pytest
from asdf.tags.core import NDArrayType
from astropy.io import fits
from jwst.associations import asn_from_list
from stdatamodels.jwst import datamodels

from nodcombine import NodCombinePipeline
from nodcombine.asdfslits import SlitLayout
from nodcombine.lazyvisit import ExposureFile, LazyVisit
from nodcombine.modelio import open_visit
from nodcombine.pipelines import families, nodcombine_pipeline
from nodcombine.simulate.realslits import write_mos_exposures
from nodcombine.visit import group_by_source

N_SLITS = 5


def _write_real_visit(ceers_files, folder, distinct_wcs):
    paths = write_mos_exposures(ceers_files, N_SLITS, folder, distinct_wcs=distinct_wcs)
    asn = asn_from_list.asn_from_list(
        [p.name for p in paths], rule=asn_from_list.DMS_Level3_Base, product_name="lazy"
    )
    asn_path = folder / "lazy_asn.json"
    asn_path.write_text(asn.dump()[1])
    return asn_path, paths


@pytest.fixture(scope="module", params=[False, True], ids=["shared_slit_wcs", "own_slit_wcs"])
def real_visit(ceers_files, tmp_path_factory, request):
    """Three 5-slit exposures, every slit with the real NIRSpec chain, and their association.

    Either the slits share the chain's slit-specific parts (and asdf writes the
    nodes they share once, with anchors), or each has its own.
    """
    return _write_real_visit(ceers_files, tmp_path_factory.mktemp("lazy"), request.param)


@pytest.fixture(scope="module")
def shared_wcs_visit(ceers_files, tmp_path_factory):
    """`real_visit` with shared slit-specific parts only: for the whole-pipeline runs."""
    return _write_real_visit(ceers_files, tmp_path_factory.mktemp("lazy_run"), False)


def _flat(node, prefix=""):
    if isinstance(node, dict):
        return {
            k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}.{key}").items()
        }
    if isinstance(node, list) and node and isinstance(node[0], dict):
        return {
            k: v for n, item in enumerate(node) for k, v in _flat(item, f"{prefix}[{n}]").items()
        }
    return {prefix: node}


def _assert_same_tree(stock, ours):
    flat_stock, flat_ours = _flat(stock), _flat(ours)
    assert flat_ours.keys() == flat_stock.keys()
    for key, value in flat_stock.items():
        if isinstance(value, (np.ndarray, NDArrayType)) or hasattr(value, "dtype"):
            np.testing.assert_array_equal(np.asarray(flat_ours[key]), np.asarray(value), key)
            assert np.asarray(flat_ours[key]).dtype == np.asarray(value).dtype, key
        elif not key.endswith(".wcs"):
            assert flat_ours[key] == value, key


def test_a_part_opens_as_stdatamodels_opens_its_slits(real_visit):
    """Arrays, dtypes, every key, and the chain on every pixel, slit by slit."""
    _, paths = real_visit
    exposure = ExposureFile.read(paths[1])
    keep = [1, 3, 4]
    part = exposure.open_slits(keep)
    assert part.meta.filename == paths[1].name
    with datamodels.open(paths[1]) as stock:
        top = {k: v for k, v in stock.instance.items() if k not in ("slits", "_fits_hash")}
        _assert_same_tree(
            top, {k: v for k, v in part.instance.items() if k not in ("slits", "_fits_hash")}
        )
        assert len(part.slits) == len(keep)
        for k, slit in zip(keep, part.slits, strict=True):
            _assert_same_tree(stock.slits[k].instance, slit.instance)
            yy, xx = np.mgrid[: slit.data.shape[0], : slit.data.shape[1]]
            for frame in ("slit_frame", "msa_frame", "world"):
                np.testing.assert_array_equal(
                    slit.meta.wcs.get_transform("detector", frame)(xx, yy),
                    stock.slits[k].meta.wcs.get_transform("detector", frame)(xx, yy),
                    err_msg=frame,
                )
        # the steps write into the arrays they are given
        part.slits[0].data[0, 0] = 1.0


def test_the_index_groups_the_slits_as_the_whole_visit(real_visit):
    asn, _ = real_visit
    lazy = LazyVisit.open(str(asn))
    whole = open_visit(str(asn))
    labels = [g.label for g in group_by_source(lazy.index)[0]]
    assert labels == [g.label for g in group_by_source(whole)[0]]
    assert len(labels) == N_SLITS
    for light, full in zip(lazy.index, whole, strict=True):
        assert light.meta.filename == full.meta.filename
        for slit_light, slit_full in zip(light.slits, full.slits, strict=True):
            assert "data" not in slit_light.instance and "meta" not in slit_light.instance
            for name in ("name", "source_id", "source_xpos", "source_ypos", "shutter_state"):
                assert getattr(slit_light, name) == getattr(slit_full, name), name


def test_a_part_of_the_index_loads_whole_slits(real_visit):
    asn, _ = real_visit
    lazy = LazyVisit.open(str(asn))
    parts = families.family_visits(lazy.index, per_part=2)
    assert [len(p[0].slits) for p in parts] == [2, 2, 1]
    loaded = lazy.load(parts[1])
    whole = open_visit(str(asn))
    for model, full in zip(loaded, whole, strict=True):
        assert [s.name for s in model.slits] == [s.name for s in full.slits[2:4]]
        np.testing.assert_array_equal(model.slits[1].data, full.slits[3].data)
        assert model.meta.asn.table_name == full.meta.asn.table_name


def test_part_by_part_writes_what_the_whole_open_writes(shared_wcs_visit, tmp_path, monkeypatch):
    """The pipeline on the association (opened part by part) and on the visit opened whole."""
    asn, _ = shared_wcs_visit
    monkeypatch.setattr(families, "FAMILIES_PER_PART", 2)
    monkeypatch.setattr(nodcombine_pipeline, "PARTS_PER_OPEN", 1)  # each part opened alone
    lazy_dir, whole_dir = tmp_path / "parts", tmp_path / "whole"
    NodCombinePipeline.call(str(asn), output_dir=str(lazy_dir), save_results=True)
    with monkeypatch.context() as patch:
        patch.setattr(LazyVisit, "open", classmethod(lambda cls, data: None))
        NodCombinePipeline.call(str(asn), output_dir=str(whole_dir), save_results=True)
    _assert_same_products(whole_dir, lazy_dir, 2 * N_SLITS + 1)


def _assert_same_products(whole_dir, lazy_dir, count):
    """The same files, every array and table bit for bit."""
    names = sorted(p.name for p in whole_dir.glob("*.fits"))
    assert len(names) == count
    assert names == sorted(p.name for p in lazy_dir.glob("*.fits"))
    for name in names:
        with fits.open(whole_dir / name) as one, fits.open(lazy_dir / name) as two:
            for hdu_one, hdu_two in zip(one, two, strict=True):
                if hdu_one.name != "ASDF" and hdu_one.data is not None:
                    assert hdu_one.data.tobytes() == hdu_two.data.tobytes(), (name, hdu_one.name)


def test_a_corrupt_slit_tree_is_met_as_the_whole_open_meets_it(
    shared_wcs_visit, tmp_path, monkeypatch, caplog
):
    """A bad parameter in the last slit's chain of one exposure, which the index does not read.

    stdatamodels cannot open that exposure: reduced part by part, the visit is
    opened whole once the part holding the slit fails, and every product is
    the whole open's (the exposure skipped, with its message).
    """
    asn, paths = shared_wcs_visit
    folder = tmp_path / "in"
    folder.mkdir()
    for path in paths:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / asn.name).write_bytes(asn.read_bytes())
    with fits.open(folder / paths[2].name, mode="update") as hdulist:
        text = hdulist["ASDF"].data["ASDF_METADATA"][0].tobytes()
        last_wcs = [m.start() for m in re.finditer(rb"\n    wcs: ", text)][-1]
        start = text.index(b"offset: ", last_wcs)
        broken = text[:start] + b"offset: abc" + text[text.index(b"\n", start) :]
        column = fits.Column(
            name="ASDF_METADATA", format=f"{len(broken)}B", array=[np.frombuffer(broken, np.uint8)]
        )
        hdulist[hdulist.index_of("ASDF")] = fits.BinTableHDU.from_columns([column], name="ASDF")
    monkeypatch.setattr(families, "FAMILIES_PER_PART", 2)
    monkeypatch.setattr(nodcombine_pipeline, "PARTS_PER_OPEN", 1)  # each part opened alone
    lazy_dir, whole_dir = tmp_path / "parts", tmp_path / "whole"
    NodCombinePipeline.call(str(folder / asn.name), output_dir=str(lazy_dir), save_results=True)
    assert "opening it whole" in caplog.text
    assert re.search(rf"SKIPPED .*{paths[2].name}: cannot be opened", caplog.text)
    with monkeypatch.context() as patch:
        patch.setattr(LazyVisit, "open", classmethod(lambda cls, data: None))
        NodCombinePipeline.call(
            str(folder / asn.name), output_dir=str(whole_dir), save_results=True
        )
    _assert_same_products(whole_dir, lazy_dir, 2 * N_SLITS + 1)


def test_a_file_with_edited_headers_is_opened_whole(real_visit, tmp_path):
    """stdatamodels reads such a file from its headers: so must we, the whole way."""
    _, paths = real_visit
    edited = tmp_path / paths[0].name
    edited.write_bytes(paths[0].read_bytes())
    with fits.open(edited, mode="update") as hdulist:
        hdulist["SCI", 2].header["SRCXPOS"] = 0.1
    assert ExposureFile.read(edited) is None
    assert ExposureFile.read(paths[0]) is not None


def _tree_with_shared_node(multi_line):
    """Three slits; the second uses a node anchored in the first."""
    node = {"a": {"c": 1}, "b": "x"} if multi_line else [-1, 1]
    tree = {
        "slits": [{"name": "s1", "bounds": node}, {"name": "s2", "bounds": node}, {"name": "s3"}]
    }
    buffer = io.BytesIO()
    asdf.AsdfFile(tree).write_to(buffer)
    return buffer.getvalue()


def test_a_node_anchored_in_a_dropped_slit_is_written_where_it_is_used():
    layout = SlitLayout(_tree_with_shared_node(multi_line=False))
    assert len(layout) == 3
    chosen = layout.select([1, 2])
    with asdf.open(io.BytesIO(chosen)) as af:
        assert [s["name"] for s in af.tree["slits"]] == ["s2", "s3"]
        assert list(af.tree["slits"][0]["bounds"]) == [-1, 1]
    with asdf.open(io.BytesIO(layout.index())) as af:
        assert [sorted(s) for s in af.tree["slits"]] == [["name"], ["name"], ["name"]]


def test_a_longer_shared_node_refuses_the_cut():
    layout = SlitLayout(_tree_with_shared_node(multi_line=True))
    assert layout.select([1]) is None
    assert layout.select([0, 1]) is not None


def test_parts_in_worker_processes_write_what_one_process_writes(
    shared_wcs_visit, tmp_path, monkeypatch
):
    """``maximum_cores=2``: parts reduced in two spawned workers; products and record the same."""
    asn, _ = shared_wcs_visit
    monkeypatch.setattr(families, "FAMILIES_PER_PART", 2)  # 3 parts, cut in this process
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    serial = NodCombinePipeline.call(str(asn), output_dir=str(one_dir), save_results=True)
    parallel = NodCombinePipeline.call(
        str(asn), output_dir=str(two_dir), save_results=True, maximum_cores="2"
    )
    _assert_same_products(one_dir, two_dir, 2 * N_SLITS + 1)
    assert [s.source_id for s in parallel.spec] == [s.source_id for s in serial.spec]
    records = [json.loads((d / "lazy_visit.json").read_text()) for d in (one_dir, two_dir)]
    records = [record["sources"] for record in records]
    assert records[0] == records[1]
    assert [entry["status"] for entry in records[1]] == ["COMPLETE"] * N_SLITS
