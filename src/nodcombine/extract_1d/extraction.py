"""One source's extraction, optimal or box, with its profile and path loss.

Pure numpy/scipy.  `extract_source` decides what the rectified image needs
(the profile it carries, or one fitted to it; the window or the box; the
fraction of the source the slit and the aperture hold) and calls the kernels
of `nodcombine.extract_1d.optimal`, `nodcombine.extract_1d.boxcar` and
`nodcombine.pathloss`.  What the step should tell the user comes back in
`SourceExtraction.notes`, so that this module logs nothing itself.
"""

import logging
from dataclasses import dataclass

import numpy as np

from nodcombine.extract_1d.boxcar import extract_box
from nodcombine.extract_1d.optimal import default_half_width, optimal_extract, window_bins
from nodcombine.extract_1d.stockprofile import fit_rectified_profile
from nodcombine.pathloss import slit_transmission
from nodcombine.profile import pixel_integrated_gaussian

__all__ = [
    "NEGATIVE_SNR",
    "ExtractionSettings",
    "SourceExtraction",
    "extract_source",
    "refuse_negative",
    "width_sensitivity",
]


@dataclass(frozen=True)
class ExtractionSettings:
    """How to extract: the step's parameters (their defaults live in the step's spec).

    Attributes
    ----------
    apply_pathloss : bool
        Whether ``FLUX`` will be divided by the path loss (a missing slit
        width is then worth a warning).
    window : float or None
        Half-width of the optimal window, pixels; None: the default.
    clip_sigma : float
        Horne outlier threshold, sigma; 0: none.
    aperture : BoxAperture or None
        A box aperture: box extraction instead of optimal.
    use_source_posn : bool
        Move the box onto the source.
    """

    apply_pathloss: bool
    window: float | None
    clip_sigma: float
    aperture: object
    use_source_posn: bool


@dataclass(frozen=True)
class SourceExtraction:
    """The spectrum of one source and what went into it.

    Attributes
    ----------
    spectrum : OptimalSpectrum or BoxSpectrum
        Flux of the source as if the slit were infinitely long (optimal), or
        the aperture's sum (box).
    in_slit : numpy.ndarray or None
        Optimal: the fraction of that flux on the illuminated slit; ``spectrum``
        times it is the in-slit flux.  None: 1 (a box, or no record of it).
    pathloss : numpy.ndarray or None
        Fraction of the source's flux the in-slit flux (box: the aperture)
        holds, per wavelength: the slit transmission across the slit times
        ``in_slit`` (box: times the profile inside the aperture).
    aperture_fraction : numpy.ndarray or None
        Box: the profile inside the aperture.
    fitted : RectifiedProfileFit or None
        The profile fitted to the image, if the input carried none.
    extent : str
        The window or box, in words.
    flux_scale_error : numpy.ndarray or None
        Relative error of FLUX from the fitted width's uncertainty alone, per
        wavelength (optimal extraction with a fitted profile): one error of the
        width moves every bin by this fraction at once, so it is a correlated
        flux-scale term, not in FLUX_ERROR (which stays the independent noise).
    notes : tuple of tuple of (int, str)
        Log level and message for the step to log.
    """

    spectrum: object
    in_slit: object
    pathloss: object
    aperture_fraction: object
    fitted: object
    extent: str
    notes: tuple
    flux_scale_error: object = None


#: inverse-variance weighted mean S/N below which a spectrum is refused as negative
NEGATIVE_SNR = -5.0


def refuse_negative(flux, error):
    """Raise `ValueError` if a spectrum is significantly negative over the band.

    A nod difference extracted where the model puts the source but the light
    is not (a source far from its planned position, nod positions mixed up)
    gives a negative image's spectrum: never a plausible-looking product.
    """
    good = np.isfinite(flux) & np.isfinite(error) & (error > 0)
    if not good.any():
        return
    weight = 1.0 / error[good] ** 2
    snr = np.sum(flux[good] * weight) / np.sqrt(np.sum(weight))
    if snr < NEGATIVE_SNR:
        raise ValueError(
            f"the spectrum is negative (weighted mean S/N {snr:.1f}): the source is not "
            "where the trace model puts it (a wrong planned position or nod pattern?)"
        )


