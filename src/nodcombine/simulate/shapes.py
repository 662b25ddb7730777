"""Normalised source profiles along the slit, one parameter set per dispersion column.

A *shape* is a family's profile with its parameters resolved, in pixels, at each
column: its cumulative distribution ``cdf(u)`` in ``u``, the distance from the
profile's centre along the slit (pixels, towards increasing kernel row).  Every
shape is normalised to unit integral over an infinite slit, and its centre is
its mean (first moment).  Pixels are integrated analytically, ``cdf(r + ½ − c)
− cdf(r − ½ − c)``, so the pixel values of a column sum to one over an infinite
slit.  Parameters are numpy arrays broadcasting along the last (column) axis, or
scalars once one column is picked with `select`.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc, ndtr

from nodcombine.simulate.modes import SLIT_WIDTH_ARCSEC
from nodcombine.simulate.scene import pixel_integrated_gaussian, slit_fraction

__all__ = [
    "CoreHaloShape",
    "GaussianShape",
    "MoffatShape",
    "ProfileShape",
    "SplitNormalShape",
]

_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)


class ProfileShape:
    """Common behaviour of the shapes: pixel integration, slit loss, column selection."""

    def cdf(self, u):
        """Fraction of the profile below ``u`` pixels from its centre (per subclass)."""
        raise NotImplementedError

    def width(self):
        """Second-moment width (standard deviation) of the profile, pixels (per subclass)."""
        raise NotImplementedError

    def pixel_fractions(self, rows, centre):
        """Fraction of the profile falling in each pixel.

        Parameters
        ----------
        rows : numpy.ndarray
            Pixel centres (e.g. shape ``(n_rows, 1)``).
        centre : numpy.ndarray or float
            Profile centre (its mean), pixels, broadcast against ``rows``.

        Returns
        -------
        numpy.ndarray
            The integral of the profile over each pixel.
        """
        return self.cdf(rows + 0.5 - centre) - self.cdf(rows - 0.5 - centre)

    def across_slit_fraction(self, mode, xpos):
        """Fraction of the image inside the slit's open width, at each column.

        The image is taken as separable, with the same profile across the slit
        as along it, centred ``xpos`` slit widths from the slit's middle.

        Parameters
        ----------
        mode : InstrumentMode
            Observing mode (width `SLIT_WIDTH_ARCSEC`, pixel scale along the slit,
            taken to hold across it as well).
        xpos : float
            Image centre across the slit, slit widths from its middle.

        Returns
        -------
        numpy.ndarray
            Fraction kept.
        """
        width = SLIT_WIDTH_ARCSEC[mode.name] / mode.pixel_scale
        return self.cdf((0.5 - xpos) * width) - self.cdf((-0.5 - xpos) * width)

    def select(self, columns):
        """The shape at some columns only.

        Parameters
        ----------
        columns : slice, int or numpy.ndarray
            Columns to keep (an int gives scalar parameters).

        Returns
        -------
        ProfileShape
            The same family with its per-column parameters indexed.
        """
        picked = {
            f.name: getattr(self, f.name)[columns]
            for f in dataclasses.fields(self)
            if np.ndim(getattr(self, f.name)) > 0
        }
        return dataclasses.replace(self, **picked)


@dataclass(frozen=True)
class GaussianShape(ProfileShape):
    """Gaussian ``exp(−u² / 2σ²) / (√(2π) σ)``.

    Attributes
    ----------
    sigma : numpy.ndarray
        Sigma, pixels.
    """

    sigma: np.ndarray

    def cdf(self, u):
        """Fraction of the profile below ``u``: ``Φ(u / σ)``."""
        return ndtr(u / self.sigma)

    def width(self):
        """Second-moment width: ``σ``."""
        return self.sigma

    def pixel_fractions(self, rows, centre):
        """Fraction in each pixel, by `pixel_integrated_gaussian` (see `ProfileShape`)."""
        return pixel_integrated_gaussian(rows, centre, self.sigma)

    def across_slit_fraction(self, mode, xpos):
        """Fraction inside the slit's width, by the quadrature of `slit_fraction`."""
        return slit_fraction(mode, self.sigma * mode.pixel_scale, xpos)


