"""Cross-exposure outlier rejection for nod differencing.

Cosmic rays and snowballs that jump detection missed are found by predicting each
exposure from the others: the sky from the other exposures at the same pixel, the
source from their positive nod images moved onto this exposure's trace.  Pure
numpy/scipy; arrays ``(n_exposures, n_spatial, n_dispersion)``.
"""

import warnings

import numpy as np
from scipy import ndimage

__all__ = ["find_cross_exposure_outliers"]

#: rows either side of a trace where a missing source model leaves a pixel untested
_CORE_HALF_WIDTH = 1.5

#: columns of the running median that high-passes the excess (> a snowball's diameter)
_HIGH_PASS_COLUMNS = 21


def _shift_rows(image, shift):
    """Linear interpolation of ``image`` moved by ``shift`` rows (per column)."""
    ny = image.shape[0]
    src = np.arange(ny, dtype=float)[:, None] - shift[None, :]
    inside = (src >= 0) & (src <= ny - 1)
    lower = np.clip(np.floor(np.where(inside, src, 0)).astype(int), 0, ny - 2)
    weight = src - lower
    below = np.take_along_axis(image, lower, axis=0)
    above = np.take_along_axis(image, lower + 1, axis=0)
    return np.where(inside, (1.0 - weight) * below + weight * above, np.nan)


def _shift_columns(image, source_columns):
    """Linear interpolation of ``image`` sampled at fractional ``source_columns`` (per column)."""
    nx = image.shape[1]
    inside = np.isfinite(source_columns) & (source_columns >= 0) & (source_columns <= nx - 1)
    safe = np.where(inside, source_columns, 0.0)
    lower = np.clip(np.floor(safe).astype(int), 0, nx - 2)
    weight = safe - lower
    moved = (1.0 - weight) * image[:, lower] + weight * image[:, lower + 1]
    return np.where(inside[None, :], moved, np.nan)


def _matching_columns(wave_to, wave_from):
    """Fractional columns of ``wave_from`` at the wavelengths of ``wave_to``'s columns.

    A nod moves the source along the slit and, by a fraction of a pixel, along
    the dispersion too (NIRSpec: 0.6 column for one shutter); lines must be
    compared at equal wavelength, not equal column.  Unknown wavelengths map
    column to column; wavelengths the partner does not cover map to NaN.  Only
    the partner's longest monotonic run of wavelengths is used (MIRI LRS folds
    back below 4.5 µm).
    """
    columns = np.arange(wave_to.size, dtype=float)
    run = _monotonic_run(wave_from)
    if run.sum() < 2 or not np.isfinite(wave_to).any():
        return columns
    order = np.argsort(wave_from[run])
    # beyond the partner's coverage there is nothing to compare with: NaN
    mapped = np.interp(
        wave_to, wave_from[run][order], columns[run][order], left=np.nan, right=np.nan
    )
    return np.where(np.isfinite(wave_to), mapped, columns)


def _monotonic_run(wave):
    """Mask of the longest run of consecutive finite columns with one sign of slope."""
    good = np.isfinite(wave)
    slope = np.sign(np.diff(np.where(good, wave, np.nan)))
    best, best_range, start = 0, (0, 0), 0
    for i in range(1, slope.size + 1):
        if i == slope.size or not (slope[i] == slope[start] and slope[i] != 0):
            if slope.size and slope[start] != 0 and i - start > best:
                best, best_range = i - start, (start, i + 1)
            start = i
    mask = np.zeros(wave.size, dtype=bool)
    mask[best_range[0] : best_range[1]] = True
    return mask & good


def _source_models(diff, diff_var, trace_rows, half_width, wavelengths=None):
    """Source image of each exposure predicted from the other exposures' differences.

    The positive image of ``D_f`` (rows within ``half_width`` of its trace) is
    moved onto exposure ``e``'s trace, and onto its wavelengths when they are
    given; the median over ``f ≠ e`` is robust to a hit in any one of them.
    Zero away from the trace.  Where no estimate exists (the shifted pixels fell
    off the other slits or were masked), the wings of the profile are taken as
    empty and the core stays NaN, so that pixel is left untested rather than
    compared with zero.

    Returns
    -------
    models, model_var : numpy.ndarray, shape of ``diff``
        The prediction and its variance (the partners' difference variances,
        moved the same way, combined as for a median).
    """
    n_exp, ny, _ = diff.shape
    rows = np.arange(ny, dtype=float)[:, None]
    in_window = np.abs(rows[None] - trace_rows[:, None, :]) <= half_width
    windows = np.where(in_window, diff, np.nan)
    var_windows = np.where(in_window, diff_var, np.nan)
    models = np.zeros(diff.shape)
    model_var = np.zeros(diff.shape)
    for e in range(n_exp):
        moved, moved_var = [], []
        for f in range(n_exp):
            if f == e:
                continue
            shift = trace_rows[e] - trace_rows[f]
            image, var = _shift_rows(windows[f], shift), _shift_rows(var_windows[f], shift)
            if wavelengths is not None:
                columns = _matching_columns(wavelengths[e], wavelengths[f])
                image, var = _shift_columns(image, columns), _shift_columns(var, columns)
            moved.append(image)
            moved_var.append(var)
        estimate = _nanmedian(np.stack(moved))
        estimate_var = _median_spread_factor(len(moved)) * _nanmedian(np.stack(moved_var))
        distance = np.abs(rows - trace_rows[e][None, :])
        empty_wings = np.isnan(estimate) & (distance > _CORE_HALF_WIDTH)
        estimate = np.where(empty_wings, 0.0, estimate)
        estimate_var = np.where(empty_wings, 0.0, estimate_var)
        models[e] = np.where(distance <= half_width, estimate, 0.0)
        model_var[e] = np.where(distance <= half_width, estimate_var, 0.0)
    return models, model_var


