"""Nearest-bin rectification of the nod differences: the ``rectify`` step.

``step.py`` holds the Step, ``io.py`` its adapter (datamodels in, kernel
inputs out, and back); every other module is a pure numpy/scipy kernel.
"""

from nodcombine import lazy_attributes

__all__ = ["RectifyStep"]

__getattr__ = lazy_attributes(__name__, {"RectifyStep": "nodcombine.rectify.step"})
