"""The likelihood of nod differences for a model of the source's spatial profile.

Pure numpy/scipy; arrays are stacks of the exposures of one source on a common
grid, axis order ``(n_exposures, n_spatial, n_dispersion)``.

Why the differences are not fitted directly.  The nod differences ``D_e`` of one
source are linear combinations of the same exposures: for a 2-point nod
``D_B = −D_A`` exactly, and for any pattern ``Σ_p D̄_p = 0``.  Treating them as
independent would count every photon twice (A−B) or 1.5 times (3-point) and
shrink the fitted parameters' errors by up to √2.  The exact likelihood is that
of the exposures ``X_j`` themselves with an unknown sky per pixel, because the
differences are exactly the sky-free contrasts of the exposures.

Let ``n`` positions have data at a pixel and ``D̄_p`` be the mean of the valid
differences at position ``p``.  With ``nod_diff``'s estimator (mean of each
position, then mean of the other positions) one finds

    X̃_j ≡ D_j − D̄_p(j) / n = X_j − (1/n) Σ_q M_q,

each exposure minus a constant common to all exposures at that pixel.  The
model ``X_j = κ + A_j P_j`` (sky ``κ``, source flux ``A_j`` per exposure and
column, unit profile ``P_j``) then gives, after minimising over ``κ`` per pixel,

    χ² = Σ_pixels Σ_j w_j (r_j − r̄)²,   r_j = X̃_j − A_j P_j,   r̄ = Σ w_j r_j / Σ w_j,

with ``w_j = 1/Var(X_j)``, the variance of the exposure alone (the variance of
``D_j`` minus that of its reference).  Positive and negative nod images are
thereby modelled by one image per exposure; a pixel that only some exposures
cover, or that the fit rejects in one exposure, simply has fewer terms.  The
amplitudes ``A_j`` enter linearly and are solved per column for each profile
(variable projection, Golub & Pereyra 1973); the Jacobian with respect to the
profile parameters is Kaufman's (1975) projected form.
"""

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ContrastData",
    "ProfileEvaluation",
    "contrast_data",
    "difference_closure",
    "evaluate_profile",
    "sky_free_exposures",
]


def sky_free_exposures(data, valid, positions):
    """Each exposure minus a sky common to all exposures, from the nod differences.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_exp, ny, nx)
        Nod differences ``D_j`` as written by ``nod_diff``.
    valid : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Differences that exist (the exposure entered ``nod_diff``'s means).
    positions : numpy.ndarray of int, shape (n_exp,)
        Nod position index of each exposure, 0 .. n_positions − 1.

    Returns
    -------
    numpy.ndarray, shape (n_exp, ny, nx)
        ``X̃_j = D_j − D̄_p(j)/n`` (module docstring); NaN where not valid.
    """
    position_means, present = _position_means(data, valid, positions)
    with np.errstate(invalid="ignore", divide="ignore"):
        contrast = data - position_means[positions] / present.sum(axis=0)
    return np.where(valid, contrast, np.nan)


