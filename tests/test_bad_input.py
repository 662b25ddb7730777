"""The bad-input catalogue: what happens if my input is ... (docs/bad_input.md is its table).

Every case corrupts one thing of a clean simulated visit (3 MOS PRISM sources,
3-point nod) and asserts the exact outcome: a `RefusedError` naming the file
or parameter before any work; or a ``SKIPPED`` warning naming file, slit and
field, with the other sources' products equal to a clean run's; or a correct
result.  The inputs' bytes are checked unchanged after every case.
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

from nodcombine import NodCombinePipeline, NodDiffStep, OptimalExtract1dStep, RectifyStep
from nodcombine.contract import NodSlitRecord
from nodcombine.errors import RefusedError
from nodcombine.extract_1d.extraction import refuse_negative
from nodcombine.simulate import simulate_nodded_visit, write_association, write_visit

SEED = 21
SOURCES = (1000, 1001, 1002)  # slits 100, 101, 102
BAD_EXPOSURE = 1  # the member a file-level case breaks
BAD_SLIT = 1  # the slit a slit-level case breaks (source 1001)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def visit(tmp_path_factory):
    """The clean visit on disk, its models and the hashes of its files."""
    models, _ = simulate_nodded_visit(
        "nrs_msa_prism", n_slits=3, n_points=3, seed=SEED, emission_lines=False
    )
    folder = tmp_path_factory.mktemp("visit")
    asn, paths = write_visit(models, folder)
    hashes = {p: _sha(p) for p in [asn, *paths]}
    yield {"models": models, "asn": asn, "paths": paths, "folder": folder}
    # no case may have touched the clean visit
    assert {p: _sha(p) for p in hashes} == hashes


@pytest.fixture(scope="module")
def clean_nod(visit):
    return NodDiffStep.call([m.copy() for m in visit["models"]])


@pytest.fixture(scope="module")
def clean(visit, tmp_path_factory):
    """The clean run's output folder and fluxes (by file name)."""
    out = tmp_path_factory.mktemp("clean")
    NodCombinePipeline.call(str(visit["asn"]), output_dir=str(out), save_results=True)
    return {"out": out, "fluxes": _fluxes(out)}


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _fluxes(folder):
    """FLUX of each per-source ``_x1d`` in a folder, by file name."""
    out = {}
    for path in sorted(Path(folder).glob("*_s0*_x1d.fits")):
        with datamodels.open(path) as model:
            out[path.name] = np.array(model.spec[0].spec_table["FLUX"], dtype=float)
    return out


def _copy_visit(visit, folder):
    """The clean files copied into ``folder``; returns the association and files there."""
    paths = [Path(shutil.copy(p, folder)) for p in visit["paths"]]
    return write_association(paths, Path(folder) / "asn.json"), paths


def _run(asn, folder, caplog):
    """Run the pipeline on an association; return (outcome, log, fluxes, visit record).

    The files the association names are hashed before and asserted unchanged after.
    """
    products = json.loads(asn.read_text())["products"]
    members = [asn.parent / m["expname"] for p in products for m in p.get("members", [])]
    before = {p: _sha(p) for p in members if p.exists()}
    out = Path(folder) / "out"
    try:
        outcome = NodCombinePipeline.call(str(asn), output_dir=str(out), save_results=True)
    except RefusedError as err:
        outcome = err
    assert {p: _sha(p) for p in before} == before, "an input file was modified"
    records = list(out.glob("*_visit.json"))
    record = json.loads(records[0].read_text()) if records else None
    return outcome, caplog.text, _fluxes(out), record


def _edit(path, change):
    """Open a copied exposure, apply ``change(model)``, save it back."""
    with datamodels.open(path) as model:
        change(model)
        model.save(path)


def _assert_equal_to_clean(clean, fluxes):
    """The same products as the clean run, every FLUX bit for bit."""
    assert sorted(fluxes) == sorted(clean["fluxes"])
    for name, flux in clean["fluxes"].items():
        np.testing.assert_array_equal(fluxes[name], flux)


def _assert_all_sources_near(clean, fluxes, tolerance=0.1):
    """Every source written, each within ``tolerance`` (median ratio) of the clean run."""
    assert sorted(fluxes) == sorted(clean)
    for name, flux in fluxes.items():
        ratio = np.nanmedian(flux[20:-20] / clean[name][20:-20])
        assert abs(ratio - 1) < tolerance, (name, ratio)


