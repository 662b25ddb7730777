"""Rectification by nearest-bin assignment: independent bins, exact variances.

Pure numpy.  Every usable pixel of every exposure's nod difference goes whole
into one bin of a common ``(offset, wavelength)`` grid: the wavelength bin whose
centre is nearest to the pixel's wavelength and the cross-dispersion bin nearest
to its distance along the slit from the fitted trace.  Nothing is interpolated,
so no two bins share a pixel and, within an exposure, neighbouring bins share no
noise (drizzling spreads each pixel over several bins and correlates them).

The estimator.  In bin ``b`` the value is the weighted mean of its pixels,

    R_b = Σ_i w_i D_i / W_b,        W_b = Σ_i w_i,

with weights fixed before the data are looked at (`pixel_weights`).  Its variance
is exact for that estimator once the shared reference is counted: the
differences of two exposures at the same nod position subtract the same
reference ``O`` on the same detector pixel (`nodcombine.nod_diff.noddiff`), so for the
pixels of bin ``b`` grouped by (nod position, detector pixel) ``g``,

    Var(R_b) = [ Σ_i w_i² (V_i − r_i) + Σ_g (Σ_{i∈g} w_i)² r_g ] / W_b²,

per variance component, where ``V_i`` is the variance of the difference and
``r_g`` that of the reference.  Treating the shared term as independent (as
msaexp does) under-estimates the error by 10–13 % for two exposures a position
(DESIGN.md §5).

The profile of the bin is the same weighted mean of each pixel's unit profile
(the fraction of the source's flux that falls in that pixel), so ``R_b`` has
expectation ``F(λ_b) · P_b`` for a spectrum that is smooth over a bin; this is
what `nodcombine.extract_1d.optimal` fits.
"""

from dataclasses import dataclass

import numpy as np

from nodcombine.nod_diff.noddiff import difference_images
from nodcombine.variances import VARIANCE_COMPONENTS

__all__ = [
    "DEFAULT_WEIGHT_TYPE",
    "WEIGHT_TYPES",
    "RectifiedImage",
    "bin_edges",
    "columns_on_grid",
    "difference_profile",
    "in_slit_fraction",
    "pixel_weights",
    "rectify",
    "wavelength_grid",
]

#: weighting of the pixels of a bin (``weight_type``), as msaexp names them
WEIGHT_TYPES = ("ivm", "poisson", "exptime", "mask")
#: the default: inverse read-noise variance, blind to the source's own photons
DEFAULT_WEIGHT_TYPE = "ivm"


@dataclass(frozen=True)
class RectifiedImage:
    """One source rectified onto a ``(offset, wavelength)`` grid.

    Attributes
    ----------
    wavelength : numpy.ndarray, shape (n_wave,)
        Bin centres, micron.
    offset : numpy.ndarray, shape (n_offset,)
        Cross-dispersion bin centres, pixels along the slit from the fitted trace.
    data : numpy.ndarray, shape (n_offset, n_wave)
        Weighted mean of the bin's pixels; NaN in empty bins.
    variances : dict of str to numpy.ndarray
        Exact variance of ``data`` per component (`VARIANCE_COMPONENTS`).
    weight : numpy.ndarray
        Sum of the pixel weights (``wht``); 0 in empty bins.
    npixels : numpy.ndarray of int
        Number of pixels in each bin.
    profile : numpy.ndarray
        Weighted mean of the pixels' unit source profile (positive image only).
    """

    wavelength: np.ndarray
    offset: np.ndarray
    data: np.ndarray
    variances: dict
    weight: np.ndarray
    npixels: np.ndarray
    profile: np.ndarray

    @property
    def variance(self):
        """Total variance, the sum of the components."""
        return sum(self.variances.values())

    @property
    def empty(self):
        """Bins that received no pixel."""
        return self.npixels == 0


def wavelength_grid(wavelengths, *, linear):
    """Output wavelength bin centres from the exposures' wavelength per column.

    Parameters
    ----------
    wavelengths : numpy.ndarray, shape (n_exp, nx)
        Wavelength of each exposure's dispersion pixels at the trace, micron;
        NaN where undefined.
    linear : bool
        ``True`` (gratings): a linear grid with the median step of the inputs
        over their whole range.  ``False`` (PRISM): the native, non-uniform
        sampling, the exposures' mean wavelength of each detector column.

    Returns
    -------
    numpy.ndarray
        Increasing bin centres.

    Raises
    ------
    ValueError
        If fewer than two wavelengths are defined.
    """
    wavelengths = np.asarray(wavelengths, dtype=float)
    finite = np.isfinite(wavelengths)
    if finite.sum() < 2:
        raise ValueError("fewer than two defined wavelengths; cannot build a grid")
    if linear:
        steps = np.abs(np.diff(wavelengths, axis=1))
        step = float(np.median(steps[np.isfinite(steps) & (steps > 0)]))
        lo, hi = wavelengths[finite].min(), wavelengths[finite].max()
        n = int(np.floor((hi - lo) / step + 1e-9)) + 1
        return lo + step * np.arange(n)
    counts = finite.sum(axis=0)
    columns = counts > 0
    means = np.where(finite, wavelengths, 0.0).sum(axis=0)[columns] / counts[columns]
    return np.unique(means)


