"""Fit the spatial profile of a nodded slit spectrum along its trace.

Pure numpy/scipy; arrays are stacks of the exposures of one source on a common
grid, axis order ``(n_exposures, n_spatial, n_dispersion)``.

The model.  In exposure ``j`` the source's image at dispersion pixel ``x`` is a
pixel-integrated Gaussian in the along-slit coordinate ``u`` (pixels, measured
from the position the WCS predicts for the source in that exposure):

    P_j(u) = ∫_{u−½}^{u+½} N(u'; c(λ), σ(λ)) du',
    σ(λ)² = σ_PSF(λ)² + s²,    c(λ) = Σ_k a_k L_k(t(λ)),

with ``σ_PSF`` the nominal point-spread width (`nodcombine.psf`), ``s²`` the
intrinsic source width squared (allowed slightly below zero, so a point source
is not pinned to a bound), ``L_k`` Legendre polynomials of the wavelength scaled
to ``t ∈ [−1, 1]`` over the source's range.  Every exposure shares ``a_k`` and
``s²``; its flux per column is free and solved linearly.  The fit uses the exact
likelihood of the nod differences (`nodcombine.trace_fit.likelihood`), so the negative
images are the same images seen from the other exposures.

Complexity follows the signal.  The S/N of the source (weighted total flux over
its error, measured at the best point of a scan over constant offsets and a few
source widths) picks the model (thresholds in
`~nodcombine.trace_fit.solution.TraceFitSettings`):

==========================  =======================================
S/N                          model
==========================  =======================================
< ``min_snr`` (10)           fallback: predicted centre, PSF width
≥ ``min_snr``                constant offset, PSF width
≥ ``width_snr`` (20)         constant offset, free source width
≥ ``degree_snr[k-1]``        offset polynomial of degree k (40, 80)
==========================  =======================================

The fit minimises a Huber loss of the whitened residuals (a plain one when faint
columns share fluxes in blocks) with Gaussian priors on the offset coefficients
and bounds on every parameter, then rejects outlying pixels and refits.  A model
that reaches a bound, or needs more than 3 % of the pixels rejected, is retried
with the nominal width, then with lower degrees.
"""

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.polynomial import legendre

from nodcombine.profile import NO_HALO
from nodcombine.trace_fit.likelihood import evaluate_profile
from nodcombine.trace_fit.modelfit import choose_model, fit_limit
from nodcombine.trace_fit.profilemodel import (
    ProfileModel,
    centre_and_width2,
    exposure_background,
    total_sigma2,
)
from nodcombine.trace_fit.solution import TraceFitSettings, TraceSolution
from nodcombine.trace_fit.tracemodel import (
    ProfileObjective,
    difference_model,
    prepare_trace,
    profile_only,
    residual_spread,
    without_entries,
)

__all__ = ["fit_trace"]

log = logging.getLogger(__name__)

_SCAN_STEP = 0.25  # pixels between trial offsets of the initial scan
_SCAN_WIDTHS = (0.0, 1.0, 2.0, 3.0)  # pixels: intrinsic widths tried at the best offset
_SCAN_REFINE = 1.0  # pixels: offsets rescanned around the best one at the best width
_MIN_BLOCKS = 12  # flux blocks kept at least, so the offset polynomial stays constrained