def extract_source(
    data,
    variances,
    usable,
    wavelength,
    offset,
    profile,
    *,
    sigma_arcsec,
    x_offset_arcsec,
    slit_width_arcsec,
    nod_separation,
    settings,
    in_slit_fraction=None,
    halo=(0.0, 1.0),
    width=None,
):
    """Extract one rectified source.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_offset, n_wave)
    variances : dict of str to numpy.ndarray
    usable : numpy.ndarray of bool
    wavelength : numpy.ndarray, shape (n_wave,)
    offset : numpy.ndarray, shape (n_offset,)
        Pixels along the slit from the source of each row.
    profile : numpy.ndarray or None
        Fraction of the source's flux in each bin; None: fit one.
    sigma_arcsec : numpy.ndarray, shape (n_wave,)
        Total Gaussian width of the source image (for the path loss).
    x_offset_arcsec : float
        Planned source position across the slit.
    slit_width_arcsec : float or None
        Open width of the slit; None: no path loss known.
    nod_separation : float
        Distance of the negative nod images, pixels.
    settings : ExtractionSettings
    in_slit_fraction : numpy.ndarray, optional
        Fraction of the source's light along the slit that falls on the
        illuminated slit, per wavelength (``profile`` being normalised over an
        infinite slit); it goes into the path loss, so that without the
        correction FLUX is the in-slit flux.
    halo : tuple of (float, float), optional
        The source image's halo (flux fraction, width over ``sigma_arcsec``),
        for the slit transmission.
    width : tuple of numpy.ndarray, optional
        The fitted total width per wavelength (pixels) and its relative 1σ
        error: gives `SourceExtraction.flux_scale_error`.

    Returns
    -------
    SourceExtraction
    """
    notes = []
    box = settings.aperture is not None
    profile, offset, fitted = _profile(data, variances, offset, profile, box, settings, notes)
    pathloss = None
    if profile is not None and slit_width_arcsec:
        pathloss = slit_transmission(sigma_arcsec, x_offset_arcsec, slit_width_arcsec, halo)
    elif profile is not None and settings.apply_pathloss:
        notes.append((logging.WARNING, "slit width unknown; no path-loss correction"))
    if not box:
        half_width = settings.window or default_half_width(
            nod_separation, fitted.sigma if fitted else None
        )
        window = usable & window_bins(offset, data.shape, half_width=half_width)
        spectrum = optimal_extract(data, variances, profile, window, clip_sigma=settings.clip_sigma)
        refuse_negative(spectrum.flux, spectrum.error)
        if spectrum.rejected.any():
            count = int(spectrum.rejected.sum())
            limit = settings.clip_sigma
            notes.append((logging.INFO, f"{count} bins rejected as outliers (> {limit:.1f} sigma)"))
        extent = f"window +-{half_width:.1f} px"
        in_slit = None if fitted is not None else in_slit_fraction
        if pathloss is not None and in_slit is not None:
            pathloss = pathloss * in_slit
        scale_error = None
        if width is not None and fitted is None:
            sigma_pix, relative_error = width
            sensitivity = width_sensitivity(offset, sigma_pix, variances, window)
            scale_error = np.abs(sensitivity) * relative_error
        return SourceExtraction(
            spectrum, in_slit, pathloss, None, fitted, extent, tuple(notes), scale_error
        )
    result = extract_box(
        data,
        variances,
        usable,
        wavelength,
        settings.aperture,
        offset=offset,
        profile=profile,
        nod_separation=nod_separation,
        on_source=settings.use_source_posn,
    )
    if settings.use_source_posn:
        notes.append(
            (logging.INFO, f"box aperture moved by {result.shift:+.2f} rows onto the source")
        )
    if result.reaches_negative_images:
        notes.append(
            (
                logging.WARNING,
                f"box background regions reach the negative nod images ({nod_separation:.1f} px "
                "from the source); the background will be biased low and the flux high",
            )
        )
    # a box holds the profile inside it: that is the (profile-based) aperture loss
    fraction = result.profile_fraction
    pathloss = None if pathloss is None else pathloss * fraction
    lower, upper = result.spectrum.limits[:2]
    extent = f"box rows {lower:.1f}-{upper:.1f}"
    return SourceExtraction(result.spectrum, None, pathloss, fraction, fitted, extent, tuple(notes))


def width_sensitivity(offset, sigma, variances, usable):
    """``d ln F̂ / d ln σ``: how the optimal flux moves with the width of its profile.

    For data ``F P_true`` extracted with a profile ``P`` of width ``σ``,
    ``F̂ = F Σ P P_true/V / Σ P²/V``; at ``P = P_true`` its logarithmic
    derivative with respect to ``σ`` is ``−Σ P (∂P/∂ln σ)/V / Σ P²/V``,
    evaluated here for a pixel-integrated Gaussian in the rectified rows.

    Parameters
    ----------
    offset : numpy.ndarray, shape (n_offset,)
        Pixels from the source of each row.
    sigma : numpy.ndarray, shape (n_wave,)
        Width of the profile, pixels.
    variances : dict of str to numpy.ndarray, shape (n_offset, n_wave)
    usable : numpy.ndarray of bool, shape (n_offset, n_wave)
        The bins the extraction used.

    Returns
    -------
    numpy.ndarray, shape (n_wave,)
    """
    profile, _, d_sigma = pixel_integrated_gaussian(
        np.asarray(offset, float)[:, None], 0.0, np.asarray(sigma, float)[None, :]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(usable, 1.0 / sum(variances.values()), 0.0)
        weight = np.where(np.isfinite(weight), weight, 0.0)
        numerator = (weight * profile * d_sigma * sigma[None, :]).sum(axis=0)
        return -numerator / (weight * profile**2).sum(axis=0)


def _profile(data, variances, offset, profile, box, settings, notes):
    """The source profile, its row offsets, and the fit it came from (or None).

    An image without a profile (a stock ``_s2d``) gets a Gaussian fitted to
    it; a fixed box needs it only for its aperture correction, so there a
    failed fit costs the path-loss correction, not the spectrum.
    """
    fixed_box = box and not settings.use_source_posn
    if profile is not None or (fixed_box and not settings.apply_pathloss):
        return profile, offset, None
    try:
        fitted = fit_rectified_profile(data, sum(variances.values()), offset)
    except ValueError:
        if not fixed_box:
            raise
        notes.append((logging.WARNING, "no profile could be fitted; no path-loss correction"))
        return None, offset, None
    notes.append(
        (
            logging.INFO,
            f"fitted profile, centre {fitted.centre:+.2f} px, sigma {fitted.sigma:.2f} px",
        )
    )
    return fitted.profile, offset - fitted.centre, fitted
