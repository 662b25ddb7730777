"""Optimal (Horne) and box extraction of rectified spectra: the ``extract_1d`` step.

``step.py`` holds the Step, ``io.py`` its adapter (datamodels in, kernel
inputs out, and back); every other module is a pure numpy/scipy kernel.
"""

__all__ = ["OptimalExtract1dStep"]


def __getattr__(name):
    # the Step imports jwst, which is slow: the kernels load without it
    if name == "OptimalExtract1dStep":
        from nodcombine.extract_1d.step import OptimalExtract1dStep

        return OptimalExtract1dStep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
