"""The products open in the tools people use: specutils, jdaviz (through specutils), combine_1d.

Each test reads a product the way the tool does and compares what it returns
with the product's own arrays: the ``_s2d``'s wavelengths (through its gwcs,
and its FITS WCS where the grid is linear), the ``_x1d``'s columns and units,
jwst's ``combine_1d`` on one and on two spectra.  The history in
``meta.cal_step`` and the names of box and optimal products are checked too.
"""

import filecmp
import shutil
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS
from jwst.combine_1d import Combine1dStep
from jwst.datamodels import ModelContainer
from specutils import Spectrum, SpectrumList
from stdatamodels.jwst import datamodels

from nodcombine import (
    NodCombinePipeline,
    NodDiffStep,
    OptimalExtract1dStep,
    RectifyStep,
    TraceFitStep,
)
from nodcombine.contract import ExtractionExtras, RectifyRecord
from nodcombine.pipelines.products import (
    per_source_products,
    plan_products,
    product_stem,
    x1d_suffix,
)
from nodcombine.simulate import simulate_nodded_visit, write_association, write_visit
from nodcombine.visit import group_by_source

#: the calwebb_spec2 steps the simulator records in its _cal files
SPEC2_STEPS = ("assign_wcs", "extract_2d", "flat_field", "barshadow", "photom", "srctype")
CHAIN = ("nod_diff", "trace_fit", "rectify", "optimal_extract_1d")


@pytest.fixture(scope="module")
def visit(tmp_path_factory):
    """A 3-point PRISM visit of two sources on disk, and its models."""
    models, _ = simulate_nodded_visit(
        "nrs_msa_prism", n_slits=2, n_points=3, source_peak=[1.0, 0.3], seed=21
    )
    asn, paths = write_visit(models, tmp_path_factory.mktemp("visit"))
    return models, asn, paths


@pytest.fixture(scope="module")
def chain(visit, tmp_path_factory):
    """Every step's product, in memory, and the ``_s2d`` and ``_x1d`` saved and their paths."""
    models, _, _ = visit
    nod = NodDiffStep.call([m.copy() for m in models])
    trace = TraceFitStep.call(nod)
    s2d = RectifyStep.call(trace)
    x1d = OptimalExtract1dStep.call(s2d)
    out = tmp_path_factory.mktemp("chain")
    s2d.save(out / "visit_s2d.fits")
    x1d.save(out / "visit_x1d.fits")
    return {"nod": nod, "trace": trace, "s2d": s2d, "x1d": x1d, "dir": out}


@pytest.fixture(scope="module")
def pipeline_products(visit, tmp_path_factory):
    """The pipeline's per-source files."""
    _, asn, _ = visit
    out = tmp_path_factory.mktemp("products")
    NodCombinePipeline.call(str(asn), output_dir=str(out), save_results=True)
    return out


def _one(directory, pattern):
    paths = sorted(directory.glob(pattern))
    assert paths, f"no {pattern} in {directory}"
    return paths[0]


def _read_x1d(path, **kwargs):
    return Spectrum.read(path, **kwargs) if kwargs else Spectrum.read(path)


# --- _s2d ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [None, "JWST s2d"])
def test_s2d_reads_in_specutils_with_the_product_wavelengths(pipeline_products, fmt):
    path = _one(pipeline_products, "*_s000001000_s2d.fits")
    spectrum = Spectrum.read(path) if fmt is None else Spectrum.read(path, format=fmt)
    with fits.open(path) as hdulist:
        wavelength = hdulist["WAVELENGTH"].data
        data = hdulist["SCI"].data
    assert spectrum.spectral_axis.unit == u.micron
    assert spectrum.flux.unit == u.MJy / u.sr
    # dispersion along x: every row of WAVELENGTH is the grid specutils returns
    assert spectrum.flux.shape == data.shape
    np.testing.assert_array_equal(spectrum.spectral_axis.value.astype(np.float32), wavelength[0])
    np.testing.assert_array_equal(wavelength, np.broadcast_to(wavelength[0], wavelength.shape))
    np.testing.assert_array_equal(spectrum.flux.value, data)


def test_multislit_s2d_reads_as_a_list(chain):
    path = chain["dir"] / "visit_s2d.fits"
    for spectra in (SpectrumList.read(path), SpectrumList.read(path, format="JWST s2d multi")):
        assert len(spectra) == len(chain["s2d"].slits) == 2
        for spectrum, slit in zip(spectra, chain["s2d"].slits, strict=True):
            assert spectrum.spectral_axis.unit == u.micron
            np.testing.assert_array_equal(
                spectrum.spectral_axis.value.astype(np.float32), slit.wavelength[0]
            )


