"""The layers hold: thin steps, one adapter per step, pure kernels, one home for every key."""

import ast
import re
from pathlib import Path

import pytest
from stdatamodels.jwst import datamodels

import nodcombine

PACKAGE = Path(nodcombine.__file__).parent
STEP_FOLDERS = ("nod_diff", "trace_fit", "rectify", "extract_1d")
#: shared modules that are kernels too: numpy/scipy only
SHARED_KERNELS = ("contract.py", "errors.py", "variances.py", "profile.py", "psf.py", "pathloss.py")
#: shared adapter homes (datamodels in, arrays out), used by several steps' adapters
SHARED_ADAPTERS = ("visit", "cutouts", "slitwcs", "nodsource", "modelio", "inputchecks")
PIPELINE_PACKAGES = {"jwst", "stdatamodels", "stpipe", "matplotlib", "astropy", "gwcs", "asdf"}


def _modules():
    return [p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]


def _kernel_modules():
    kernels = [PACKAGE / name for name in SHARED_KERNELS]
    for folder in STEP_FOLDERS:
        kernels += [
            p
            for p in (PACKAGE / folder).glob("*.py")
            if p.name not in ("step.py", "io.py", "__init__.py")
        ]
    return kernels


def _imports(path):
    """Every module a file imports (absolute names)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _rel(path):
    return path.relative_to(PACKAGE).as_posix()


def test_the_layout_shows_the_four_steps_and_the_shared_homes():
    listing = {p.name for p in PACKAGE.iterdir() if not p.name.startswith("__")}
    for folder in STEP_FOLDERS:
        assert {"step.py", "io.py", "__init__.py"} <= {p.name for p in (PACKAGE / folder).iterdir()}
    assert {*STEP_FOLDERS, "contract.py", "pipelines", "simulate"} <= listing


@pytest.mark.parametrize("path", _kernel_modules(), ids=_rel)
def test_kernels_are_pure(path):
    """No pipeline package, no adapter or step, no I/O or global state in a kernel."""
    imported = _imports(path)
    top = {name.split(".")[0] for name in imported}
    assert not top & PIPELINE_PACKAGES, top & PIPELINE_PACKAGES
    own = {name for name in imported if name.startswith("nodcombine.")}
    adapters = {
        name
        for name in own
        if name.split(".")[-1] in ("io", "step", *SHARED_ADAPTERS)
        or any(f".{a}" in name for a in ("io.", "step."))
    }
    assert not adapters, adapters
    tree = ast.parse(path.read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global)]
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and hasattr(n.func, "id")}
    assert "open" not in calls


def test_every_kernel_module_is_covered():
    # a new kernel module in a step folder is picked up by the test above, not forgotten
    covered = {_rel(p) for p in _kernel_modules()}
    for folder in STEP_FOLDERS:
        for path in (PACKAGE / folder).glob("*.py"):
            if path.name not in ("step.py", "io.py", "__init__.py"):
                assert _rel(path) in covered


@pytest.mark.parametrize("folder", STEP_FOLDERS)
def test_steps_are_thin(folder):
    step = PACKAGE / folder / "step.py"
    assert len(step.read_text().splitlines()) <= 150
    # no array arithmetic: a step never calls numpy beyond summarising for the log
    source = step.read_text()
    assert not re.search(r"np\.(where|sum|clip|sqrt|interp|zeros|full|stack)\(", source)


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_modules_are_small(path):
    assert len(path.read_text().splitlines()) <= 400


@pytest.mark.parametrize("folder", STEP_FOLDERS)
def test_an_adapter_imports_no_other_steps_adapter(folder):
    imported = _imports(PACKAGE / folder / "io.py")
    others = {
        name
        for name in imported
        for other in STEP_FOLDERS
        if other != folder and name.startswith(f"nodcombine.{other}.io")
    }
    assert not others


def _contract_keys():
    """The tree keys `nodcombine.contract` owns (its private ``_KEY = "..."`` constants)."""
    tree = ast.parse((PACKAGE / "contract.py").read_text())
    keys = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id.startswith("_"):
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                keys.add(value.value)
            elif isinstance(value, ast.DictComp):
                keys |= {f"nod_ref_{c}" for c in ("var_poisson", "var_rnoise", "var_flat")}
    return keys


def _schema_keys():
    """Every property name in the schemas of the products the package reads and writes."""
    names = set()

    def walk(node):
        if isinstance(node, dict):
            names.update(node.get("properties", {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for model in (datamodels.MultiSlitModel(), datamodels.MultiSpecModel()):
        walk(model.schema)
    return names


def test_inter_step_keys_are_spelled_only_in_the_contract():
    keys = _contract_keys()
    assert {"nod_diff_status", "trace_fit_record", "rectified_profile", "extract_1d_extras"} <= keys
    schema = _schema_keys()
    for path in _modules():
        if path.name == "contract.py":
            continue
        tree = ast.parse(path.read_text())
        literals = {
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        assert not literals & keys, (_rel(path), literals & keys)
        # a string used as a key of a datamodel's tree must be a jwst schema key
        for node in ast.walk(tree):
            key = _instance_key(node)
            if key is not None:
                assert key in schema, (_rel(path), key)


def _instance_key(node):
    """The string literal of ``x.instance[...]``/``x.instance.get(...)``, or None."""
    if isinstance(node, ast.Subscript) and getattr(node.value, "attr", None) == "instance":
        index = node.slice
    elif (
        isinstance(node, ast.Call)
        and getattr(node.func, "attr", None) in ("get", "setdefault", "pop")
        and getattr(node.func.value, "attr", None) == "instance"
        and node.args
    ):
        index = node.args[0]
    else:
        return None
    if isinstance(index, ast.Constant) and isinstance(index.value, str):
        return index.value
    return None


def test_no_module_level_caches_or_backend_switches():
    for path in _modules():
        source = path.read_text()
        assert "WeakKeyDictionary" not in source, _rel(path)
        assert "matplotlib.use(" not in source, _rel(path)
