"""Pixel-integrated source profiles along the slit.

Pure numpy/scipy.  A pixel spans ``along ± 0.5`` in pixels along the slit; the
fraction of a unit Gaussian of centre ``c`` and width ``σ`` it holds is

    P = Φ((along + ½ − c) / σ) − Φ((along − ½ − c) / σ),

``Φ`` the standard normal distribution function.  ``trace_fit`` fits it,
``rectify`` and the extraction carry it to the rectified grid.

A source image's shape is ``(f, k, β, a)``: a fraction ``f`` of its flux in
a halo of the same centre ``k`` times wider than the core; core and halo are
Gaussians (``β = ∞``) or Moffat profiles ``[1 + (u/α)²]^(−β)`` (Moffat 1969,
A&A 3, 455) with ``α = σ√(2β)`` (``kσ√(2β)``), which have the curvature of
the Gaussian of that width at their peak and power-law wings ``u^(−2β)``:
the wings of a real PSF (an Airy pattern's fall as ``u^(−3)`` along a slit)
that Gaussians cut short; a skew ``a`` makes each component ``1 − a`` times
as wide before its peak and ``1 + a`` after it (a tilted galaxy, a
PSF's coma).
"""

import math

import numpy as np
from scipy.special import betainc, betaln, ndtr

__all__ = [
    "NO_HALO",
    "component_fraction",
    "integrated_component",
    "moffat_cdf",
    "pixel_fraction",
    "pixel_integrated_gaussian",
    "source_pixel_fraction",
]

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)

#: the shape ``(f, k, β, a)`` of a plain Gaussian image: no halo, no wings, no skew
NO_HALO = (0.0, 1.0, math.inf, 0.0)


def _halo_parts(halo):
    """``(f, k, β, a)`` of a shape tuple of 2 to 4 entries (the rest as in `NO_HALO`)."""
    parts = tuple(float(v) for v in halo) + NO_HALO[len(halo) :]
    return parts[:4]


def moffat_alpha(sigma, scale, beta):
    """The Moffat ``α`` of a halo of core width ``sigma``: ``kσ√(2β)``."""
    return scale * sigma * math.sqrt(2.0 * beta)


def moffat_cdf(u, alpha, beta):
    """Distribution function of the unit 1-D Moffat profile ``[1 + (u/α)²]^(−β)``, β > ½."""
    x = np.asarray(u, dtype=float) / alpha
    return 0.5 + 0.5 * np.sign(x) * betainc(0.5, beta - 0.5, x * x / (1.0 + x * x))


def moffat_pdf(u, alpha, beta):
    """The unit 1-D Moffat profile's density."""
    x = np.asarray(u, dtype=float) / alpha
    return np.exp(-beta * np.log1p(x * x) - betaln(0.5, beta - 0.5)) / alpha


def _symmetric_cdf(u, width, beta):
    """Distribution function of a Gaussian of ``width``, or of the Moffat of that peak curvature."""
    if math.isinf(beta):
        return ndtr(u / width)
    return moffat_cdf(u, width * math.sqrt(2.0 * beta), beta)


def _symmetric_pdf(u, width, beta):
    """The density of `_symmetric_cdf`."""
    if math.isinf(beta):
        return np.exp(-0.5 * (u / width) ** 2) * _INV_SQRT_2PI / width
    return moffat_pdf(u, width * math.sqrt(2.0 * beta), beta)


def _split_cdf(u, width, beta, skew):
    """Distribution function of a component ``(1 − a) width`` wide before its peak, ``1 + a`` after.

    The two halves meet at the peak with the same density (a split normal,
    Gibbons & Mylroie 1973, for a Gaussian): ``(1 − a) G(u / (1 − a)w)`` before
    it, ``(1 + a) G(u / (1 + a)w) − a`` after, ``G`` the symmetric profile's.
    """
    left, right = width * (1.0 - skew), width * (1.0 + skew)
    before = (1.0 - skew) * _symmetric_cdf(np.minimum(u, 0.0), left, beta)
    after = (1.0 + skew) * _symmetric_cdf(np.maximum(u, 0.0), right, beta) - skew
    return np.where(u < 0.0, before, after)


def _split_derivatives(u, width, beta, skew):
    """Density of `_split_cdf` at ``u``, and the derivative of the distribution function in ``a``.

    With ``p`` the symmetric density: ``(1 ∓ a) p(u; (1 ∓ a) w)`` on either side;
    ``∂F/∂a = −G + u p`` before the peak and ``G − u p − 1`` after it, at the
    side's width.  The width derivative follows from the scale family,
    ``∂F/∂w = −u f(u) / w``.
    """
    side = np.where(u < 0.0, 1.0 - skew, 1.0 + skew)
    cdf = _symmetric_cdf(u, side * width, beta)
    pdf = _symmetric_pdf(u, side * width, beta)
    density = side * pdf
    d_skew = np.where(u < 0.0, -cdf + u * pdf, cdf - u * pdf - 1.0)
    return density, d_skew