def test_linear_grid_s2d_has_an_exact_fits_wcs(tmp_path):
    """A grating's linear grid gets CTYPE1 = 'WAVE' (jdaviz reads it); the PRISM's does not."""
    models, _ = simulate_nodded_visit("nrs_msa_g395m", n_slits=1, n_points=2, seed=3)
    s2d = RectifyStep.call(TraceFitStep.call(NodDiffStep.call(models)))
    s2d.save(tmp_path / "g395m_s2d.fits")
    header = fits.getheader(tmp_path / "g395m_s2d.fits", "SCI")
    wavelength = fits.getdata(tmp_path / "g395m_s2d.fits", "WAVELENGTH")[0]
    assert header["CTYPE1"] == "WAVE" and header["DISPAXIS"] == 1
    world = WCS(header).pixel_to_world_values(np.arange(wavelength.size), 0)[0] * 1e6  # m to um
    np.testing.assert_allclose(world, wavelength, rtol=1e-7)
    assert Spectrum.read(tmp_path / "g395m_s2d.fits").spectral_axis.unit == u.micron


def test_native_grid_s2d_has_no_approximate_fits_wcs(chain):
    header = fits.getheader(chain["dir"] / "visit_s2d.fits", "SCI")
    assert header["DISPAXIS"] == 1 and "CTYPE1" not in header


# --- _x1d ---------------------------------------------------------------------------------


def _assert_x1d_matches(spectrum, path):
    with datamodels.open(path) as model:
        table = model.spec[0].spec_table
        assert spectrum.spectral_axis.unit == u.micron
        assert spectrum.flux.unit == u.Jy
        np.testing.assert_array_equal(spectrum.spectral_axis.value, table["WAVELENGTH"])
        np.testing.assert_array_equal(spectrum.flux.value, table["FLUX"])
        np.testing.assert_array_equal(spectrum.uncertainty.array, table["FLUX_ERROR"])


@pytest.mark.parametrize("fmt", [None, "JWST x1d"])
def test_x1d_reads_in_specutils_in_micron_and_jy(pipeline_products, fmt):
    path = _one(pipeline_products, "*_s000001000_x1d.fits")
    spectrum = Spectrum.read(path) if fmt is None else Spectrum.read(path, format=fmt)
    _assert_x1d_matches(spectrum, path)


def test_multi_source_x1d_reads_as_a_list(chain):
    spectra = SpectrumList.read(chain["dir"] / "visit_x1d.fits", format="JWST x1d multi")
    assert len(spectra) == 2
    assert all(s.spectral_axis.unit == u.micron and s.flux.unit == u.Jy for s in spectra)


@pytest.mark.realdata
def test_ceers_x1d_reads_in_specutils(ceers_files, tmp_path):
    NodCombinePipeline.call(ceers_files, output_dir=str(tmp_path), save_results=True)
    path = _one(tmp_path, "*_s000000933_x1d.fits")
    for fmt in (None, "JWST x1d"):
        # these msaexp test files never ran srctype: specutils warns, reads FLUX as POINT
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "SRCTYPE is missing", UserWarning)
            spectrum = _read_x1d(path, **({"format": fmt} if fmt else {}))
        _assert_x1d_matches(spectrum, path)
    s2d = Spectrum.read(_one(tmp_path, "*_s000000933_s2d.fits"), format="JWST s2d")
    assert s2d.spectral_axis.unit == u.micron


# --- combine_1d ---------------------------------------------------------------------------


def test_combine_1d_of_one_spectrum_returns_it(pipeline_products, tmp_path):
    path = _one(pipeline_products, "*_s000001000_x1d.fits")
    combined = Combine1dStep.call(
        ModelContainer([datamodels.open(path)]), output_dir=str(tmp_path), save_results=True
    )
    assert isinstance(combined, datamodels.MultiCombinedSpecModel)
    assert combined.meta.cal_step.combine_1d == "COMPLETE"
    assert list(tmp_path.glob("*.fits")), "combine_1d wrote no product"
    with datamodels.open(path) as x1d:
        table = x1d.spec[0].spec_table
        good = np.isfinite(table["FLUX"])
        out = combined.spec[0].spec_table
        np.testing.assert_array_equal(out["WAVELENGTH"], table["WAVELENGTH"][good])
        np.testing.assert_allclose(out["FLUX"], table["FLUX"][good], rtol=1e-12)
        np.testing.assert_allclose(out["ERROR"], table["FLUX_ERROR"][good], rtol=1e-6)
    assert combined.spec[0].spec_table.columns["flux"].unit == "Jy"


