"""Which profile parameters a trace fit frees, and the width law they describe.

Pure numpy.  The source's image in exposure ``j`` is a pixel-integrated
Gaussian centred on the predicted position plus ``c(t) = Σ a_k L_k(t)`` with
total width² ``σ² = σ_PSF² + s²(t)``, ``s²(t) = Σ b_k L_k(t)``, ``L_k``
Legendre polynomials of the wavelength scaled to ``t ∈ [−1, 1]``.  A constant
``s²`` is the PSF law plus a fixed source width; degree 2 holds a constant
total width exactly (``σ_PSF²`` is quadratic in λ, `nodcombine.psf`) and
widths growing faster than the PSF's.

A background of each exposure, uniform along the slit and a polynomial in
wavelength, ``β_j(t) = Σ c_jk L_k(t)``, may be added to the model: the sky of
one exposure brighter or fainter than the others' (the per-pixel sky of the
likelihood takes the part common to all exposures, so exposure 0's is held at
0).  Unmodelled, such a residual looks like wings to the width law (CEERS
933: a total width of 2.9 px in the reddest third instead of 1.3).
"""

from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import legendre

from nodcombine.profile import NO_HALO

__all__ = [
    "BETA_START",
    "HALO_START",
    "ProfileModel",
    "background_derivatives",
    "centre_and_width2",
    "exposure_background",
    "total_sigma2",
]

#: a halo's first guess (flux fraction, width over the core's): a fifth of the
#: flux in a profile three times wider
HALO_START = (0.2, 3.0)
#: the wings' first Moffat power β: wings falling as u^-6, between an Airy
#: pattern's and a Gaussian's
BETA_START = 3.0


@dataclass(frozen=True)
class ProfileModel:
    """Which parameters are free.

    Attributes
    ----------
    degree : int
        Degree of the Legendre offset polynomial; -1: the centre stays at the
        predicted position.
    width_degree : int
        Degree of the Legendre polynomial in wavelength of the source width²
        ``s²(t)``; -1: the width is fixed at ``fixed_sigma2``.
    fixed_sigma2 : float
        The source width² when it is not fitted, pixels².
    width_prior : tuple of (float, float) or None
        Gaussian prior (centre, width) on the constant term of ``s²``, pixels².
    halo : bool
        A second, wider Gaussian with the same centre: the profile is
        ``(1 − f) G(σ) + f G(kσ)``, ``f`` and ``k`` fitted (the last two
        parameters) — the wings of a real PSF or an extended galaxy.
    wings : bool
        Core and halo are Moffat profiles of a common power ``β`` (one more
        parameter, the last; see `nodcombine.profile`) instead of Gaussians:
        power-law wings, the Gaussians in the limit of large ``β``.
    skewed : bool
        Core and halo are ``1 − a`` times as wide before their peak as the
        width law says and ``1 + a`` after it, ``a`` fitted (the last parameter).
    background_degree : int
        Degree of the Legendre polynomial in wavelength of each exposure's
        background (``-1``: none), for exposures 1 … ``background_exposures``
        (exposure 0's is 0); its coefficients follow the width's.
    background_exposures : int
        Number of exposures with a background of their own (``n_exp − 1``).
    """

    degree: int
    width_degree: int = -1
    fixed_sigma2: float = 0.0
    width_prior: tuple | None = None
    halo: bool = False
    wings: bool = False
    skewed: bool = False
    background_degree: int = -1
    background_exposures: int = 0
    names: tuple = field(init=False)

    def __post_init__(self):
        names = tuple(f"a{k}" for k in range(self.degree + 1))
        widths = tuple(f"b{k}" for k in range(self.width_degree + 1))
        backgrounds = tuple(
            f"c{j}_{k}"
            for j in range(1, self.background_exposures + 1)
            for k in range(self.background_degree + 1)
        )
        halo = ("halo_fraction", "halo_scale") if self.halo else ()
        shape = ("halo_beta",) if self.wings else ()
        shape += ("skew",) if self.skewed else ()
        object.__setattr__(self, "names", names + widths + backgrounds + halo + shape)

    @property
    def n_shape(self):
        """Number of shape parameters (halo, wings, skew: 0 to 4), the last of the vector."""
        return (2 if self.halo else 0) + int(self.wings) + int(self.skewed)

    @property
    def width_free(self):
        """Whether the source width is fitted."""
        return self.width_degree >= 0

    @property
    def n_offset(self):
        """Number of offset coefficients."""
        return self.degree + 1

    @property
    def n_background(self):
        """Number of background coefficients (all exposures)."""
        return self.background_exposures * (self.background_degree + 1)

    def background_of(self, theta):
        """Background coefficients ``(background_exposures, degree + 1)``; empty without."""
        start = self.n_offset + (self.width_degree + 1 if self.width_free else 0)
        values = np.asarray(theta, dtype=float)[start : start + self.n_background]
        return values.reshape(self.background_exposures, self.background_degree + 1)

    def split(self, theta):
        """Offset coefficients and width² coefficients of a parameter vector."""
        theta = np.asarray(theta, dtype=float)
        coeffs = theta[: self.n_offset]
        end = self.n_offset + self.width_degree + 1
        widths = theta[self.n_offset : end] if self.width_free else np.array([self.fixed_sigma2])
        return coeffs, widths

    def halo_of(self, theta):
        """The image's shape ``(f, k, β, a)`` at ``theta`` (`nodcombine.profile`).

        The halo's flux fraction and width over the core's (``0, 1`` without),
        the wings' power (``∞``: Gaussians) and the skew (0: symmetric).
        """
        shape = self._shape_values(theta)
        return (
            float(shape.get("halo_fraction", NO_HALO[0])),
            float(shape.get("halo_scale", NO_HALO[1])),
            float(shape.get("halo_beta", NO_HALO[2])),
            float(shape.get("skew", NO_HALO[3])),
        )

    def grown(
        self,
        *,
        degree=None,
        width_degree=None,
        halo=None,
        wings=None,
        skewed=None,
        background_degree=None,
        background_exposures=None,
    ):
        """The model with another offset, width or background degree, a halo, wings or a skew."""
        return ProfileModel(
            self.degree if degree is None else degree,
            self.width_degree if width_degree is None else width_degree,
            self.fixed_sigma2,
            self.width_prior,
            self.halo if halo is None else halo,
            self.wings if wings is None else wings,
            self.skewed if skewed is None else skewed,
            self.background_degree if background_degree is None else background_degree,
            self.background_exposures if background_exposures is None else background_exposures,
        )

    def shape_start(self):
        """First guesses of the shape parameters (halo, wings, skew), in their order."""
        start = (HALO_START if self.halo else ()) + ((BETA_START,) if self.wings else ())
        return start + ((0.0,) if self.skewed else ())

    def embed(self, theta, other):
        """``theta`` of ``other`` as a parameter vector of this model.

        Coefficients this model lacks are dropped, those it adds start at 0.
        """
        coeffs, widths = other.split(theta)
        out = np.zeros(len(self.names))
        n = min(coeffs.size, self.n_offset)
        out[:n] = coeffs[:n]
        if self.width_free:
            m = min(widths.size, self.width_degree + 1)
            out[self.n_offset : self.n_offset + m] = widths[:m]
        if self.n_background and other.n_background:
            mine, theirs = self.background_of(out), other.background_of(theta)
            rows = min(mine.shape[0], theirs.shape[0])
            cols = min(mine.shape[1], theirs.shape[1])
            mine[:rows, :cols] = theirs[:rows, :cols]
            start = self.n_offset + (self.width_degree + 1 if self.width_free else 0)
            out[start : start + self.n_background] = mine.ravel()
        first = len(self.names) - self.n_shape
        out[first:] = self.shape_start()
        # a shape parameter both models have keeps its value
        shape = other._shape_values(theta)
        for k, name in enumerate(self.names[first:]):
            out[first + k] = shape.get(name, out[first + k])
        return out

    def _shape_values(self, theta):
        """The shape parameters of ``theta`` by name."""
        first = len(self.names) - self.n_shape
        return {name: float(theta[first + k]) for k, name in enumerate(self.names[first:])}


