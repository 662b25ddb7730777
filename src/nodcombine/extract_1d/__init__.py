"""Optimal (Horne) and box extraction of rectified spectra: the ``extract_1d`` step.

``step.py`` holds the Step, ``io.py`` its adapter (datamodels in, kernel
inputs out, and back); every other module is a pure numpy/scipy kernel.
"""

from nodcombine import lazy_attributes

__all__ = ["OptimalExtract1dStep"]

__getattr__ = lazy_attributes(__name__, {"OptimalExtract1dStep": "nodcombine.extract_1d.step"})