def fit_trace(
    data,
    variance,
    valid,
    positions,
    along,
    wavelength,
    sigma_psf,
    *,
    usable=None,
    settings=None,
    forced=None,
    pixel_scale=None,
):
    """Fit the spatial profile of one source jointly over its nod differences.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_exp, ny, nx)
        Nod differences ``D_j`` on a common grid.
    variance : numpy.ndarray, shape (n_exp, ny, nx)
        Variance of each exposure alone: ``Var(D_j)`` minus the variance of the
        reference ``nod_diff`` subtracted.
    valid : numpy.ndarray of bool, shape (n_exp, ny, nx)
        The differences ``nod_diff`` formed (finite ``D_j``), all of them: the
        sky-free exposures are rebuilt from exactly this set.
    positions : array_like of int, shape (n_exp,)
        Nod position label of each exposure.
    along : numpy.ndarray, shape (n_exp, ny, nx)
        Along-slit coordinate of each pixel in each exposure, pixels from the
        source position the WCS predicts for that exposure; NaN off its cutout.
    wavelength : numpy.ndarray, shape (n_exp, nx)
        Wavelength at the source of each exposure's columns, micron.
    sigma_psf : numpy.ndarray, shape (n_exp, nx)
        Nominal point-source width per exposure and column, pixels.
    usable : numpy.ndarray of bool, shape (n_exp, ny, nx), optional
        Differences the fit may use (default: all valid ones); flags set after
        ``nod_diff`` go here, not into ``valid``.
    settings : TraceFitSettings, optional
        Thresholds, priors and bounds.
    forced : ForcedProfile, optional
        Use this centre and width instead of fitting them.
    pixel_scale : float, optional
        Arcsec per pixel along the slit: puts the prior on the source width
        (``settings.width_prior_arcsec``) in pixels; without it, no prior.

    Returns
    -------
    TraceSolution

    Raises
    ------
    ValueError
        If shapes disagree, fewer than two nod positions are given, no pixel is
        usable, or the differences do not close (an exposure that ``nod_diff``
        differenced against is missing).
    """
    settings = settings or TraceFitSettings()
    geom, cdata = prepare_trace(
        data, variance, valid, usable, positions, along, wavelength, sigma_psf
    )
    if forced is not None:
        return _forced_solution(geom, cdata, forced)
    prior = _width_prior(settings, pixel_scale)
    start, snr, snr_column, columns = _scan(geom, cdata, settings)
    geom = replace(geom, blocks=_flux_blocks(columns, cdata, settings))
    # below min_snr the centre stays where the WCS puts it; the width is always
    # fitted, held by its prior when the data say little (no switch to the PSF)
    base = ProfileModel(0 if snr >= settings.min_snr else -1, 0, width_prior=prior)
    chosen = choose_model(geom, cdata, base, start, snr, settings)
    if chosen is not None:
        return _fitted_solution(geom, cdata, *chosen, snr, snr_column)
    limit = fit_limit(geom, settings)
    reason = f"S/N {snr:.1f} but no fit converged inside the bounds (offsets ±{limit:.2f} px)"
    return _fallback(geom, cdata, snr, snr_column, reason, prior)


def _width_prior(settings, pixel_scale):
    """Prior (centre, width) on the constant term of s², pixels²; None without a pixel scale.

    The prior on the intrinsic sigma ``s`` (``width_prior_arcsec`` ±
    ``width_prior_sigma_arcsec``) is carried to ``s²`` linearly about its centre.
    """
    if pixel_scale is None or not np.isfinite(pixel_scale) or pixel_scale <= 0:
        return None
    centre = settings.width_prior_arcsec / pixel_scale
    spread = settings.width_prior_sigma_arcsec / pixel_scale
    return centre**2, max(2.0 * centre * spread, spread**2)


def _scan(geom, cdata, settings):
    """Best constant offset and intrinsic width on a grid, and the S/N measured there.

    Offsets are scanned at the nominal width, then a few widths at the best
    offset (an extended source measured with a point-source profile would look
    fainter than it is), then the offsets within a pixel again at the best width.
    """
    limit = fit_limit(geom, settings)
    offsets = np.arange(-limit, limit + 1e-9, _SCAN_STEP)
    widths2 = [w**2 for w in _SCAN_WIDTHS if w <= settings.max_source_sigma]

    # residuals beyond the clip count as the clip: the scan is as robust to
    # unflagged cosmic rays as the fit that starts from it
    cap = settings.clip_sigma * float(np.median(residual_spread(cdata)[cdata.active]))

    def scanned(offset, s2):
        objective = ProfileObjective(geom, cdata, ProfileModel(0, -1, s2), settings)
        return objective.value(np.array([offset]), cap)

    def chi2(offset, s2):
        return scanned(offset, s2)[1]

    best = offsets[int(np.argmin([chi2(a, 0.0) for a in offsets]))]
    s2 = widths2[int(np.argmin([chi2(best, w) for w in widths2]))]
    if s2 > 0:
        # the width moves the best offset by a fraction of a pixel, not more
        near = offsets[np.abs(offsets - best) <= _SCAN_REFINE + 1e-9]
        best = near[int(np.argmin([chi2(a, s2) for a in near]))]
    columns = scanned(best, s2)[0]
    snr, snr_column = _snr(columns, cdata)
    return (float(best), float(s2)), snr, snr_column, columns


