"""The variance components that travel separately through every step.

jwst keeps the Poisson, read-noise and flat-field variances apart from
``_cal`` to ``_x1d`` (``var_poisson``, ``var_rnoise``, ``var_flat``); so do the
kernels here, so that each output variance column is the propagation of its
own input component and their sum is the total.
"""

__all__ = ["VARIANCE_COMPONENTS"]

VARIANCE_COMPONENTS = ("var_poisson", "var_rnoise", "var_flat")
