"""calwebb_spec3_nod / calwebb_spec2_nod, packaged parameter references, the command.

The pipelines run as a user runs them: ``strun`` in a subprocess, offline.
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

import asdf
import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from nodcombine import cli
from nodcombine.parrefs import (
    SELECTION,
    packaged_directory,
    packaged_parameter_file,
    select_mode,
    selection_parameters,
)
from nodcombine.simulate import simulate_nodded_visit, write_visit

REPO = Path(__file__).resolve().parents[1]
STRUN = Path(sys.executable).with_name("strun")
NODCOMBINE = Path(sys.executable).with_name("nodcombine")


def _run(args, cwd):
    completed = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout + completed.stderr


@pytest.fixture(scope="module")
def visit(tmp_path_factory):
    models, _ = simulate_nodded_visit(
        "nrs_msa_prism", n_slits=2, n_points=2, source_peak=[0.4, 0.1], seed=11
    )
    asn, _ = write_visit(models, tmp_path_factory.mktemp("stock_in"))
    return asn


@pytest.fixture(scope="module")
def nodcombine_products(visit, tmp_path_factory):
    out = tmp_path_factory.mktemp("nodcombine_out")
    _run([STRUN, "nodcombine", visit, f"--output_dir={out}"], out)
    return out


@pytest.fixture(scope="module")
def spec3_nod_products(visit, tmp_path_factory):
    out = tmp_path_factory.mktemp("spec3_nod_out")
    log = _run([STRUN, "calwebb_spec3_nod", visit, f"--output_dir={out}"], out)
    return out, log


def _spectra(directory, suffix):
    spectra = {}
    for path in sorted(Path(directory).glob(f"*_s?????????_{suffix}.fits")):
        with datamodels.open(path) as model:
            table = model.spec[0].spec_table
            names = table.columns.names
            spectra[path.name.rsplit("_", 1)[0]] = {
                "flux": np.array(table["FLUX"]),
                "error": np.array(table["FLUX_ERROR" if "FLUX_ERROR" in names else "ERROR"]),
                "wavelength": np.array(table["WAVELENGTH"]),
            }
    return spectra


def _assert_same_spectra(ours, reference):
    assert sorted(ours) == sorted(reference)
    for stem, spectrum in ours.items():
        ref = reference[stem]
        np.testing.assert_array_equal(spectrum["wavelength"], ref["wavelength"])
        scale = np.nanmax(np.abs(ref["flux"]))
        assert np.nanmax(np.abs(spectrum["flux"] - ref["flux"])) <= 1e-6 * scale, stem
        np.testing.assert_allclose(spectrum["error"], ref["error"], rtol=1e-6)
        assert np.array_equal(np.isfinite(spectrum["flux"]), np.isfinite(ref["flux"]))


def test_spec3_nod_writes_stock_named_products_with_nodcombine_fluxes(
    spec3_nod_products, nodcombine_products
):
    out, log = spec3_nod_products
    assert "packaged parameters calwebb_spec3_nod_nrs_msaspec_prism.asdf" in log
    for suffix in ("s2d", "x1d", "c1d"):
        assert len(list(out.glob(f"nodcombine_sim_s?????????_{suffix}.fits"))) == 2, suffix
    _assert_same_spectra(_spectra(out, "x1d"), _spectra(nodcombine_products, "x1d"))
    # combine_1d of one spectrum is that spectrum: jwst reads our _x1d
    combined = _spectra(out, "c1d")
    _assert_same_spectra(combined, _spectra(nodcombine_products, "x1d"))


def test_spec3_nod_from_its_packaged_parameter_file(visit, nodcombine_products, tmp_path):
    config = packaged_directory() / "calwebb_spec3_nod_nrs_msaspec_prism.asdf"
    _run([STRUN, config, visit, f"--output_dir={tmp_path}"], tmp_path)
    _assert_same_spectra(_spectra(tmp_path, "x1d"), _spectra(nodcombine_products, "x1d"))


def test_spec3_nod_skips_stock_outlier_detection_by_its_parameter_file(spec3_nod_products):
    _, log = spec3_nod_products
    lines = log.splitlines()
    runs = [k for k, line in enumerate(lines) if "Step outlier_detection running" in line]
    assert runs and all("Step skipped." in lines[k + 1] for k in runs)


def test_stock_spec3_with_the_chain_as_post_hooks(visit, nodcombine_products, tmp_path):
    """The route without our pipeline class: stock calwebb_spec3, hooks by class path."""
    config = packaged_directory() / "calwebb_spec3_with_nod_hooks.asdf"
    _run([STRUN, config, visit, f"--output_dir={tmp_path}"], tmp_path)
    # stpipe saves no result of a skipped step: the hooks' _s2d/_x1d are not written
    assert not list(tmp_path.glob("*_x1d.fits"))
    _assert_same_spectra(_spectra(tmp_path, "c1d"), _spectra(nodcombine_products, "x1d"))


def test_a_parameter_file_cannot_swap_a_stock_sub_step_class(tmp_path):
    """stpipe builds each sub-step from the pipeline's step_defs; a ``class`` key is dropped."""
    from jwst.extract_1d import Extract1dStep
    from jwst.pipeline import Spec3Pipeline

    tree = {
        "class": "jwst.pipeline.Spec3Pipeline",
        "name": "calwebb_spec3",
        "parameters": {},
        "steps": [
            {
                "class": "nodcombine.extract_1d.OptimalExtract1dStep",
                "name": "extract_1d",
                "parameters": {},
            }
        ],
    }
    path = tmp_path / "swap.asdf"
    asdf.AsdfFile(tree).write_to(path)
    pipeline = Spec3Pipeline.from_config_file(str(path))
    assert type(pipeline.extract_1d) is Extract1dStep


