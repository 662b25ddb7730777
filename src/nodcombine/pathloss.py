"""Profile-based point-source path loss through a slit.

Pure numpy/scipy.  The extraction measures the whole profile along the slit
(the fitted Gaussian extends over bars and beyond the cutout, and the rectified
profile is the fraction of the total), so the light a slit loses is the part of
the image that falls outside its open width *across* the slit.  For a Gaussian
image of width ``σ`` centred ``x₀`` from the middle of an opening of width ``w``
the transmitted fraction is

    f = Φ((w/2 − x₀) / σ) − Φ((−w/2 − x₀) / σ),

``Φ`` the standard normal distribution function.  ``σ`` is the fitted width
along the slit (the PSF width in quadrature with the source's), taken to be the
same across it; ``x₀`` is the planned intra-shutter position.

The geometry (`SLIT_OPEN_WIDTH_ARCSEC`): NIRSpec MSA shutters are open over
0.20″ of their 0.27″ pitch across the dispersion direction (Ferruit et al. 2022,
A&A 661, A81), the fixed slits are 0.2″ (S200A1, S200A2, S200B1), 0.4″ (S400A1)
and 1.6″ (S1600A1) wide (Jakobsen et al. 2022, A&A 661, A80), and the MIRI LRS
slit is 0.51″ wide (Kendrew et al. 2015, PASP 127, 623).

A Gaussian has no diffraction wings: the real NIRSpec PSF loses more light at
long wavelengths than this model (see docs/optimal_extract_1d.md).

jwst's own correction is taken out of the ``_cal`` data before differencing
(`undo_jwst_factor`), and the profile-based one applied to the extracted flux
(`corrected_flux`): this module owns both; the adapters only move the arrays.
"""

import numpy as np

from nodcombine.profile import NO_HALO, source_pixel_fraction

__all__ = [
    "NIRSPEC_MSA_PITCH_ARCSEC",
    "SLIT_OPEN_WIDTH_ARCSEC",
    "corrected_flux",
    "open_width_arcsec",
    "slit_transmission",
    "undo_jwst_factor",
    "x_offset_arcsec",
]

#: shutter pitch across the dispersion direction (the open part is 0.20″)
NIRSPEC_MSA_PITCH_ARCSEC = 0.27

#: open width across the dispersion direction, arcsec, by slit kind or name
SLIT_OPEN_WIDTH_ARCSEC = {
    "NRS_MSASPEC": 0.20,
    "S200A1": 0.20,
    "S200A2": 0.20,
    "S200B1": 0.20,
    "S400A1": 0.40,
    "S1600A1": 1.60,
    "MIR_LRS-FIXEDSLIT": 0.51,
}


def slit_transmission(sigma_arcsec, x_offset_arcsec, width_arcsec, halo=NO_HALO):
    """Fraction of a source image that a slit of the given width transmits.

    Parameters
    ----------
    sigma_arcsec : array_like
        Width of the image's core, arcsec (per wavelength): a Gaussian's sigma,
        or the Gaussian of the same peak curvature for Moffat wings.
    x_offset_arcsec : float
        Image centre from the middle of the opening, across the slit, arcsec.
    width_arcsec : float
        Open width of the slit, arcsec.
    halo : tuple, optional
        The image's halo and wings, ``(f, k)`` or ``(f, k, β)``
        (`nodcombine.profile`): the profile fitted along the slit is taken to
        hold across it too (a round image).

    Returns
    -------
    numpy.ndarray
        Transmitted fraction, 0 … 1; NaN where ``sigma_arcsec`` is not positive.

    Raises
    ------
    ValueError
        If ``width_arcsec`` is not positive.
    """
    if not width_arcsec > 0:
        raise ValueError(f"width_arcsec must be > 0, got {width_arcsec}")
    sigma = np.asarray(sigma_arcsec, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        good = np.isfinite(sigma) & (sigma > 0)
        # the slit's opening as one "pixel" of its own width, centred on the image
        fraction = source_pixel_fraction(
            0.0, x_offset_arcsec / width_arcsec, np.where(good, sigma, 1.0) / width_arcsec, halo
        )
    return np.where(good, fraction, np.nan)


def open_width_arcsec(exp_type, slit_name):
    """Open width of a slit across the dispersion, arcsec, or None if unknown.

    Parameters
    ----------
    exp_type : str
        ``meta.exposure.type``.
    slit_name : str or None
        The fixed slit's name (``S200A1`` ...); MOS shutters and the MIRI LRS
        slit are known from ``exp_type``.

    Returns
    -------
    float or None
    """
    if exp_type == "NRS_FIXEDSLIT":
        return SLIT_OPEN_WIDTH_ARCSEC.get(slit_name)
    return SLIT_OPEN_WIDTH_ARCSEC.get(exp_type)


def x_offset_arcsec(source_xpos, width_arcsec):
    """Planned source position across the slit from its middle, arcsec.

    ``source_xpos`` is in units of the slit width (jwst's convention); an
    unknown position or width gives 0, the middle.
    """
    if source_xpos is None or not width_arcsec:
        return 0.0
    return float(source_xpos) * width_arcsec


def undo_jwst_factor(pathloss, *, multiplied):
    """The factor that takes jwst's ``pathloss`` correction back out of a slit.

    jwst divides NIRSpec data by ``pathloss_point`` or ``pathloss_uniform``
    (its variances by the square) and multiplies MIRI LRS data by
    ``pathloss_point``.  The factor returned multiplies the data (its square,
    the variances) back; pixels without a usable correction keep theirs.

    Parameters
    ----------
    pathloss : numpy.ndarray
        The correction jwst recorded, shaped like the data.
    multiplied : bool
        Whether jwst multiplied by it (MIRI LRS) rather than divided.

    Returns
    -------
    numpy.ndarray
    """
    values = np.asarray(pathloss, dtype=float)
    correction = np.where(np.isfinite(values) & (values > 0), values, 1.0)
    return 1.0 / correction if multiplied else correction


def corrected_flux(flux, variances, pathloss):
    """Flux and variances divided by the fraction of the source the extraction holds.

    Parameters
    ----------
    flux : numpy.ndarray, shape (n_wave,)
    variances : dict of str to numpy.ndarray
        Each like ``flux``.
    pathloss : numpy.ndarray or None
        Fraction per wavelength; None leaves everything as it is.

    Returns
    -------
    flux, variances
        A column whose fraction is not positive holds none of the source: NaN.
    """
    if pathloss is None:
        return flux, variances
    correction = np.where(np.asarray(pathloss) > 0, pathloss, np.nan)
    return flux / correction, {c: v / correction**2 for c, v in variances.items()}