def test_combine_1d_reads_an_association_of_x1d_products(pipeline_products, tmp_path):
    """Two copies: the same flux, the error over sqrt(2); an empty spectrum is left out."""
    path = _one(pipeline_products, "*_s000001000_x1d.fits")
    with datamodels.open(path) as x1d:
        x1d.save(tmp_path / "a_x1d.fits")
        x1d.save(tmp_path / "b_x1d.fits")
        empty = x1d.copy()
        empty.spec[0].spec_table["FLUX"] = np.nan
        empty.save(tmp_path / "c_x1d.fits")
        table = x1d.spec[0].spec_table.copy()
    paths = [tmp_path / f"{k}_x1d.fits" for k in "abc"]
    asn = write_association(paths, tmp_path / "asn.json", product_name="c")
    combined = Combine1dStep.call(str(asn))
    good = np.isfinite(table["FLUX"])
    out = combined.spec[0].spec_table
    np.testing.assert_allclose(out["FLUX"], table["FLUX"][good], rtol=1e-12)
    np.testing.assert_allclose(out["ERROR"], table["FLUX_ERROR"][good] / np.sqrt(2), rtol=1e-6)


# --- history and exposure time ------------------------------------------------------------


def _history(model):
    return model.meta.instance.get("cal_step") or {}


def _assert_history(history, steps, where):
    for step in (*SPEC2_STEPS, *steps):
        assert history.get(step) == "COMPLETE", (where, step, history)
    assert history.get("bkg_subtract") == "SKIPPED", where


def _is_float_array(value):
    return not isinstance(value, list) and np.asarray(value).dtype == np.float64


def test_per_wavelength_records_are_arrays_and_read_back_equal(chain):
    # saved as binary blocks (not YAML lists); the record read back equals the one written
    s2d = datamodels.open(chain["dir"] / "visit_s2d.fits")
    x1d = datamodels.open(chain["dir"] / "visit_x1d.fits")
    for written, read in zip(chain["s2d"].slits, s2d.slits, strict=True):
        node = read.instance["rectify_record"]
        assert all(_is_float_array(node[k]) for k in RectifyRecord._ARRAYS)
        before, after = (RectifyRecord.from_tree(s.instance) for s in (written, read))
        for key in RectifyRecord._ARRAYS:
            np.testing.assert_array_equal(getattr(after, key), getattr(before, key))
        assert (after.halo, after.members) == (before.halo, before.members)
    for written, read in zip(chain["x1d"].spec, x1d.spec, strict=True):
        node = read.instance["extract_1d_extras"]
        present = [k for k in ExtractionExtras._ARRAYS if k in node]
        assert {"pathloss", "sigma_arcsec", "in_slit_fraction"} <= set(present)
        assert all(_is_float_array(node[k]) for k in present)
        extras = ExtractionExtras.from_tree(read.instance)
        _assert_same_extras(extras, ExtractionExtras.from_tree(written.instance))
        # a product written when these were YAML lists reads to the same record
        as_lists = {k: v.tolist() if k in present else v for k, v in node.items()}
        _assert_same_extras(ExtractionExtras.from_tree({"extract_1d_extras": as_lists}), extras)


def _assert_same_extras(one, two):
    """Field by field; per-wavelength tuples equal value for value, NaN for NaN."""
    for name in one.__dataclass_fields__:
        a, b = getattr(one, name), getattr(two, name)
        if name in ExtractionExtras._ARRAYS and a is not None:
            assert isinstance(a, tuple) and isinstance(b, tuple), name
            np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=name)
        else:
            assert a == b, name


def test_every_product_carries_the_whole_history(chain, pipeline_products):
    for model in chain["nod"]:
        _assert_history(_history(model), CHAIN[:1], "_nod")
    for model in chain["trace"]:
        _assert_history(_history(model), CHAIN[:2], "_trace")
    _assert_history(_history(chain["s2d"]), CHAIN[:3], "_s2d")
    for slit in chain["s2d"].slits:
        _assert_history(slit.instance["meta"]["cal_step"], CHAIN[:3], "_s2d slit")
    _assert_history(_history(chain["x1d"]), CHAIN, "_x1d")
    # saved (schema-valid) and opened again, and the pipeline's per-source files
    for name, steps in (("visit_s2d.fits", CHAIN[:3]), ("visit_x1d.fits", CHAIN)):
        with datamodels.open(chain["dir"] / name) as model:
            _assert_history(_history(model), steps, name)
    for path in sorted(pipeline_products.glob("*_s?????????_*.fits")):
        steps = CHAIN if path.stem.endswith("x1d") else CHAIN[:3]
        with datamodels.open(path) as model:
            _assert_history(_history(model), steps, path.name)