def test_spec3_nod_refuses_modes_that_are_not_nodded_slits(tmp_path):
    from jwst.datamodels import ModelContainer

    from nodcombine.errors import RefusedError
    from nodcombine.pipelines import Spec3NodPipeline

    models, _ = simulate_nodded_visit("nrs_msa_prism", n_slits=1, n_points=2, seed=1)
    for model in models:
        model.meta.exposure.type = "NRS_IFU"
    container = ModelContainer(models)
    container.asn_table = {"products": [{"name": "ifu", "members": []}]}
    with pytest.raises(RefusedError, match="NRS_IFU"):
        Spec3NodPipeline.call(container, output_dir=str(tmp_path))


def test_spec3_nod_leaves_background_members_out(visit, tmp_path, caplog):
    """Nod-background members would be master-background subtracted by stock spec3."""
    import json

    table = json.loads(Path(visit).read_text())
    members = table["products"][0]["members"]
    members.append({**members[0], "exptype": "background"})
    asn = Path(visit).with_name("with_background_asn.json")
    asn.write_text(json.dumps(table))
    from nodcombine.pipelines import Spec3NodPipeline

    with caplog.at_level(logging.INFO, logger="nodcombine"):
        Spec3NodPipeline.call(
            str(asn),
            output_dir=str(tmp_path),
            save_results=True,
            steps={"trace_fit": {"max_width_degree": 0, "halo_snr": 1e9}},
        )
    assert "1 background members left out" in caplog.text
    assert len(list(tmp_path.glob("*_x1d.fits"))) == 2


# -- calwebb_spec2_nod ---------------------------------------------------------------------


def _rate_like(tmp_path):
    """A NIRSpec MOS ``_rate``-level exposure (detector image, no WCS yet)."""
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_slits=1, n_points=2, seed=2)
    rate = datamodels.ImageModel(np.ones((64, 64), dtype=np.float32))
    rate.meta.instance.update(
        {
            key: models[0].meta.instance[key]
            for key in ("instrument", "exposure", "observation", "telescope", "dither")
        }
    )
    rate.meta.filename = "jw09999001001_03101_00001_nrs2_rate.fits"
    path = tmp_path / rate.meta.filename
    rate.save(path)
    return path