def difference_profile(profile, valid, positions):
    """The profile of a unit source in each nod difference: positive image minus negatives.

    Parameters
    ----------
    profile : numpy.ndarray, shape (n_exp, ny, nx)
        Fraction of the source's flux in each pixel of each exposure's own
        image (NaN where unknown).
    valid : numpy.ndarray of bool, shape (n_exp, ny, nx)
        The differences ``nod_diff`` formed: there the references were built
        from exactly the exposures that had data, as for the model here.
    positions : numpy.ndarray of int, shape (n_exp,)

    Returns
    -------
    numpy.ndarray, shape (n_exp, ny, nx)
        ``P_e − mean over the other positions of their position means of P``,
        the estimator of `nodcombine.nod_diff.noddiff.nod_difference` applied
        to the unit images: where another position's image overlaps this
        exposure's window, its (negative) share is in the profile.
    """
    present = np.isfinite(profile)
    where_valid = difference_images(profile, valid & present, positions)
    elsewhere = difference_images(profile, present, positions)
    return np.where(valid, where_valid, elsewhere)


def in_slit_fraction(profile, illuminated):
    """Fraction of each exposure's source image that falls on the illuminated slit, per column.

    Parameters
    ----------
    profile : numpy.ndarray, shape (n_exp, ny, nx)
        Fraction of the source's flux (infinite slit) in each pixel.
    illuminated : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Pixels on the slit (inside its open length).

    Returns
    -------
    numpy.ndarray, shape (n_exp, nx)
    """
    return np.where(illuminated & np.isfinite(profile), profile, 0.0).sum(axis=1)


def columns_on_grid(wave_grid, wavelengths, values):
    """A quantity known per exposure and column, on a wavelength grid (mean over exposures).

    Parameters
    ----------
    wave_grid : numpy.ndarray, shape (n_wave,)
    wavelengths : numpy.ndarray, shape (n_exp, nx)
        Wavelength of each exposure's columns; NaN where unknown.
    values : numpy.ndarray, shape (n_exp, nx)

    Returns
    -------
    numpy.ndarray, shape (n_wave,)
        Linear interpolation in each exposure (held constant beyond its ends),
        averaged over the exposures.
    """
    out = []
    for wave, value in zip(wavelengths, values, strict=True):
        ok = np.isfinite(wave) & np.isfinite(value)
        if ok.sum() >= 2:
            order = np.argsort(wave[ok])
            out.append(np.interp(wave_grid, wave[ok][order], value[ok][order]))
    if not out:
        return np.full(np.shape(wave_grid), np.nan)
    return np.mean(out, axis=0)


def bin_edges(centres):
    """Edges half-way between bin centres, the outer ones mirrored."""
    centres = np.asarray(centres, dtype=float)
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate(
        [[centres[0] - (mid[0] - centres[0])], mid, [centres[-1] + (centres[-1] - mid[-1])]]
    )


def pixel_weights(weight_type, variances, exposure_time):
    """Weight of every pixel in the bin means.

    Parameters
    ----------
    weight_type : str
        ``ivm``: inverse read-noise variance ``1 / var_rnoise`` of the
        difference (the default: it does not depend on the source counts, so it
        cannot bias the mean); ``poisson``: inverse total variance (optimal when
        the variances are exact, biased low when a noisy Poisson estimate enters
        them); ``exptime``: the exposure time; ``mask``: 1.
    variances : dict of str to numpy.ndarray, shape (n_exp, ny, nx)
        Variance components of the differences.
    exposure_time : numpy.ndarray, shape (n_exp,)
        Effective exposure time of each exposure, s.

    Returns
    -------
    numpy.ndarray, shape (n_exp, ny, nx)
        Non-negative weights; 0 where the variance is not positive and finite.
    """
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"weight_type must be one of {WEIGHT_TYPES}, got {weight_type!r}")
    total = sum(variances[c] for c in VARIANCE_COMPONENTS)
    with np.errstate(invalid="ignore", divide="ignore"):
        good = np.isfinite(total) & (total > 0)
        if weight_type == "ivm":
            rnoise = variances["var_rnoise"]
            good &= rnoise > 0
            weights = 1.0 / np.where(good, rnoise, 1.0)
        elif weight_type == "poisson":
            weights = 1.0 / np.where(good, total, 1.0)
        elif weight_type == "exptime":
            weights = np.broadcast_to(np.asarray(exposure_time, float)[:, None, None], total.shape)
        else:
            weights = np.ones(total.shape)
    return np.where(good, weights, 0.0)


