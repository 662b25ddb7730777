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
likelihood of the nod differences (`nodcombine.profile`), so the negative
images are the same images seen from the other exposures.

Complexity follows the signal.  The S/N of the source (weighted total flux over
its error, measured at the best constant offset with the nominal width) picks
the model (thresholds in `TraceFitSettings`):

==========================  =======================================
S/N                          model
==========================  =======================================
< ``min_snr`` (10)           fallback: predicted centre, PSF width
≥ ``min_snr``                constant offset, PSF width
≥ ``width_snr`` (20)         constant offset, free source width
≥ ``degree_snr[k-1]``        offset polynomial of degree k (40, 80)
==========================  =======================================

The fit minimises a Huber loss of the whitened residuals with Gaussian priors on
the offset coefficients and bounds on every parameter, then rejects outlying
pixels and refits.  A fit that ends on a bound is retried with the nominal
width, then with lower degrees.
"""

import logging
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.polynomial import legendre
from scipy.optimize import least_squares

from nodcombine.noddiff import difference_images
from nodcombine.profile import (
    contrast_data,
    difference_closure,
    evaluate_profile,
    pixel_integrated_gaussian,
    sky_free_exposures,
)

__all__ = ["ForcedProfile", "TraceFitSettings", "TraceSolution", "fit_trace", "transfer_profile"]

log = logging.getLogger(__name__)

_SCAN_STEP = 0.25  # pixels between trial offsets of the initial scan
_SCAN_WIDTHS = (0.0, 1.0, 2.0, 3.0)  # pixels: intrinsic widths tried at the best offset
_CLOSURE_TOLERANCE = 1e-3  # |Σ_p D̄_p| / Σ_p |D̄_p|; float32 rounding is ~1e-7
_MIN_BLOCKS = 12  # flux blocks kept at least, so the offset polynomial stays constrained
_MAX_CLIPPED = 0.03  # a model that needs more pixels rejected than this does not fit


@dataclass(frozen=True, slots=True)
class TraceFitSettings:
    """Thresholds, priors and bounds of the trace fit (pixels along the slit).

    Attributes
    ----------
    min_snr : float
        Below this S/N the predicted position and nominal width are kept.
    width_snr : float
        From this S/N the source width is fitted.
    degree_snr : tuple of float
        S/N from which each further degree of the offset polynomial is fitted.
    max_offset : float
        Bound on every offset coefficient; also limited to 0.45 of the
        smallest nod throw so the profile cannot jump onto another image.
    centre_prior, shape_prior : float
        Gaussian prior widths of the constant and of the higher offset terms.
    max_source_sigma : float
        Upper bound of the intrinsic source width.
    huber_scale : float
        Residual (in σ) beyond which the loss grows linearly.
    clip_sigma : float
        Residual (in σ) beyond which a pixel is rejected before the next round.
    iterations : int
        Rounds of fitting and rejection.
    block_snr : float
        S/N per exposure that a flux block should reach: at low S/N per column,
        neighbouring columns share one flux per exposure while the profile is
        fitted, so that hundreds of poorly measured fluxes do not bias the fit
        or make its errors too small (the incidental-parameter problem).
    """

    min_snr: float = 10.0
    width_snr: float = 20.0
    degree_snr: tuple = (40.0, 80.0)
    max_offset: float = 3.0
    centre_prior: float = 1.5
    shape_prior: float = 0.5
    max_source_sigma: float = 8.0
    huber_scale: float = 2.0
    clip_sigma: float = 5.0
    iterations: int = 3
    block_snr: float = 5.0

    def __post_init__(self):
        for name in (
            "max_offset",
            "centre_prior",
            "shape_prior",
            "max_source_sigma",
            "huber_scale",
            "clip_sigma",
            "block_snr",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if list(self.degree_snr) != sorted(self.degree_snr):
            raise ValueError(f"degree_snr must increase, got {self.degree_snr}")


@dataclass(frozen=True, slots=True)
class ForcedProfile:
    """A profile fitted elsewhere (another disperser), in this source's pixels.

    Attributes
    ----------
    coeffs : numpy.ndarray
        Legendre coefficients of the centre offset, pixels.
    wave_range : tuple of float
        Wavelengths (micron) mapped to ``t = −1, 1`` when they were fitted;
        wavelengths outside are clipped to it.
    source_sigma2 : float
        Intrinsic width squared, pixels².
    label : str
        Where the profile comes from, for the log.
    coeffs_err : numpy.ndarray, optional
        Errors of ``coeffs``, carried into the solution.
    source_sigma2_err : float, optional
        Error of ``source_sigma2``.
    """

    coeffs: np.ndarray
    wave_range: tuple
    source_sigma2: float
    label: str = ""
    coeffs_err: np.ndarray | None = None
    source_sigma2_err: float = np.nan


@dataclass(frozen=True, slots=True)
class TraceSolution:
    """The fitted profile of one source.

    Attributes
    ----------
    status : {"FIT", "FORCED", "FALLBACK"}
        What was done.
    message : str
        Why, in words (S/N, model, or the reason for the fallback).
    snr, snr_column : float
        S/N of the source's total flux, and the median S/N per column.
    degree : int
        Degree of the offset polynomial.
    width_free : bool
        Whether the source width was fitted.
    coeffs, coeffs_err : numpy.ndarray, shape (degree + 1,)
        Legendre coefficients of the offset from the predicted position, pixels,
        and their 1σ errors (NaN when not fitted), from the Gauss–Newton
        covariance scaled by ``sqrt(max(1, chi2/dof))``.
    wave_range : tuple of float
        Wavelengths (micron) mapped to ``t = −1, 1``.
    source_sigma2, source_sigma2_err : float
        Intrinsic width squared (pixels²) and its error.
    chi2 : float
        χ² of the final fit (no Huber down-weighting).
    dof : int
        Degrees of freedom: residuals − skies − fluxes − parameters.
    centre, sigma : numpy.ndarray, shape (n_exp, nx)
        Offset from the predicted position and total width per exposure and
        column, pixels; NaN where the exposure has no wavelength.
    amplitudes, amplitude_variance : numpy.ndarray, shape (n_exp, nx)
        Source flux per exposure and column (the profile sums to 1 over an
        infinite slit) and its variance; NaN where the exposure has no data.
    profile : numpy.ndarray, shape (n_exp, ny, nx)
        Unit-flux image of each exposure's source.
    model : numpy.ndarray, shape (n_exp, ny, nx)
        Model of the nod differences (positive and negative images), data units.
    clipped : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Pixels rejected by the fit.
    """

    status: str
    message: str
    snr: float
    snr_column: float
    degree: int
    width_free: bool
    coeffs: np.ndarray
    coeffs_err: np.ndarray
    wave_range: tuple
    source_sigma2: float
    source_sigma2_err: float
    chi2: float
    dof: int
    centre: np.ndarray
    sigma: np.ndarray
    amplitudes: np.ndarray
    amplitude_variance: np.ndarray
    profile: np.ndarray
    model: np.ndarray
    clipped: np.ndarray

    @property
    def source_sigma(self):
        """Intrinsic source width, pixels (0 when the fit prefers less than the PSF)."""
        return float(np.sqrt(max(self.source_sigma2, 0.0)))


@dataclass(frozen=True)
class _Geometry:
    """Coordinates of the exposures' pixels, filled where undefined."""

    along: np.ndarray  # (n, ny, nx) pixels from the predicted position
    t: np.ndarray  # (n, nx) scaled wavelength
    sigma_psf: np.ndarray  # (n, nx) pixels
    covered: np.ndarray  # (n, ny, nx) coordinate and wavelength known: fitted
    located: np.ndarray  # (n, ny, nx) coordinate known: the model is defined
    valid: np.ndarray  # (n, ny, nx) the differences nod_diff formed
    known: np.ndarray  # (n, nx) the exposure has a wavelength there
    wave_range: tuple
    positions: np.ndarray
    offset_limit: float
    blocks: np.ndarray | None = None  # (nx,) flux block of each column; None: one each


