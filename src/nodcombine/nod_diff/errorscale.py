"""Errors from the data: how far the nod differences scatter beyond their propagated errors.

Real ``_cal`` variances can be too small (CEERS NIRSpec PRISM: by some 20–30 %).
`measure_error_scale` measures, per exposure, the factor ``s_e`` by which the
difference ``D_e`` of `~nodcombine.nod_diff.noddiff.nod_difference` scatters
beyond its propagated error, on pixels away from every nod image, with its
statistical uncertainty; `nod_difference_with_error_scale` multiplies each
exposure's three input variances by the chosen factor squared before
differencing.

Pure numpy.  Arrays are ``(n_exposures, n_spatial, n_dispersion)`` stacks, NaN
where a difference was not formed.

The factor and its standard error are measured by
`nodcombine.nod_diff.scatter` (the statistic is described there).  ``auto``
applies ``s_e`` only where it exceeds 1 by more than `SIGNIFICANCE` times its
standard error: a factor that is 1 within its noise is noise, and applying
every upward fluctuation would inflate correct errors by about half of the
standard error on average.
"""

import math
from dataclasses import dataclass

import numpy as np

from nodcombine.nod_diff.noddiff import nod_difference
from nodcombine.nod_diff.scatter import (
    DEFAULT_MIN_DISTANCE,
    DEFAULT_MIN_PIXELS,
    measure_error_scale,
)

__all__ = [
    "ERROR_SCALE_OPTIONS",
    "SIGNIFICANCE",
    "ErrorScale",
    "applied_error_scale",
    "error_scale_setting",
    "nod_difference_with_error_scale",
    "scale_variances",
]

#: how many of its standard errors a measured factor must exceed 1 by for ``auto``
SIGNIFICANCE = 2.0
#: the non-numeric values of the ``error_scale`` setting
ERROR_SCALE_OPTIONS = ("auto", "none")


@dataclass(frozen=True, slots=True)
class ErrorScale:
    """The error scale of each exposure of one source.

    Attributes
    ----------
    measured : numpy.ndarray, shape (n_exp,)
        ``s_e``: scatter of the difference over its propagated error; NaN where
        fewer than the minimum number of pixels could be used.
    uncertainty : numpy.ndarray, shape (n_exp,)
        Standard error of ``measured`` (NaN with it).
    n_pixels : numpy.ndarray of int, shape (n_exp,)
        High-passed pixels the measurement used.
    applied : numpy.ndarray, shape (n_exp,)
        The factor the exposure's errors were multiplied by (variances by its square).
    """

    measured: np.ndarray
    uncertainty: np.ndarray
    n_pixels: np.ndarray
    applied: np.ndarray

    def describe(self):
        """One line per exposure: measured factor, its error, pixels used, factor applied."""
        return [
            f"error scale measured {m:.3f} ± {u:.3f} from {n} pixels, applied {a:.3f}"
            for m, u, n, a in zip(
                self.measured, self.uncertainty, self.n_pixels, self.applied, strict=True
            )
        ]


def error_scale_setting(value):
    """The ``error_scale`` setting checked: ``auto``, ``none`` or a positive finite number.

    Parameters
    ----------
    value : str or float
        ``auto`` (apply the measured factor where it is measured and above 1),
        ``none`` (measure only) or a factor for every exposure.

    Returns
    -------
    str or float

    Raises
    ------
    ValueError
        Naming ``error_scale`` and the allowed values.
    """
    text = str(value).strip().lower()
    if text in ERROR_SCALE_OPTIONS:
        return text
    try:
        factor = float(text)
    except ValueError:
        factor = math.nan
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(
            f"error_scale must be 'auto', 'none' or a positive finite number, got {value!r}"
        )
    return factor