# ------------------------------------------------------------- files and associations

#: (case id, what is done to the bytes of exposure BAD_EXPOSURE)
_BROKEN_FILES = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 3]),
    "garbage": lambda p: p.write_bytes(np.random.default_rng(0).bytes(20000)),
    "zero_length": lambda p: p.write_bytes(b""),
    "missing": lambda p: p.unlink(),
    "corrupt_asdf": lambda p: _corrupt_asdf(p),
}


def _corrupt_asdf(path):
    data = bytearray(path.read_bytes())
    start = data.find(b"#ASDF")
    data[start + 200 : start + 400] = b"\x00{[" * 66 + b"\x00\x00"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", sorted(_BROKEN_FILES))
def test_unreadable_member_is_skipped_and_the_visit_goes_on(case, visit, tmp_path, caplog):
    asn, paths = _copy_visit(visit, tmp_path)
    _BROKEN_FILES[case](paths[BAD_EXPOSURE])
    result = NodDiffStep.call(str(asn))
    assert f"SKIPPED {paths[BAD_EXPOSURE]}: cannot be opened" in caplog.text
    # two nod positions remain: every source is still differenced, from two exposures
    assert len(result) == 2 and "nod_diff: 3 of 3 sources differenced" in caplog.text


def test_unreadable_member_costs_no_source_its_spectrum(visit, clean, tmp_path, caplog):
    asn, paths = _copy_visit(visit, tmp_path)
    _BROKEN_FILES["truncated"](paths[BAD_EXPOSURE])
    outcome, _, fluxes, record = _run(asn, tmp_path, caplog)
    assert not isinstance(outcome, Exception)
    _assert_all_sources_near(clean["fluxes"], fluxes)
    assert record["status"] == "complete" and record["counts"] == {"COMPLETE": 3}


def test_visit_with_no_readable_member_is_refused_naming_each_file(visit, tmp_path, caplog):
    asn, paths = _copy_visit(visit, tmp_path)
    for path in paths:
        _BROKEN_FILES["truncated"](path)
    outcome, text, fluxes, record = _run(asn, tmp_path, caplog)
    assert isinstance(outcome, RefusedError) and outcome.field == "members"
    assert "no exposure could be opened" in str(outcome)
    assert all(p.name in str(outcome) for p in paths)
    assert "REFUSED" in text and not fluxes and record is None


def test_duplicate_member_is_refused_by_name(visit, tmp_path, caplog):
    asn, paths = _copy_visit(visit, tmp_path)
    table = json.loads(asn.read_text())
    table["products"][0]["members"].append(table["products"][0]["members"][0])
    asn.write_text(json.dumps(table))
    outcome, text, fluxes, record = _run(asn, tmp_path, caplog)
    assert isinstance(outcome, RefusedError) and outcome.field == "members"
    assert paths[0].name in str(outcome) and "twice" in str(outcome)
    assert "REFUSED" in text and not fluxes and record is None


def test_association_without_members_is_refused(tmp_path, caplog):
    asn = tmp_path / "asn.json"
    asn.write_text(json.dumps({"asn_type": "spec3", "asn_pool": "p", "products": []}))
    outcome, _, fluxes, _ = _run(asn, tmp_path, caplog)
    assert isinstance(outcome, RefusedError) and outcome.field == "products"
    assert not fluxes


def test_background_member_is_left_out(visit, clean, tmp_path, caplog):
    asn, paths = _copy_visit(visit, tmp_path)
    extra = Path(shutil.copy(paths[0], tmp_path / "jw_background_cal.fits"))
    table = json.loads(asn.read_text())
    table["products"][0]["members"].append({"expname": extra.name, "exptype": "background"})
    asn.write_text(json.dumps(table))
    _, text, fluxes, _ = _run(asn, tmp_path, caplog)
    assert "'jw_background_cal.fits' has exptype 'background'" in text
    _assert_equal_to_clean(clean, fluxes)