def test_spec2_nod_takes_its_packaged_defaults_and_never_subtracts_background(tmp_path, caplog):
    from nodcombine.pipelines import Spec2NodPipeline

    path = _rate_like(tmp_path)
    config, _ = Spec2NodPipeline.build_config(str(path))
    for name in ("bkg_subtract", "master_background_mos", "pathloss", "resample_spec"):
        assert config["steps"][name]["skip"] is True, name
    # As far as offline goes: every step that reads reference files must be skipped, or
    # stpipe's prefetch asks CRDS for them; without assign_wcs stock spec2 ends the exposure.
    stock = Spec2NodPipeline()
    needs_references = {
        name: {"skip": True}
        for name in stock.step_defs
        if getattr(stock, name).reference_file_types or name == "assign_wcs"
    }
    with caplog.at_level(logging.INFO):
        Spec2NodPipeline.call(
            str(path),
            output_dir=str(tmp_path),
            steps={**needs_references, "bkg_subtract": {"skip": False}},
        )
    assert "bkg_subtract skipped: nod_diff removes the background" in caplog.text
    assert "Assign_wcs processing was skipped" in caplog.text
    assert not list(tmp_path.glob("*_cal.fits"))


# -- packaged parameter references ---------------------------------------------------------


@pytest.fixture(scope="module")
def mode_inputs(tmp_path_factory):
    """One simulated ``_cal`` per mode: MOS PRISM, MOS grating, fixed slit, MIRI LRS."""
    inputs = {}
    for sim_mode in ("nrs_msa_prism", "nrs_msa_g395m", "nrs_fs_prism", "miri_lrs"):
        models, _ = simulate_nodded_visit(sim_mode, n_slits=1, n_points=2, seed=5)
        asn, _ = write_visit(models, tmp_path_factory.mktemp(sim_mode))
        inputs[sim_mode] = asn
    return inputs


@pytest.mark.parametrize(
    ("sim_mode", "mode"),
    [
        ("nrs_msa_prism", "nrs_msaspec_prism"),
        ("nrs_msa_g395m", "nrs_msaspec_grating"),
        ("nrs_fs_prism", "nrs_fixedslit"),
        ("miri_lrs", "miri_lrs"),
    ],
)
def test_selection_picks_the_file_of_each_mode(mode_inputs, sim_mode, mode):
    asn = mode_inputs[sim_mode]
    for dataset in (asn, datamodels.open(sorted(asn.parent.glob("*_cal.fits"))[0])):
        parameters = selection_parameters(dataset)
        assert select_mode(parameters) == mode
        for alias in ("nod_diff", "trace_fit", "rectify", "optimal_extract_1d", "nodcombine"):
            path, _ = packaged_parameter_file(alias, parameters)
            assert path.name == f"{alias}_{mode}.asdf"
        assert packaged_parameter_file("calwebb_spec2_nod", parameters)[0].name == (
            "calwebb_spec2_nod.asdf"
        )


def test_every_selected_file_exists():
    for _, mode in SELECTION:
        for alias in ("nod_diff", "trace_fit", "rectify", "optimal_extract_1d"):
            assert (packaged_directory() / f"{alias}_{mode}.asdf").is_file()
        for alias in ("nodcombine", "calwebb_spec3_nod"):
            assert (packaged_directory() / f"{alias}_{mode}.asdf").is_file()


