"""Nod differencing of slit exposures: sky removal, masks and cross-exposure outliers.

Pure numpy/scipy.  Arrays are stacks of the exposures of one source on a common
pixel grid, axis order ``(n_exposures, n_spatial, n_dispersion)``; NaN marks a
pixel that an exposure does not cover.

The estimator.  Let exposure ``e`` sit at nod position ``p(e)``; position ``q``
holds ``n_q`` usable exposures at a pixel, with mean ``M_q`` and
``Var(M_q) = Σ V_e / n_q²``.  The reference of exposure ``e`` is the mean of the
``K`` other positions that have data there, ``O_e = (1/K) Σ_{q≠p(e)} M_q``, and

    D_e = X_e − O_e,    Var(D_e) = V_e + (1/K²) Σ_{q≠p(e)} Var(M_q)

separately for ``var_poisson``, ``var_rnoise`` and ``var_flat``.  Averaging the
exposures of a position before differencing keeps the error right when several
exposures share a position: the differences of those exposures share ``O_e``,
and its variance is returned on its own (``ref_var_*``) so that a later
combination can count it once (msaexp treated the shared term as independent
and under-estimated errors by 10–13 %; its v2 over-estimated them, PR #54).
A constant sky cancels exactly.
"""

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "VARIANCE_COMPONENTS",
    "MaskSettings",
    "NodDiffResult",
    "find_cross_exposure_outliers",
    "group_nod_positions",
    "mask_pixels",
    "nod_difference",
    "stuck_closed_mask",
    "usable_pixels",
]

log = logging.getLogger(__name__)

VARIANCE_COMPONENTS = ("var_poisson", "var_rnoise", "var_flat")

#: rows either side of a trace where a missing source model leaves a pixel untested
_CORE_HALF_WIDTH = 1.5


@dataclass(frozen=True, slots=True)
class NodDiffResult:
    """Nod differences of the exposures of one source.

    Attributes
    ----------
    data : numpy.ndarray, shape (n_exp, ny, nx)
        ``D_e``; NaN where not valid.
    variances : dict of str to numpy.ndarray
        ``Var(D_e)`` per component (keys `VARIANCE_COMPONENTS`).
    ref_variances : dict of str to numpy.ndarray
        Variance of the subtracted reference ``O_e`` per component: the part of
        ``Var(D_e)`` shared with every other exposure at the same position.
    valid : numpy.ndarray of bool, shape (n_exp, ny, nx)
        The difference is usable (the exposure was, and a reference exists).
    usable : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Input pixels that entered the means (after outlier rejection).
    outliers : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Pixels rejected as cross-exposure outliers (cosmic rays, snowballs).
    positions : numpy.ndarray of int, shape (n_exp,)
        Nod position index of each exposure.
    """

    data: np.ndarray
    variances: dict
    ref_variances: dict
    valid: np.ndarray
    usable: np.ndarray
    outliers: np.ndarray
    positions: np.ndarray


@dataclass(frozen=True, slots=True)
class MaskSettings:
    """Which pixels to leave out before differencing, and the DQ bits involved.

    Attributes
    ----------
    do_not_use, failed_open, other_bad : int
        DQ bits: pixels not to use; light from failed-open shutters; the bit set on
        pixels removed by these masks.
    failed_open_dilation : int
        Pixels by which to grow the failed-open mask.
    min_bar : float
        Bar-shadow throughput floor.
    edge_pixels : int
        Pixels along the slit to drop next to uncovered ones.
    stuck_threshold : float
        Shutter-to-slitlet light ratio below which a shutter is stuck closed; 0
        disables the test.
    """

    do_not_use: int
    failed_open: int = 0
    other_bad: int = 0
    failed_open_dilation: int = 1
    min_bar: float = 0.0
    edge_pixels: int = 0
    stuck_threshold: float = 0.0


