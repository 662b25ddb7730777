"""Nod differencing of the exposures of a nod pattern: the ``nod_diff`` step.

``step.py`` holds the Step, ``io.py`` its adapter (datamodels in, kernel
inputs out, and back); every other module is a pure numpy/scipy kernel.
"""

from nodcombine import lazy_attributes

__all__ = ["NodDiffStep"]

__getattr__ = lazy_attributes(__name__, {"NodDiffStep": "nodcombine.nod_diff.step"})
