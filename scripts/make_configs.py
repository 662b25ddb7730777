"""Write the packaged ASDF parameter files (they stand in for CRDS ``pars-*`` files).

Run from the repository root: ``python scripts/make_configs.py``; the files go
to ``src/nodcombine/config/`` (``config/`` links there).  One file per step and
observing mode (the modes of `nodcombine.parrefs.SELECTION`), one per pipeline
and mode, and one ``calwebb_spec2_nod.asdf``.  Every parameter of this
package's steps is written, with its default from the spec itself (so each
default has one home: the step) unless a mode overrides it below; of the stock
jwst steps in ``calwebb_spec3_nod``/``calwebb_spec2_nod`` only what differs
from jwst's defaults is written, so that jwst's own defaults are not pinned.
``tests/test_infrastructure.py`` checks that the committed files match what
this script writes.
"""

from pathlib import Path

import asdf
from configobj import ConfigObj

import nodcombine
from nodcombine.parfiles import parameter_tree
from nodcombine.parrefs import packaged_directory

__all__ = ["CONFIGS", "config_tree", "main", "pipeline_tree", "spec_defaults"]

#: mode -> (instrument, exposure type, what the file is for)
_MODES = {
    "nrs_msaspec_prism": ("NIRSPEC", "NRS_MSASPEC", "NRS_MSASPEC with the PRISM"),
    "nrs_msaspec_grating": ("NIRSPEC", "NRS_MSASPEC", "NRS_MSASPEC with the gratings"),
    "nrs_fixedslit": ("NIRSPEC", "NRS_FIXEDSLIT", "NRS_FIXEDSLIT"),
    "miri_lrs": ("MIRI", "MIR_LRS-FIXEDSLIT", "MIR_LRS-FIXEDSLIT"),
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
    # the gratings' dispersion is close to linear: a linear grid keeps the bins
    # independent at no cost; the prisms' native sampling is not linear at all
    ("rectify", "nrs_msaspec_prism"): {"linear_grid": "no"},
    ("rectify", "nrs_msaspec_grating"): {"linear_grid": "yes"},
    ("rectify", "miri_lrs"): {"linear_grid": "no"},
}

#: stock jwst steps of the nod pipelines: what differs from jwst's defaults, and why
_STOCK = {
    "Spec3NodPipeline": {
        # nod_diff rejects outliers across the exposures of each nod position
        "outlier_detection": ("jwst.outlier_detection.OutlierDetectionStep", {"skip": True}),
    },
    "Spec2NodPipeline": {
        # the nod differences remove the background: subtracting it here too would
        # subtract it twice (nod_diff refuses inputs with bkg_subtract COMPLETE)
        "bkg_subtract": ("jwst.background.BackgroundStep", {"skip": True}),
        "master_background_mos": (
            "jwst.master_background.MasterBackgroundMosStep",
            {"skip": True},
        ),
        # the path loss comes from the fitted profile in optimal_extract_1d
        "pathloss": ("jwst.pathloss.PathLossStep", {"skip": True}),
        # resampling and extraction happen in calwebb_spec3_nod, per source
        "resample_spec": ("jwst.resample.ResampleSpecStep", {"skip": True}),
        "extract_1d": ("jwst.extract_1d.Extract1dStep", {"skip": True}),
    },
}

#: parameters that belong to one run, not to a mode
_NOT_WRITTEN = {"output_use_model", "save_diagnostics", "save_plots"}


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
    """The ASDF tree of one parameter file (``mode`` None: every mode)."""
    instrument, exp_type, what = _MODES[mode] if mode else ("ANY", "ANY", "every nodded mode")
    return parameter_tree(
        step_class,
        step_name,
        parameters,
        instrument=instrument,
        exp_type=exp_type,
        description=(
            f"{step_name} parameters for {what}; stands in for a CRDS "
            f"pars-{step_class.lower()} file"
        ),
    )


