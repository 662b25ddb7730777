"""Nod differencing of the exposures of a nod pattern: the ``nod_diff`` step.

``step.py`` holds the Step, ``io.py`` its adapter (datamodels in, kernel
inputs out, and back); every other module is a pure numpy/scipy kernel.
"""

__all__ = ["NodDiffStep"]


def __getattr__(name):
    # the Step imports jwst, which is slow: the kernels load without it
    if name == "NodDiffStep":
        from nodcombine.nod_diff.step import NodDiffStep

        return NodDiffStep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
