"""The stpipe steps of nodcombine."""

from nodcombine.steps.nod_diff_step import NodDiffStep

__all__ = ["NodDiffStep"]
