"""Write the ASDF parameter files in ``config/`` (they stand in for CRDS ``pars-*`` files).

Run from the repository root: ``python scripts/make_configs.py``.  One file per
step and observing mode, and one per pipeline and mode; every parameter of a
step's ``spec`` is written, with its default from the spec itself (so each
default has one home: the step) unless a mode overrides it below.
``tests/test_infrastructure.py`` checks that the committed files match what
this script writes.
"""

from pathlib import Path

import asdf
from configobj import ConfigObj

import nodcombine
from nodcombine.parfiles import parameter_tree

__all__ = ["CONFIGS", "config_tree", "main", "pipeline_tree", "spec_defaults"]

_MODES = {
    "nrs_msaspec": ("NIRSPEC", "NRS_MSASPEC"),
    "nrs_fixedslit": ("NIRSPEC", "NRS_FIXEDSLIT"),
    "miri_lrs": ("MIRI", "MIR_LRS-FIXEDSLIT"),
}

#: the steps, in pipeline order: class name -> alias
_STEPS = {
    "NodDiffStep": "nod_diff",
    "TraceFitStep": "trace_fit",
    "RectifyStep": "rectify",
    "OptimalExtract1dStep": "optimal_extract_1d",
}

#: per step and mode, the parameters that differ from the step's defaults, and why
_OVERRIDES = {
    # fixed slits and the MIRI LRS slit have no bars, no shutters to fail open
    # or stick; MIRI's wider PSF needs a wider edge margin
    ("nod_diff", "nrs_fixedslit"): {
        "min_bar": 0.0,
        "stuck_threshold": 0.0,
        "failed_open_dilation": 0,
    },
    ("nod_diff", "miri_lrs"): {
        "min_bar": 0.0,
        "stuck_threshold": 0.0,
        "failed_open_dilation": 0,
        "edge_pixels": 2,
    },
    # a fixed slit is 3.3" (S200A) long: allow larger pointing offsets and sources
    ("trace_fit", "nrs_fixedslit"): {"max_offset": 5.0, "max_source_sigma": 12.0},
    # MIRI pixels are 0.11" and the PSF is wider: same offsets in pixels, wider sources
    ("trace_fit", "miri_lrs"): {"max_source_sigma": 10.0},
}

#: parameters that belong to one run, not to a mode
_NOT_WRITTEN = {"output_use_model", "save_diagnostics"}


def spec_defaults(step_class):
    """The parameters a step's own ``spec`` declares, with their defaults (None left out)."""
    cls = getattr(nodcombine, step_class)
    step = cls()
    names = ConfigObj(cls.spec.splitlines(), list_values=False).keys()
    values = {name: getattr(step, name) for name in names if name not in _NOT_WRITTEN}
    return {name: value for name, value in values.items() if value is not None}


#: (step class, step name, mode) -> parameters
CONFIGS = {
    (step_class, step_name, mode): spec_defaults(step_class) | _OVERRIDES.get((step_name, mode), {})
    for step_class, step_name in _STEPS.items()
    for mode in _MODES
}


def config_tree(step_class, step_name, mode, parameters):
    """The ASDF tree of one parameter file."""
    instrument, exp_type = _MODES[mode]
    return parameter_tree(
        step_class,
        step_name,
        parameters,
        instrument=instrument,
        exp_type=exp_type,
        description=(
            f"{step_name} parameters for {exp_type}; stands in for a CRDS "
            f"pars-{step_class.lower()} file"
        ),
    )


def pipeline_tree(mode):
    """The ASDF tree of the ``nodcombine`` pipeline for one mode: its steps' files inline."""
    tree = config_tree(
        "NodCombinePipeline", "nodcombine", mode, spec_defaults("NodCombinePipeline")
    )
    tree["steps"] = [
        config_tree(step_class, step_name, mode, parameters)
        for (step_class, step_name, step_mode), parameters in CONFIGS.items()
        if step_mode == mode
    ]
    for step in tree["steps"]:
        del step["meta"]
    return tree


def main(directory="config"):
    """Write every parameter file into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for (step_class, step_name, mode), parameters in CONFIGS.items():
        tree = config_tree(step_class, step_name, mode, parameters)
        asdf.AsdfFile(tree).write_to(directory / f"{step_name}_{mode}.asdf")
    for mode in _MODES:
        asdf.AsdfFile(pipeline_tree(mode)).write_to(directory / f"nodcombine_{mode}.asdf")


if __name__ == "__main__":
    main()
