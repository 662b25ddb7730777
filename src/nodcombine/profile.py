"""Pixel-integrated source profiles along the slit.

Pure numpy/scipy.  A pixel spans ``along ± 0.5`` in pixels along the slit; the
fraction of a unit Gaussian of centre ``c`` and width ``σ`` it holds is

    P = Φ((along + ½ − c) / σ) − Φ((along − ½ − c) / σ),

``Φ`` the standard normal distribution function.  ``trace_fit`` fits it,
``rectify`` and the extraction carry it to the rectified grid.
"""

import numpy as np
from scipy.special import ndtr

__all__ = ["pixel_fraction", "pixel_integrated_gaussian"]

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def pixel_fraction(along, centre, sigma):
    """Fraction of a unit Gaussian in each pixel (`pixel_integrated_gaussian` without derivatives).

    Parameters
    ----------
    along : numpy.ndarray
        Pixel centres along the slit, in pixels (a pixel spans ``along ± 0.5``).
    centre, sigma : numpy.ndarray
        Gaussian centre and standard deviation, pixels; broadcast against ``along``.

    Returns
    -------
    numpy.ndarray
    """
    return ndtr((along + 0.5 - centre) / sigma) - ndtr((along - 0.5 - centre) / sigma)


def pixel_integrated_gaussian(along, centre, sigma):
    """Fraction of a unit Gaussian in each pixel, and its derivatives.

    Parameters
    ----------
    along : numpy.ndarray
        Pixel centres along the slit, in pixels (a pixel spans ``along ± 0.5``).
    centre, sigma : numpy.ndarray
        Gaussian centre and standard deviation, pixels; broadcast against ``along``.

    Returns
    -------
    profile, d_centre, d_sigma : numpy.ndarray
        The integrated fraction and its derivatives with respect to ``centre``
        and ``sigma``.
    """
    upper = (along + 0.5 - centre) / sigma
    lower = (along - 0.5 - centre) / sigma
    pdf_upper = np.exp(-0.5 * upper**2) * _INV_SQRT_2PI
    pdf_lower = np.exp(-0.5 * lower**2) * _INV_SQRT_2PI
    profile = ndtr(upper) - ndtr(lower)
    d_centre = -(pdf_upper - pdf_lower) / sigma
    d_sigma = -(upper * pdf_upper - lower * pdf_lower) / sigma
    return profile, d_centre, d_sigma
