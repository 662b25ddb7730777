"""Shared test helpers: pull arrays out of simulated models in kernel orientation."""

import numpy as np

from nodcombine.noddiff import VARIANCE_COMPONENTS

__all__ = [
    "away_from_traces",
    "kernel_arrays",
    "normalised_differences",
    "outlier_recovery",
    "sky_only_z",
]


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


def sky_only_z(mode, n_points, repeats, seeds):
    """Normalised sky-only differences of simulated visits, pooled over ``seeds``."""
    from nodcombine.noddiff import nod_difference
    from nodcombine.simulate import simulate_nodded_visit

    zs = []
    for seed in seeds:
        models, truth = simulate_nodded_visit(
            mode, n_points=n_points, exposures_per_position=repeats, source_peak=0.0, seed=seed
        )
        data, variances, _ = kernel_arrays(models)
        result = nod_difference(data, variances, truth.positions, n_sigma_outlier=0)
        zs.append(normalised_differences(result))
    return np.concatenate(zs)


def outlier_recovery(n_points, *, n_slits, source_peak=1.0, seed=3, trace_distance=2.0):
    """Injected hit pixels, those flagged, and wrongly flagged source-trace pixels.

    Returns
    -------
    dict
        ``hits``, ``found``, ``false_on_trace``, ``trace_pixels``.
    """
    from nodcombine.noddiff import nod_difference
    from nodcombine.simulate import simulate_nodded_visit

    models, truth = simulate_nodded_visit(
        "nrs_msa_prism",
        n_slits=n_slits,
        n_points=n_points,
        source_peak=source_peak,
        cosmic_ray_fraction=0.003,
        n_snowballs=1,
        seed=seed,
    )
    counts = dict.fromkeys(("hits", "found", "false_on_trace", "trace_pixels"), 0)
    n_exp = len(models)
    for k in range(n_slits):
        data, variances, _ = kernel_arrays(models, k)
        rows = np.stack([truth.slits[i][k].trace_row for i in range(n_exp)])
        result = nod_difference(data, variances, truth.positions, trace_rows=rows)
        injected = np.stack([truth.slits[i][k].cosmic_rays for i in range(n_exp)])
        near = np.abs(np.arange(data.shape[1])[None, :, None] - rows[:, None, :]) <= trace_distance
        counts["hits"] += int(injected.sum())
        counts["found"] += int((result.outliers & injected).sum())
        counts["false_on_trace"] += int((result.outliers & ~injected & near).sum())
        counts["trace_pixels"] += int((near & np.isfinite(data)).sum())
    return counts


def away_from_traces(slit, models, truth, k, distance=2.2, exclude=None):
    """diff/err of one slit more than ``distance`` rows from every exposure's true trace."""
    rows = np.arange(slit.data.shape[0])[:, None]
    cols = np.arange(slit.data.shape[1])
    away = np.ones(slit.data.shape, bool)
    for j, other in enumerate(models):
        # exposure j's true trace in this cutout's coordinates
        dx = slit.xstart - other.slits[k].xstart
        dy = other.slits[k].ystart - slit.ystart
        trace = truth.slits[j][k].trace_row
        trace_here = np.interp(cols + dx, np.arange(trace.size), trace) + dy
        away &= np.abs(rows - trace_here[None, :]) > distance
    if exclude is not None:
        away &= ~exclude
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (slit.data / slit.err)[away]
    return z[np.isfinite(z)]


def flagged_fraction(result):
    """Fraction of the valid pixels of all slits of a ``nod_diff`` result flagged OUTLIER."""
    from nodcombine.models import outlier_pixels

    slits = [s for m in result for s in getattr(m, "slits", [m])]
    flagged = sum(int(outlier_pixels(s).sum()) for s in slits)
    valid = sum(int(np.isfinite(s.data).sum()) for s in slits)
    return flagged / valid
