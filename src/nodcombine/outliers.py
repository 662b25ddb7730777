"""Cross-exposure outlier rejection for nod differencing.

Cosmic rays and snowballs that jump detection missed are found by predicting each
exposure from the others: the sky from the other exposures at the same pixel, the
source from their positive nod images moved onto this exposure's trace.  Pure
numpy/scipy; arrays ``(n_exposures, n_spatial, n_dispersion)``.
"""

import warnings

import numpy as np
from scipy import ndimage

__all__ = ["default_half_width", "find_cross_exposure_outliers"]

#: rows either side of a trace where a missing source model leaves a pixel untested
_CORE_HALF_WIDTH = 1.5


def _shift_rows(image, shift):
    """Linear interpolation of ``image`` moved by ``shift`` rows (per column)."""
    ny = image.shape[0]
    src = np.arange(ny, dtype=float)[:, None] - shift[None, :]
    lower = np.floor(src).astype(int)
    weight = src - lower
    inside = (lower >= 0) & (lower + 1 < ny)
    lower = np.clip(lower, 0, ny - 2)
    below = np.take_along_axis(image, lower, axis=0)
    above = np.take_along_axis(image, lower + 1, axis=0)
    return np.where(inside, (1.0 - weight) * below + weight * above, np.nan)


def _source_models(diff, trace_rows, half_width):
    """Source image of each exposure predicted from the other exposures' differences.

    The positive image of ``D_f`` (rows within ``half_width`` of its trace) is
    moved onto exposure ``e``'s trace; the median over ``f ≠ e`` is robust to a
    hit in any one of them.  Zero away from the trace.  Where no estimate exists
    (the shifted pixels fell off the other slits or were masked), the wings of
    the profile are taken as empty and the core stays NaN, so that pixel is
    left untested rather than compared with zero.
    """
    n_exp, ny, _ = diff.shape
    rows = np.arange(ny, dtype=float)[:, None]
    windows = np.where(np.abs(rows[None] - trace_rows[:, None, :]) <= half_width, diff, np.nan)
    models = np.zeros(diff.shape)
    for e in range(n_exp):
        moved = [
            _shift_rows(windows[f], trace_rows[e] - trace_rows[f]) for f in range(n_exp) if f != e
        ]
        estimate = _nanmedian(np.stack(moved))
        distance = np.abs(rows - trace_rows[e][None, :])
        estimate = np.where(np.isnan(estimate) & (distance > _CORE_HALF_WIDTH), 0.0, estimate)
        models[e] = np.where(distance <= half_width, estimate, 0.0)
    return models


