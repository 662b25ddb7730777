"""Plugin plumbing: entry points, strun, ASDF parameter files, offline operation."""

import ast
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import asdf
import pytest

import nodcombine
from nodcombine import integration
from nodcombine.simulate import simulate_nodded_visit, write_association, write_visit

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "config").glob("*.asdf"))
STRUN = Path(sys.executable).with_name("strun")
STPIPE = Path(sys.executable).with_name("stpipe")


def test_entry_point_lists_every_step():
    (entry,) = [e for e in entry_points(group="stpipe.steps") if e.name == "nodcombine"]
    registered = {path.rsplit(".", 1)[1] for path, _, _ in entry.load()()}
    assert registered == {name for name in nodcombine.__all__ if name != "__version__"}


def test_integration_module_imports_nothing():
    tree = ast.parse(Path(integration.__file__).read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


def test_aliases_do_not_collide_with_jwst():
    jwst_aliases = {
        alias for _, alias, _ in __import__("jwst.stpipe.integration", fromlist=["x"]).get_steps()
    }
    ours = {alias for _, alias, _ in integration.get_steps()}
    assert not ours & jwst_aliases


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_files_load_with_known_keys_only(path):
    from stpipe import Step

    with asdf.open(path) as af:
        params = dict(af.tree["parameters"])
        cls = af.tree["class"]
    step = Step.from_config_file(str(path))
    assert f"{type(step).__module__}.{type(step).__name__}".endswith(cls.rsplit(".", 1)[1])
    spec_keys = set(type(step).load_spec_file().keys())
    assert set(params) <= spec_keys
    for key, value in params.items():
        assert getattr(step, key) == value


def test_unknown_key_in_config_is_an_error(tmp_path):
    from stpipe import Step

    text = (
        (REPO / "config" / "nod_diff_nrs_msaspec_prism.asdf")
        .read_text()
        .replace("min_bar: 0.4,", "min_bar: 0.4, min_barr: 0.5,")
    )
    assert "min_barr" in text
    bad = tmp_path / "bad.asdf"
    bad.write_text(text)
    with pytest.raises(Exception, match="min_barr"):
        Step.from_config_file(str(bad))


@pytest.fixture(scope="module")
def small_visit(tmp_path_factory):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_slits=2, n_points=2, seed=3)
    asn, _ = write_visit(models, tmp_path_factory.mktemp("cli"))
    return asn


def _run(args, cwd):
    env = dict(os.environ)
    completed = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout + completed.stderr


def test_stpipe_list_finds_our_steps(tmp_path):
    output = _run([str(STPIPE), "list", "nodcombine.*"], tmp_path)
    assert "nodcombine.nod_diff.NodDiffStep (nod_diff)" in output
    assert "nodcombine.trace_fit.TraceFitStep (trace_fit)" in output
    assert "nodcombine.rectify.RectifyStep (rectify)" in output
    assert "nodcombine.extract_1d.OptimalExtract1dStep (optimal_extract_1d)" in output
    assert "nodcombine.pipelines.NodCombinePipeline (nodcombine)" in output


