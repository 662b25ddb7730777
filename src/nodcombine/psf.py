"""The width law: nominal point-spread widths along the slit, and a source's total width.

The numbers are a simple model, documented so that a fitted width can be read
against them: a diffraction core ``1.03 λ / D`` (D = 6.5 m, the JWST primary) added
in quadrature with an instrumental floor that stands for detector sampling,
charge diffusion and optical aberrations.  NIRSpec's spatial FWHM is about
0.10″ at 1 µm and 0.18″ at 5 µm (Jakobsen et al. 2022, A&A 661, A80, §6);
MIRI LRS about 0.30″ at 7.7 µm and 0.45″ at 12 µm (Kendrew et al. 2015,
PASP 127, 623).
"""

import numpy as np

__all__ = [
    "FWHM_FLOOR_ARCSEC",
    "FWHM_PER_SIGMA",
    "PRIMARY_DIAMETER_M",
    "psf_fwhm_arcsec",
    "psf_sigma_pix",
    "total_sigma_arcsec",
    "width_error",
]

PRIMARY_DIAMETER_M = 6.5

#: instrumental floor added in quadrature to the diffraction core, arcsec
#: FWHM of a Gaussian in units of its sigma
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))

FWHM_FLOOR_ARCSEC = {"NIRSPEC": 0.085, "MIRI": 0.12}

_RADIAN_TO_ARCSEC = 180.0 / np.pi * 3600.0


def psf_fwhm_arcsec(instrument, wavelength_um):
    """Nominal FWHM of a point source along the slit.

    Parameters
    ----------
    instrument : {"NIRSPEC", "MIRI"}
        Instrument name, as in ``meta.instrument.name``.
    wavelength_um : float or array_like
        Wavelength in micron.

    Returns
    -------
    numpy.ndarray
        FWHM in arcsec, same shape as ``wavelength_um``.
    """
    key = instrument.upper()
    if key not in FWHM_FLOOR_ARCSEC:
        raise ValueError(
            f"instrument must be one of {sorted(FWHM_FLOOR_ARCSEC)}, got {instrument!r}"
        )
    lam_m = np.asarray(wavelength_um, dtype=float) * 1e-6
    core = 1.03 * lam_m / PRIMARY_DIAMETER_M * _RADIAN_TO_ARCSEC
    return np.hypot(core, FWHM_FLOOR_ARCSEC[key])


def psf_sigma_pix(instrument, wavelength_um, pixel_scale):
    """Nominal Gaussian sigma of a point source, in pixels along the slit.

    Parameters
    ----------
    instrument : {"NIRSPEC", "MIRI"}
    wavelength_um : numpy.ndarray, shape (n_exp, nx)
        Wavelength of each exposure's columns.
    pixel_scale : numpy.ndarray, shape (n_exp,)
        Arcsec per pixel along the slit of each exposure.

    Returns
    -------
    numpy.ndarray, shape (n_exp, nx)
    """
    fwhm = psf_fwhm_arcsec(instrument, wavelength_um)
    return fwhm / FWHM_PER_SIGMA / np.asarray(pixel_scale, dtype=float)[:, None]


def total_sigma_arcsec(instrument, wavelength_um, source_sigma2_pix2, pixel_scale):
    """Gaussian width of a source's image: the PSF in quadrature with the source's own width.

    Parameters
    ----------
    instrument : {"NIRSPEC", "MIRI"}
    wavelength_um : numpy.ndarray
    source_sigma2_pix2 : float or None
        Intrinsic width squared, pixels² (as ``trace_fit`` fits it; None, NaN
        or negative: a point source).
    pixel_scale : float
        Arcsec per pixel along the slit.

    Returns
    -------
    numpy.ndarray
        Arcsec, like ``wavelength_um``.
    """
    s2 = source_sigma2_pix2
    s2 = float(s2) if s2 is not None and np.isfinite(s2) else 0.0
    psf = psf_fwhm_arcsec(instrument, wavelength_um) / FWHM_PER_SIGMA
    return np.sqrt(psf**2 + max(s2, 0.0) * pixel_scale**2)


def width_error(wavelength_um, wave_range_um, covariance, sigma):
    """1σ error of the total width where the width² is a fitted Legendre series.

    The total width² is σ_PSF² + Σ_k b_k L_k(t), with t the wavelength scaled to
    −1 … 1 over ``wave_range_um``; its variance is L(t)ᵀ C L(t), and the width's
    error is the square root of that over 2σ.

    Parameters
    ----------
    wavelength_um : numpy.ndarray
    wave_range_um : tuple of float
    covariance : numpy.ndarray, shape (k, k)
        Covariance of the coefficients ``b``, in the units of ``sigma`` squared.
    sigma : numpy.ndarray
        Total width at ``wavelength_um``.

    Returns
    -------
    numpy.ndarray
        Like ``sigma``; NaN where the covariance is unknown.
    """
    lo, hi = wave_range_um
    t = np.clip(2.0 * (np.asarray(wavelength_um, float) - lo) / max(hi - lo, 1e-12) - 1.0, -1, 1)
    cov = np.atleast_2d(np.asarray(covariance, dtype=float))
    basis = np.polynomial.legendre.legvander(t, cov.shape[0] - 1)
    variance = np.einsum("...k,kl,...l->...", basis, cov, basis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.clip(variance, 0.0, None)) / (2.0 * np.asarray(sigma, dtype=float))
