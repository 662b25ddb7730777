"""Which profile parameters a trace fit frees, and the width law they describe.

Pure numpy.  The source's image in exposure ``j`` is a pixel-integrated
Gaussian centred on the predicted position plus ``c(t) = Σ a_k L_k(t)`` with
total width² ``σ² = σ_PSF² + s²(t)``, ``s²(t) = Σ b_k L_k(t)``, ``L_k``
Legendre polynomials of the wavelength scaled to ``t ∈ [−1, 1]``.  A constant
``s²`` is the PSF law plus a fixed source width; degree 2 holds a constant
total width exactly (``σ_PSF²`` is quadratic in λ, `nodcombine.psf`) and
widths growing faster than the PSF's.
"""

from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import legendre

__all__ = ["ProfileModel", "centre_and_width2", "total_sigma2"]


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
    """

    degree: int
    width_degree: int = -1
    fixed_sigma2: float = 0.0
    width_prior: tuple | None = None
    halo: bool = False
    names: tuple = field(init=False)

    def __post_init__(self):
        names = tuple(f"a{k}" for k in range(self.degree + 1))
        widths = tuple(f"b{k}" for k in range(self.width_degree + 1))
        halo = ("halo_fraction", "halo_scale") if self.halo else ()
        object.__setattr__(self, "names", names + widths + halo)

    @property
    def width_free(self):
        """Whether the source width is fitted."""
        return self.width_degree >= 0

    @property
    def n_offset(self):
        """Number of offset coefficients."""
        return self.degree + 1

    def split(self, theta):
        """Offset coefficients and width² coefficients of a parameter vector."""
        theta = np.asarray(theta, dtype=float)
        coeffs = theta[: self.n_offset]
        end = self.n_offset + self.width_degree + 1
        widths = theta[self.n_offset : end] if self.width_free else np.array([self.fixed_sigma2])
        return coeffs, widths

    def halo_of(self, theta):
        """``(f, k)``: the halo's flux fraction and width over the core's; (0, 1) without."""
        return (float(theta[-2]), float(theta[-1])) if self.halo else (0.0, 1.0)

    def grown(self, *, degree=None, width_degree=None, halo=None):
        """The same model with another offset or width degree, or a halo."""
        return ProfileModel(
            self.degree if degree is None else degree,
            self.width_degree if width_degree is None else width_degree,
            self.fixed_sigma2,
            self.width_prior,
            self.halo if halo is None else halo,
        )

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
        if self.halo:
            # a new halo starts as a fifth of the flux in a profile three times wider
            out[-2:] = other.halo_of(theta) if other.halo else (0.2, 3.0)
        return out


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
