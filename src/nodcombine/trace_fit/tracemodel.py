"""The trace-fit problem: geometry, profile model and objective (used by `tracefit`).

Pure numpy/scipy; arrays are stacks of the exposures of one source on a common
grid, axis order ``(n_exposures, n_spatial, n_dispersion)``.  `prepare_trace`
checks the inputs and builds the sky-free likelihood data
(`nodcombine.trace_fit.likelihood`); `ProfileObjective` gives `scipy.optimize.least_squares`
the residuals and Jacobian of one `ProfileModel`; `difference_model` turns a
fitted profile back into a model of the nod differences.
"""

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import legendre

from nodcombine.nod_diff.noddiff import difference_images
from nodcombine.profile import (
    NO_HALO,
    integrated_component,
    source_pixel_fraction,
)
from nodcombine.trace_fit.likelihood import (
    contrast_data,
    difference_closure,
    evaluate_profile,
    sky_free_exposures,
)
from nodcombine.trace_fit.profilemodel import (
    background_derivatives,
    exposure_background,
    total_sigma2,
)

__all__ = [
    "ProfileObjective",
    "TraceGeometry",
    "closed_pixels",
    "difference_model",
    "fill_columns",
    "offset_limit",
    "outlying_entries",
    "prepare_trace",
    "profile_only",
    "residual_spread",
    "rows_at",
    "without_entries",
]

_CLOSURE_TOLERANCE = 1e-3  # |Σ_p D̄_p| / Σ_p |D̄_p|; float32 rounding is ~1e-7


@dataclass(frozen=True)
class TraceGeometry:
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


def profile_only(geom, centre, sigma2, halo=NO_HALO):
    """Unit profiles without derivatives: core, plus a halo ``(f, k[, β])`` if ``f`` > 0."""
    return source_pixel_fraction(geom.along, centre[:, None, :], np.sqrt(sigma2)[:, None, :], halo)