def test_products_carry_the_total_exposure_time(visit, chain, pipeline_products):
    models, _, _ = visit
    total = sum(m.meta.exposure.exposure_time for m in models)
    assert chain["s2d"].meta.exposure.exposure_time == pytest.approx(total)
    assert chain["x1d"].meta.exposure.exposure_time == pytest.approx(total)
    assert chain["x1d"].meta.exposure.start_time == min(m.meta.exposure.start_time for m in models)
    assert chain["x1d"].meta.exposure.end_time == max(m.meta.exposure.end_time for m in models)
    with datamodels.open(_one(pipeline_products, "*_s000001000_x1d.fits")) as x1d:
        assert x1d.meta.exposure.exposure_time == pytest.approx(total)


# --- box and optimal products -------------------------------------------------------------


def test_box_and_optimal_extractions_write_different_files(chain, tmp_path):
    source = tmp_path / "x_s2d.fits"
    chain["s2d"].save(source)
    OptimalExtract1dStep.call(str(source), output_dir=str(tmp_path), save_results=True)
    OptimalExtract1dStep.call(
        str(source),
        extraction_type="box",
        extract_width=5.0,
        output_dir=str(tmp_path),
        save_results=True,
    )
    optimal, box = tmp_path / "x_x1d.fits", tmp_path / "x_box_x1d.fits"
    assert optimal.exists() and box.exists()
    read = [SpectrumList.read(p, format="JWST x1d multi") for p in (optimal, box)]
    assert all(len(spectra) == 2 for spectra in read)
    assert not np.array_equal(read[0][0].flux, read[1][0].flux, equal_nan=True)


def test_per_source_box_products_have_their_own_names(chain):
    groups, _ = group_by_source(chain["trace"])
    plan = plan_products("visit", groups)
    step = OptimalExtract1dStep(extraction_type="box", extract_width=5.0)
    box = step.run(chain["s2d"])
    optimal = dict(per_source_products(plan, chain["s2d"], chain["x1d"]))
    boxed = dict(per_source_products(plan, chain["s2d"], box, x1d_suffix=x1d_suffix(step)))
    assert sorted(n for n in optimal if n.endswith("_x1d")) == [
        "visit_s000001000_x1d",
        "visit_s000001001_x1d",
    ]
    assert sorted(n for n in boxed if n.endswith("x1d")) == [
        "visit_s000001000_box_x1d",
        "visit_s000001001_box_x1d",
    ]
    assert not set(optimal) & {n for n in boxed if n.endswith("x1d")}
    assert {product_stem(n) for n in (*optimal, *boxed)} == {p.stem for p in plan}


def test_pipeline_box_products_sit_beside_the_optimal_ones(visit, pipeline_products, tmp_path):
    _, asn, _ = visit
    for path in pipeline_products.iterdir():  # the optimal run's products and record
        shutil.copy(path, tmp_path)
    steps = {"optimal_extract_1d": {"extraction_type": "box", "extract_width": 5.0}}
    NodCombinePipeline.call(str(asn), output_dir=str(tmp_path), save_results=True, steps=steps)
    optimal = _one(tmp_path, "*_s000001000_x1d.fits")
    assert filecmp.cmp(optimal, _one(pipeline_products, "*_s000001000_x1d.fits"), shallow=False)
    assert list(tmp_path.glob("*_s000001000_box_x1d.fits"))
    # each run keeps its own visit record
    (record,) = pipeline_products.glob("*_visit.json")
    assert filecmp.cmp(record, tmp_path / record.name, shallow=False)
    assert (tmp_path / record.name.replace("_visit", "_box_visit")).is_file()


# --- simulated keywords -------------------------------------------------------------------


def test_simulated_cal_files_carry_the_keywords_tools_read(visit):
    _, _, paths = visit
    with fits.open(paths[0]) as hdulist:
        primary, sci = hdulist[0].header, hdulist["SCI"].header
    assert primary["TELESCOP"] == "JWST"  # specutils and jdaviz identify JWST files by it
    assert primary["EFFEXPTM"] > 0 and primary["EFFINTTM"] > 0  # combine_1d's weights
    assert {"TARG_RA", "TARG_DEC", "EXP_TYPE", "INSTRUME", "DETECTOR"} <= set(primary)
    assert sci["SRCTYPE"] == "POINT"  # specutils picks FLUX or SURF_BRIGHT by it
    assert sci["BUNIT"] == "MJy/sr" and sci["PIXAR_SR"] > 0 and sci["PIXAR_A2"] > 0
    assert sci["DISPAXIS"] == 1