def pipeline_tree(step_class, step_name, mode):
    """The ASDF tree of a pipeline for one mode: its steps' parameters inline.

    This package's steps get every parameter (`CONFIGS`), the stock jwst steps
    only what `_STOCK` sets.
    """
    tree = config_tree(step_class, step_name, mode, spec_defaults(step_class))
    steps = getattr(nodcombine, step_class).step_defs
    tree["steps"] = []
    for name in steps:
        if name in _STOCK.get(step_class, {}):
            stock_class, parameters = _STOCK[step_class][name]
            tree["steps"].append({"class": stock_class, "name": name, "parameters": parameters})
        elif (steps[name].__name__, name, mode) in CONFIGS:
            tree["steps"].append(
                {
                    "class": config_tree(steps[name].__name__, name, mode, {})["class"],
                    "name": name,
                    "parameters": CONFIGS[(steps[name].__name__, name, mode)],
                }
            )
    return tree


#: pipeline class -> (alias, whether it has one file per mode)
_PIPELINES = {
    "NodCombinePipeline": ("nodcombine", True),
    "Spec3NodPipeline": ("calwebb_spec3_nod", True),
    "Spec2NodPipeline": ("calwebb_spec2_nod", False),
}


def hooks_tree():
    """Stock ``calwebb_spec3`` with the nod chain as post-hooks (``docs/pipelines.md``).

    ``resample_spec`` and ``extract_1d`` are skipped and run the chain as their
    post-hooks; stpipe saves no result of a skipped step, so only stock
    spec3's own ``_cal`` and ``_c1d`` per source are written.  The steps that
    do not apply to slits are skipped so that nothing asks CRDS for their
    reference files before the run.
    """
    chain = {
        "resample_spec": [
            "nodcombine.nod_diff.NodDiffStep",
            "nodcombine.trace_fit.TraceFitStep",
            "nodcombine.rectify.RectifyStep",
        ],
        "extract_1d": ["nodcombine.extract_1d.OptimalExtract1dStep"],
    }
    skipped = {
        "outlier_detection": "jwst.outlier_detection.OutlierDetectionStep",
        "resample_spec": "jwst.resample.ResampleSpecStep",
        "extract_1d": "jwst.extract_1d.Extract1dStep",
        "cube_build": "jwst.cube_build.CubeBuildStep",
        "photom": "jwst.photom.PhotomStep",
        "spectral_leak": "jwst.spectral_leak.SpectralLeakStep",
    }
    tree = config_tree("Spec3NodPipeline", "calwebb_spec3", None, {})
    tree["class"] = "jwst.pipeline.Spec3Pipeline"
    tree["meta"]["reftype"] = "pars-spec3pipeline"
    tree["meta"]["description"] = (
        "stock calwebb_spec3 running the nodcombine chain as post-hooks of resample_spec "
        "and extract_1d; saves _cal and _c1d per source (calwebb_spec3_nod saves _s2d/_x1d too)"
    )
    tree["steps"] = [
        {
            "class": class_path,
            "name": name,
            "parameters": {"skip": True, **({"post_hooks": chain[name]} if name in chain else {})},
        }
        for name, class_path in skipped.items()
    ]
    return tree


def main(directory=None):
    """Write every parameter file into ``directory`` (default: the package's ``config``)."""
    directory = Path(directory) if directory else packaged_directory()
    directory.mkdir(parents=True, exist_ok=True)
    for (step_class, step_name, mode), parameters in CONFIGS.items():
        tree = config_tree(step_class, step_name, mode, parameters)
        asdf.AsdfFile(tree).write_to(directory / f"{step_name}_{mode}.asdf")
    for step_class, (alias, per_mode) in _PIPELINES.items():
        for mode in _MODES if per_mode else [None]:
            name = f"{alias}_{mode}.asdf" if mode else f"{alias}.asdf"
            asdf.AsdfFile(pipeline_tree(step_class, alias, mode)).write_to(directory / name)
    asdf.AsdfFile(hooks_tree()).write_to(directory / "calwebb_spec3_with_nod_hooks.asdf")


if __name__ == "__main__":
    main()