def _running_median(image, width, stride=4):
    """Running median along the last axis, evaluated every ``stride`` columns.

    The high-pass only needs the smooth part of a row, so the median is taken
    at every ``stride``-th column (reflected at the ends, as scipy's
    ``median_filter`` does) and interpolated linearly in between: ``stride``
    times faster than a full running median, which dominated the step's time.
    """
    half = width // 2
    n = image.shape[-1]
    padding = [(0, 0)] * (image.ndim - 1) + [(half, half)]
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(image, padding, mode="symmetric"), width, axis=-1
    )
    centres = np.arange(0, n, stride)
    if centres[-1] != n - 1:
        centres = np.append(centres, n - 1)
    medians = np.median(windows[..., centres, :], axis=-1)
    if centres.size == 1:
        return np.broadcast_to(medians, image.shape).copy()
    columns = np.arange(n)
    left = np.clip(np.searchsorted(centres, columns, side="right") - 1, 0, centres.size - 2)
    weight = (columns - centres[left]) / (centres[left + 1] - centres[left])
    return (1.0 - weight) * medians[..., left] + weight * medians[..., left + 1]


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
    diff_var,
    trace_rows,
    *,
    n_sigma,
    model_fraction,
    half_width,
    tested=None,
    wavelengths=None,
):
    """Flag positive outliers (cosmic rays, snowballs) by comparing exposures.

    Each exposure is predicted as sky plus source: the sky at a pixel from the
    median of the other exposures there (their own source removed), the source
    from the other exposures' positive nod images moved onto this exposure's
    trace and wavelengths.  What the prediction cannot reproduce is smooth along
    the dispersion: an under-sampled core seen at another sub-pixel phase, the
    wings of an extended source beyond the modelled window.  A hit is sharp.
    So the excess over the prediction is high-passed along the dispersion (its
    running median over `_HIGH_PASS_COLUMNS` columns, wider than a snowball, is
    subtracted) and a pixel is flagged when that exceeds ``n_sigma`` standard
    deviations (of the exposure, its source model and its sky estimate) plus
    ``model_fraction`` of the high-passed source model nearby (emission lines,
    whose prediction can be off by a fraction of their height).

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
    diff_var : numpy.ndarray, shape (n_exp, ny, nx)
        Their total variance.
    trace_rows : numpy.ndarray, shape (n_exp, nx)
        Predicted source row of each exposure in each column.
    n_sigma : float
        Rejection threshold in standard deviations.
    model_fraction : float
        Fraction of the high-passed source model nearby added to the threshold.
    half_width : float
        Rows either side of a trace taken as that exposure's source image.
    tested : numpy.ndarray of bool, optional
        Pixels to test; default ``usable``.
    wavelengths : numpy.ndarray, shape (n_exp, nx), optional
        Wavelength of each exposure's columns, to compare at equal wavelength.

    Returns
    -------
    numpy.ndarray of bool, shape (n_exp, ny, nx)
    """
    tested = usable if tested is None else tested
    sources, source_var = _source_models(diff, diff_var, trace_rows, half_width, wavelengths)
    total_var = sum(variances.values())
    clean = np.where(usable, data - sources, np.nan)
    n_exp = data.shape[0]
    flagged = np.zeros(data.shape, dtype=bool)
    # a partner's sky estimate X_f - S_f carries its own noise and its model's
    model_var = total_var + source_var
    # What the high-pass leaves of a model mismatch scales with the model's own
    # structure along the dispersion (lines), not with a smooth continuum: the
    # allowance follows the high-passed model, taken over neighbouring rows because
    # the shift mismatch of an under-sampled profile is along the slit.
    structure = np.nan_to_num(sources)
    structure = structure - _running_median(structure, _HIGH_PASS_COLUMNS)
    peaks = ndimage.maximum_filter(np.abs(structure), size=(1, 3, 1))
    for e in range(n_exp):
        others = [f for f in range(n_exp) if f != e]
        sky = _nanmedian(clean[others])
        sky_var = _nanmedian(np.where(usable[others], model_var[others], np.nan))
        factor = _median_spread_factor(len(others))
        # a partner's model error reaches the sky estimate diluted by the mean or
        # median over the partners
        peak = np.maximum(peaks[e], peaks[others].max(axis=0) / len(others))
        excess = data[e] - sources[e] - sky
        smooth = _running_median(np.nan_to_num(excess), _HIGH_PASS_COLUMNS)
        excess = excess - smooth
        # untestable pixels (negative or NaN variance, no model) compare False
        with np.errstate(invalid="ignore"):
            sigma = np.sqrt(total_var[e] + source_var[e] + factor * sky_var)
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