def applied_error_scale(measured, setting, uncertainty=None):
    """The factor applied to each exposure's errors.

    Parameters
    ----------
    measured : numpy.ndarray, shape (n_exp,)
        From `measure_error_scale` (NaN: not measured).
    setting : str or float
        From `error_scale_setting`: ``auto`` applies the measured factor where
        it was measured and exceeds 1 by more than `SIGNIFICANCE` times its
        uncertainty, else 1 (errors are never made smaller than propagated:
        the measurement sees only the sky and the detector, not the source's
        own noise); ``none`` applies 1; a number applies itself.
    uncertainty : numpy.ndarray, shape (n_exp,), optional
        Standard error of ``measured``; without it (or where NaN) ``auto``
        applies every factor above 1.

    Returns
    -------
    numpy.ndarray, shape (n_exp,)
    """
    measured = np.asarray(measured, dtype=float)
    if setting == "none":
        return np.ones(measured.shape)
    if setting == "auto":
        margin = np.zeros(measured.shape) if uncertainty is None else np.asarray(uncertainty)
        margin = SIGNIFICANCE * np.nan_to_num(margin, nan=0.0)
        with np.errstate(invalid="ignore"):
            significant = np.isfinite(measured) & (measured - 1.0 > margin)
        return np.where(significant, measured, 1.0)
    return np.full(measured.shape, float(setting))


def scale_variances(variances, factors):
    """Each exposure's variances times its factor squared.

    Parameters
    ----------
    variances : dict of str to numpy.ndarray, shape (n_exp, ny, nx)
    factors : numpy.ndarray, shape (n_exp,)

    Returns
    -------
    dict of str to numpy.ndarray
        New arrays; the inputs are not modified.
    """
    squared = np.asarray(factors, dtype=float)[:, None, None] ** 2
    return {c: np.asarray(v, dtype=float) * squared for c, v in variances.items()}


def nod_difference_with_error_scale(
    data,
    variances,
    positions,
    *,
    error_scale="auto",
    usable=None,
    trace_rows=None,
    min_distance=DEFAULT_MIN_DISTANCE,
    min_pixels=DEFAULT_MIN_PIXELS,
    **options,
):
    """`~nodcombine.nod_diff.noddiff.nod_difference` with errors scaled from the data.

    The factors are measured on the plain differences (no rejection) with
    every detector pixel an outlier was found on left out, in all exposures:
    hits that jump detection missed leave residuals of a few sigma, in their
    own exposure's difference and at half the size in the others' (through
    the reference), that the clipped statistic keeps and that read as noise
    the variances lack (the demo's 0.3 % of pixels hit raised a factor to
    1.18).  The plain differences, not the ones formed without the rejected
    pixels: a reference built from fewer exposures in one column than in the
    next leaves steps in the negative images of a bright source's wings that
    the high-pass reads as noise (2 % on a bright 0.1″ galaxy).  Where a
    factor is applied, each exposure's ``var_poisson``,
    ``var_rnoise`` and ``var_flat`` are multiplied by its square and the
    differences are formed again, so that every difference variance and every
    reference variance (``ref_variances``) is the propagation of the same
    scaled inputs, and the outlier threshold is in units of the scaled errors.
    (The first rejection, in units of the unscaled errors, is that much
    stricter: at a factor of 1.5 its 5σ is 3.3σ of the true noise, and the
    factor reads about 0.5 % low.)

    Parameters
    ----------
    data, variances, positions
        As for ``nod_difference``.
    error_scale : str or float, optional
        ``auto``, ``none`` or a factor (see `applied_error_scale`).
    usable, trace_rows
        As for ``nod_difference``; ``trace_rows`` also says where the source is.
    min_distance, min_pixels : optional
        See `measure_error_scale`.
    **options
        Further keywords of ``nod_difference``.

    Returns
    -------
    result : NodDiffResult
    scale : ErrorScale
    """
    setting = error_scale_setting(error_scale)
    result = nod_difference(
        data, variances, positions, usable=usable, trace_rows=trace_rows, **options
    )
    plain = nod_difference(data, variances, positions, usable=usable, n_sigma_outlier=0)
    hit = np.any(result.outliers, axis=0)
    measured, uncertainty, n_pixels = measure_error_scale(
        np.where(hit, np.nan, plain.data),
        plain.variances,
        trace_rows,
        min_distance=min_distance,
        min_pixels=min_pixels,
    )
    applied = applied_error_scale(measured, setting, uncertainty)
    if np.any(applied != 1.0):
        result = nod_difference(
            data,
            scale_variances(variances, applied),
            positions,
            usable=usable,
            trace_rows=trace_rows,
            **options,
        )
    scale = ErrorScale(
        measured=measured, uncertainty=uncertainty, n_pixels=n_pixels, applied=applied
    )
    return result, scale