def mask_pixels(data, variances, dq, settings, *, barshadow=None, shutter_index=None):
    """Usable pixels and the DQ bits to record on the ones the masks removed.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_exp, ny, nx)
        Science arrays.
    variances : dict of str to numpy.ndarray
        Variance components, each like ``data``.
    dq : numpy.ndarray of int, shape (n_exp, ny, nx)
        Data-quality flags.
    settings : MaskSettings
        Mask parameters and DQ bits.
    barshadow : numpy.ndarray, optional
        Bar-shadow throughput, like ``data``.
    shutter_index : numpy.ndarray of int, optional
        Shutter of each pixel (negative outside shutters), like ``data``.

    Returns
    -------
    usable : numpy.ndarray of bool, shape (n_exp, ny, nx)
    flags : numpy.ndarray of uint32, shape (n_exp, ny, nx)
        ``do_not_use | other_bad`` on covered pixels the masks removed.
    stuck : list of tuple of (int, int)
        ``(exposure, shutter)`` pairs found stuck closed.
    """
    usable = usable_pixels(
        data,
        variances,
        dq,
        do_not_use=settings.do_not_use,
        failed_open=settings.failed_open,
        failed_open_dilation=settings.failed_open_dilation,
        barshadow=barshadow,
        min_bar=settings.min_bar,
        edge_pixels=settings.edge_pixels,
    )
    stuck = []
    if shutter_index is not None and settings.stuck_threshold > 0:
        closed, stuck = stuck_closed_mask(
            data, shutter_index, usable, threshold=settings.stuck_threshold
        )
        usable &= ~closed
    removed = np.isfinite(data) & ((dq & settings.do_not_use) == 0) & ~usable
    flags = np.where(removed, settings.do_not_use | settings.other_bad, 0).astype(np.uint32)
    return usable, flags, stuck


def group_nod_positions(offsets, *, tolerance):
    """Label exposures by nod position from their offsets along the slit.

    Offsets closer than ``tolerance`` (single linkage) are one position, so small
    dithers or repeats at a nominal position are grouped and real nods are not.

    Parameters
    ----------
    offsets : array_like, shape (n_exp,)
        Offset of each exposure along the slit (any unit).
    tolerance : float
        Largest gap within one position, same unit.

    Returns
    -------
    numpy.ndarray of int, shape (n_exp,)
        Position index, numbered in order of increasing offset.
    """
    offsets = np.asarray(offsets, dtype=float)
    if tolerance <= 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    order = np.argsort(offsets, kind="stable")
    gaps = np.diff(offsets[order]) > tolerance
    labels = np.empty(offsets.size, dtype=int)
    labels[order] = np.concatenate([[0], np.cumsum(gaps)])
    return labels


def usable_pixels(
    data,
    variances,
    dq,
    *,
    do_not_use,
    failed_open=0,
    failed_open_dilation=1,
    barshadow=None,
    min_bar=0.0,
    edge_pixels=0,
):
    """Pixels of each exposure that may enter the nod means.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_exp, ny, nx)
        Science arrays.
    variances : dict of str to numpy.ndarray
        Variance components, each like ``data``.
    dq : numpy.ndarray of int, shape (n_exp, ny, nx)
        Data-quality flags.
    do_not_use : int
        DQ bit(s) of pixels not to use.
    failed_open : int, optional
        DQ bit of light from failed-open MSA shutters; 0 disables.
    failed_open_dilation : int, optional
        Dilate the failed-open mask by this many pixels (its light spills over).
    barshadow : numpy.ndarray or None, optional
        Bar-shadow throughput, like ``data``.
    min_bar : float, optional
        Pixels with throughput below this are masked (the bar-shadow correction
        amplifies their noise and systematics).
    edge_pixels : int, optional
        Mask this many pixels along the slit next to uncovered pixels (partly
        illuminated slit edges).

    Returns
    -------
    numpy.ndarray of bool, shape (n_exp, ny, nx)
    """
    ok = np.isfinite(data) & ((dq & do_not_use) == 0)
    for var in variances.values():
        ok &= np.isfinite(var) & (var >= 0)
    if failed_open and failed_open_dilation >= 0:
        flagged = (dq & failed_open) > 0
        if failed_open_dilation > 0 and flagged.any():
            structure = np.zeros((3, 3, 3), dtype=bool)
            structure[1] = ndimage.generate_binary_structure(2, 1)
            flagged = ndimage.binary_dilation(
                flagged, structure=structure, iterations=failed_open_dilation
            )
        ok &= ~flagged
    if barshadow is not None and min_bar > 0:
        ok &= ~(barshadow < min_bar)
    if edge_pixels > 0:
        covered = np.isfinite(data)
        structure = np.zeros((3, 3, 1), dtype=bool)
        structure[1, :, 0] = True  # along the slit only
        interior = ndimage.binary_erosion(
            covered, structure=structure, iterations=edge_pixels, border_value=0
        )
        ok &= interior
    return ok