def component_fraction(along, centre, sigma, scale, beta=math.inf, skew=0.0):
    """Fraction of a unit component in each pixel.

    A Gaussian of width ``kσ`` (finite ``β``: the Moffat profile of the same
    peak curvature), split into halves ``1 ∓ a`` times that wide for a skew ``a``.
    """
    if skew == 0.0 and math.isinf(beta):
        return pixel_fraction(along, centre, scale * sigma)
    width = scale * sigma
    if skew == 0.0:
        return _symmetric_cdf(along + 0.5 - centre, width, beta) - _symmetric_cdf(
            along - 0.5 - centre, width, beta
        )
    return _split_cdf(along + 0.5 - centre, width, beta, skew) - _split_cdf(
        along - 0.5 - centre, width, beta, skew
    )


def source_pixel_fraction(along, centre, sigma, halo=NO_HALO):
    """Fraction of a unit source image in each pixel: core plus halo.

    Parameters
    ----------
    along, centre, sigma : numpy.ndarray
        As for `pixel_fraction` (``sigma`` the core's width).
    halo : tuple
        The image's shape ``(f, k[, β[, a]])``, see the module docstring.

    Returns
    -------
    numpy.ndarray
    """
    fraction, scale, beta, skew = _halo_parts(halo)
    core = component_fraction(along, centre, sigma, 1.0, beta, skew)
    if fraction == 0.0:
        return core
    wide = component_fraction(along, centre, sigma, scale, beta, skew)
    return (1.0 - fraction) * core + fraction * wide


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


def integrated_component(along, centre, sigma, scale, beta=math.inf, skew=None):
    """A unit component's (core: ``k = 1``; halo) pixel fractions and derivatives.

    Parameters
    ----------
    along, centre, sigma : numpy.ndarray
        As for `pixel_fraction` (``sigma`` the core's width).
    scale, beta : float
        The component's ``k`` and ``β`` (``inf``: Gaussian).
    skew : float or None
        Its skew ``a``; None: symmetric, and no derivative with respect to it.

    Returns
    -------
    profile, d_centre, d_sigma, d_scale : numpy.ndarray
        Fractions and their derivatives with respect to ``centre``, ``sigma``
        (at fixed ``k``, ``β`` and ``a``) and ``k``.
    d_beta, d_skew : numpy.ndarray or None
        Derivatives with respect to ``β`` (None for a Gaussian) and ``a``
        (None without a skew).  Analytic but for ``β`` (central differences).
    """
    if skew is not None:
        return _skewed_component(along, centre, sigma, scale, beta, skew)
    if math.isinf(beta):
        wide, d_centre, d_wide = pixel_integrated_gaussian(along, centre, scale * sigma)
        # the halo's sigma is k σ: d/dσ = k ∂/∂(kσ), d/dk = σ ∂/∂(kσ)
        return wide, d_centre, scale * d_wide, sigma * d_wide, None, None
    alpha = moffat_alpha(sigma, scale, beta)
    upper, lower = along + 0.5 - centre, along - 0.5 - centre
    pdf_upper, pdf_lower = moffat_pdf(upper, alpha, beta), moffat_pdf(lower, alpha, beta)
    wide = moffat_cdf(upper, alpha, beta) - moffat_cdf(lower, alpha, beta)
    d_centre = -(pdf_upper - pdf_lower)
    d_alpha = -(upper * pdf_upper - lower * pdf_lower) / alpha
    d_beta = _central_difference(
        lambda b: component_fraction(along, centre, sigma, scale, b), beta, 1e-4 * beta
    )
    return wide, d_centre, d_alpha * alpha / sigma, d_alpha * alpha / scale, d_beta, None


def _central_difference(function, value, step):
    return (function(value + step) - function(value - step)) / (2.0 * step)


def _skewed_component(along, centre, sigma, scale, beta, skew):
    """`integrated_component` of a skewed component (``β`` by central differences)."""
    width = scale * sigma
    upper, lower = along + 0.5 - centre, along - 0.5 - centre
    wide = _split_cdf(upper, width, beta, skew) - _split_cdf(lower, width, beta, skew)
    f_upper, a_upper = _split_derivatives(upper, width, beta, skew)
    f_lower, a_lower = _split_derivatives(lower, width, beta, skew)
    d_centre = -(f_upper - f_lower)
    d_width = -(upper * f_upper - lower * f_lower) / width
    d_beta = None
    if not math.isinf(beta):
        d_beta = _central_difference(
            lambda b: component_fraction(along, centre, sigma, scale, b, skew), beta, 1e-4 * beta
        )
    return wide, d_centre, scale * d_width, sigma * d_width, d_beta, a_upper - a_lower