def test_config_files_are_what_the_generator_writes(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import make_configs
    finally:
        sys.path.pop(0)
    make_configs.main(tmp_path)
    written = sorted(p.name for p in tmp_path.glob("*.asdf"))
    assert written == [p.name for p in CONFIGS]
    for path in CONFIGS:
        with asdf.open(path) as committed, asdf.open(tmp_path / path.name) as fresh:
            assert committed.tree["class"] == fresh.tree["class"]
            assert dict(committed.tree["parameters"]) == dict(fresh.tree["parameters"])


def test_strun_by_alias_with_parameter(small_visit, tmp_path):
    output = _run(
        [
            str(STRUN),
            "nod_diff",
            str(small_visit),
            "--n_sigma_outlier=6",
            f"--output_dir={tmp_path}",
        ],
        tmp_path,
    )
    assert "n_sigma_outlier: 6.0" in output
    assert len(list(tmp_path.glob("*_nod.fits"))) == 2


def test_strun_with_asdf_parameter_file(small_visit, tmp_path):
    config = REPO / "config" / "nod_diff_nrs_msaspec_prism.asdf"
    output = _run([str(STRUN), str(config), str(small_visit), f"--output_dir={tmp_path}"], tmp_path)
    assert "nod_diff: 2 of 2 sources differenced" in output
    assert len(list(tmp_path.glob("*_nod.fits"))) == 2


def test_strun_by_class_path(small_visit, tmp_path):
    _run(
        [
            str(STRUN),
            "nodcombine.nod_diff.NodDiffStep",
            str(small_visit),
            f"--output_dir={tmp_path}",
        ],
        tmp_path,
    )
    assert len(list(tmp_path.glob("*_nod.fits"))) == 2


def test_every_module_has_all():
    for path in (REPO / "src" / "nodcombine").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {
            t.id
            for n in tree.body
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        assert "__all__" in names, path


def test_strun_trace_fit_on_nod_products(small_visit, tmp_path):
    _run([str(STRUN), "nod_diff", str(small_visit), f"--output_dir={tmp_path}"], tmp_path)
    nod_asn = write_association(sorted(tmp_path.glob("*_nod.fits")), tmp_path / "nod_asn.json")
    config = REPO / "config" / "trace_fit_nrs_msaspec_prism.asdf"
    output = _run(
        [str(STRUN), str(config), str(nod_asn), "--min_snr=12", f"--output_dir={tmp_path}"],
        tmp_path,
    )
    assert "min_snr: 12.0" in output
    assert "trace_fit: 2 of 2 sources fitted" in output
    assert len(list(tmp_path.glob("*_trace.fits"))) == 2


def test_strun_nodcombine_pipeline_with_config_and_step_parameter(small_visit, tmp_path):
    config = REPO / "config" / "nodcombine_nrs_msaspec_prism.asdf"
    output = _run(
        [
            str(STRUN),
            str(config),
            str(small_visit),
            "--steps.optimal_extract_1d.apply_pathloss=False",
            "--steps.rectify.weight_type=exptime",
            f"--output_dir={tmp_path}",
        ],
        tmp_path,
    )
    assert "apply_pathloss: False" in output
    assert "weight_type: exptime" in output
    assert "optimal_extract_1d: 2 of 2 slits extracted" in output
    assert len(list(tmp_path.glob("*_s?????????_s2d.fits"))) == 2
    assert len(list(tmp_path.glob("*_s?????????_x1d.fits"))) == 2


def test_pipeline_freezes_pre_existing_objects_only_for_its_run():
    import gc

    from nodcombine.pipelines.nodcombine_pipeline import _imports_frozen

    assert gc.get_freeze_count() == 0
    with _imports_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), _imports_frozen():
        raise RuntimeError("a failing step")
    assert gc.get_freeze_count() == 0
    # a caller's own freeze is neither repeated nor undone
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with _imports_frozen():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def _documented_offline_lines():
    """The ``eval`` lines of the offline recipe, as README.md and docs/offline.md give them."""
    lines = set()
    for doc in (REPO / "README.md", REPO / "docs" / "offline.md"):
        found = [
            line.split("#")[0].strip()
            for line in doc.read_text().splitlines()
            if line.startswith('eval "$(')
        ]
        assert found, doc
        lines.update(found)
    return sorted(lines)


@pytest.mark.parametrize("recipe", _documented_offline_lines())
def test_documented_offline_recipe_runs_the_pipeline(recipe, small_visit, tmp_path):
    """The docs' line verbatim, in a shell with no CRDS variable set and HOME in tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRDS_", "STPIPE_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp_path)
    script = f"{recipe} && strun nodcombine {small_visit} --output_dir={tmp_path / 'out'}"
    completed = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert len(list((tmp_path / "out").glob("*_s?????????_x1d.fits"))) == 2
    assert list(tmp_path.glob("*/config/jwst/server_config"))