def test_packaged_file_then_user_file_then_keywords(mode_inputs, tmp_path, caplog):
    """stpipe's precedence: packaged < a pars file the user passes < keyword parameters."""
    from nodcombine import RectifyStep

    asn = str(mode_inputs["nrs_msa_g395m"])
    with caplog.at_level(logging.INFO, logger="nodcombine"):
        config, _ = RectifyStep.build_config(asn)
    assert config["linear_grid"] == "yes"  # the grating file; the spec default is 'auto'
    assert "packaged parameters rectify_nrs_msaspec_grating.asdf" in caplog.text

    user = tmp_path / "my_rectify.asdf"
    assert cli.main(["copy-pars", "rectify", "--for", asn, str(user)]) == 0
    text = user.read_text().replace("linear_grid: 'yes'", "linear_grid: 'no'")
    assert "linear_grid: 'no'" in text
    user.write_text(text)
    config, _ = RectifyStep.build_config(asn, config_file=str(user))
    assert config["linear_grid"] == "no"
    config, _ = RectifyStep.build_config(asn, config_file=str(user), linear_grid="auto")
    assert config["linear_grid"] == "auto"


def test_a_mode_without_a_row_keeps_the_spec_defaults(caplog):
    from nodcombine import RectifyStep

    parameters = {"meta.instrument.name": "NIRSPEC", "meta.exposure.type": "NRS_IFU"}
    assert select_mode(parameters) is None
    with caplog.at_level(logging.INFO, logger="nodcombine"):
        config = RectifyStep.get_config_from_reference(parameters, crds_observatory="jwst")
    assert "linear_grid" not in config
    assert "no packaged parameter file" in caplog.text


