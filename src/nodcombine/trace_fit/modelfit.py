"""Fitting one profile model with rejection rounds, and choosing among models.

Pure numpy/scipy; the objective is `nodcombine.trace_fit.tracemodel.ProfileObjective`.
"""

import logging

import numpy as np
from scipy.optimize import least_squares

from nodcombine.trace_fit.tracemodel import (
    ProfileObjective,
    outlying_entries,
    residual_spread,
    without_entries,
)

__all__ = ["choose_model", "fit_limit"]

log = logging.getLogger(__name__)

_MAX_CLIPPED = 0.03  # a model that needs more pixels rejected than this does not fit


def fit_limit(geom, settings):
    """Bound on the offset coefficients: ``max_offset``, and short of the next image."""
    return min(settings.max_offset, 0.45 * geom.offset_limit)


def choose_model(geom, cdata, base, start, snr, settings):
    """The model the data choose, fitted: ``(model, theta, errors, covariance, clipped)``.

    The offset polynomial starts at the highest degree the S/N allows
    (``degree_snr``) with a constant width², falling back to lower degrees if
    a fit reaches a bound.  The width² polynomial then grows one degree at a
    time (as far as ``width_snr`` allows) and the offset degree shrinks, each
    step kept only if it lowers the Bayesian information criterion: a new
    parameter must lower the objective (χ² and priors) by more than ``ln N``,
    ``N`` the number of residuals; a parameter dropped must cost less.
    Candidates are compared on the same pixels (those the first fit kept); a
    final fit with rejection rounds confirms the choice.
    """
    top = int(np.sum(snr >= np.asarray(settings.degree_snr))) if base.degree >= 0 else -1
    for degree in range(top, base.degree - 1, -1):
        first = base.grown(degree=degree)
        fitted = _fit_model(geom, cdata, first, start, settings)
        if fitted is not None:
            break
    else:
        return None
    penalty = np.log(max(cdata.n_entries, 2))
    max_width = settings.max_width_degree if snr >= settings.width_snr else 0
    steps = [{"width_degree": w} for w in range(1, max_width + 1)]
    steps += [{"degree": d} for d in range(first.degree - 1, base.degree - 1, -1)]
    data = without_entries(cdata, fitted[3])
    current, theta = first, fitted[0]
    score = ProfileObjective(geom, data, current, settings).objective(theta)
    for step in steps:
        model = current.grown(**step)
        trial = _fit_once(geom, data, model, model.embed(theta, current), settings)
        if trial is None:
            continue
        trial_score = ProfileObjective(geom, data, model, settings).objective(trial)
        if score - trial_score > penalty * (len(model.names) - len(current.names)):
            current, theta, score = model, trial, trial_score
    if current is not first:
        final = _fit_model(geom, cdata, current, theta, settings)
        if final is not None:
            return current, *final
    return first, *fitted


def _bounds(geom, model, settings):
    """Lower and upper bounds of every parameter of ``model``."""
    limit = fit_limit(geom, settings)
    min_s2 = -0.5 * float(np.min(geom.sigma_psf)) ** 2
    max_s2 = settings.max_source_sigma**2
    lower = [-limit] * model.n_offset
    upper = [limit] * model.n_offset
    if model.width_free:
        lower += [min_s2] + [-max_s2] * model.width_degree
        upper += [max_s2] + [max_s2] * model.width_degree
    return np.array(lower), np.array(upper)


def _inside(theta, lower, upper):
    """``theta`` moved 5 % of each range inside its bounds."""
    margin = 0.05 * (upper - lower)
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
    if result.status <= 0 or np.any(result.active_mask != 0):
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
    theta = _inside(theta, lower, upper)
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
    covariance = np.linalg.pinv(jac.T @ jac)
    # the pixels left out of the fit that gave these numbers
    used = ~data.active & cdata.active
    return theta, np.sqrt(np.diag(covariance)), covariance, used
