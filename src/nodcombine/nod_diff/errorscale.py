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

The statistic.  Each difference is divided by its *own* propagated error
``sqrt(Var(D_e))``, which includes its reference's variance, so ``s_e = 1`` when
the input variances are right whatever the nod pattern; if every input
variance is low by ``f²``, then ``Var(D_e)`` is too and ``s_e = f``.  (When the
exposures' own factors differ, ``s_e²`` is the mean of the ``f²`` of the
exposures in ``D_e`` weighted by their share of ``Var(D_e)``: ``2/3`` its own in
a 3-point nod.  A 2-point nod has ``D_2 = −D_1`` and cannot tell its two
exposures apart at all; ``s_e`` is then their common factor.)

Away from every nod image the difference should be noise, but the wings of a
bright or extended source reach far: in simulations of a 0.1″ galaxy at
5 MJy/sr, the plain scatter of ``D_e/σ`` more than 2 pixels from every trace is
6× the noise.  The continuum is smooth along the dispersion, so the statistic
is taken on the high-passed difference

    r = D[c] − (D[c−k] + D[c+k]) / 2,    Var(r) = V[c] + (V[c−k] + V[c+k]) / 4,

``k = 3`` columns, from three pixels of one row that are all valid and more
than ``min_distance`` pixels from every predicted trace (the three pixels are
different detector pixels, so their noise is independent).  Columns where any
exposure's positive image shows spectral structure (high-passed core signal
beyond 4σ: emission lines, which the high-pass does not remove) are left out,
with ``k`` columns either side.  ``s_e`` is the standard deviation of
``r / sqrt(Var(r))``, clipped at 4σ around the median (iterated from
``1.4826 × MAD``) and divided by the standard deviation of a unit Gaussian
truncated there.  Clipping keeps it robust to unflagged cosmic rays; unlike the
MAD it keeps the moderate tails that do enter a sum of pixels, and it is
nearly as efficient as a plain standard deviation (the MAD read 0.98 on
simulations with correct variances, because noisy variance estimates make
``D/σ`` slightly heavier-tailed than a Gaussian).  Its limits: noise correlated
over more than ``k`` columns is partly filtered out, and noise correlated
between neighbouring pixels (which a sum over pixels feels more than one pixel
does) is not measured at all.

