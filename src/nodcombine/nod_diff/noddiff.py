"""Nod differencing of slit exposures: the sky-removing estimator and its variance.

Masks applied before it live in `nodcombine.nod_diff.masks`, cross-exposure
outlier rejection in `nodcombine.nod_diff.outliers`.

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
combination can count it once (msaexp's current code treats the shared term as
independent, which DESIGN.md §5 puts at a 10–13 % error under-estimate; its v2
over-estimated errors by N^(1/4), msaexp PR #54 and the DJA v2 release note).
A constant sky cancels exactly.
"""

import logging
from dataclasses import dataclass

import numpy as np

from nodcombine.nod_diff.outliers import find_cross_exposure_outliers
from nodcombine.variances import VARIANCE_COMPONENTS

__all__ = [
    "DEFAULT_N_SIGMA_OUTLIER",
    "DEFAULT_OUTLIER_ITERATIONS",
    "DEFAULT_OUTLIER_MODEL_FRACTION",
    "POSITION_KEYS",
    "NodDiffResult",
    "check_partners",
    "difference_images",
    "group_nod_positions",
    "label_positions",
    "nod_difference",
    "nod_separation",
]

log = logging.getLogger(__name__)

#: cross-exposure outlier threshold, sigma (the step's default too)
DEFAULT_N_SIGMA_OUTLIER = 5.0
#: fraction of the source model's spectral structure added to the outlier threshold
DEFAULT_OUTLIER_MODEL_FRACTION = 0.3
#: rounds of outlier rejection
DEFAULT_OUTLIER_ITERATIONS = 3

#: metadata that can identify nod positions; ``auto`` is the dither offset along the slit
POSITION_KEYS = ("auto", "position_number", "shutter_state", "x_offset", "y_offset")
_OFFSET_KEYS = ("auto", "x_offset", "y_offset")


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
    nod_separation : float
        Smallest median distance between the predicted traces of two nod
        positions, rows (inf without traces).
    """

    data: np.ndarray
    variances: dict
    ref_variances: dict
    valid: np.ndarray
    usable: np.ndarray
    outliers: np.ndarray
    positions: np.ndarray
    nod_separation: float = np.inf


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


def label_positions(values, *, position_key, tolerance):
    """Nod position label of each exposure (or slit) from its metadata value.

    Parameters
    ----------
    values : list
        The value of ``position_key`` per exposure, or an exception instance
        where it could not be read (its label is that exception).
    position_key : str
        One of `POSITION_KEYS`: offsets (``auto``, ``x_offset``, ``y_offset``)
        are grouped within ``tolerance`` (see `group_nod_positions`); position
        numbers and shutter states label by equality.
    tolerance : float
        Largest gap between offsets of one position.

    Returns
    -------
    list
        An int label per value, or the exception it carried.
    """
    if position_key not in POSITION_KEYS:
        raise ValueError(f"position_key must be one of {POSITION_KEYS}, got {position_key!r}")
    known = [v for v in values if not isinstance(v, Exception)]
    if not known:
        return list(values)
    if position_key in _OFFSET_KEYS:
        found = iter(group_nod_positions(known, tolerance=tolerance))
    else:
        found = iter(np.unique(known, return_inverse=True)[1])
    return [v if isinstance(v, Exception) else int(next(found)) for v in values]


def check_partners(positions, position_key):
    """The positions as an array; ValueError unless they cover two nod positions or more."""
    positions = np.asarray(positions, dtype=int)
    if positions.size < 2:
        raise ValueError(f"{positions.size} usable exposure(s); a nod difference needs two")
    if np.unique(positions).size < 2:
        raise ValueError(
            f"all {positions.size} exposures are at one nod position "
            f"({position_key}); there is no partner to difference against"
        )
    return positions


def nod_separation(trace_rows, positions):
    """Smallest median distance between the predicted traces of two nod positions.

    Parameters
    ----------
    trace_rows : numpy.ndarray, shape (n_exp, nx)
        Predicted source row of each exposure per column.
    positions : numpy.ndarray of int, shape (n_exp,)
        Nod position index of each exposure.

    Returns
    -------
    float
        Rows; inf if all exposures share one position.
    """
    separations = [
        np.nanmedian(np.abs(trace_rows[e] - trace_rows[f]))
        for e in range(len(positions))
        for f in range(len(positions))
        if positions[e] != positions[f]
    ]
    return float(min(separations)) if separations else np.inf


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


def difference_images(images, usable, positions):
    """Nod differences of noise-free images, such as a model of each exposure's source.

    Parameters
    ----------
    images : numpy.ndarray, shape (n_exp, ny, nx)
        What each exposure holds.
    usable : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Pixels that enter the position means.
    positions : numpy.ndarray of int, shape (n_exp,)
        Nod position index of each exposure, 0 .. n_positions − 1.

    Returns
    -------
    numpy.ndarray, shape (n_exp, ny, nx)
        ``D_e`` by the estimator of `nod_difference`; NaN where not defined.
    """
    return _differences(np.asarray(images, dtype=float), {}, usable, positions)[0]


def nod_difference(
    data,
    variances,
    positions,
    *,
    usable=None,
    trace_rows=None,
    n_sigma_outlier=DEFAULT_N_SIGMA_OUTLIER,
    outlier_model_fraction=DEFAULT_OUTLIER_MODEL_FRACTION,
    trace_half_width=None,
    outlier_iterations=DEFAULT_OUTLIER_ITERATIONS,
    wavelengths=None,
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
        Fraction of the high-passed source model nearby (its spectral structure,
        such as emission lines) added to the threshold.
    trace_half_width : float, optional
        Rows either side of a trace taken as the source image; default: half the
        smallest separation between traces of different positions.
    outlier_iterations : int, optional
        Rounds of rejection (each recomputes the source model without the
        pixels already rejected).
    wavelengths : numpy.ndarray, shape (n_exp, nx), optional
        Wavelength of each exposure's columns; the outlier test compares the
        exposures at equal wavelength when given.

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
    finite = np.isfinite(data)
    for var in variances.values():
        finite &= np.isfinite(var)
    usable = finite if usable is None else (np.asarray(usable, bool) & finite)
    outliers = np.zeros(data.shape, dtype=bool)
    separation = np.inf
    if trace_rows is not None:
        trace_rows = np.asarray(trace_rows, dtype=float)
        separation = nod_separation(trace_rows, positions)
    if n_sigma_outlier > 0 and trace_rows is not None:
        # the source image: half the way to the nearest image of another position
        half_width = trace_half_width or max(0.5 * separation, 1.0)
        # Each round rebuilds the sky and source models without the pixels the
        # previous round rejected, then tests every pixel afresh: a hit that
        # leaked into another exposure's model in round one cannot leave a false
        # flag behind.
        for _ in range(outlier_iterations):
            model_pixels = usable & ~outliers
            diff, diff_var = _differences(data, variances, model_pixels, positions)[:2]
            new = find_cross_exposure_outliers(
                data,
                variances,
                model_pixels,
                diff,
                sum(diff_var.values()),
                trace_rows,
                n_sigma=n_sigma_outlier,
                model_fraction=outlier_model_fraction,
                half_width=half_width,
                tested=usable,
                wavelengths=wavelengths,
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
        nod_separation=separation,
    )