@dataclass(frozen=True)
class MoffatShape(ProfileShape):
    """Moffat ``[1 + (u/α)²]^(−β) / (α B(½, β − ½))``.

    Its FWHM is ``2 α √(2^(1/β) − 1)``; its cumulative distribution is
    ``½ + ½ sign(u) I_t(½, β − ½)`` with ``t = u² / (α² + u²)`` (``I`` the
    regularised incomplete beta function).

    Attributes
    ----------
    alpha : numpy.ndarray
        Core radius α, pixels.
    beta : float
        Power β (> 1.5, so that the second moment is finite).
    """

    alpha: np.ndarray
    beta: float

    def cdf(self, u):
        """Fraction of the profile below ``u``."""
        t = u**2 / (self.alpha**2 + u**2)
        return 0.5 + 0.5 * np.sign(u) * betainc(0.5, self.beta - 0.5, t)

    def width(self):
        """Second-moment width: ``α / √(2β − 3)``."""
        return self.alpha / np.sqrt(2.0 * self.beta - 3.0)


@dataclass(frozen=True)
class CoreHaloShape(ProfileShape):
    """Gaussian core plus a broader Gaussian halo, both centred at 0.

    ``(1 − f) N(u; σ_c) + f N(u; σ_h)``.

    Attributes
    ----------
    sigma_core, sigma_halo : numpy.ndarray
        Sigmas of the core and the halo, pixels.
    halo_fraction : float
        Fraction ``f`` of the flux in the halo.
    """

    sigma_core: np.ndarray
    sigma_halo: np.ndarray
    halo_fraction: float

    def cdf(self, u):
        """Fraction of the profile below ``u``."""
        f = self.halo_fraction
        return (1.0 - f) * ndtr(u / self.sigma_core) + f * ndtr(u / self.sigma_halo)

    def width(self):
        """Second-moment width: ``√((1 − f) σ_c² + f σ_h²)``."""
        f = self.halo_fraction
        return np.sqrt((1.0 - f) * self.sigma_core**2 + f * self.sigma_halo**2)


@dataclass(frozen=True)
class SplitNormalShape(ProfileShape):
    """Split normal: two Gaussian halves of different sigma joined at their mode.

    With ``x = u − m`` the distance from the mode ``m``, the density is
    ``A exp(−x² / 2σ_lo²)`` for ``x < 0`` and ``A exp(−x² / 2σ_hi²)`` for
    ``x ≥ 0``, ``A = √(2/π) / (σ_lo + σ_hi)``.  The profile is *mean-centred*:
    ``u`` is measured from the mean, which lies ``√(2/π) (σ_hi − σ_lo)`` beyond
    the mode, so ``m = −√(2/π) (σ_hi − σ_lo)``.

    Attributes
    ----------
    sigma_lo, sigma_hi : numpy.ndarray
        Sigmas towards decreasing and increasing row, pixels.
    """

    sigma_lo: np.ndarray
    sigma_hi: np.ndarray

    def mode_offset(self):
        """Position of the mode relative to the mean, pixels."""
        return -_SQRT_2_OVER_PI * (self.sigma_hi - self.sigma_lo)

    def cdf(self, u):
        """Fraction of the profile below ``u``."""
        lo, hi = self.sigma_lo, self.sigma_hi
        x = u - self.mode_offset()
        below = 2.0 * lo / (lo + hi) * ndtr(np.minimum(x, 0.0) / lo)
        above = 2.0 * hi / (lo + hi) * (ndtr(np.maximum(x, 0.0) / hi) - 0.5)
        return below + above

    def width(self):
        """Second-moment width: ``√(σ_lo σ_hi + (1 − 2/π)(σ_hi − σ_lo)²)``."""
        lo, hi = self.sigma_lo, self.sigma_hi
        return np.sqrt(lo * hi + (1.0 - 2.0 / np.pi) * (hi - lo) ** 2)