def stuck_closed_mask(data, shutter_index, usable, *, threshold):
    """Pixels behind shutters whose light is far below the rest of the slitlet.

    A stuck-closed shutter lets no sky through, so its median level, divided by
    the median of the other shutters of the same exposure, falls near zero.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_exp, ny, nx)
        Science arrays (sky included: run before differencing).
    shutter_index : numpy.ndarray of int, shape (n_exp, ny, nx)
        Shutter of each pixel within the slitlet; negative outside shutters.
    usable : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Pixels to use for the medians.
    threshold : float
        Ratio below which a shutter counts as stuck closed.

    Returns
    -------
    mask : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Pixels of shutters found stuck closed.
    stuck : list of tuple of (int, int)
        ``(exposure, shutter)`` pairs found stuck closed.
    """
    mask = np.zeros(data.shape, dtype=bool)
    stuck = []
    for e in range(data.shape[0]):
        ids = shutter_index[e]
        shutters = np.unique(ids[(ids >= 0) & usable[e]])
        if shutters.size < 2:
            continue
        for j in shutters:
            inside = (ids == j) & usable[e]
            outside = (ids >= 0) & (ids != j) & usable[e]
            level = np.median(data[e][outside])
            if level > 0 and np.median(data[e][inside]) < threshold * level:
                mask[e] |= ids == j
                stuck.append((e, int(j)))
    return mask, stuck