def _nanmedian(stack):
    """Median over the first axis ignoring NaN; all-NaN columns give NaN silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if stack.shape[0] <= 2:
            # the median of one or two values is their mean, and nanmean is ~10x faster
            return np.nanmean(stack, axis=0)
        return np.nanmedian(stack, axis=0)


def _median_spread_factor(n):
    """Variance of a median of ``n`` equal-variance values, in units of that variance.

    One or two values: their mean (1/n); more: the large-n Gaussian result pi/(2n).
    """
    return 1.0 / n if n <= 2 else np.pi / (2.0 * n)


def find_cross_exposure_outliers(
    data,
    variances,
    usable,
    diff,
    trace_rows,
    *,
    n_sigma,
    model_fraction,
    half_width,
    tested=None,
):
    """Flag positive outliers (cosmic rays, snowballs) by comparing exposures.

    Each exposure is predicted as sky plus source: the sky at a pixel from the
    median of the other exposures there (their own source removed), the source
    from the other exposures' positive nod images moved onto this exposure's
    trace.  A pixel is flagged when it exceeds the prediction by more than
    ``n_sigma`` standard deviations plus ``model_fraction`` of the local source
    peak, the allowance for an under-sampled profile that the shift cannot
    reproduce exactly.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_exp, ny, nx)
        Science arrays (sky included).
    variances : dict of str to numpy.ndarray
        Variance components, each like ``data``.
    usable : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Pixels that may build the sky and source models.
    diff : numpy.ndarray, shape (n_exp, ny, nx)
        Nod differences computed from ``usable`` pixels (NaN where invalid).
    trace_rows : numpy.ndarray, shape (n_exp, nx)
        Predicted source row of each exposure in each column.
    n_sigma : float
        Rejection threshold in standard deviations.
    model_fraction : float
        Fraction of the local source peak added to the threshold.
    half_width : float
        Rows either side of a trace taken as that exposure's source image.
    tested : numpy.ndarray of bool, optional
        Pixels to test; default ``usable``.

    Returns
    -------
    numpy.ndarray of bool, shape (n_exp, ny, nx)
    """
    tested = usable if tested is None else tested
    sources = _source_models(diff, trace_rows, half_width)
    total_var = sum(variances.values())
    clean = np.where(usable, data - sources, np.nan)
    n_exp = data.shape[0]
    flagged = np.zeros(data.shape, dtype=bool)
    rows = np.arange(data.shape[1], dtype=float)[None, :, None]
    near_trace = np.abs(rows - trace_rows[:, None, :]) <= half_width
    # Near its trace, an exposure's source model is a median of the others'
    # positive images, with about that exposure's own variance again; the sky
    # estimate of every other exposure inherits those models and their errors.
    model_var = total_var * (1.0 + near_trace)
    # the shift mismatch of an under-sampled profile is along the slit only
    peaks = ndimage.maximum_filter(np.nan_to_num(np.abs(sources)), size=(1, 3, 1))
    for e in range(n_exp):
        others = [f for f in range(n_exp) if f != e]
        sky = _nanmedian(clean[others])
        sky_var = _nanmedian(np.where(usable[others], model_var[others], np.nan))
        factor = _median_spread_factor(len(others))
        peak = np.maximum(peaks[e], peaks[others].max(axis=0))
        excess = data[e] - sources[e] - sky
        # untestable pixels (negative or NaN variance, no model) compare False
        with np.errstate(invalid="ignore"):
            sigma = np.sqrt(total_var[e] + factor * (near_trace[e] * total_var[e] + sky_var))
            flagged[e] = tested[e] & (excess > n_sigma * sigma + model_fraction * peak)
    if n_exp == 2:
        # with one partner the median cannot reject a hit's mirror image
        flagged = _drop_echoes(flagged, data, trace_rows, half_width)
    return flagged


def _drop_echoes(flagged, data, trace_rows, half_width):
    """Unflag the mirror images of hits that the source model carried across.

    A hit in exposure ``e`` at the trace of another exposure ``f`` enters ``D_f``
    negatively, and ``D_f`` predicts the source on ``e``'s own trace: the hit
    then reappears there, one nod offset away, with the same amplitude (and
    the other way round).  With a single partner exposure nothing rejects it.  Of
    two flags in one exposure that are such mirror images, the one that stands
    out less from its row (a running median along the dispersion) is dropped:
    a hit is sharp, the source it was mistaken for is smooth.
    """
    flagged = flagged.copy()
    n_exp, ny, _ = data.shape
    for e in range(n_exp):
        if not flagged[e].any():
            continue
        row_median = ndimage.median_filter(np.nan_to_num(data[e]), size=(1, 15))
        sharpness = np.abs(np.nan_to_num(data[e]) - row_median)
        rows, cols = np.nonzero(flagged[e])
        for f in range(n_exp):
            if f == e:
                continue
            shift = np.rint(trace_rows[e] - trace_rows[f]).astype(int)
            own = np.abs(rows - trace_rows[e][cols]) <= half_width
            mirror = np.where(own, rows - shift[cols], rows + shift[cols])
            ok = (mirror >= 0) & (mirror < ny)
            for r, c, m in zip(rows[ok], cols[ok], mirror[ok], strict=True):
                if flagged[e, m, c] and sharpness[r, c] < sharpness[m, c]:
                    flagged[e, r, c] = False
    return flagged


def default_half_width(trace_rows, positions):
    """Half the smallest median separation between traces of different positions.

    Parameters
    ----------
    trace_rows : numpy.ndarray, shape (n_exp, nx)
        Predicted source row of each exposure per column.
    positions : numpy.ndarray of int, shape (n_exp,)
        Nod position index of each exposure.

    Returns
    -------
    float
        Rows, at least 1.
    """
    seps = [
        np.nanmedian(np.abs(trace_rows[e] - trace_rows[f]))
        for e in range(len(positions))
        for f in range(len(positions))
        if positions[e] != positions[f]
    ]
    return max(0.5 * min(seps), 1.0)