class ProfileObjective:
    """Residuals and Jacobian of one model, with the last evaluation cached."""

    def __init__(self, geom, data, model, settings):
        self.geom, self.data, self.model = geom, data, model
        self.basis = legendre.legvander(geom.t, max(model.degree, 0))  # (n, nx, degree + 1)
        self.width_basis = legendre.legvander(geom.t, max(model.width_degree, 0))
        self.background_basis = legendre.legvander(geom.t, max(model.background_degree, 0))
        widths = ([settings.centre_prior] + [settings.shape_prior] * model.degree)[: model.n_offset]
        self.prior = 1.0 / np.array(widths)
        self._key, self._value = None, None

    def centre_and_sigma2(self, theta):
        """Centre (n, nx) and total width² (n, nx) at ``theta``, and where the width is floored."""
        coeffs, widths = self.model.split(theta)
        centre = self.basis[..., : coeffs.size] @ coeffs if coeffs.size else 0.0 * self.geom.t
        s2 = self.width_basis[..., : widths.size] @ widths
        sigma2, floored = total_sigma2(self.geom.sigma_psf, s2)
        return centre, sigma2, floored

    def background(self, theta):
        """Each exposure's background (n, ny, nx) at ``theta`` (`exposure_background`)."""
        n_rows = self.geom.along.shape[1]
        return exposure_background(self.geom.t, self.model, theta, n_rows, self.background_basis)

    def _unit_profile(self, theta):
        """Unit profiles at ``theta``, without derivatives."""
        centre, sigma2, _ = self.centre_and_sigma2(theta)
        return profile_only(self.geom, centre, sigma2, self.model.halo_of(theta))

    def _profile(self, theta):
        """Unit profiles and their derivatives with respect to ``theta``."""
        centre, sigma2, floored = self.centre_and_sigma2(theta)
        fraction, scale, beta, skew = self.model.halo_of(theta)
        skew = skew if self.model.skewed else None
        sigma = np.sqrt(sigma2)[:, None, :]
        along, centre3 = self.geom.along, centre[:, None, :]
        core, d_centre, d_sigma, _, d_beta, d_skew = integrated_component(
            along, centre3, sigma, 1.0, beta, skew
        )
        profile, d_shape = core, []
        if self.model.halo:
            wide, w_centre, w_sigma, w_scale, w_beta, w_skew = integrated_component(
                along, centre3, sigma, scale, beta, skew
            )
            profile = (1.0 - fraction) * core + fraction * wide
            d_centre = (1.0 - fraction) * d_centre + fraction * w_centre
            d_sigma = (1.0 - fraction) * d_sigma + fraction * w_sigma
            d_shape = [wide - core, fraction * w_scale]
            if self.model.wings:
                d_beta = (1.0 - fraction) * d_beta + fraction * w_beta
            if self.model.skewed:
                d_skew = (1.0 - fraction) * d_skew + fraction * w_skew
        d_shape += [d_beta] if self.model.wings else []
        d_shape += [d_skew] if self.model.skewed else []
        derivs = [d_centre * self.basis[:, None, :, k] for k in range(self.model.n_offset)]
        if self.model.width_free:
            d_s2 = np.where(floored, 0.0, 1.0 / (2.0 * np.sqrt(sigma2)))[:, None, :] * d_sigma
            derivs += [
                d_s2 * self.width_basis[:, None, :, k] for k in range(self.model.width_degree + 1)
            ]
        return profile, np.stack(derivs + d_shape)

    def _prior_terms(self, theta):
        """Whitened prior residuals: the offset coefficients, then the width's constant term."""
        coeffs, widths = self.model.split(theta)
        terms = [coeffs * self.prior]
        if self.model.width_free and self.model.width_prior is not None:
            centre, width = self.model.width_prior
            terms.append(np.array([(widths[0] - centre) / width]))
        return np.concatenate(terms)

    def _prior_jacobian(self):
        n_params = len(self.model.names)
        rows = [np.eye(n_params)[k] * self.prior[k] for k in range(self.model.n_offset)]
        if self.model.width_free and self.model.width_prior is not None:
            rows.append(np.eye(n_params)[self.model.n_offset] / self.model.width_prior[1])
        return np.array(rows).reshape(len(rows), n_params)

    def evaluate(self, theta):
        """`ProfileEvaluation` at ``theta`` (cached for the Jacobian call that follows)."""
        key = np.asarray(theta, dtype=float).tobytes()
        if key != self._key:
            profile, derivs = self._profile(theta)
            self._value = evaluate_profile(
                self.data,
                profile,
                derivs,
                blocks=self.geom.blocks,
                additive=self.background(theta),
                additive_derivatives=background_derivatives(
                    self.geom.t, self.model, self.geom.along.shape[1], self.background_basis
                ),
            )
            self._key = key
        return self._value

    def value(self, theta, cap=np.inf):
        """`ProfileEvaluation` without a Jacobian and the objective ``Σ min(residual², cap²)``.

        For scans: no derivatives are computed, nothing is cached.  A finite
        ``cap`` bounds what one pixel can add (an unflagged cosmic ray must not
        pull the scan onto itself).
        """
        evaluation = evaluate_profile(
            self.data,
            self._unit_profile(theta),
            blocks=self.geom.blocks,
            additive=self.background(theta),
        )
        prior = self._prior_terms(theta)
        squares = np.minimum(evaluation.residuals**2, cap**2)
        return evaluation, float(squares.sum() + prior @ prior)

    def column_residuals(self, theta):
        """Residuals with a flux per column, whatever the blocks.

        Real spectral structure inside a flux block must not look like an outlier.
        """
        profile, background = self._unit_profile(theta), self.background(theta)
        return evaluate_profile(self.data, profile, additive=background).residuals

    def residuals(self, theta):
        """Whitened residuals, then the prior terms."""
        return np.concatenate([self.evaluate(theta).residuals, self._prior_terms(theta)])

    def jacobian(self, theta):
        """Derivative of `residuals` with respect to ``theta``."""
        jacobian = self.evaluate(theta).jacobian
        if self.model.n_background:
            # evaluate_profile appends the background's columns after the shape's;
            # the parameter vector has them before
            n_bg, n_shape = self.model.n_background, self.model.n_shape
            split = jacobian.shape[1] - n_bg - n_shape
            shape = jacobian[:, split : split + n_shape]
            jacobian = np.hstack([jacobian[:, :split], jacobian[:, split + n_shape :], shape])
        return np.vstack([jacobian, self._prior_jacobian()])

    def dof(self, theta):
        """Residuals less the per-pixel skies, the fluxes and the parameters."""
        evaluation = self.evaluate(theta)
        n_fluxes = int(np.isfinite(evaluation.block_amplitudes).sum())
        return self.data.n_entries - self.data.n_constraints - n_fluxes - len(self.model.names)

    def objective(self, theta):
        """``Σ residuals²`` including the priors, without a robust loss (to compare models)."""
        residuals = self.residuals(theta)
        return float(residuals @ residuals)


