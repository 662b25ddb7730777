"""Fitting one profile model with rejection rounds, and choosing among models.

Pure numpy/scipy; the objective is `nodcombine.trace_fit.tracemodel.ProfileObjective`.
"""

import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from nodcombine.trace_fit.profilemodel import ProfileModel
from nodcombine.trace_fit.tracemodel import (
    ProfileObjective,
    outlying_entries,
    residual_spread,
    without_entries,
)

__all__ = ["choose_model", "fit_limit"]

log = logging.getLogger(__name__)

_MAX_CLIPPED = 0.03  # a model that needs more pixels rejected than this does not fit
_MAX_HALO_FRACTION = 0.8  # of the flux in the halo
_HALO_SCALE = (1.3, 8.0)  # halo sigma over core sigma
_BETA = (1.0, 20.0)  # Moffat power of the wings: beyond 20 the image is Gaussian
_MAX_SKEW = 0.6  # halves of a skewed image at most 4 times as wide as each other
_NO_HALO = {"halo": False}
# Candidates whose fit cannot change the choice are not fitted.  The Gauss-Newton
# prediction of a nested candidate's gain agreed with the fitted gain to within 15 %
# in all 272 such steps of 48 simulated slits and CEERS 933 (docs/trace_fit.md,
# benchmarks/bench_model_screen.py); these factors leave that much room and more.
_SCREEN_GAIN = 0.5  # a new term predicted to gain under half its penalty is not fitted
_SCREEN_LOSS = 2.0  # a term whose removal is predicted to cost twice its allowance stays


def fit_limit(geom, settings):
    """Bound on the offset coefficients: ``max_offset``, and short of the next image."""
    return min(settings.max_offset, 0.45 * geom.offset_limit)


def choose_model(geom, cdata, base, start, snr, settings):
    """The model the data choose, fitted: ``(model, theta, errors, covariance, clipped)``.

    The offset polynomial starts at the highest degree the S/N allows
    (``degree_snr``) with a constant width², falling back to lower degrees,
    then to richer width laws, if a fit reaches a bound or clips too much.
    The width² polynomial then grows one degree at a time (as far as
    ``width_snr`` allows), a halo, Moffat wings and a skew are tried (from
    ``halo_snr``) and the offset degree shrinks, then width terms the shape
    made redundant are dropped.  Each step is kept only if it lowers the
    Bayesian information criterion: a new parameter must lower the objective
    (χ² and priors) by more than ``ln N``, in units of the accepted model's
    χ²/dof when that exceeds 1 (a quasi-likelihood criterion: understated
    variances must not buy parameters); a parameter dropped must cost less.
    ``N`` is the number of residuals, but for width terms, which vary along the
    trace and are measured once per wavelength column, the number of columns
    (ln N 5.8 against 9.6 on a PRISM cutout: a width law growing faster than
    the PSF at peak S/N 30 gains Δχ² 7.1 from its cubic term, 3-point).
    Akaike's 2 per parameter was tried: its spurious terms broke the
    calibration of the fitted errors (offset pulls 1.3).
    Candidates are compared on the same pixels (those the first fit kept); a
    final fit with rejection rounds confirms the choice.
    """
    top = int(np.sum(snr >= np.asarray(settings.degree_snr))) if base.degree >= 0 else -1
    max_width = settings.max_width_degree if snr >= settings.width_snr else 0
    # a bright source far from a constant width² clips too much with it: richer
    # laws (and, where the S/N allows one, a halo: a bright core + halo source
    # clips too much with any single Gaussian) are tried as starting points
    halos = (False, True) if snr >= settings.halo_snr else (False,)
    # and, last, with each exposure's background: a strong one clips too much without
    backgrounds = [{}]
    if settings.background_degree >= 0:
        backgrounds.append(_background_step(geom, settings))
    starts = [
        (b, h, w, d)
        for b in backgrounds
        for h in halos
        for w in range(max_width + 1)
        for d in range(top, base.degree - 1, -1)
    ]
    for background, halo, width_degree, degree in starts:
        first = base.grown(degree=degree, width_degree=width_degree, halo=halo, **background)
        fitted = _fit_model(geom, cdata, first, start, settings)
        if fitted is not None:
            break
    else:
        return None
    # each exposure's background first: unmodelled, it reads as wings to the width law
    steps = [_background_step(geom, settings)] if settings.background_degree >= 0 else []
    steps += [{"width_degree": w} for w in range(first.width_degree + 1, max_width + 1)]
    if snr >= settings.halo_snr:
        # a halo, power-law wings (Moffat components, which tend to the
        # Gaussians as β grows: the models are nested) and a skew, each also in
        # place of a halo that only imitated it (kept beside them, such a halo
        # would run to zero flux, a bound)
        steps += [{"halo": True}]
        steps += [{term: True, **drop} for term in ("wings", "skewed") for drop in ({}, _NO_HALO)]
        steps += [_NO_HALO]
    steps += [{"degree": d} for d in range(first.degree - 1, base.degree - 1, -1)]
    data = without_entries(cdata, fitted[3])
    choice = _Candidate(first, fitted[0], *_score(geom, data, first, fitted[0], settings))
    # every model fitted on these pixels, by model: a step back to one is not refitted
    tried = {first: choice}
    bic = np.log(max(cdata.n_entries, 2))
    # a width term varies along the trace: its evidence is one number per
    # wavelength column, so BIC's sample size for it is the number of columns
    bic_width = np.log(max(int(np.any(geom.covered, axis=(0, 1)).sum()), 2))
    for step in steps:
        # width and background terms vary along the trace: one number per column
        penalty = bic_width if {"width_degree", "background_degree"} & set(step) else bic
        model = choice.model.grown(**step)
        choice = _better(geom, data, choice, model, settings, penalty, tried)
    # width terms a richer shape made redundant (a width law that imitated wings)
    for degree in range(choice.model.width_degree - 1, -1, -1):
        model = choice.model.grown(width_degree=degree)
        choice = _better(geom, data, choice, model, settings, bic_width, tried)
    current, theta = choice.model, choice.theta
    if current is not first:
        final = _fit_model(geom, cdata, current, theta, settings)
        if final is not None:
            return current, *final
    return first, *fitted


