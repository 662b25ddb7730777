"""The spatial profile along the trace, fitted over all nod exposures: the ``trace_fit`` step.

``step.py`` holds the Step, ``io.py`` its adapter (datamodels in, kernel
inputs out, and back); every other module is a pure numpy/scipy kernel.
"""

__all__ = ["TraceFitStep"]


def __getattr__(name):
    # the Step imports jwst, which is slow: the kernels load without it
    if name == "TraceFitStep":
        from nodcombine.trace_fit.step import TraceFitStep

        return TraceFitStep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
