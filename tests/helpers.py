"""Shared test helpers: pull arrays out of simulated models in kernel orientation."""

import numpy as np

from nodcombine.noddiff import VARIANCE_COMPONENTS

__all__ = ["kernel_arrays", "normalised_differences"]


def _slit(model, k):
    return model.slits[k] if hasattr(model, "slits") else model


def kernel_arrays(models, k=0):
    """(data, variances, dq) of slit ``k`` of each exposure, (n_exp, spatial, dispersion)."""
    vertical = getattr(getattr(models[0].meta, "wcsinfo", None), "dispersion_direction", 1) == 2

    def stack(name):
        arrays = [np.asarray(getattr(_slit(m, k), name), dtype=float) for m in models]
        return np.stack([a.T for a in arrays] if vertical else arrays)

    return stack("data"), {c: stack(c) for c in VARIANCE_COMPONENTS}, stack("dq").astype(np.uint32)


def normalised_differences(result):
    """Valid differences divided by their propagated error."""
    error = np.sqrt(sum(result.variances.values()))
    z = result.data / error
    return z[np.isfinite(z)]
