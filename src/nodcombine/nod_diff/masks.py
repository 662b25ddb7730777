"""Pixel masks applied before nod differencing.

Pure numpy/scipy; arrays ``(n_exposures, n_spatial, n_dispersion)``.  DQ bits are
passed in, not imported, so that the kernels stay free of pipeline packages.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["MaskSettings", "mask_pixels", "stuck_closed_mask", "usable_pixels"]


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
    stuck : list of int
        Shutters found stuck closed (positions in ``shutter_state``).
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
        # the slit spans from the first to the last finite pixel of each column:
        # a bad pixel inside it is no edge
        finite = np.isfinite(data)
        below = np.maximum.accumulate(finite, axis=1)
        above = np.maximum.accumulate(finite[:, ::-1], axis=1)[:, ::-1]
        covered = below & above
        structure = np.zeros((3, 3, 1), dtype=bool)
        structure[1, :, 0] = True  # along the slit only
        interior = ndimage.binary_erosion(
            covered, structure=structure, iterations=edge_pixels, border_value=0
        )
        ok &= interior
    return ok


def stuck_closed_mask(data, shutter_index, usable, *, threshold):
    """Pixels behind MSA shutters that are dark in every exposure.

    The MSA configuration does not change between nods, so a stuck-closed
    shutter is dark at the same detector pixels in all exposures, while the
    source lights a different shutter in each.  A shutter is stuck when, in
    every exposure, its median level is below ``threshold`` times the lower
    quartile of the other shutters' pixels (a sky level that a bright source in
    one of them does not raise).

    Parameters
    ----------
    data : numpy.ndarray, shape (n_exp, ny, nx)
        Science arrays (sky included: run before differencing).
    shutter_index : numpy.ndarray of int, shape (n_exp, ny, nx)
        Shutter of each pixel within the slitlet; negative outside shutters.
    usable : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Pixels to use for the levels.
    threshold : float
        Ratio below which a shutter counts as dark.

    Returns
    -------
    mask : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Pixels of shutters found stuck closed, in every exposure.
    stuck : list of int
        Shutters found stuck closed.
    """
    mask = np.zeros(data.shape, dtype=bool)
    measured = (shutter_index >= 0) & usable
    stuck = []
    for j in np.unique(shutter_index[measured]):
        dark = [
            _shutter_is_dark(data[e], shutter_index[e], measured[e], j, threshold)
            for e in range(data.shape[0])
        ]
        known = [d for d in dark if d is not None]
        if known and all(known):
            mask |= shutter_index == j
            stuck.append(int(j))
    return mask, stuck


def _shutter_is_dark(data, shutter_index, measured, shutter, threshold):
    """Whether one shutter is dark in one exposure; None if it cannot be told."""
    inside = measured & (shutter_index == shutter)
    outside = measured & (shutter_index != shutter)
    if not inside.any() or not outside.any():
        return None
    sky = np.percentile(data[outside], 25)
    if sky <= 0:
        return None
    return bool(np.median(data[inside]) < threshold * sky)
