"""Entry point for stpipe: the steps and pipelines this package provides.

This module must import nothing: ``stpipe list`` and ``strun`` read it for every
installed plugin, and importing jwst here would slow every command line call.
"""

__all__ = ["get_steps"]


def get_steps():
    """Return the stpipe steps and pipelines of nodcombine.

    Returns
    -------
    list of tuple of (str, str, bool)
        Fully qualified class name, alias used by ``strun``, and whether the
        class is a pipeline.
    """
    return [
        ("nodcombine.nod_diff.NodDiffStep", "nod_diff", False),
        ("nodcombine.trace_fit.TraceFitStep", "trace_fit", False),
        ("nodcombine.rectify.RectifyStep", "rectify", False),
        ("nodcombine.extract_1d.OptimalExtract1dStep", "optimal_extract_1d", False),
        ("nodcombine.pipelines.NodCombinePipeline", "nodcombine", True),
        ("nodcombine.pipelines.Spec3NodPipeline", "calwebb_spec3_nod", True),
        ("nodcombine.pipelines.Spec2NodPipeline", "calwebb_spec2_nod", True),
    ]