@dataclass(frozen=True)
class _Model:
    """Which parameters are free: offset degree, source width, fixed width."""

    degree: int
    width_free: bool
    fixed_sigma2: float = 0.0
    names: tuple = field(init=False)

    def __post_init__(self):
        names = tuple(f"a{k}" for k in range(self.degree + 1))
        object.__setattr__(self, "names", names + (("s2",) if self.width_free else ()))

    def split(self, theta):
        coeffs = np.asarray(theta[: self.degree + 1])
        return coeffs, (theta[-1] if self.width_free else self.fixed_sigma2)


def _images(geom, centre, sigma2):
    """Profiles and derivatives for per-exposure centre (n, nx) and width² (n, nx)."""
    sigma = np.sqrt(sigma2)
    return pixel_integrated_gaussian(geom.along, centre[:, None, :], sigma[:, None, :])


class _Objective:
    """Residuals and Jacobian of one model, with the last evaluation cached."""

    def __init__(self, geom, data, model, settings):
        self.geom, self.data, self.model = geom, data, model
        self.basis = legendre.legvander(geom.t, model.degree)  # (n, nx, degree + 1)
        widths = [settings.centre_prior] + [settings.shape_prior] * model.degree
        self.prior = 1.0 / np.array(widths)
        self._key, self._value = None, None

    def _profile(self, theta):
        """Unit profiles and their derivatives with respect to ``theta``."""
        coeffs, s2 = self.model.split(theta)
        sigma2 = self.geom.sigma_psf**2 + s2
        profile, d_centre, d_sigma = _images(self.geom, self.basis @ coeffs, sigma2)
        derivs = [d_centre * self.basis[:, None, :, k] for k in range(coeffs.size)]
        if self.model.width_free:
            derivs.append(d_sigma / (2.0 * np.sqrt(sigma2))[:, None, :])
        return profile, np.stack(derivs)

    def evaluate(self, theta):
        key = np.asarray(theta, dtype=float).tobytes()
        if key != self._key:
            profile, derivs = self._profile(theta)
            self._value = evaluate_profile(self.data, profile, derivs, blocks=self.geom.blocks)
            self._key = key
        return self._value

    def column_residuals(self, theta):
        """Residuals with a flux per column, whatever the blocks.

        Real spectral structure inside a flux block must not look like an outlier.
        """
        return evaluate_profile(self.data, self._profile(theta)[0]).residuals

    def residuals(self, theta):
        coeffs = self.model.split(theta)[0]
        return np.concatenate([self.evaluate(theta).residuals, coeffs * self.prior])

    def jacobian(self, theta):
        n_coeffs = self.prior.size
        prior_rows = np.zeros((n_coeffs, len(self.model.names)))
        prior_rows[np.arange(n_coeffs), np.arange(n_coeffs)] = self.prior
        return np.vstack([self.evaluate(theta).jacobian, prior_rows])


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
    geom, cdata = _prepare(data, variance, valid, usable, positions, along, wavelength, sigma_psf)
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


