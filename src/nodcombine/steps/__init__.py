"""The stpipe steps of nodcombine."""

from nodcombine.steps.nod_diff_step import NodDiffStep
from nodcombine.steps.trace_fit_step import TraceFitStep

__all__ = ["NodDiffStep", "TraceFitStep"]
