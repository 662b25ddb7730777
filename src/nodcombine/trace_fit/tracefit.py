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
from dataclasses import dataclass, replace

import numpy as np
from numpy.polynomial import legendre
from scipy.optimize import least_squares

from nodcombine.trace_fit.likelihood import evaluate_profile
from nodcombine.trace_fit.solution import TraceFitSettings, TraceSolution
from nodcombine.trace_fit.tracemodel import (
    ProfileModel,
    ProfileObjective,
    difference_model,
    outlying_entries,
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
_MAX_CLIPPED = 0.03  # a model that needs more pixels rejected than this does not fit


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
    start, snr, snr_column, columns = _scan(geom, cdata, settings)
    if not snr >= settings.min_snr:
        reason = f"S/N {snr:.1f} < min_snr {settings.min_snr:g}"
        return _fallback(geom, cdata, snr, snr_column, reason)
    geom = replace(geom, blocks=_flux_blocks(columns, cdata, settings))
    for model in _candidate_models(snr, settings):
        fitted = _fit_model(geom, cdata, model, start, settings)
        if fitted is not None:
            return _fitted_solution(geom, cdata, model, fitted, snr, snr_column)
    limit = _limit(geom, settings)
    reason = f"S/N {snr:.1f} but no fit converged inside the bounds (offsets ±{limit:.2f} px)"
    return _fallback(geom, cdata, snr, snr_column, reason)


def _limit(geom, settings):
    """Bound on the offset coefficients: ``max_offset``, and short of the next image."""
    return min(settings.max_offset, 0.45 * geom.offset_limit)


def _scan(geom, cdata, settings):
    """Best constant offset and intrinsic width on a grid, and the S/N measured there.

    Offsets are scanned at the nominal width, then a few widths at the best
    offset (an extended source measured with a point-source profile would look
    fainter than it is), then the offsets within a pixel again at the best width.
    """
    limit = _limit(geom, settings)
    offsets = np.arange(-limit, limit + 1e-9, _SCAN_STEP)
    widths2 = [w**2 for w in _SCAN_WIDTHS if w <= settings.max_source_sigma]

    def scanned(offset, s2):
        objective = ProfileObjective(geom, cdata, ProfileModel(0, False, s2), settings)
        return objective.value(np.array([offset]))

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


def _candidate_models(snr, settings):
    """Models to try, richest first, as the S/N allows.

    A width that runs to a bound usually compensates for something else, so the
    first retry keeps the trace shape and fixes the width; lower degrees follow.
    """
    degree = int(np.sum(snr >= np.asarray(settings.degree_snr)))
    models = [ProfileModel(degree, True)] if snr >= settings.width_snr else []
    return models + [ProfileModel(d, False) for d in range(degree, -1, -1)]


def _fit_model(geom, cdata, model, start, settings):
    """Fit one model with rejection rounds; None if it reaches a bound or clips too much."""
    limit = _limit(geom, settings)
    min_s2 = -0.5 * float(np.min(geom.sigma_psf)) ** 2
    lower = [-limit] * (model.degree + 1) + ([min_s2] if model.width_free else [])
    upper = [limit] * (model.degree + 1) + (
        [settings.max_source_sigma**2] if model.width_free else []
    )
    theta = np.zeros(len(model.names))
    theta[0] = np.clip(start[0], -0.9 * limit, 0.9 * limit)
    if model.width_free:
        theta[-1] = np.clip(start[1], 0.9 * min_s2, 0.9 * upper[-1])
    clipped = np.zeros(cdata.active.shape, dtype=bool)
    for _ in range(settings.iterations):
        data = without_entries(cdata, clipped)
        objective = ProfileObjective(geom, data, model, settings)
        # residuals of an exposure are whitened against the pixel's sky: their
        # std is sqrt(1 - w/W) (0.71 for A-B), so scale the Huber corner to σ.
        # With flux blocks the residuals also hold the spectrum's structure
        # inside a block, which a robust loss would take for outliers: the
        # rejection below (on per-column residuals) then does that job alone.
        spread = residual_spread(data)
        result = least_squares(
            objective.residuals,
            theta,
            jac=objective.jacobian,
            bounds=(lower, upper),
            loss="huber" if geom.blocks is None else "linear",
            f_scale=settings.huber_scale * float(np.median(spread[data.active])),
            x_scale="jac",
        )
        theta = result.x
        if result.status <= 0 or np.any(result.active_mask != 0):
            # a profile held at a bound would otherwise reject the pixels it
            # cannot reach and creep back inside
            log.debug("model %s rejected: status %d, at bound", model.names, result.status)
            return None
        residual_image = np.zeros(cdata.active.shape)
        residual_image[data.active] = objective.column_residuals(theta)
        with np.errstate(invalid="ignore", divide="ignore"):
            normalised = np.where(data.active, residual_image / spread, 0.0)
        new = clipped | outlying_entries(normalised, settings.clip_sigma)
        if np.array_equal(new, clipped):
            break
        clipped = new
    if clipped.sum() > _MAX_CLIPPED * cdata.n_entries:
        log.debug("model %s rejected: %d pixels clipped", model.names, clipped.sum())
        return None
    jac = objective.jacobian(theta)
    errors = np.sqrt(np.diag(np.linalg.pinv(jac.T @ jac)))
    # the pixels left out of the fit that gave these numbers
    used = ~data.active & cdata.active
    return theta, errors, used


@dataclass(frozen=True)
class _Outcome:
    """What a fit (or a fixed profile) leaves for the solution."""

    status: str
    message: str
    model: ProfileModel
    coeffs: np.ndarray
    coeffs_err: np.ndarray
    source_sigma2: float
    source_sigma2_err: float
    clipped: np.ndarray


def _fixed_profile(geom, cdata, centre, s2, outcome, snr=None, snr_column=None):
    """Evaluate a profile with fixed centre (n, nx) and width; build the solution.

    Without ``snr`` the S/N is measured with this profile.
    """
    sigma2 = geom.sigma_psf**2 + s2
    profile = profile_only(geom, centre, sigma2)
    data = without_entries(cdata, outcome.clipped)
    evaluation = evaluate_profile(data, profile)
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
        width_free=outcome.model.width_free,
        coeffs=np.asarray(outcome.coeffs, dtype=float),
        coeffs_err=np.asarray(outcome.coeffs_err, dtype=float) * inflation,
        wave_range=geom.wave_range,
        source_sigma2=float(s2),
        source_sigma2_err=float(outcome.source_sigma2_err) * inflation,
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


def _fitted_solution(geom, cdata, model, fitted, snr, snr_column):
    theta, errors, clipped = fitted
    coeffs, s2 = model.split(theta)
    message = f"S/N {snr:.1f}: offset degree {model.degree}, " + (
        "width fitted" if model.width_free else "nominal width"
    )
    outcome = _Outcome(
        "FIT",
        message,
        model,
        coeffs,
        errors[: model.degree + 1],
        s2,
        errors[-1] if model.width_free else np.nan,
        clipped,
    )
    centre = legendre.legvander(geom.t, model.degree) @ coeffs
    return _fixed_profile(geom, cdata, centre, s2, outcome, snr, snr_column)


def _fallback(geom, cdata, snr, snr_column, reason):
    message = f"{reason}: predicted position and nominal width"
    none = np.zeros(cdata.active.shape, dtype=bool)
    outcome = _Outcome(
        "FALLBACK", message, ProfileModel(0, False), [0.0], [np.nan], 0.0, np.nan, none
    )
    return _fixed_profile(geom, cdata, np.zeros_like(geom.t), 0.0, outcome, snr, snr_column)


def _forced_solution(geom, cdata, forced):
    lo, hi = forced.wave_range
    wave = (geom.t + 1.0) / 2.0 * (geom.wave_range[1] - geom.wave_range[0]) + geom.wave_range[0]
    t = np.clip(2.0 * (wave - lo) / max(hi - lo, 1e-12) - 1.0, -1.0, 1.0)
    coeffs = np.asarray(forced.coeffs, dtype=float)
    centre = legendre.legval(t, coeffs)
    s2 = max(float(forced.source_sigma2), -0.5 * float(np.min(geom.sigma_psf)) ** 2)
    model = ProfileModel(coeffs.size - 1, False, s2)
    none = np.zeros(cdata.active.shape, dtype=bool)
    message = f"centre and width forced from {forced.label or 'another fit'}"
    errors = np.full(coeffs.size, np.nan) if forced.coeffs_err is None else forced.coeffs_err
    outcome = _Outcome("FORCED", message, model, coeffs, errors, s2, forced.source_sigma2_err, none)
    return _fixed_profile(geom, cdata, centre, s2, outcome)