#: floor of the total width², as a fraction of the nominal PSF width²: a width
#: polynomial may not shrink the image below half the PSF
_MIN_SIGMA2_FRACTION = 0.25


def centre_and_width2(t, model, theta):
    """Centre offset and source width² (n, nx) of ``model`` at ``theta`` (``t``: scaled λ)."""
    coeffs, widths = model.split(theta)
    centre = legendre.legvander(t, coeffs.size - 1) @ coeffs if coeffs.size else np.zeros_like(t)
    return centre, legendre.legvander(t, widths.size - 1) @ widths


def total_sigma2(sigma_psf, s2):
    """Total width² per exposure and column: PSF² + source² (floored), and where floored."""
    floor = _MIN_SIGMA2_FRACTION * sigma_psf**2
    sigma2 = sigma_psf**2 + s2
    return np.maximum(sigma2, floor), sigma2 < floor


def exposure_background(t, model, theta, n_rows, basis=None):
    """Each exposure's background at ``theta``, uniform along the slit; None without one.

    Parameters
    ----------
    t : numpy.ndarray, shape (n, nx)
        Scaled wavelength of each exposure's columns.
    model : ProfileModel
    theta : numpy.ndarray
    n_rows : int
        Rows of the cutouts.
    basis : numpy.ndarray, shape (n, nx, degree + 1), optional
        ``legendre.legvander(t, model.background_degree)``, if already computed.

    Returns
    -------
    numpy.ndarray, shape (n, n_rows, nx), or None
        Exposure 0's background is 0: the likelihood's per-pixel sky takes
        what all exposures share.
    """
    if not model.n_background:
        return None
    basis = legendre.legvander(t, model.background_degree) if basis is None else basis
    coeffs = model.background_of(theta)  # exposures 1 … J
    levels = np.zeros(t.shape)
    levels[1 : 1 + len(coeffs)] = np.einsum("jxk,jk->jx", basis[1 : 1 + len(coeffs)], coeffs)
    return np.broadcast_to(levels[:, None, :], (t.shape[0], n_rows, t.shape[1]))


def background_derivatives(t, model, n_rows, basis=None):
    """``∂β/∂c_jk`` (n_background, n, n_rows, nx) in the order of the parameters; None without."""
    if not model.n_background:
        return None
    basis = legendre.legvander(t, model.background_degree) if basis is None else basis
    n, nx = t.shape
    derivs = np.zeros((model.n_background, n, n_rows, nx))
    per_exposure = model.background_degree + 1
    for j in range(1, model.background_exposures + 1):
        for k in range(per_exposure):
            derivs[(j - 1) * per_exposure + k, j] = basis[j, None, :, k]
    return derivs