def _background_step(geom, settings):
    """The model change that gives every exposure but the first a background of its own."""
    n_exp = geom.t.shape[0]
    return {"background_degree": settings.background_degree, "background_exposures": n_exp - 1}


@dataclass(frozen=True)
class _Candidate:
    """A fitted model, its objective and the scatter Δχ² are counted in."""

    model: ProfileModel
    theta: np.ndarray
    score: float
    dispersion: float


def _better(geom, data, current, model, settings, penalty, tried):
    """``current`` or ``model`` fitted from it, whichever the information criterion prefers.

    In quasi-likelihood form: each parameter more must lower the objective by
    more than ``penalty`` times the dispersion, each parameter fewer may raise
    it by less.  ``tried`` holds the candidates already fitted on ``data`` (None
    for a fit that failed) and gains this one.
    """
    if model == current.model:
        return current
    extra = len(model.names) - len(current.model.names)
    allowance = penalty * extra * current.dispersion
    if model not in tried:
        if _needs_no_fit(geom, data, current, model, settings, allowance):
            return current
        start = model.embed(current.theta, current.model)
        trial = _fit_once(geom, data, model, start, settings)
        tried[model] = (
            None
            if trial is None
            else _Candidate(model, trial, *_score(geom, data, model, trial, settings))
        )
    candidate = tried[model]
    if candidate is None:
        return current
    gain = (current.score - candidate.score) / current.dispersion
    return candidate if gain > penalty * extra else current


def _needs_no_fit(geom, data, current, model, settings, allowance):
    """Whether the linearised objective already decides against ``model``.

    A richer model is not fitted when one Gauss-Newton step is predicted to
    gain under `_SCREEN_GAIN` of ``allowance``; a model without some
    coefficients is not fitted when dropping them is predicted to cost over
    `_SCREEN_LOSS` times what is allowed (`predicted_gain`).
    """
    gain = predicted_gain(geom, data, current, model, settings)
    if gain is None:
        return False
    factor = _SCREEN_GAIN if allowance > 0 else _SCREEN_LOSS
    screened = gain < factor * allowance
    if screened:
        log.debug(
            "model %s not fitted: predicted gain %.2f, allowance %.2f", model.names, gain, allowance
        )
    return screened


def predicted_gain(geom, data, current, model, settings):
    """The fall of the objective from ``current`` to ``model``, linearised; None if not judged.

    A richer model that reproduces ``current`` at its starting point (new
    coefficients at 0): one Gauss-Newton step from there.  A model without
    some offset, width or background coefficients: minus the Wald cost of
    holding them at 0.  Other changes (a halo or wings, whose start is not the
    current model; shape parameters dropped) enter too far from linearly.
    """
    if len(model.names) > len(current.model.names):
        start = model.embed(current.theta, current.model)
        objective = ProfileObjective(geom, data, model, settings)
        residuals = objective.residuals(start)
        if not np.isclose(residuals @ residuals, current.score, rtol=1e-9, atol=0.0):
            return None  # not nested at the start: the shape terms' guesses differ
        return gauss_newton_gain(residuals, objective.jacobian(start))
    first_shape = len(current.model.names) - current.model.n_shape
    dropped = [k for k, name in enumerate(current.model.names) if name not in model.names]
    if not dropped or max(dropped) >= first_shape:
        return None
    objective = ProfileObjective(geom, data, current.model, settings)
    return -wald_cost(current.theta, objective.jacobian(current.theta), dropped)


def gauss_newton_gain(residuals, jacobian):
    """Decrease of ``Σ r²`` from one Gauss-Newton step (exact for a linear model)."""
    scaled, _ = _unit_columns(jacobian)
    step, *_ = np.linalg.lstsq(scaled, -residuals, rcond=None)
    moved = scaled @ step
    return float(-(2.0 * residuals @ moved + moved @ moved))


def wald_cost(theta, jacobian, dropped):
    """Increase of ``Σ r²`` when the ``dropped`` parameters are held at 0, linearised."""
    scaled, scale = _unit_columns(jacobian)
    covariance = np.linalg.pinv(scaled.T @ scaled)
    values = theta[dropped] * scale[dropped]
    block = covariance[np.ix_(dropped, dropped)]
    return float(values @ np.linalg.solve(block, values))