def _snr(evaluation, cdata):
    """S/N of the inverse-variance weighted flux, in total and per column (median).

    ``evaluation`` must have one flux block per column.
    """
    has_data = cdata.active.any(axis=1)
    amp = np.where(has_data, evaluation.block_amplitudes, 0.0)
    inv_var = np.where(has_data, 1.0 / evaluation.block_variance, 0.0)
    total = float((amp * inv_var).sum() / np.sqrt(inv_var.sum()))
    per_column_weight = inv_var.sum(axis=0)
    ok = per_column_weight > 0
    per_column = (amp * inv_var).sum(axis=0)[ok] / np.sqrt(per_column_weight[ok])
    return total, float(np.median(per_column)) if per_column.size else np.nan


def _flux_blocks(columns, cdata, settings):
    """Flux block of each column, or None when every column is bright enough alone.

    Blocks close once their summed S/N² (over exposures, debiased by one per
    exposure and column) reaches ``n_exp × block_snr²``; a column that reaches it
    alone (an emission line) gets a block of its own, so that real spectral
    structure is not averaged into a block's flux.  At least ``_MIN_BLOCKS``
    blocks span the columns with data.
    """
    has = cdata.active.any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr2 = columns.block_amplitudes**2 / columns.block_variance - 1.0
    snr2 = np.where(has, snr2, 0.0).sum(axis=0)
    target = settings.block_snr**2 * has.shape[0]
    with_data = has.any(axis=0)
    if np.median(snr2[with_data]) >= target:
        return None
    most = max(1, int(with_data.sum()) // _MIN_BLOCKS)
    blocks = np.zeros(snr2.size, dtype=int)
    block, size, total = 0, 0, 0.0
    for col, value in enumerate(np.maximum(snr2, 0.0)):
        if size and value >= target:
            block, size, total = block + 1, 0, 0.0
        blocks[col] = block
        size, total = size + int(with_data[col]), total + value
        if size >= most or total >= target:
            block, size, total = block + 1, 0, 0.0
    if 0 < size < most / 2 and total < target / 2 and block > 0:
        blocks[blocks == block] = block - 1  # a short tail joins the block before it
    log.debug("flux blocks: %d for %d columns", np.unique(blocks).size, snr2.size)
    return np.unique(blocks, return_inverse=True)[1]


@dataclass(frozen=True)
class _Outcome:
    """What a fit (or a fixed profile) leaves for the solution."""

    status: str
    message: str
    model: ProfileModel
    coeffs: np.ndarray
    coeffs_err: np.ndarray
    width_coeffs: np.ndarray
    width_coeffs_err: np.ndarray
    width_covariance: np.ndarray
    clipped: np.ndarray
    halo: tuple = NO_HALO
    background: np.ndarray | None = None  # each exposure's (n, ny, nx), in the fit's model


def _fixed_profile(geom, cdata, centre, s2, outcome, snr=None, snr_column=None):
    """Evaluate a profile with fixed centre and source width² (n, nx); build the solution.

    Without ``snr`` the S/N is measured with this profile.
    """
    sigma2, _ = total_sigma2(geom.sigma_psf, s2)
    profile = profile_only(geom, centre, sigma2, outcome.halo)
    data = without_entries(cdata, outcome.clipped)
    evaluation = evaluate_profile(data, profile, additive=outcome.background)
    if snr is None:
        snr, snr_column = _snr(evaluation, data)
    has_data = data.active.any(axis=1)
    amplitudes = np.where(has_data, evaluation.amplitudes, np.nan)
    n_params = len(outcome.model.names) if outcome.status == "FIT" else 0
    dof = data.n_entries - data.n_constraints - int(has_data.sum()) - n_params
    chi2 = float(np.sum(evaluation.residuals**2))
    # errors of a fit that the scatter says are too small are scaled up, never
    # down; forced errors belong to the fit they came from
    inflation = np.sqrt(max(1.0, chi2 / max(dof, 1))) if outcome.status == "FIT" else 1.0
    return TraceSolution(
        status=outcome.status,
        message=outcome.message,
        snr=snr,
        snr_column=snr_column,
        degree=outcome.model.degree,
        width_degree=outcome.model.width_degree,
        coeffs=np.asarray(outcome.coeffs, dtype=float),
        coeffs_err=np.asarray(outcome.coeffs_err, dtype=float) * inflation,
        wave_range=geom.wave_range,
        width_coeffs=np.asarray(outcome.width_coeffs, dtype=float),
        width_coeffs_err=np.asarray(outcome.width_coeffs_err, dtype=float) * inflation,
        width_covariance=np.asarray(outcome.width_covariance, dtype=float) * inflation**2,
        halo_fraction=float(outcome.halo[0]),
        halo_scale=float(outcome.halo[1]),
        wings_beta=float(outcome.halo[2]) if len(outcome.halo) > 2 else math.inf,
        skew=float(outcome.halo[3]) if len(outcome.halo) > 3 else 0.0,
        chi2=chi2,
        dof=int(dof),
        centre=np.where(geom.known, centre, np.nan),
        sigma=np.where(geom.known, np.sqrt(sigma2), np.nan),
        amplitudes=amplitudes,
        amplitude_variance=np.where(has_data, evaluation.block_variance, np.nan),
        profile=np.where(geom.located, profile, np.nan),
        model=difference_model(geom, amplitudes, profile),
        clipped=outcome.clipped,
    )


def _describe(model, snr):
    """The chosen model in words, for the log and the record."""
    centre = f"offset degree {model.degree}" if model.degree >= 0 else "predicted centre (faint)"
    shape = [" with a halo"] if model.halo else []
    shape += [" with Moffat wings"] if model.wings else []
    shape += [" skewed"] if model.skewed else []
    width = f"width² degree {model.width_degree}" + " and".join(shape)
    prior = ", width prior" if model.width_prior is not None else ""
    background = (
        f", a background per exposure (degree {model.background_degree})"
        if model.n_background
        else ""
    )
    return f"S/N {snr:.1f}: {centre}, {width}{prior}{background}"


def _fitted_solution(geom, cdata, model, theta, errors, covariance, clipped, snr, snr_column):
    coeffs, widths = model.split(theta)
    n = model.n_offset
    outcome = _Outcome(
        "FIT",
        _describe(model, snr),
        model,
        coeffs,
        errors[:n],
        widths,
        errors[n : n + widths.size],
        covariance[n : n + widths.size, n : n + widths.size],
        clipped,
        model.halo_of(theta),
        exposure_background(geom.t, model, theta, geom.along.shape[1]),
    )
    centre, s2 = centre_and_width2(geom.t, model, theta)
    return _fixed_profile(geom, cdata, centre, s2, outcome, snr, snr_column)


def _fallback(geom, cdata, snr, snr_column, reason, prior):
    """Predicted centre and the prior's width (the nominal PSF's without a prior)."""
    s2 = prior[0] if prior is not None else 0.0
    message = f"{reason}: predicted position, {'prior' if prior else 'nominal'} width"
    none = np.zeros(cdata.active.shape, dtype=bool)
    model = ProfileModel(-1, -1, s2)
    outcome = _Outcome(
        "FALLBACK", message, model, [], [], [s2], [np.nan], np.full((1, 1), np.nan), none
    )
    zeros = np.zeros_like(geom.t)
    return _fixed_profile(geom, cdata, zeros, zeros + s2, outcome, snr, snr_column)


def _forced_solution(geom, cdata, forced):
    lo, hi = forced.wave_range
    wave = (geom.t + 1.0) / 2.0 * (geom.wave_range[1] - geom.wave_range[0]) + geom.wave_range[0]
    t = np.clip(2.0 * (wave - lo) / max(hi - lo, 1e-12) - 1.0, -1.0, 1.0)
    coeffs = np.asarray(forced.coeffs, dtype=float)
    widths = np.asarray(forced.width_coeffs, dtype=float)
    centre = legendre.legval(t, coeffs) if coeffs.size else np.zeros_like(t)
    s2 = legendre.legval(t, widths)
    model = ProfileModel(coeffs.size - 1, widths.size - 1)
    none = np.zeros(cdata.active.shape, dtype=bool)
    message = f"centre and width forced from {forced.label or 'another fit'}"
    errors = np.full(coeffs.size, np.nan) if forced.coeffs_err is None else forced.coeffs_err
    width_errors = (
        np.full(widths.size, np.nan) if forced.width_coeffs_err is None else forced.width_coeffs_err
    )
    outcome = _Outcome(
        "FORCED",
        message,
        model,
        coeffs,
        errors,
        widths,
        width_errors,
        np.diag(np.asarray(width_errors, dtype=float) ** 2),
        none,
        tuple(forced.halo),
    )
    return _fixed_profile(geom, cdata, centre, s2, outcome)