Its uncertainty.  For ``n`` kept values the variance of the clipped second
moment is estimated from the values themselves, ``Var(z²) / n``, so that heavy
tails widen it; then ``δs = sqrt(Var(z²) / n) / (2 s c)`` with ``c`` the
truncated Gaussian's variance (``1/sqrt(2n)`` for a Gaussian: 0.02 from 1200
pixels).  ``auto`` applies ``s_e`` only where it exceeds 1 by more than
`SIGNIFICANCE` times ``δs``: a factor that is 1 within its noise is noise, and
applying every upward fluctuation would inflate correct errors by about half
of ``δs`` on average.
"""

import math
from dataclasses import dataclass

import numpy as np

from nodcombine.nod_diff.noddiff import nod_difference

__all__ = [
    "DEFAULT_MIN_DISTANCE",
    "DEFAULT_MIN_PIXELS",
    "ERROR_SCALE_OPTIONS",
    "SIGNIFICANCE",
    "ErrorScale",
    "applied_error_scale",
    "error_scale_setting",
    "high_passed",
    "measure_error_scale",
    "nod_difference_with_error_scale",
    "robust_scale",
    "scale_and_uncertainty",
    "scale_variances",
    "spectral_structure",
]

#: pixels between a measured pixel and every predicted trace
DEFAULT_MIN_DISTANCE = 1.5
#: fewest high-passed pixels for a measured factor (about ±3 % at 1000)
DEFAULT_MIN_PIXELS = 200
#: how many of its standard errors a measured factor must exceed 1 by for ``auto``
SIGNIFICANCE = 2.0
#: the non-numeric values of the ``error_scale`` setting
ERROR_SCALE_OPTIONS = ("auto", "none")

#: columns between a pixel and the two partners of its high-pass
_LAG = 3
#: clipping threshold of `robust_scale`, sigma
_CLIP = 4.0
#: rows either side of a trace searched for spectral structure
_CORE_ROWS = 1.5
#: S/N of the high-passed core signal that marks a column as spectral structure
_STRUCTURE_SNR = 4.0


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


def high_passed(diff, variance, *, lag=_LAG):
    """``r / sqrt(Var(r))`` with ``r = D[c] − (D[c−lag] + D[c+lag]) / 2`` along the dispersion.

    Parameters
    ----------
    diff : numpy.ndarray, shape (..., nx)
        Differences, NaN where not to be used.
    variance : numpy.ndarray, shape of ``diff``
        Their total variance.
    lag : int, optional
        Columns to the two partners.

    Returns
    -------
    numpy.ndarray, shape of ``diff``
        NaN within ``lag`` of the ends and wherever one of the three pixels is.
    """
    out = np.full(np.shape(diff), np.nan)
    if diff.shape[-1] <= 2 * lag:
        return out
    centre, before, after = (slice(lag, -lag), slice(None, -2 * lag), slice(2 * lag, None))
    r = diff[..., centre] - 0.5 * (diff[..., before] + diff[..., after])
    var = variance[..., centre] + 0.25 * (variance[..., before] + variance[..., after])
    with np.errstate(invalid="ignore", divide="ignore"):
        out[..., centre] = np.where(var > 0, r / np.sqrt(np.where(var > 0, var, 1.0)), np.nan)
    return out


def spectral_structure(diff, variance, trace_rows, *, lag=_LAG):
    """Columns where some exposure's positive image has structure a high-pass keeps.

    The normalised high-passed difference (`high_passed`) of the rows within
    1.5 of each exposure's own trace, summed over those rows and divided by
    the square root of their number, beyond 4 in any exposure marks a column
    (an emission line, a break); the marks are widened by ``lag`` columns
    either side, the reach of the high-pass.

    Parameters
    ----------
    diff, variance : numpy.ndarray, shape (n_exp, ny, nx)
    trace_rows : numpy.ndarray, shape (n_exp, nx)
    lag : int, optional

    Returns
    -------
    numpy.ndarray of bool, shape (nx,)
    """
    rows = np.arange(diff.shape[1])[None, :, None]
    core = np.abs(rows - trace_rows[:, None, :]) <= _CORE_ROWS
    z = high_passed(np.where(core, diff, np.nan), variance, lag=lag)
    good = np.isfinite(z)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(good, z, 0.0).sum(axis=1) / np.sqrt(good.sum(axis=1))
    marked = np.any(np.abs(np.nan_to_num(snr)) > _STRUCTURE_SNR, axis=0)
    return np.convolve(marked, np.ones(2 * lag + 1), mode="same") > 0


def robust_scale(z, *, clip=_CLIP):
    """Standard deviation of ``z`` clipped at ``clip`` sigma, corrected for the truncation.

    Parameters
    ----------
    z : numpy.ndarray
        Finite values, nominally unit Gaussian.
    clip : float, optional
        Threshold around the median, in units of the current estimate.

    Returns
    -------
    float
        NaN for fewer than two values.
    """
    return _clipped_scale(z, clip)[0]


def scale_and_uncertainty(z, *, clip=_CLIP):
    """`robust_scale` and its standard error, from the spread of the kept ``z²``.

    Parameters
    ----------
    z : numpy.ndarray
    clip : float, optional

    Returns
    -------
    scale, uncertainty : float
        NaN for fewer than two values.
    """
    scale, kept = _clipped_scale(z, clip)
    if not math.isfinite(scale) or kept.size < 2 or scale <= 0:
        return scale, math.nan
    centred = kept - np.median(kept)
    spread = float(np.std(centred**2)) / math.sqrt(kept.size)
    return scale, spread / (2.0 * scale * _truncated_variance(clip))


def _truncated_variance(clip):
    """Variance of a unit Gaussian truncated at ``±clip``: ``1 − 2 c φ(c) / erf(c/√2)``."""
    tail = 2.0 * clip * math.exp(-0.5 * clip**2) / math.sqrt(2.0 * math.pi)
    return 1.0 - tail / math.erf(clip / math.sqrt(2.0))


def _clipped_scale(z, clip):
    """The clipped, truncation-corrected standard deviation and the values it kept."""
    z = np.asarray(z, dtype=float).ravel()
    if z.size < 2:
        return math.nan, z
    centre = np.median(z)
    scale = 1.4826 * np.median(np.abs(z - centre))
    truncated = _truncated_variance(clip)
    kept = z
    for _ in range(10):
        kept = z[np.abs(z - centre) < clip * scale] if scale > 0 else z
        if kept.size < 2:
            return math.nan, kept
        centre, new = np.median(kept), float(np.std(kept) / math.sqrt(truncated))
        if abs(new - scale) <= 1e-6 * new:
            return new, kept
        scale = new
    return scale, kept


def measure_error_scale(
    diff,
    variances,
    trace_rows,
    *,
    min_distance=DEFAULT_MIN_DISTANCE,
    min_pixels=DEFAULT_MIN_PIXELS,
):
    """The scatter of each exposure's difference over its propagated error, off the source.

    See the module docstring for the statistic.

    Parameters
    ----------
    diff : numpy.ndarray, shape (n_exp, ny, nx)
        Nod differences ``D_e``, NaN where not valid.
    variances : dict of str to numpy.ndarray
        Their variances per component, like ``diff``.
    trace_rows : numpy.ndarray, shape (n_exp, nx), or None
        Predicted source row of each exposure per column; without it nothing
        is known to be off the source and nothing is measured.
    min_distance : float, optional
        Pixels must lie more than this many rows from every trace.
    min_pixels : int, optional
        Fewest high-passed pixels for a factor.

    Returns
    -------
    measured, uncertainty : numpy.ndarray, shape (n_exp,)
        ``s_e`` and its standard error; NaN where fewer than ``min_pixels``
        pixels could be used.
    n_pixels : numpy.ndarray of int, shape (n_exp,)
    """
    diff = np.asarray(diff, dtype=float)
    n_exp = diff.shape[0]
    measured, uncertainty = np.full(n_exp, np.nan), np.full(n_exp, np.nan)
    n_pixels = np.zeros(n_exp, dtype=int)
    if trace_rows is None:
        return measured, uncertainty, n_pixels
    trace_rows = np.asarray(trace_rows, dtype=float)
    variance = sum(np.asarray(v, dtype=float) for v in variances.values())
    rows = np.arange(diff.shape[1])[None, :, None]
    with np.errstate(invalid="ignore"):
        away = np.all(np.abs(rows - trace_rows[:, None, :]) > min_distance, axis=0)
    away = away & ~spectral_structure(diff, variance, trace_rows)[None, :]
    z = high_passed(np.where(away[None], diff, np.nan), variance)
    for e in range(n_exp):
        values = z[e][np.isfinite(z[e])]
        n_pixels[e] = values.size
        if values.size >= min_pixels:
            measured[e], uncertainty[e] = scale_and_uncertainty(values)
    return measured, uncertainty, n_pixels


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