def transfer_profile(solution, *, scale_ratio, label=""):
    """The centre and width of one fit, to force on the same source in other pixels.

    Parameters
    ----------
    solution : TraceSolution
        A fit of the source (usually the highest-S/N disperser).
    scale_ratio : float
        Pixel scale along the slit of the fitted data over that of the target
        (arcsec per pixel / arcsec per pixel): offsets scale by it, widths² by
        its square, so the profile is the same on the sky.
    label : str, optional
        Where the profile comes from, for the log.

    Returns
    -------
    ForcedProfile
    """
    return ForcedProfile(
        coeffs=np.asarray(solution.coeffs, dtype=float) * scale_ratio,
        wave_range=solution.wave_range,
        source_sigma2=float(solution.source_sigma2) * scale_ratio**2,
        label=label,
        coeffs_err=np.asarray(solution.coeffs_err, dtype=float) * scale_ratio,
        source_sigma2_err=float(solution.source_sigma2_err) * scale_ratio**2,
    )


def _prepare(data, variance, valid, usable, positions, along, wavelength, sigma_psf):
    """Check shapes; build the geometry and the sky-free likelihood data."""
    data = np.asarray(data, dtype=float)
    if data.ndim != 3:
        raise ValueError(f"data must have shape (n_exp, ny, nx), got {data.shape}")
    usable = np.ones(data.shape, bool) if usable is None else usable
    for name, arr, shape in (
        ("variance", variance, data.shape),
        ("valid", valid, data.shape),
        ("usable", usable, data.shape),
        ("along", along, data.shape),
        ("wavelength", wavelength, (data.shape[0], data.shape[2])),
        ("sigma_psf", sigma_psf, (data.shape[0], data.shape[2])),
    ):
        if np.shape(arr) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {np.shape(arr)}")
    _, positions = np.unique(np.asarray(positions), return_inverse=True)
    if positions.size != data.shape[0] or positions.max() < 1:
        raise ValueError("positions must label every exposure and name at least two positions")
    wavelength = np.asarray(wavelength, dtype=float)
    known = np.isfinite(wavelength)
    if not known.any():
        raise ValueError("no finite wavelength in any exposure")
    lo, hi = float(wavelength[known].min()), float(wavelength[known].max())
    # where an exposure has no wavelength its pixels leave the fit, but the model
    # of its image is still needed there: interpolate along the columns
    t = _fill_columns(2.0 * (wavelength - lo) / max(hi - lo, 1e-12) - 1.0, 0.0)
    sigma_psf = np.asarray(sigma_psf, dtype=float)
    sigma_psf = _fill_columns(
        np.where(known, sigma_psf, np.nan), float(np.nanmedian(sigma_psf[known]))
    )
    along = np.asarray(along, dtype=float)
    covered = np.isfinite(along) & known[:, None, :]
    # the sky-free exposures need exactly nod_diff's set; everything else only
    # removes entries from the fit, which the per-pixel sky absorbs exactly
    valid = np.asarray(valid, bool) & np.isfinite(data)
    closed = _closed_pixels(data, valid, positions)
    contrast = sky_free_exposures(data, valid, positions)
    use = valid & np.asarray(usable, bool) & covered & closed[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(use, 1.0 / np.asarray(variance, dtype=float), 0.0)
    cdata = contrast_data(contrast, weight)
    if cdata.n_entries == 0:
        raise ValueError("no pixel is covered by two exposures with valid differences")
    located = np.isfinite(along)
    along = np.where(located, along, 0.0)
    limit = _offset_limit(along, covered, positions)
    geom = _Geometry(
        along, t, sigma_psf, covered, located, valid, known, (lo, hi), positions, limit
    )
    return geom, cdata


def _fill_columns(values, default):
    """Fill each row's NaNs: from the other rows in that column, else interpolated.

    Rows are exposures on a common grid, so a column holds nearly the same
    wavelength in all of them; ``default`` is used for a column no row knows.
    """
    out = np.array(values, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns no row knows
        column_mean = np.nanmean(out, axis=0)
    out = np.where(np.isfinite(out), out, column_mean[None, :])
    cols = np.arange(out.shape[1])
    for row in out:
        ok = np.isfinite(row)
        row[~ok] = np.interp(cols[~ok], cols[ok], row[ok]) if ok.any() else default
    return out


def _closed_pixels(data, valid, positions):
    """Pixels where the position means of the differences sum to zero.

    ``nod_diff``'s differences close exactly at every pixel; they do not where
    an exposure that entered the references is missing from the input.  Such
    pixels are left out of the fit; if they are more than 1 % of the pixels,
    the input is refused.
    """
    misfit = difference_closure(data, valid, positions)
    tested = np.isfinite(misfit)
    bad = tested & (misfit > _CLOSURE_TOLERANCE)
    if tested.any() and bad.sum() > 0.01 * tested.sum():
        raise ValueError(
            f"the differences do not sum to zero over the nod positions at "
            f"{100 * bad.sum() / tested.sum():.0f} % of pixels: an exposure that nod_diff "
            "differenced against is missing, or the differences were changed after nod_diff"
        )
    return ~bad


def _offset_limit(along, covered, positions):
    """Smallest throw between nod positions, from the exposures' coordinates."""
    throws = []
    for j in range(positions.size):
        for k in range(j + 1, positions.size):
            both = covered[j] & covered[k]
            if positions[j] != positions[k] and both.any():
                throws.append(abs(np.median(along[j][both] - along[k][both])))
    return min(throws) if throws else np.inf


def _limit(geom, settings):
    """Bound on the offset coefficients: ``max_offset``, and short of the next image."""
    return min(settings.max_offset, 0.45 * geom.offset_limit)


def _scan(geom, cdata, settings):
    """Best constant offset and intrinsic width on a grid, and the S/N measured there.

    Offsets are scanned at the nominal width, then a few widths at the best
    offset (an extended source measured with a point-source profile would look
    fainter than it is), then the offsets again at the best width.
    """
    limit = _limit(geom, settings)
    offsets = np.arange(-limit, limit + 1e-9, _SCAN_STEP)
    widths2 = [w**2 for w in _SCAN_WIDTHS if w <= settings.max_source_sigma]

    def chi2(offset, s2):
        objective = _Objective(geom, cdata, _Model(0, False, s2), settings)
        return np.sum(objective.residuals(np.array([offset])) ** 2), objective

    best = offsets[int(np.argmin([chi2(a, 0.0)[0] for a in offsets]))]
    s2 = widths2[int(np.argmin([chi2(best, w)[0] for w in widths2]))]
    if s2 > 0:
        best = offsets[int(np.argmin([chi2(a, s2)[0] for a in offsets]))]
    columns = chi2(best, s2)[1].evaluate(np.array([best]))
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
    models = [_Model(degree, True)] if snr >= settings.width_snr else []
    return models + [_Model(d, False) for d in range(degree, -1, -1)]


def _fit_model(geom, cdata, model, start, settings):
    """Fit one model with rejection rounds; None if it ends on a bound."""
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
        data = _without(cdata, clipped)
        objective = _Objective(geom, data, model, settings)
        # residuals of an exposure are whitened against the pixel's sky: their
        # std is sqrt(1 - w/W) (0.71 for A-B), so scale the Huber corner to σ.
        # With flux blocks the residuals also hold the spectrum's structure
        # inside a block, which a robust loss would take for outliers: the
        # rejection below (on per-column residuals) then does that job alone.
        spread = _residual_spread(data)
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
        new = clipped | _outlying(normalised, settings.clip_sigma)
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


def _residual_spread(data):
    """Standard deviation of each whitened residual, ``sqrt(1 − w_j / Σ w)``."""
    return np.sqrt(np.clip(1.0 - data.weight * data.inv_total_weight[None], 0.0, 1.0))


def _without(cdata, rejected):
    """The likelihood data with the rejected entries left out.

    The centred values are the sky-free exposures up to a constant per pixel,
    which centring with the new weights removes again.
    """
    weight = np.where(cdata.active & ~rejected, cdata.weight, 0.0)
    return contrast_data(np.where(cdata.active, cdata.centred, np.nan), weight)


def _outlying(residual_image, clip_sigma):
    """Per pixel, the exposure with the largest residual if it exceeds the clip."""
    size = np.abs(residual_image)
    worst = size == size.max(axis=0, keepdims=True)
    return worst & (size > clip_sigma)


@dataclass(frozen=True)
class _Outcome:
    """What a fit (or a fixed profile) leaves for the solution."""

    status: str
    message: str
    model: _Model
    coeffs: np.ndarray
    coeffs_err: np.ndarray
    source_sigma2: float
    source_sigma2_err: float
    clipped: np.ndarray


def _fixed_profile(geom, cdata, centre, s2, outcome, snr, snr_column):
    """Evaluate a profile with fixed centre (n, nx) and width; build the solution."""
    sigma2 = geom.sigma_psf**2 + s2
    profile = _images(geom, centre, sigma2)[0]
    data = _without(cdata, outcome.clipped)
    evaluation = evaluate_profile(data, profile)
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
        model=_difference_model(geom, amplitudes, profile),
        clipped=outcome.clipped,
    )


def _difference_model(geom, amplitudes, profile):
    """Model of the nod differences, data units.

    Where ``nod_diff`` formed a difference, the model is built from the same
    exposures (a masked pixel left its exposure out of the reference); elsewhere
    from every exposure that covers the pixel, as a stand-in for the data.  An
    exposure with no usable pixel in a column still entered the references
    there: its flux is taken as the other exposures' in that column (or, with
    none, interpolated from its neighbouring columns).
    """
    filled = _fill_columns(amplitudes, np.nan)
    others = np.nanmean(filled, axis=0)
    filled = np.where(np.isfinite(filled), filled, np.nan_to_num(others)[None, :])
    images = np.where(geom.located, filled[:, None, :] * profile, np.nan)
    present = np.isfinite(images)
    where_valid = difference_images(images, geom.valid & present, geom.positions)
    elsewhere = difference_images(images, present, geom.positions)
    return np.where(geom.valid, where_valid, elsewhere)


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
    outcome = _Outcome("FALLBACK", message, _Model(0, False), [0.0], [np.nan], 0.0, np.nan, none)
    return _fixed_profile(geom, cdata, np.zeros_like(geom.t), 0.0, outcome, snr, snr_column)


def _forced_solution(geom, cdata, forced):
    lo, hi = forced.wave_range
    wave = (geom.t + 1.0) / 2.0 * (geom.wave_range[1] - geom.wave_range[0]) + geom.wave_range[0]
    t = np.clip(2.0 * (wave - lo) / max(hi - lo, 1e-12) - 1.0, -1.0, 1.0)
    coeffs = np.asarray(forced.coeffs, dtype=float)
    centre = legendre.legval(t, coeffs)
    s2 = max(float(forced.source_sigma2), -0.5 * float(np.min(geom.sigma_psf)) ** 2)
    model = _Model(coeffs.size - 1, False, s2)
    none = np.zeros(cdata.active.shape, dtype=bool)
    message = f"centre and width forced from {forced.label or 'another fit'}"
    errors = np.full(coeffs.size, np.nan) if forced.coeffs_err is None else forced.coeffs_err
    outcome = _Outcome("FORCED", message, model, coeffs, errors, s2, forced.source_sigma2_err, none)
    probe = evaluate_profile(cdata, _images(geom, centre, geom.sigma_psf**2 + s2)[0])  # per column
    snr, snr_column = _snr(probe, cdata)
    return _fixed_profile(geom, cdata, centre, s2, outcome, snr, snr_column)
