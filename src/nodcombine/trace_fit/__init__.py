"""The spatial profile along the trace, fitted over all nod exposures: the ``trace_fit`` step.

``step.py`` holds the Step, ``io.py`` its adapter (datamodels in, kernel
inputs out, and back); every other module is a pure numpy/scipy kernel.
"""

from nodcombine import lazy_attributes

__all__ = ["TraceFitStep"]

__getattr__ = lazy_attributes(__name__, {"TraceFitStep": "nodcombine.trace_fit.step"})
