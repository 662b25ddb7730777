"""Nearest-bin rectification of the nod differences: the ``rectify`` step.

``step.py`` holds the Step, ``io.py`` its adapter (datamodels in, kernel
inputs out, and back); every other module is a pure numpy/scipy kernel.
"""

__all__ = ["RectifyStep"]


def __getattr__(name):
    # the Step imports jwst, which is slow: the kernels load without it
    if name == "RectifyStep":
        from nodcombine.rectify.step import RectifyStep

        return RectifyStep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