def difference_closure(data, valid, positions):
    """How far the position means of the differences are from summing to zero.

    ``nod_diff``'s differences satisfy ``Σ_p D̄_p = 0`` at every pixel over the
    positions with data; a missing exposure, or differences changed since,
    break it.

    Parameters
    ----------
    data, valid, positions
        As in `sky_free_exposures`.

    Returns
    -------
    numpy.ndarray, shape (ny, nx)
        ``|Σ_p D̄_p| / Σ_p |D̄_p|`` (the denominator floored at 1e-6 of the
        largest difference, for pixels where everything cancels); NaN where
        fewer than two positions have data.
    """
    means, present = _position_means(data, valid, positions)
    total = np.abs(means.sum(axis=0))
    scale = np.abs(means).sum(axis=0) + 1e-6 * np.max(np.abs(np.where(valid, data, 0.0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((present.sum(axis=0) >= 2) & (scale > 0), total / scale, np.nan)


def _position_means(data, valid, positions):
    """Mean of the valid differences at each position (0 where none), and presence."""
    n_positions = positions.max() + 1
    sums = np.zeros((n_positions, *data.shape[1:]))
    counts = np.zeros_like(sums)
    clean = np.where(valid, data, 0.0)
    for q in range(n_positions):
        sums[q] = clean[positions == q].sum(axis=0)
        counts[q] = valid[positions == q].sum(axis=0)
    present = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present, sums / counts, 0.0), present


@dataclass(frozen=True)
class ContrastData:
    """What the profile likelihood needs, on the common grid.

    Attributes
    ----------
    centred : numpy.ndarray, shape (n_exp, ny, nx)
        ``X̃_j`` minus its weighted mean over exposures at each pixel; 0 where unused.
    weight : numpy.ndarray, shape (n_exp, ny, nx)
        ``1/Var(X_j)``; 0 for pixels left out.
    inv_total_weight : numpy.ndarray, shape (ny, nx)
        ``1/Σ_j w_j``; 0 where no exposure is used.
    active : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Entries of the residual vector (``weight > 0``).
    """

    centred: np.ndarray
    weight: np.ndarray
    inv_total_weight: np.ndarray
    active: np.ndarray

    @property
    def n_entries(self):
        """Number of residuals."""
        return int(self.active.sum())

    @property
    def n_constraints(self):
        """Degrees of freedom removed by the per-pixel sky."""
        return int((self.active.sum(axis=0) > 0).sum())


def contrast_data(contrast, weight):
    """Centre the sky-free exposures and keep their weights.

    Parameters
    ----------
    contrast : numpy.ndarray, shape (n_exp, ny, nx)
        ``X̃_j`` from `sky_free_exposures`.
    weight : numpy.ndarray, shape (n_exp, ny, nx)
        ``1/Var(X_j)`` with 0 for pixels to leave out; NaN contrast is left out.

    Returns
    -------
    ContrastData
    """
    weight = np.where(np.isfinite(contrast) & np.isfinite(weight) & (weight > 0), weight, 0.0)
    # a pixel seen by one exposure alone says nothing once its sky is free
    single = (weight > 0).sum(axis=0) < 2
    weight = np.where(single[None], 0.0, weight)
    total = weight.sum(axis=0)
    inv_total = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    clean = np.where(weight > 0, contrast, 0.0)
    mean = (weight * clean).sum(axis=0) * inv_total
    centred = np.where(weight > 0, clean - mean[None], 0.0)
    return ContrastData(centred, weight, inv_total, weight > 0)


@dataclass(frozen=True)
class ProfileEvaluation:
    """The likelihood at one profile, with the fluxes solved for.

    Attributes
    ----------
    residuals : numpy.ndarray, shape (n_entries,)
        Whitened residuals ``√w_j (r_j − r̄)`` of the active entries.
    jacobian : numpy.ndarray, shape (n_entries, n_params) or None
        Kaufman's projected derivative of the residuals.
    amplitudes : numpy.ndarray, shape (n_exp, nx)
        Source flux of each exposure per column (the profile integrates to 1);
        columns of one flux block share it.
    block_amplitudes, block_variance : numpy.ndarray, shape (n_exp, n_blocks)
        The flux of each exposure per block and its variance (diagonal of the
        inverse normal matrix).
    """

    residuals: np.ndarray
    jacobian: np.ndarray | None
    amplitudes: np.ndarray
    block_amplitudes: np.ndarray
    block_variance: np.ndarray


def _centred(data, values):
    """``values`` minus their weighted mean over exposures at each pixel."""
    mean = (data.weight * values).sum(axis=0) * data.inv_total_weight
    return values - mean[None]


def _centred_stack(data, values):
    """`_centred` of each of a stack of arrays (first axis), in one pass."""
    mean = np.einsum("jrc,ijrc->irc", data.weight, values) * data.inv_total_weight
    return values - mean[:, None]


def _per_block(values, blocks, n_blocks):
    """Sum per-column arrays (first axis: column) into blocks."""
    out = np.zeros((n_blocks, *values.shape[1:]))
    np.add.at(out, blocks, values)
    return out


def evaluate_profile(
    data, profile, derivatives=None, *, blocks=None, additive=None, additive_derivatives=None
):
    """Solve the fluxes for a profile and return the residuals (and Jacobian).

    Parameters
    ----------
    data : ContrastData
        The sky-free exposures and weights.
    profile : numpy.ndarray, shape (n_exp, ny, nx)
        Unit profile ``P_j`` of each exposure's own source image.
    derivatives : numpy.ndarray, shape (n_params, n_exp, ny, nx), optional
        ``∂P_j/∂θ_i``; the Jacobian is returned when given.
    blocks : numpy.ndarray of int, shape (nx,), optional
        Flux block of each column, 0 .. n_blocks − 1: the columns of a block
        share one flux per exposure (default: every column its own).
    additive : numpy.ndarray, shape (n_exp, ny, nx), optional
        A term of the model not scaled by the flux (each exposure's
        background), subtracted from the data before the fluxes are solved.
    additive_derivatives : numpy.ndarray, shape (n_add, n_exp, ny, nx), optional
        Its derivatives with respect to its own parameters, which follow
        ``derivatives``' in the Jacobian (required with ``derivatives`` when
        ``additive`` depends on parameters).

    Returns
    -------
    ProfileEvaluation
    """
    n_exp, n_cols = profile.shape[0], profile.shape[2]
    blocks = np.arange(n_cols) if blocks is None else np.asarray(blocks)
    n_blocks = int(blocks.max()) + 1
    diagonal = (slice(None), np.arange(n_exp), np.arange(n_exp))
    wp = data.weight * profile
    scaled = wp * np.sqrt(data.inv_total_weight)[None]
    normal = -np.einsum("jrc,krc->cjk", scaled, scaled)
    normal[diagonal] += np.einsum("jrc,jrc->cj", wp, profile)
    normal = _per_block(normal, blocks, n_blocks)
    # an exposure with no usable pixel near its image in a block has no flux there
    scale = np.maximum(normal[diagonal].max(axis=1), 1e-300)
    normal[diagonal] += 1e-10 * scale[:, None]
    target = data.centred if additive is None else data.centred - _centred(data, additive)
    rhs = _per_block(np.einsum("jrc,jrc->cj", wp, target), blocks, n_blocks)
    block_amplitudes = np.linalg.solve(normal, rhs[..., None])[..., 0]  # (n_blocks, n_exp)
    amplitudes = block_amplitudes[blocks].T  # (n_exp, nx)
    model = amplitudes[:, None, :] * profile
    sqrt_w = np.sqrt(data.weight)
    residuals = (sqrt_w * (target - _centred(data, model)))[data.active]
    block_variance = np.linalg.inv(normal)[diagonal]
    jacobian = None
    if derivatives is not None:
        model_derivs = amplitudes[None, :, None, :] * derivatives
        if additive_derivatives is not None and len(additive_derivatives):
            # the fluxes respond to a background as to a profile change (Kaufman)
            model_derivs = np.concatenate([model_derivs, additive_derivatives])
        centred = _centred_stack(data, model_derivs)
        rhs_d = _per_block(np.einsum("jrc,ijrc->cji", wp, centred), blocks, n_blocks)
        shift = np.linalg.solve(normal, rhs_d)[blocks]  # (nx, n_exp, n_params)
        # centring is linear: centred(d - s P) = centred(d) - centred(s P)
        moved = centred - _centred_stack(data, shift.transpose(2, 1, 0)[:, :, None, :] * profile)
        jacobian = -(moved * sqrt_w)[:, data.active].T
    return ProfileEvaluation(residuals, jacobian, amplitudes, block_amplitudes.T, block_variance.T)