@pytest.mark.parametrize("product", ["s2d", "x1d"])
def test_a_product_mixed_into_the_cal_files_is_skipped(product, visit, clean, tmp_path, caplog):
    """An ``_s2d`` or ``_x1d`` among the members: skipped by name; the visit is unchanged."""
    asn, paths = _copy_visit(visit, tmp_path)
    made = next(clean["out"].glob(f"*_s000001000_{product}.fits"))
    intruder = Path(shutil.copy(made, tmp_path))
    asn = write_association([*paths, intruder], tmp_path / "asn.json")
    _, text, fluxes, _ = _run(asn, tmp_path, caplog)
    # both carry the chain's history (rectify COMPLETE): that is what names them products
    field = "meta.cal_step.rectify"
    assert f"SKIPPED {intruder.name}: '{field}'" in text or f"{intruder.name}: 'model type'" in text
    _assert_equal_to_clean(clean, fluxes)


def test_association_from_jwst_asn_from_list(visit, clean, tmp_path, caplog):
    """jwst's own tool writes ``asn_type: "None"``: accepted, as stock spec3 does."""
    from jwst.associations import asn_from_list

    _, paths = _copy_visit(visit, tmp_path)
    table = asn_from_list.asn_from_list([p.name for p in paths], product_name="mine")
    assert table["asn_type"] == "None"
    asn = tmp_path / "mine_asn.json"
    asn.write_text(table.dump(format="json")[1])
    _, _, fluxes, record = _run(asn, tmp_path, caplog)
    assert record["counts"] == {"COMPLETE": 3}
    assert sorted(fluxes) == [k.replace("nodcombine_sim", "mine") for k in sorted(clean["fluxes"])]


def test_non_ascii_product_name_is_refused_before_any_work(visit, tmp_path, caplog):
    asn, _ = _copy_visit(visit, tmp_path)
    table = json.loads(asn.read_text())
    table["products"][0]["name"] = "nod_\u00e9t\u00e9"
    asn.write_text(json.dumps(table))
    outcome, text, fluxes, _ = _run(asn, tmp_path, caplog)
    assert isinstance(outcome, RefusedError) and outcome.field == "products[0].name"
    assert "not ASCII" in str(outcome) and "differenced" not in text and not fluxes