def _position_means(data, variances, usable, positions, n_positions):
    """Per-position mean and variance of the mean, with per-pixel counts."""
    shape = (n_positions, *data.shape[1:])
    sums = np.zeros(shape)
    counts = np.zeros(shape)
    var_sums = {c: np.zeros(shape) for c in variances}
    clean = np.where(usable, data, 0.0)
    for q in range(n_positions):
        members = positions == q
        sums[q] = clean[members].sum(axis=0)
        counts[q] = usable[members].sum(axis=0)
        for c, var in variances.items():
            var_sums[c][q] = np.where(usable[members], var[members], 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
        var_means = {c: v / counts**2 for c, v in var_sums.items()}
    return means, var_means, counts > 0


def _differences(data, variances, usable, positions):
    """``D_e`` and its variances for every exposure (see the module docstring)."""
    n_positions = positions.max() + 1
    means, var_means, present = _position_means(data, variances, usable, positions, n_positions)
    means = np.where(present, means, 0.0)
    total_mean = means.sum(axis=0)
    total_present = present.sum(axis=0)
    n_other = total_present[None] - present[positions]
    valid = usable & (n_other > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        reference = (total_mean[None] - means[positions]) / n_other
        diff = np.where(valid, data - reference, np.nan)
        var_diff, var_ref = {}, {}
        for c, var_mean in var_means.items():
            vm = np.where(present, var_mean, 0.0)
            ref = (vm.sum(axis=0)[None] - vm[positions]) / n_other**2
            var_ref[c] = np.where(valid, ref, np.nan)
            var_diff[c] = np.where(valid, variances[c] + ref, np.nan)
    return diff, var_diff, var_ref, valid


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
    positions,
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
    positions : numpy.ndarray of int, shape (n_exp,)
        Nod position index of each exposure.
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
    diff, _, _, _ = _differences(data, variances, usable, positions)
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
        sigma = np.sqrt(total_var[e] + factor * (near_trace[e] * total_var[e] + sky_var))
        peak = np.maximum(peaks[e], peaks[others].max(axis=0))
        excess = data[e] - sources[e] - sky
        with np.errstate(invalid="ignore"):
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


def nod_difference(
    data,
    variances,
    positions,
    *,
    usable=None,
    trace_rows=None,
    n_sigma_outlier=5.0,
    outlier_model_fraction=0.1,
    trace_half_width=None,
    outlier_iterations=3,
):
    """Subtract from each exposure the mean of the exposures at the other nod positions.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_exp, ny, nx)
        Science arrays of the exposures of one source on a common grid.
    variances : dict of str to numpy.ndarray
        ``var_poisson``, ``var_rnoise``, ``var_flat``, each like ``data``.
    positions : array_like of int, shape (n_exp,)
        Nod position label of each exposure (see `group_nod_positions`).
    usable : numpy.ndarray of bool, optional
        Pixels that may be used (see `usable_pixels`); default: finite data.
    trace_rows : numpy.ndarray, shape (n_exp, nx), optional
        Predicted source row per exposure and column; needed for outlier
        rejection, which is skipped without it.
    n_sigma_outlier : float, optional
        Cross-exposure outlier threshold; 0 disables rejection.
    outlier_model_fraction : float, optional
        Fraction of the local source peak added to the threshold.
    trace_half_width : float, optional
        Rows either side of a trace taken as the source image; default: half the
        smallest separation between traces of different positions.
    outlier_iterations : int, optional
        Rounds of rejection (each recomputes the source model without the
        pixels already rejected).

    Returns
    -------
    NodDiffResult

    Raises
    ------
    ValueError
        If shapes disagree or fewer than two nod positions are given.
    """
    data = np.asarray(data, dtype=float)
    if data.ndim != 3:
        raise ValueError(f"data must have shape (n_exp, ny, nx), got {data.shape}")
    _, positions = np.unique(np.asarray(positions), return_inverse=True)
    if positions.size != data.shape[0]:
        raise ValueError(
            f"positions must have one entry per exposure ({data.shape[0]}), got {positions.size}"
        )
    if positions.max() < 1:
        raise ValueError("nod differencing needs at least two nod positions, got 1")
    variances = {c: np.asarray(variances[c], dtype=float) for c in VARIANCE_COMPONENTS}
    for c, var in variances.items():
        if var.shape != data.shape:
            raise ValueError(f"{c} has shape {var.shape}, data has {data.shape}")
    usable = np.isfinite(data) if usable is None else (np.asarray(usable, bool) & np.isfinite(data))
    outliers = np.zeros(data.shape, dtype=bool)
    if n_sigma_outlier > 0 and trace_rows is not None:
        trace_rows = np.asarray(trace_rows, dtype=float)
        half_width = trace_half_width or _default_half_width(trace_rows, positions)
        # Each round rebuilds the sky and source models without the pixels the
        # previous round rejected, then tests every pixel afresh: a hit that
        # leaked into another exposure's model in round one cannot leave a false
        # flag behind.
        for _ in range(outlier_iterations):
            new = find_cross_exposure_outliers(
                data,
                variances,
                usable & ~outliers,
                positions,
                trace_rows,
                n_sigma=n_sigma_outlier,
                model_fraction=outlier_model_fraction,
                half_width=half_width,
                tested=usable,
            )
            if np.array_equal(new, outliers):
                break
            outliers = new
    use = usable & ~outliers
    diff, var_diff, var_ref, valid = _differences(data, variances, use, positions)
    log.debug(
        "nod difference: %d exposures, %d positions, %d outliers",
        data.shape[0],
        positions.max() + 1,
        outliers.sum(),
    )
    return NodDiffResult(
        data=diff,
        variances=var_diff,
        ref_variances=var_ref,
        valid=valid,
        usable=use,
        outliers=outliers,
        positions=positions,
    )


def _default_half_width(trace_rows, positions):
    """Half the smallest median separation between traces of different positions."""
    seps = [
        np.nanmedian(np.abs(trace_rows[e] - trace_rows[f]))
        for e in range(len(positions))
        for f in range(len(positions))
        if positions[e] != positions[f]
    ]
    return max(0.5 * min(seps), 1.0)