def prepare_trace(data, variance, valid, usable, positions, along, wavelength, sigma_psf):
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
    t = fill_columns(2.0 * (wavelength - lo) / max(hi - lo, 1e-12) - 1.0, 0.0)
    sigma_psf = np.asarray(sigma_psf, dtype=float)
    sigma_psf = fill_columns(
        np.where(known, sigma_psf, np.nan), float(np.nanmedian(sigma_psf[known]))
    )
    along = np.asarray(along, dtype=float)
    covered = np.isfinite(along) & known[:, None, :]
    # the sky-free exposures need exactly nod_diff's set; everything else only
    # removes entries from the fit, which the per-pixel sky absorbs exactly
    valid = np.asarray(valid, bool) & np.isfinite(data)
    closed = closed_pixels(data, valid, positions)
    contrast = sky_free_exposures(data, valid, positions)
    use = valid & np.asarray(usable, bool) & covered & closed[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(use, 1.0 / np.asarray(variance, dtype=float), 0.0)
    cdata = contrast_data(contrast, weight)
    if cdata.n_entries == 0:
        raise ValueError("no pixel is covered by two exposures with valid differences")
    located = np.isfinite(along)
    along = np.where(located, along, 0.0)
    limit = offset_limit(along, covered, positions)
    geom = TraceGeometry(
        along, t, sigma_psf, covered, located, valid, known, (lo, hi), positions, limit
    )
    return geom, cdata


def fill_columns(values, default):
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


def closed_pixels(data, valid, positions):
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


def offset_limit(along, covered, positions):
    """Smallest throw between nod positions, from the exposures' coordinates."""
    throws = []
    for j in range(positions.size):
        for k in range(j + 1, positions.size):
            both = covered[j] & covered[k]
            if positions[j] != positions[k] and both.any():
                throws.append(abs(np.median(along[j][both] - along[k][both])))
    return min(throws) if throws else np.inf


def residual_spread(data):
    """Standard deviation of each whitened residual, ``sqrt(1 − w_j / Σ w)``."""
    return np.sqrt(np.clip(1.0 - data.weight * data.inv_total_weight[None], 0.0, 1.0))


def without_entries(cdata, rejected):
    """The likelihood data with the rejected entries left out.

    The centred values are the sky-free exposures up to a constant per pixel,
    which centring with the new weights removes again.
    """
    weight = np.where(cdata.active & ~rejected, cdata.weight, 0.0)
    return contrast_data(np.where(cdata.active, cdata.centred, np.nan), weight)


def outlying_entries(residual_image, clip_sigma):
    """Per pixel, the exposure with the largest residual if it exceeds the clip."""
    size = np.abs(residual_image)
    worst = size == size.max(axis=0, keepdims=True)
    return worst & (size > clip_sigma)


def difference_model(geom, amplitudes, profile):
    """Model of the nod differences, data units.

    Where ``nod_diff`` formed a difference, the model is built from the same
    exposures (a masked pixel left its exposure out of the reference); elsewhere
    from every exposure that covers the pixel, as a stand-in for the data.  An
    exposure with no usable pixel in a column still entered the references
    there: its flux is taken as the other exposures' in that column (or, with
    none, interpolated from its neighbouring columns; 0 for an exposure that
    has no flux anywhere while no other has one either).
    """
    filled = fill_columns(amplitudes, 0.0)
    images = np.where(geom.located, filled[:, None, :] * profile, np.nan)
    present = np.isfinite(images)
    where_valid = difference_images(images, geom.valid & present, geom.positions)
    elsewhere = difference_images(images, present, geom.positions)
    return np.where(geom.valid, where_valid, elsewhere)


def rows_at(along, value):
    """Row where the along-slit coordinate equals ``value``, in each column.

    Parameters
    ----------
    along : numpy.ndarray, shape (ny, nx)
        Along-slit coordinate of each pixel, increasing with the row; NaN unknown.
    value : numpy.ndarray, shape (nx,)
        Coordinate sought in each column.

    Returns
    -------
    numpy.ndarray, shape (nx,)
        Fractional row; NaN where the column has fewer than two known pixels or
        ``value`` lies outside them.
    """
    rows = np.arange(along.shape[0], dtype=float)
    out = np.full(along.shape[1], np.nan)
    for x in np.flatnonzero(np.isfinite(value)):
        ok = np.isfinite(along[:, x])
        if ok.sum() >= 2:
            out[x] = np.interp(value[x], along[ok, x], rows[ok], left=np.nan, right=np.nan)
    return out
