"""Optimal (Horne 1986) extraction of rectified spectra, and its Cramér–Rao bound.

Pure numpy.  Images are ``(n_offset, n_wave)``: cross-dispersion first.

The estimator.  Bin ``i`` of a wavelength column has expectation ``F · P_i``,
with ``P_i`` the fraction of the source's flux that the bin holds (the
rectified profile, `nodcombine.rectify.nearest_bin`) and variance ``V_i``.  The
minimum-variance linear unbiased estimate of ``F`` from the usable bins is

    F̂ = Σ_i P_i R_i / V_i  /  Σ_i P_i² / V_i,
    Var(F̂) = Σ_i a_i² V_i = 1 / Σ_i P_i² / V_i,   a_i = (P_i / V_i) / Σ_j P_j² / V_j,

Horne's equations (8)–(9).  Because ``P`` is the fraction of the total, a
masked bin simply drops out of both sums: the estimate stays one of the total
flux, which is what Horne's renormalisation of the profile over the good pixels
achieves.  Each variance component is propagated with the same coefficients
``a_i``, so ``FLUX_VAR_POISSON + FLUX_VAR_RNOISE + FLUX_VAR_FLAT`` is the total.

The bound.  `flux_information` gives the Fisher information on ``F`` of the
exposures themselves, each pixel having a free sky: no unbiased estimator from
the same pixels can have a smaller variance than its inverse.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from nodcombine.variances import VARIANCE_COMPONENTS

__all__ = [
    "OptimalSpectrum",
    "default_half_width",
    "flux_information",
    "optimal_extract",
    "window_bins",
]


@dataclass(frozen=True)
class OptimalSpectrum:
    """Flux per wavelength bin from optimal extraction.

    Attributes
    ----------
    flux : numpy.ndarray, shape (n_wave,)
        Estimated total flux of each column, in the data unit times pixels; NaN
        where no usable bin carries profile.
    variances : dict of str to numpy.ndarray
        Variance of ``flux`` per component (`VARIANCE_COMPONENTS`).
    npixels : numpy.ndarray of int
        Bins that entered each column's estimate.
    profile_used : numpy.ndarray
        Sum of the profile over those bins: the fraction of the source's light
        the estimate rests on (1 when nothing is masked and the window holds
        the whole profile).
    model : numpy.ndarray, shape (n_offset, n_wave)
        ``F̂ · P`` over the window.
    rejected : numpy.ndarray of bool, shape (n_offset, n_wave)
        Bins left out as outliers (``clip_sigma``).
    """

    flux: np.ndarray
    variances: dict
    npixels: np.ndarray
    profile_used: np.ndarray
    model: np.ndarray
    rejected: np.ndarray

    @property
    def variance(self):
        """Total variance of ``flux``."""
        return sum(self.variances.values())

    @property
    def error(self):
        """1σ error of ``flux``."""
        return np.sqrt(self.variance)


def optimal_extract(data, variances, profile, usable, *, min_profile=1e-3, clip_sigma=None):
    """Horne optimal extraction of each wavelength column.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_offset, n_wave)
        Rectified image.
    variances : dict of str to numpy.ndarray, shape (n_offset, n_wave)
        Its variance components.
    profile : numpy.ndarray, shape (n_offset, n_wave)
        Fraction of the column's source flux in each bin.
    usable : numpy.ndarray of bool, shape (n_offset, n_wave)
        Bins to use (inside the extraction window, not flagged).
    min_profile : float, optional
        A column whose usable bins hold less than this fraction of the profile
        gets no estimate (NaN).
    clip_sigma : float or None, optional
        Reject outliers as Horne (1986, §4) does: while a column's worst bin
        deviates from ``F̂ · P`` by more than ``clip_sigma`` times its standard
        deviation, drop it and re-extract.  None or 0: no rejection.

    Returns
    -------
    OptimalSpectrum
    """
    data = np.asarray(data, dtype=float)
    total = sum(np.asarray(variances[c], dtype=float) for c in VARIANCE_COMPONENTS)
    profile = np.asarray(profile, dtype=float)
    with np.errstate(invalid="ignore"):
        use = (
            np.asarray(usable, bool)
            & np.isfinite(data)
            & np.isfinite(total)
            & (total > 0)
            & np.isfinite(profile)
            & (profile > 0)
        )
    kept = use.copy()
    coefficients, extracted, flux = _horne(data, total, profile, kept, min_profile)
    for _ in range(_MAX_REJECTION_ROUNDS if clip_sigma else 0):
        worst = _worst_outliers(data, total, profile, kept, flux, clip_sigma)
        if not worst.any():
            break
        kept &= ~worst
        coefficients, extracted, flux = _horne(data, total, profile, kept, min_profile)
    out_var = {}
    for c in VARIANCE_COMPONENTS:
        component = np.where(kept, np.asarray(variances[c], dtype=float), 0.0)
        out_var[c] = np.where(extracted, (coefficients**2 * component).sum(axis=0), np.nan)
    p = np.where(kept, profile, 0.0)
    model = np.where(kept & extracted, p * np.where(extracted, flux, 0.0), 0.0)
    return OptimalSpectrum(
        flux=flux,
        variances=out_var,
        npixels=kept.sum(axis=0),
        profile_used=p.sum(axis=0),
        model=model,
        rejected=use & ~kept,
    )


#: at most this many bins are rejected from one column
_MAX_REJECTION_ROUNDS = 3


def _horne(data, total, profile, kept, min_profile):
    """Coefficients ``a_i``, which columns have an estimate, and the estimate."""
    inverse = np.where(kept, 1.0 / np.where(kept, total, 1.0), 0.0)
    p = np.where(kept, profile, 0.0)
    information = (p**2 * inverse).sum(axis=0)
    extracted = (p.sum(axis=0) >= min_profile) & (information > 0)
    coefficients = p * inverse / np.where(extracted, information, 1.0)
    flux = np.where(extracted, (coefficients * np.where(kept, data, 0.0)).sum(axis=0), np.nan)
    return coefficients, extracted, flux


def _worst_outliers(data, total, profile, kept, flux, clip_sigma):
    """The most deviant kept bin of each column, where it exceeds ``clip_sigma``.

    A cosmic ray hits one bin; a profile that does not quite fit the source
    leaves residuals that change smoothly along the dispersion.  So each bin's
    normalised residual is compared with the median of the same row in the
    `_NEIGHBOURS` - 1 columns around it (not itself; 0 if fewer than 3 have
    one), and the deviation allows for a profile off by `_PROFILE_TOLERANCE`
    of the model: the core of a bright source, or a bright line of slightly
    different shape, keeps its bins.  Hits three or more columns wide (a
    snowball) look like such a line and are kept.  A column extracted more
    than `_NEGATIVE_SIGMA` errors below zero, which no source gives, is judged
    against its neighbours' flux instead of its own: hits that follow the
    profile (a track along the slit through the core, or a hit in the other
    exposure under the source) make such columns.
    """
    valid = kept & np.isfinite(flux)[None, :]
    # the bins in play, masked once: d, p and V of the others are 0, 0 and 1
    d = np.where(valid, data, 0.0)
    p = np.where(valid, profile, 0.0)
    variance = np.where(valid, total, 1.0)
    information = p**2 / variance
    residual = _deleted_residuals(d, p, variance, information, flux)
    inverse_error = np.sqrt(information.sum(axis=0))  # 1 / error of F̂
    with np.errstate(invalid="ignore"):
        negative = np.nan_to_num(flux) * inverse_error < -_NEGATIVE_SIGMA
    if negative.any():
        model = _neighbour_flux(flux)[None, :] * p
        against = (d - model) / np.sqrt(variance + (_PROFILE_TOLERANCE * model) ** 2)
        residual[:, negative] = against[:, negative]
    residual[~valid] = np.nan
    neighbours = residual[:, _neighbour_columns(residual.shape[1])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows with no neighbours
        local = np.nanmedian(neighbours, axis=2)
    # fewer than 3 neighbours give no robust local level (one may be a hit)
    local = np.where(np.isfinite(neighbours).sum(axis=2) >= 3, local, 0.0)
    deviation = np.where(valid, np.abs(residual - local), 0.0)
    rows = np.argmax(deviation, axis=0)
    columns = np.arange(deviation.shape[1])
    worst = np.zeros_like(kept)
    exceed = deviation[rows, columns] > clip_sigma
    worst[rows[exceed], columns[exceed]] = True
    return worst


def _deleted_residuals(d, p, variance, information, flux):
    """Each bin's residual against the estimate from the other bins, in sigma.

    A hit also pulls F̂ towards itself, which hides it in the plain residual.
    With w_i the bin's share of the information, D_i − F̂ P_i = (1 − w_i)
    (D_i − F̂₋ᵢ P_i) and Var(D_i − F̂₋ᵢ P_i) = V_i / (1 − w_i).
    """
    total_information = information.sum(axis=0)
    kept_share = np.clip(1.0 - information / np.maximum(total_information, 1e-300), 1e-3, 1.0)
    # the profile's allowance scales with the flux the *other* bins give: a hit
    # in a bin holding most of a faint source's information inflates F̂, and an
    # allowance on F̂ P_i would hide the hit and blame its neighbours instead
    others = (np.nan_to_num(flux) * total_information)[None, :] - p * d / variance
    remaining = total_information[None, :] - information
    # a bin that holds (nearly) all of a column's information has no others to
    # be judged against: no allowance from them
    alone = remaining <= 1e-9 * np.maximum(total_information[None, :], 1e-300)
    flux_without = np.where(alone, 0.0, others / np.where(alone, 1.0, remaining))
    allowance = kept_share * _PROFILE_TOLERANCE * flux_without * p
    model = np.nan_to_num(flux)[None, :] * p
    return (d - model) / np.sqrt(variance * kept_share + allowance**2)


def _neighbour_flux(flux):
    """Median flux of the neighbouring columns, at least 0 (0 with fewer than 3)."""
    neighbours = flux[_neighbour_columns(flux.size)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN neighbours
        level = np.nanmedian(neighbours, axis=1)
    level = np.where(np.isfinite(neighbours).sum(axis=1) >= 3, level, 0.0)
    return np.maximum(level, 0.0)


#: columns over which a residual must stand out to be an outlier
_NEIGHBOURS = 5


def _neighbour_columns(n):
    """For each column, the `_NEIGHBOURS` - 1 nearest other columns (one-sided at the ends)."""
    width = min(_NEIGHBOURS, n)
    start = np.clip(np.arange(n) - width // 2, 0, n - width)
    window = start[:, None] + np.arange(width)[None, :]
    others = window != np.arange(n)[:, None]
    # every window holds its own column once: drop it, keep the rest in order
    return window[others].reshape(n, width - 1)


#: fractional error of the profile model allowed for when looking for outliers
_PROFILE_TOLERANCE = 0.1

#: a column's flux this many errors below zero is not a source's (0.13 % of pure
#: noise columns; those are only judged against their neighbours, at clip_sigma)
_NEGATIVE_SIGMA = 3.0


def flux_information(profiles, variances):
    """Fisher information on a source's flux in each pixel, the sky free per pixel.

    Exposure ``j`` at a pixel measures ``κ + F P_j`` with variance ``V_j``
    (``κ`` the sky, common to the exposures; ``F`` the flux).  Profiling out
    ``κ`` leaves, for that pixel,

        I = Σ_j P_j² / V_j − (Σ_j P_j / V_j)² / Σ_j 1 / V_j,

    and the information of a set of pixels that see the same ``F`` is the sum.
    ``1 / I`` is the Cramér–Rao bound on ``Var(F̂)`` for any unbiased estimator
    from the exposures (differences are functions of them, so nothing computed
    from the differences can beat it).

    Parameters
    ----------
    profiles : numpy.ndarray, shape (n_exp, ny, nx)
        True fraction of the flux in each pixel of each exposure.
    variances : numpy.ndarray, shape (n_exp, ny, nx)
        True variance of each exposure's pixel (NaN or 0: pixel not observed).

    Returns
    -------
    numpy.ndarray, shape (ny, nx)
        Information per detector pixel.
    """
    profiles = np.asarray(profiles, dtype=float)
    variances = np.asarray(variances, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.isfinite(variances) & (variances > 0) & np.isfinite(profiles)
        inverse = np.where(observed, 1.0 / np.where(observed, variances, 1.0), 0.0)
    p = np.where(observed, profiles, 0.0)
    s_pp = (p**2 * inverse).sum(axis=0)
    s_p = (p * inverse).sum(axis=0)
    s_1 = inverse.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s_1 > 0, s_pp - s_p**2 / np.where(s_1 > 0, s_1, 1.0), 0.0)


def default_half_width(nod_separation, fitted_sigma=None):
    """Half-width of the extraction window, pixels from the source.

    Half the nod separation: the window then holds none of the negative
    images, and no bin in it shares noise with another.  A profile fitted to
    a stock ``_s2d`` (no nod separation known) gets 4 of its sigmas; 5 pixels
    when neither is known.
    """
    if fitted_sigma is not None:
        return 4.0 * fitted_sigma
    return nod_separation / 2.0 if np.isfinite(nod_separation) else 5.0


def window_bins(offset, shape, *, half_width):
    """Bins within ``half_width`` pixels of the source, as a boolean image.

    Parameters
    ----------
    offset : numpy.ndarray, shape (n_offset,)
        Pixels along the slit from the source, per row.
    shape : tuple
        ``(n_offset, n_wave)``.
    half_width : float
        Largest accepted ``|offset|``.

    Returns
    -------
    numpy.ndarray of bool, shape ``shape``
    """
    inside = np.abs(np.asarray(offset, dtype=float)) <= half_width
    return np.broadcast_to(inside[:, None], shape)
