"""Write the ASDF parameter files in ``config/`` (they stand in for CRDS ``pars-*`` files).

Run from the repository root: ``python scripts/make_configs.py``.  One file per
step and observing mode; ``tests/test_infrastructure.py`` checks that the
committed files match what this script writes.
"""

from pathlib import Path

import asdf

from nodcombine.parfiles import parameter_tree

__all__ = ["CONFIGS", "config_tree", "main", "pipeline_tree"]

_MODES = {
    "nrs_msaspec": ("NIRSPEC", "NRS_MSASPEC"),
    "nrs_fixedslit": ("NIRSPEC", "NRS_FIXEDSLIT"),
    "miri_lrs": ("MIRI", "MIR_LRS-FIXEDSLIT"),
}

_NOD_DIFF_COMMON = {
    "position_key": "auto",
    "position_tolerance": 0.1,
    "n_sigma_outlier": 5.0,
    "outlier_model_fraction": 0.3,
    "outlier_iterations": 3,
}
_TRACE_FIT_COMMON = {
    "min_snr": 10.0,
    "width_snr": 20.0,
    "degree_snr": [40.0, 80.0],
    "centre_prior": 1.5,
    "shape_prior": 0.5,
    "huber_scale": 2.0,
    "clip_sigma": 5.0,
    "fit_iterations": 3,
    "force_profile": True,
}

#: (step class, step name, mode) -> parameters
CONFIGS = {
    ("NodDiffStep", "nod_diff", "nrs_msaspec"): _NOD_DIFF_COMMON
    | {"min_bar": 0.4, "stuck_threshold": 0.3, "failed_open_dilation": 1, "edge_pixels": 1},
    ("NodDiffStep", "nod_diff", "nrs_fixedslit"): _NOD_DIFF_COMMON
    | {"min_bar": 0.0, "stuck_threshold": 0.0, "failed_open_dilation": 0, "edge_pixels": 1},
    ("NodDiffStep", "nod_diff", "miri_lrs"): _NOD_DIFF_COMMON
    | {"min_bar": 0.0, "stuck_threshold": 0.0, "failed_open_dilation": 0, "edge_pixels": 2},
    # an MOS source sits within its 0.46" shutter: offsets beyond 3 px are not credible
    ("TraceFitStep", "trace_fit", "nrs_msaspec"): _TRACE_FIT_COMMON
    | {"max_offset": 3.0, "max_source_sigma": 8.0},
    # a fixed slit is 3.3" (S200A) long: allow larger pointing offsets and sources
    ("TraceFitStep", "trace_fit", "nrs_fixedslit"): _TRACE_FIT_COMMON
    | {"max_offset": 5.0, "max_source_sigma": 12.0},
    # MIRI pixels are 0.11" and the PSF is wider: same offsets in pixels
    ("TraceFitStep", "trace_fit", "miri_lrs"): _TRACE_FIT_COMMON
    | {"max_offset": 3.0, "max_source_sigma": 10.0},
}
for _mode in _MODES:
    CONFIGS[("RectifyStep", "rectify", _mode)] = {"weight_type": "ivm", "linear_grid": "auto"}
    CONFIGS[("OptimalExtract1dStep", "optimal_extract_1d", _mode)] = {
        "apply_pathloss": True,
        "clip_sigma": 5.0,
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
    tree = config_tree("NodCombinePipeline", "nodcombine", mode, {"save_sources": True})
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