def test_misspelt_key_in_a_user_file_is_refused_naming_it(visit, tmp_path):
    user = tmp_path / "typo.asdf"
    assert cli.main(["copy-pars", "trace_fit", "--for", str(visit), str(user)]) == 0
    user.write_text(user.read_text().replace("min_snr:", "min_snrr:"))
    completed = subprocess.run(
        [str(STRUN), str(user), str(visit), f"--output_dir={tmp_path}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 2
    assert "REFUSED trace_fit: Extra value 'min_snrr'" in completed.stderr + completed.stdout


def test_command_shows_the_selection(visit, capsys):
    assert cli.main(["pars", str(visit)]) == 0
    shown = capsys.readouterr().out
    assert "EXP_TYPE=NRS_MSASPEC" in shown
    assert "calwebb_spec3_nod_nrs_msaspec_prism.asdf" in shown


def test_command_is_installed_and_converts_extract1d_references(tmp_path):
    reference = REPO.parent / "shared" / "data" / "extract1d_refs" / "jwst_miri_extract1d_0005.json"
    output = _run(
        [NODCOMBINE, "extract1d", reference, "MIR_LRS-FIXEDSLIT", tmp_path / "box.asdf"], tmp_path
    )
    assert (tmp_path / "box.asdf").is_file(), output
    with asdf.open(tmp_path / "box.asdf") as af:
        assert af.tree["parameters"]["extraction_type"] == "box"


def test_copy_pars_never_overwrites(tmp_path, capsys):
    target = tmp_path / "exists.asdf"
    target.write_text("mine")
    assert cli.main(["copy-pars", "nod_diff", "--mode", "miri_lrs", str(target)]) == 2
    assert target.read_text() == "mine"


def test_a_source_of_another_mode_gets_its_own_packaged_values():
    """A visit mixing modes: each source as if reduced alone, values the user set kept."""
    from nodcombine.parrefs import mode_differences, packaged_values

    mos = packaged_values("nod_diff", "nrs_msaspec_prism")
    changes = mode_differences("nod_diff", "nrs_msaspec_prism", "miri_lrs", mos)
    assert changes == {
        "edge_pixels": 2,
        "min_bar": 0.0,
        "stuck_threshold": 0.0,
        "failed_open_dilation": 0,
    }
    user = {**mos, "edge_pixels": 3}
    assert "edge_pixels" not in mode_differences("nod_diff", "nrs_msaspec_prism", "miri_lrs", user)
    assert mode_differences("nod_diff", "miri_lrs", "miri_lrs", mos) == {}
    assert mode_differences(
        "rectify", "nrs_msaspec_grating", "miri_lrs", {"linear_grid": "yes"}
    ) == {"linear_grid": "no"}


def test_an_override_without_an_aperture_is_refused_before_any_work(visit, tmp_path, caplog):
    from nodcombine import NodCombinePipeline
    from nodcombine.errors import RefusedError

    reference = REPO.parent / "shared" / "data" / "extract1d_refs" / "jwst_miri_extract1d_0005.json"
    steps = {"optimal_extract_1d": {"override_extract1d": str(reference)}}
    with (
        caplog.at_level(logging.INFO, logger="nodcombine"),
        pytest.raises(RefusedError, match="no aperture for"),
    ):
        NodCombinePipeline.call(str(visit), output_dir=str(tmp_path), steps=steps)
    assert "Step nodcombine running" in caplog.text  # the log is captured
    assert "Step nod_diff running" not in caplog.text  # but no step ran


def test_command_errors_are_one_line_and_status_2(tmp_path, capsys):
    assert cli.main(["pars", str(tmp_path / "missing_cal.fits")]) == 2
    assert "no such file" in capsys.readouterr().err
    completed = subprocess.run(
        [str(NODCOMBINE), "extract1d", "missing.json", "X", str(tmp_path / "out.asdf")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "missing.json: not a readable JSON extract1d reference" in completed.stderr


def test_override_products_are_box_products_beside_the_optimal_ones(visit, tmp_path):
    """An override_extract1d reference extracts a box: its products say so in their names."""
    import json

    from nodcombine import NodCombinePipeline

    reference = tmp_path / "nrs_box.json"
    aperture = {"id": "NRS_MSASPEC", "region_type": "target", "dispaxis": 1, "extract_width": 5}
    reference.write_text(json.dumps({"apertures": [aperture]}))
    steps = {"optimal_extract_1d": {"override_extract1d": str(reference)}}
    NodCombinePipeline.call(str(visit), output_dir=str(tmp_path), save_results=True, steps=steps)
    assert len(list(tmp_path.glob("*_s?????????_box_x1d.fits"))) == 2
    assert not list(tmp_path.glob("*_s?????????_x1d.fits"))
    assert list(tmp_path.glob("*_box_visit.json"))


def test_spec3_nod_refuses_an_association_without_science_members(visit, tmp_path):
    import json

    from nodcombine.errors import RefusedError
    from nodcombine.pipelines import Spec3NodPipeline

    table = json.loads(Path(visit).read_text())
    for member in table["products"][0]["members"]:
        member["exptype"] = "background"
    asn = Path(visit).with_name("background_only_asn.json")
    asn.write_text(json.dumps(table))
    with pytest.raises(RefusedError, match="no science member"):
        Spec3NodPipeline.call(str(asn), output_dir=str(tmp_path), save_results=True)


def test_selection_reads_only_its_keys_from_a_dict(caplog):
    from nodcombine import RectifyStep

    association = {"asn_id": "o001", "products": []}
    assert selection_parameters(association) == {}
    with caplog.at_level(logging.INFO, logger="nodcombine"):
        RectifyStep.get_config_from_reference(association, crds_observatory="jwst")
    assert "no packaged parameter file for this input" in caplog.text


def test_spec2_nod_prefetches_with_the_full_metadata(tmp_path):
    """Reference files need every CRDS selector, not the four of the packaged selection."""
    from nodcombine.pipelines import Spec2NodPipeline
    from nodcombine.pipelines.spec3_nod import Spec3NodPipeline

    path = _rate_like(tmp_path)
    full, _ = Spec2NodPipeline._get_crds_parameters(str(path))
    assert {"meta.instrument.detector", "meta.observation.date"} <= set(full)
    cheap, _ = Spec3NodPipeline._get_crds_parameters(str(path))
    assert set(cheap) <= {
        "meta.instrument.name",
        "meta.exposure.type",
        "meta.instrument.grating",
        "meta.instrument.filter",
    }