def rectify(
    data,
    variances,
    ref_variances,
    weights,
    wavelength,
    offset,
    profile,
    positions,
    *,
    wave_grid,
    half_height,
):
    """Put every usable pixel of one source's differences into its nearest bin.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_exp, ny, nx)
        Nod differences on a common detector grid (pixel ``(y, x)`` is the same
        detector pixel in every exposure); NaN where not formed.
    variances, ref_variances : dict of str to numpy.ndarray, shape (n_exp, ny, nx)
        Variance of each difference and of its subtracted reference, per component.
    weights : numpy.ndarray, shape (n_exp, ny, nx)
        Pixel weights (`pixel_weights`), 0 for pixels to leave out.
    wavelength : numpy.ndarray, shape (n_exp, ny, nx)
        Wavelength of every pixel, micron.
    offset : numpy.ndarray, shape (n_exp, ny, nx)
        Pixels along the slit from the fitted trace of that exposure.
    profile : numpy.ndarray, shape (n_exp, ny, nx)
        Fraction of the source flux of the column that falls in each pixel.
    positions : numpy.ndarray of int, shape (n_exp,)
        Nod position of each exposure.
    wave_grid : numpy.ndarray
        Wavelength bin centres (`wavelength_grid`).
    half_height : int
        The grid runs over offsets ``-half_height … +half_height``.

    Returns
    -------
    RectifiedImage
    """
    data = np.asarray(data, dtype=float)
    ny, nx = data.shape[1:]
    wave_grid = np.asarray(wave_grid, dtype=float)
    n_wave, n_off = wave_grid.size, 2 * half_height + 1
    edges = bin_edges(wave_grid)

    with np.errstate(invalid="ignore"):
        iw = np.searchsorted(edges, wavelength) - 1
        shifted = np.rint(np.where(np.isfinite(offset), offset, np.inf))
        inside = np.isfinite(shifted) & (np.abs(shifted) <= half_height)
        use = (
            (weights > 0)
            & np.isfinite(data)
            & np.isfinite(wavelength)
            & (iw >= 0)
            & (iw < n_wave)
            & inside
            & np.isfinite(profile)
        )
    io = np.where(use, shifted, 0).astype(np.int64) + half_height
    bins = (io * n_wave + iw)[use]
    w = weights[use]
    size = n_off * n_wave

    def summed(values):
        return np.bincount(bins, values, minlength=size)

    weight = summed(w)
    npixels = np.bincount(bins, minlength=size)
    filled = weight > 0
    norm = np.where(filled, weight, 1.0)
    mean = np.where(filled, summed(w * data[use]) / norm, np.nan)
    mean_profile = np.where(filled, summed(w * profile[use]) / norm, 0.0)

    # pixels of a bin that share a reference: same nod position and detector pixel
    pixel = np.broadcast_to(np.arange(ny * nx).reshape(1, ny, nx), data.shape)[use]
    position = np.broadcast_to(np.asarray(positions).reshape(-1, 1, 1), data.shape)[use]
    n_pos = int(np.max(positions)) + 1
    group_key = (bins * n_pos + position) * (ny * nx) + pixel
    _, first, group = np.unique(group_key, return_index=True, return_inverse=True)
    group_weight = np.bincount(group, w)
    group_bin = bins[first]

    out_var = {}
    for c in VARIANCE_COMPONENTS:
        v = variances[c][use]
        r = ref_variances[c][use]
        own = summed(w**2 * (v - r))
        shared = np.bincount(group_bin, group_weight**2 * r[first], minlength=size)
        out_var[c] = np.where(filled, (own + shared) / norm**2, np.nan).reshape(n_off, n_wave)

    shape = (n_off, n_wave)
    return RectifiedImage(
        wavelength=wave_grid,
        offset=np.arange(-half_height, half_height + 1, dtype=float),
        data=mean.reshape(shape),
        variances=out_var,
        weight=weight.reshape(shape),
        npixels=npixels.reshape(shape),
        profile=mean_profile.reshape(shape),
    )