def test_output_dir_that_cannot_be_made_is_refused_before_any_work(visit, tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = str(blocker / "out")
    with pytest.raises(RefusedError, match="output_dir"):
        NodCombinePipeline.call(str(visit["asn"]), output_dir=out, save_results=True)
    assert "differenced" not in caplog.text


# ------------------------------------------------------------ what was done to the data


def test_nod_background_already_subtracted_is_refused_with_the_remedy(visit, tmp_path, caplog):
    asn, paths = _copy_visit(visit, tmp_path)
    for path in paths:
        _edit(path, lambda m: setattr(m.meta.cal_step, "bkg_subtract", "COMPLETE"))
    outcome, _, fluxes, record = _run(asn, tmp_path, caplog)
    assert isinstance(outcome, RefusedError) and outcome.field == "meta.cal_step.bkg_subtract"
    assert paths[0].name in str(outcome) and "--steps.bkg_subtract.skip=true" in str(outcome)
    assert not fluxes
    assert record["status"] == "refused" and "bkg_subtract" in record["reason"]


def test_nod_products_given_as_inputs_are_refused(visit, clean_nod):
    with pytest.raises(RefusedError, match=r"'meta\.cal_step\.nod_diff' is COMPLETE"):
        NodDiffStep.call([m.copy() for m in clean_nod])


def test_master_background_is_logged_and_the_difference_goes_on(visit, clean, tmp_path, caplog):
    asn, paths = _copy_visit(visit, tmp_path)
    for path in paths:
        _edit(path, lambda m: setattr(m.meta.cal_step, "master_background", "COMPLETE"))
    _, text, fluxes, _ = _run(asn, tmp_path, caplog)
    assert "master_background was applied" in text
    _assert_equal_to_clean(clean, fluxes)


def test_two_slits_with_one_source_id_get_products_of_their_own(visit, clean, tmp_path, caplog):
    asn, paths = _copy_visit(visit, tmp_path)

    def same_id(model):
        model.slits[1].source_id = model.slits[0].source_id

    for path in paths:
        _edit(path, same_id)
    _, _, fluxes, record = _run(asn, tmp_path, caplog)
    names = sorted(fluxes)
    assert names == [
        "nodcombine_sim_s000001000-100_x1d.fits",
        "nodcombine_sim_s000001000-101_x1d.fits",
        "nodcombine_sim_s000001002_x1d.fits",
    ]
    assert record["counts"] == {"COMPLETE": 3}
    # each slit keeps its own fit (a family is one slit): nothing moves
    _assert_equal_to_clean(
        {"fluxes": {names[1]: clean["fluxes"]["nodcombine_sim_s000001001_x1d.fits"]}},
        {names[1]: fluxes[names[1]]},
    )


# --------------------------------------------------------- one slit of one exposure bad


def _set(name, value):
    def change(slit):
        setattr(slit, name, value(slit) if callable(value) else value)

    return change


def _instance(key, value):
    def change(slit):
        slit.instance[key] = value(slit)

    return change


def _remove(key):
    def change(slit):
        del slit.instance[key]

    return change


#: case id -> (change to slit BAD_SLIT of exposure BAD_EXPOSURE, field, words of the reason)
_BAD_SLITS = {
    "sci_all_zero": (_set("data", lambda s: np.zeros_like(s.data)), "data", "constant"),
    "sci_constant": (_set("data", lambda s: np.full_like(s.data, 3.5)), "data", "constant"),
    "sci_all_nan": (_set("data", lambda s: np.full_like(s.data, np.nan)), "data", "all NaN"),
    "no_wcs": (_remove("meta.wcs"), "meta.wcs", "is missing"),
    "no_var_rnoise": (_remove("var_rnoise"), "var_rnoise", "is missing"),
    "var_rnoise_zero": (
        _set("var_rnoise", lambda s: np.zeros_like(s.var_rnoise)),
        "var_rnoise",
        "zero everywhere",
    ),
    "var_poisson_negative": (
        _set("var_poisson", lambda s: -np.abs(s.var_poisson)),
        "var_poisson",
        "negative",
    ),
    "var_flat_wrong_shape": (
        _instance("var_flat", lambda s: np.zeros((3, 3), dtype=np.float32)),
        "var_flat",
        "wrong shape",
    ),
    "source_outside_shutter": (_set("source_ypos", 1.4), "source_ypos", "outside its shutter"),
    "pathloss_arrays_missing": (None, "pathloss_point", "other exposures of this source carry it"),
}


def _bad_slit_models(visit, case):
    models = [m.copy() for m in visit["models"]]
    change, _, _ = _BAD_SLITS[case]
    if case == "pathloss_arrays_missing":
        # jwst corrected every exposure, but one slit lost its arrays
        for model in models:
            model.meta.cal_step.pathloss = "COMPLETE"
            for slit in model.slits:
                slit.pathloss_point = np.ones_like(slit.data)
                slit.pathloss_uniform = np.ones_like(slit.data)
        del models[BAD_EXPOSURE].slits[BAD_SLIT].instance["pathloss_point"]
        del models[BAD_EXPOSURE].slits[BAD_SLIT].instance["pathloss_uniform"]
    elif case == "no_wcs":
        del models[BAD_EXPOSURE].slits[BAD_SLIT].instance["meta"]["wcs"]
    else:
        change(models[BAD_EXPOSURE].slits[BAD_SLIT])
    return models


@pytest.mark.parametrize("case", sorted(_BAD_SLITS))
def test_bad_slit_is_skipped_and_the_others_are_untouched(case, visit, clean_nod, caplog):
    _, field, words = _BAD_SLITS[case]
    result = NodDiffStep.call(_bad_slit_models(visit, case))
    bad = result[BAD_EXPOSURE].slits[BAD_SLIT]
    name = visit["paths"][BAD_EXPOSURE].name
    warning = next(line for line in caplog.text.splitlines() if "SKIPPED" in line and field in line)
    assert f"{name}[slit 10{BAD_SLIT}]" in warning and words in warning
    assert NodSlitRecord.from_tree(bad.instance).status.startswith("SKIPPED")
    # the source goes on with its other two exposures (two nod positions) ...
    for k, model in enumerate(result):
        if k != BAD_EXPOSURE:
            assert model.slits[BAD_SLIT].nod_diff_status == "COMPLETE"
    # ... and every other source is exactly what a clean run gives
    for k, model in enumerate(result):
        for s in (0, 2):
            np.testing.assert_array_equal(model.slits[s].data, clean_nod[k].slits[s].data)


def test_all_pixels_flagged_do_not_use_leaves_the_source_to_the_others(visit, clean_nod, caplog):
    models = [m.copy() for m in visit["models"]]
    models[BAD_EXPOSURE].slits[BAD_SLIT].dq |= 1
    result = NodDiffStep.call(models)
    assert not np.isfinite(result[BAD_EXPOSURE].slits[BAD_SLIT].data).any()
    for k in (0, 2):
        assert np.isfinite(result[k].slits[BAD_SLIT].data).sum() > 100
        np.testing.assert_array_equal(result[k].slits[0].data, clean_nod[k].slits[0].data)


def test_infinite_pixels_are_masked_not_spread(visit, clean_nod):
    models = [m.copy() for m in visit["models"]]
    models[BAD_EXPOSURE].slits[BAD_SLIT].data[5, 10:20] = np.inf
    result = NodDiffStep.call(models)
    for model in result:
        assert not np.isinf(model.slits[BAD_SLIT].data).any()
    np.testing.assert_array_equal(result[0].slits[0].data, clean_nod[0].slits[0].data)


def test_single_nod_position_is_skipped(visit, caplog):
    models = [m.copy() for m in visit["models"]]
    for model in models:
        model.meta.dither.y_offset = 0.0
    result = NodDiffStep.call(models)
    assert all(m.meta.cal_step.nod_diff == "SKIPPED" for m in result)
    assert "SKIPPED" in caplog.text and "position" in caplog.text


def test_one_exposure_is_skipped_with_the_reason(visit, caplog):
    result = NodDiffStep.call([visit["models"][0].copy()])
    assert [m.meta.cal_step.nod_diff for m in result] == ["SKIPPED"]
    assert "need at least two" in caplog.text


# ------------------------------------------------------------------------ parameters


@pytest.mark.parametrize(
    ("step", "parameter", "value"),
    [
        ("nod_diff", "n_sigma_outlier", float("nan")),
        ("nod_diff", "position_tolerance", float("inf")),
        ("nod_diff", "error_scale", "lots"),
        ("nod_diff", "error_scale", "nan"),
        ("trace_fit", "min_snr", float("nan")),
        ("trace_fit", "degree_snr", [10.0, float("nan")]),
        ("optimal_extract_1d", "window", float("nan")),
        ("optimal_extract_1d", "clip_sigma", float("nan")),
    ],
)
def test_parameter_outside_its_meaning_is_refused_before_any_work(
    step, parameter, value, visit, tmp_path, caplog
):
    with pytest.raises(RefusedError) as refused:
        NodCombinePipeline.call(
            str(visit["asn"]), output_dir=str(tmp_path), steps={step: {parameter: value}}
        )
    assert refused.value.where == step and refused.value.field == parameter
    assert "differenced" not in caplog.text  # nothing ran
    assert not list(tmp_path.glob("*.fits"))


@pytest.mark.parametrize(
    ("argument", "line"),
    [
        ("--steps.trace_fit.min_snr=nan", "REFUSED trace_fit: 'min_snr' is nan"),
        ("--steps.nod_diff.n_sigma_outlier=-1", "'steps/nod_diff/n_sigma_outlier': the value"),
        ("--steps.nod_diff.n_sigma_outlier=abc", 'the value "abc" is of the wrong type'),
        ("--steps.optimal_extract_1d.window=0", "'steps/optimal_extract_1d/window': the value"),
    ],
)
def test_refused_parameter_ends_strun_with_status_2_and_one_line(argument, line, visit, tmp_path):
    """NaN (ours) and the spec's own limits and types (stpipe's): no traceback either way."""
    import subprocess
    import sys

    strun = str(Path(sys.executable).parent / "strun")
    command = [strun, "nodcombine", str(visit["asn"]), f"--output_dir={tmp_path}", argument]
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 2
    assert "REFUSED" in output and line in output
    assert "Traceback" not in output


def test_parameter_below_its_spec_minimum_is_refused_from_python(visit):
    with pytest.raises(RefusedError, match="too small"):
        NodDiffStep.call([m.copy() for m in visit["models"]], n_sigma_outlier=-1)


# ---------------------------------------------------------- the wrong input for a step


def test_cal_into_optimal_extract_1d_is_skipped(visit, caplog):
    x1d = OptimalExtract1dStep.call(visit["paths"][0])
    assert len(x1d.spec) == 0 and x1d.meta.cal_step.optimal_extract_1d == "SKIPPED"
    assert "unrectified _cal" in caplog.text and visit["paths"][0].name in caplog.text


def test_cal_into_rectify_is_skipped_with_the_reason(visit, caplog):
    s2d = RectifyStep.call([m.copy() for m in visit["models"]])
    assert len(s2d.slits) == 0
    assert "SKIPPED" in caplog.text and "Traceback" not in caplog.text


def test_negative_spectrum_is_refused_by_the_extraction_kernel():
    flux = np.full(200, -1.0)
    error = np.full(200, 1.0)
    with pytest.raises(ValueError, match="spectrum is negative"):
        refuse_negative(flux, error)
    refuse_negative(flux + np.random.default_rng(1).normal(0, 3, 200) + 1.0, error * 3)


# ------------------------------------------------------------------------------ runs


def test_two_runs_give_the_same_bytes_apart_from_dates(visit, tmp_path):
    runs = []
    for name in ("one", "two"):
        out = tmp_path / name
        NodCombinePipeline.call(str(visit["asn"]), output_dir=str(out), save_results=True)
        runs.append(out)
    products = sorted(p.name for p in runs[0].glob("*_s0*.fits"))
    assert len(products) == 6
    for name in products:
        first, second = (_without_dates(run / name) for run in runs)
        assert first == second, name
    record = [(run / "nodcombine_sim_visit.json").read_text() for run in runs]
    assert record[0] == record[1]


def _without_dates(path):
    """The file's bytes with the date cards, ``meta.date`` and the hash over them blanked."""
    import re

    data = path.read_bytes()
    with fits.open(path) as hdulist:
        for hdu in hdulist:
            for key in ("DATE",):
                if key in hdu.header:
                    card = str(hdu.header.cards[key]).encode()
                    data = data.replace(card, b" " * len(card))
    data = re.sub(rb"date: '[^']*'", b"date: ''", data)
    return re.sub(rb"_fits_hash: [0-9a-f]+", b"_fits_hash: ", data)


def test_an_interrupted_run_is_recognisable_from_its_visit_record(visit, tmp_path, monkeypatch):
    def interrupted(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(RectifyStep, "process", interrupted)
    with pytest.raises(KeyboardInterrupt):
        NodCombinePipeline.call(str(visit["asn"]), output_dir=str(tmp_path), save_results=True)
    record = json.loads((tmp_path / "nodcombine_sim_visit.json").read_text())
    assert record["status"] == "started"
    assert {s["status"] for s in record["sources"]} == {"PLANNED"}
    assert not list(tmp_path.glob("*.fits")) and not list(tmp_path.glob(".nodcombine-*"))


def test_models_passed_from_python_are_not_modified(visit):
    models = [m.copy() for m in visit["models"]]
    before = [m.slits[0].data.copy() for m in models]
    from jwst.datamodels import ModelContainer

    NodCombinePipeline.call(ModelContainer(models))
    for model, data in zip(models, before, strict=True):
        np.testing.assert_array_equal(model.slits[0].data, data)
        assert model.meta.cal_step.instance.get("nod_diff") is None


def test_a_mixed_association_gives_each_visit_what_it_gives_alone():
    """NIRSpec MOS and MIRI LRS exposures in one input: each spectrum as if run alone.

    The MIRI spectrum once took its slit width from the first (NIRSpec)
    exposure: FLUX and FLUX_ERROR 1.78x too high through the path loss.
    """
    from jwst.datamodels import ModelContainer

    nirspec, _ = simulate_nodded_visit("nrs_msa_prism", n_slits=1, n_points=3, seed=3)
    miri, _ = simulate_nodded_visit("miri_lrs", n_points=2, seed=4)
    mixed = NodCombinePipeline.call(ModelContainer([m.copy() for m in nirspec + miri]))
    for alone in (NodCombinePipeline.call(ModelContainer(v)) for v in (nirspec, miri)):
        table = alone.spec[0].spec_table
        match = [s.spec_table for s in mixed.spec if len(s.spec_table) == len(table)]
        assert len(match) == 1
        for column in ("FLUX", "FLUX_ERROR"):
            np.testing.assert_array_equal(match[0][column], table[column])


def _subtract_other_positions(models):
    """What calwebb_spec2's bkg_subtract does to a nod pattern (one exposure per position)."""
    subtracted = [m.copy() for m in models]
    for e, model in enumerate(subtracted):
        for k, slit in enumerate(getattr(model, "slits", [model])):
            others = [getattr(m, "slits", [m])[k].data for q, m in enumerate(models) if q != e]
            slit.data = getattr(models[e], "slits", [models[e]])[k].data - np.mean(others, axis=0)
    return subtracted


def test_nod_subtracted_data_under_a_flag_that_says_otherwise_are_skipped(visit, caplog):
    result = NodDiffStep.call(_subtract_other_positions(visit["models"]))
    assert all(m.meta.cal_step.nod_diff == "SKIPPED" for m in result)
    assert caplog.text.count("already holds negative nod images") == len(SOURCES)
    assert "--steps.bkg_subtract.skip=true" in caplog.text


def test_real_ceers_data_are_not_mistaken_for_subtracted_ones(ceers_files, caplog):
    """CEERS 933 as delivered: differenced; subtracted by hand: recognised."""
    models = [datamodels.open(f) for f in ceers_files]
    assert NodDiffStep.call([m.copy() for m in models])[0].meta.cal_step.nod_diff == "COMPLETE"
    assert "negative nod images" not in caplog.text
    subtracted = NodDiffStep.call(_subtract_other_positions(models))
    assert subtracted[0].meta.cal_step.nod_diff == "SKIPPED"
    assert "already holds negative nod images" in caplog.text


def test_cutout_origin_inconsistent_with_its_wcs_is_skipped(ceers_files, caplog):
    """Real CEERS geometry: one exposure's xstart moved by 3 columns, its WCS not."""
    models = [datamodels.open(f) for f in ceers_files]
    models[1].xstart += 3
    result = NodDiffStep.call(models)
    assert result[1].nod_diff_status.startswith("SKIPPED")
    assert "'xstart/ystart' (4, 659) disagree with the origin its WCS starts from" in caplog.text
    assert Path(ceers_files[1]).name in caplog.text
    # the two others are still a nod pair
    assert [result[k].nod_diff_status for k in (0, 2)] == ["COMPLETE", "COMPLETE"]


def test_jittered_cutouts_consistent_with_their_wcs_are_kept(caplog):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_slits=2, seed=4, jitter_cutouts=True)
    result = NodDiffStep.call(models)
    assert all(m.meta.cal_step.nod_diff == "COMPLETE" for m in result)
    assert "xstart/ystart" not in caplog.text


def test_a_skipped_source_is_in_the_visit_record_and_the_others_equal_a_clean_run(
    visit, clean, tmp_path, caplog
):
    asn, paths = _copy_visit(visit, tmp_path)

    def dead_slit(model):
        model.slits[BAD_SLIT].data = np.zeros_like(model.slits[BAD_SLIT].data)

    for path in paths:
        _edit(path, dead_slit)
    _, _, fluxes, record = _run(asn, tmp_path, caplog)
    assert record["status"] == "complete"
    assert record["counts"] == {"COMPLETE": 2, "SKIPPED": 1}
    skipped = next(s for s in record["sources"] if s["status"] == "SKIPPED")
    assert skipped["source"].endswith("/101/1001") and "'data' is constant" in skipped["reason"]
    assert skipped["products"] == []
    assert sorted(fluxes) == [n for n in sorted(clean["fluxes"]) if "1001" not in n]
    for name, flux in fluxes.items():
        np.testing.assert_array_equal(flux, clean["fluxes"][name])


@pytest.mark.parametrize("exposure", [0, BAD_EXPOSURE])
def test_a_dispersion_direction_the_instrument_does_not_have_is_skipped(exposure, visit, caplog):
    """NIRSpec saying 2 (along y): that exposure left out, first member or not."""
    models = [m.copy() for m in visit["models"]]
    models[exposure].meta.instance.setdefault("wcsinfo", {})["dispersion_direction"] = 2
    result = NodDiffStep.call(models)
    assert "'meta.wcsinfo.dispersion_direction' is 2, but NIRSPEC disperses along x" in caplog.text
    for k, model in enumerate(result):
        statuses = {slit.nod_diff_status.split(":")[0] for slit in model.slits}
        assert statuses == ({"SKIPPED"} if k == exposure else {"COMPLETE"})