def _unit_columns(jacobian):
    """The Jacobian with columns of unit norm (for conditioning), and the norms."""
    scale = np.linalg.norm(jacobian, axis=0)
    scale[scale == 0] = 1.0  # a parameter the data do not see moves nothing
    return jacobian / scale, scale


def _score(geom, data, model, theta, settings):
    """The objective (χ² and priors) at ``theta``, and the scatter it implies.

    The scatter, χ²/dof when above 1, is the unit Δχ² are counted in (a
    quasi-likelihood criterion): understated variances (real ``_cal`` files
    give χ²/dof ~1.6) must not buy parameters.  It is the accepted model's: a
    model that misses the profile's shape inflates χ² by its misfit, not noise.
    """
    objective = ProfileObjective(geom, data, model, settings)
    score = objective.objective(theta)
    return score, max(1.0, score / max(objective.dof(theta), 1))


def _bounds(geom, model, settings):
    """Lower and upper bounds of every parameter of ``model``."""
    limit = fit_limit(geom, settings)
    # s² may go as far below 0 as the widest PSF of the band: a source that is
    # narrower than the PSF law somewhere (a constant width) must not sit on a
    # bound; the floor of the total width (`total_sigma2`) keeps it positive
    min_s2 = -(float(np.max(geom.sigma_psf)) ** 2)
    max_s2 = settings.max_source_sigma**2
    lower = [-limit] * model.n_offset
    upper = [limit] * model.n_offset
    if model.width_free:
        lower += [min_s2] + [-max_s2] * model.width_degree
        upper += [max_s2] + [max_s2] * model.width_degree
    lower += [-np.inf] * model.n_background  # a background may have either sign
    upper += [np.inf] * model.n_background
    if model.halo:
        lower += [0.0, _HALO_SCALE[0]]
        upper += [_MAX_HALO_FRACTION, _HALO_SCALE[1]]
    if model.wings:
        lower += [_BETA[0]]
        upper += [_BETA[1]]
    if model.skewed:
        lower += [-_MAX_SKEW]
        upper += [_MAX_SKEW]
    return np.array(lower), np.array(upper)


def _inside(theta, lower, upper):
    """``theta`` moved 5 % of each range inside its bounds."""
    span = upper - lower
    margin = np.where(np.isfinite(span), 0.05 * span, 0.0)  # unbounded: no margin
    return np.clip(theta, lower + margin, upper - margin)


def _fit_once(geom, data, model, theta, settings):
    """One least-squares fit (plain loss) from ``theta``; None if it ends at a bound."""
    lower, upper = _bounds(geom, model, settings)
    objective = ProfileObjective(geom, data, model, settings)
    result = least_squares(
        objective.residuals,
        _inside(theta, lower, upper),
        jac=objective.jacobian,
        bounds=(lower, upper),
        x_scale="jac",
    )
    if result.status < 0 or np.any(result.active_mask != 0):
        return None
    return result.x


def _fit_model(geom, cdata, model, start, settings):
    """Fit one model with rejection rounds.

    ``start`` is a parameter vector of ``model``, or the scan's ``(offset, s²)``.
    Returns ``(theta, errors, covariance, clipped)``, or None if the fit
    reaches a bound or clips too much.
    """
    lower, upper = _bounds(geom, model, settings)
    if len(start) == len(model.names):
        theta = np.array(start, dtype=float)
    else:
        theta = np.zeros(len(model.names))
        if model.n_offset:
            theta[0] = start[0]
        if model.width_free:
            theta[model.n_offset] = start[1]
        theta[len(model.names) - model.n_shape :] = model.shape_start()
    theta = _inside(theta, lower, upper)
    clipped = np.zeros(cdata.active.shape, dtype=bool)
    for round_ in range(settings.iterations):
        data = without_entries(cdata, clipped)
        objective = ProfileObjective(geom, data, model, settings)
        # residuals of an exposure are whitened against the pixel's sky: their
        # std is sqrt(1 - w/W) (0.71 for A-B), so scale the Huber corner to σ.
        # With flux blocks the residuals also hold the spectrum's structure
        # inside a block, which a robust loss would take for outliers: after a
        # first robust round (which keeps unflagged cosmic rays from pulling
        # the trace before any is rejected) the rejection below, on per-column
        # residuals, does that job alone.
        spread = residual_spread(data)
        robust = geom.blocks is None or round_ == 0
        result = least_squares(
            objective.residuals,
            theta,
            jac=objective.jacobian,
            bounds=(lower, upper),
            loss="huber" if robust else "linear",
            f_scale=settings.huber_scale * float(np.median(spread[data.active])),
            x_scale="jac",
        )
        theta = result.x
        if result.status < 0 or np.any(result.active_mask != 0):
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
    covariance = np.linalg.pinv(jac.T @ jac)
    # the pixels left out of the fit that gave these numbers
    used = ~data.active & cdata.active
    return theta, np.sqrt(np.diag(covariance)), covariance, used
