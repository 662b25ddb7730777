"""The stpipe steps of nodcombine."""

from nodcombine.steps.nod_diff_step import NodDiffStep
from nodcombine.steps.optimal_extract_1d_step import OptimalExtract1dStep
from nodcombine.steps.rectify_step import RectifyStep
from nodcombine.steps.trace_fit_step import TraceFitStep

__all__ = ["NodDiffStep", "OptimalExtract1dStep", "RectifyStep", "TraceFitStep"]
