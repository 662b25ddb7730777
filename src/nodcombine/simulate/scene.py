"""The light of a simulated slit: wavelengths, trace, bar shadow, sky and source.

Everything here is computed on a slit's *window*, the nominal cutout with a
margin of `PAD` pixels on each side, so that cutouts jittered by a pixel or two
between exposures (as real ones are) still fall inside it.  Arrays are in the
kernel orientation: spatial rows first, dispersion columns second.
"""

import numpy as np
from scipy.special import ndtr

from nodcombine.psf import psf_fwhm_arcsec
from nodcombine.simulate.modes import SLIT_WIDTH_ARCSEC

__all__ = [
    "PAD",
    "bar_throughput",
    "pixel_integrated_gaussian",
    "sky_image",
    "slit_fraction",
    "slit_geometry",
    "slit_illumination",
    "source_sigma_pix",
    "source_spectrum",
    "trace_polynomial",
    "trace_wobble",
    "wavelength_solution",
    "window_wavelengths",
]

#: margin of the window around the nominal cutout, pixels
PAD = 2


def wavelength_solution(mode):
    """Wavelength of each dispersion pixel of the nominal cutout, micron.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.

    Returns
    -------
    numpy.ndarray, shape (n_dispersion,)
        A quadratic through the mode's three wavelength nodes.
    """
    n = mode.n_dispersion
    x_nodes = np.array([0.0, (n - 1) / 2.0, n - 1.0])
    coeffs = np.polyfit(x_nodes, np.asarray(mode.wave_nodes_um), 2)
    return np.polyval(coeffs, np.arange(n, dtype=float))


def window_wavelengths(mode):
    """Wavelength of each column of the window, micron (the cutout's, extended).

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.

    Returns
    -------
    numpy.ndarray, shape (n_dispersion + 2 * PAD,)
        Wavelengths.
    """
    cols = np.arange(mode.n_dispersion + 2 * PAD, dtype=float)
    coeffs = np.polyfit(np.arange(mode.n_dispersion) + PAD, wavelength_solution(mode), 2)
    return np.polyval(coeffs, cols)


def trace_polynomial(mode, centre_row):
    """Coefficients of the slit-centre row as a polynomial in cutout column.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode (its ``curvature`` is about the cutout's middle column).
    centre_row : float
        Row of the slit centre at the middle column.

    Returns
    -------
    tuple of float
        ``(c0, c1, c2)``.
    """
    xc = (mode.n_dispersion - 1) / 2.0
    c1, c2 = mode.curvature
    return (centre_row - c1 * xc + c2 * xc**2, c1 - 2 * c2 * xc, c2)


def bar_throughput(y_middle, mode):
    """Bar-shadow throughput of a 3-shutter slitlet (1 outside MOS).

    Parameters
    ----------
    y_middle : numpy.ndarray
        Slit y of each pixel relative to the middle shutter, slit units.
    mode : InstrumentMode
        Observing mode.

    Returns
    -------
    numpy.ndarray
        Throughput, same shape as ``y_middle``.
    """
    if not mode.is_mos:
        return np.ones_like(y_middle)
    pitch = mode.shutter_pitch
    throughput = np.ones_like(y_middle)
    for bar in (-1.5 * pitch, -0.5 * pitch, 0.5 * pitch, 1.5 * pitch):
        throughput -= 0.58 * np.exp(-0.5 * ((y_middle - bar) / 0.09) ** 2)
    return np.clip(throughput, 0.05, 1.0)


def slit_illumination(mode, mid_row, rows, stuck_closed_shutter):
    """Which window pixels the slit lets light onto, and their bar shadow.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    mid_row : numpy.ndarray, shape (n_cols,)
        Row of the middle shutter's (or slit's) centre in each window column.
    rows : numpy.ndarray, shape (n_rows, 1)
        Window row coordinates.
    stuck_closed_shutter : int or None
        Shutter (-1, 0, +1) stuck closed; ignored outside MOS.

    Returns
    -------
    illuminated : numpy.ndarray of bool
        Pixels inside the open slit(let) (the DQ's science region).
    bar : numpy.ndarray
        Bar-shadow throughput.
    light : numpy.ndarray of bool
        Pixels that receive light: ``illuminated`` less a stuck-closed shutter.
    """
    y_middle = (mid_row[None, :] - rows) / mode.rows_per_unit
    illuminated = np.abs(y_middle) <= mode.slit_half_length
    bar = bar_throughput(y_middle, mode)
    light = illuminated.copy()
    if stuck_closed_shutter is not None and mode.is_mos:
        shutter_y = stuck_closed_shutter * mode.shutter_pitch
        closed = np.abs(y_middle - shutter_y) < 0.5 * mode.shutter_pitch
        light &= ~closed
    return illuminated, bar, light


def sky_image(mode, wave, sky_scale, n_rows):
    """Sky surface brightness of the window, rising geometrically from blue to red.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    wave : numpy.ndarray, shape (n_cols,)
        Wavelength of each window column, micron.
    sky_scale : float
        Multiplier of the mode's sky.
    n_rows : int
        Window rows.

    Returns
    -------
    sky : numpy.ndarray, shape (n_rows, n_cols)
        Sky, MJy/sr.
    sky_red : float
        The sky at the red end, MJy/sr (the scale of a failed-open leak).
    """
    sky_lo, sky_hi = np.asarray(mode.sky_mjysr) * sky_scale
    t = (wave - wave.min()) / np.ptp(wave)
    return (sky_lo * (sky_hi / sky_lo) ** t)[None, :] * np.ones((n_rows, 1)), sky_hi


def source_sigma_pix(mode, wave, sigma_arcsec):
    """Gaussian sigma of the source image along the slit: PSF and source in quadrature.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    wave : numpy.ndarray
        Wavelengths, micron.
    sigma_arcsec : float
        Intrinsic sigma of the source, arcsec.

    Returns
    -------
    numpy.ndarray
        Sigma in pixels at each wavelength.
    """
    fwhm = psf_fwhm_arcsec(mode.instrument, wave)
    return np.hypot(fwhm / 2.3548, sigma_arcsec) / mode.pixel_scale


def source_spectrum(wave_um, lines, rng):
    """Smooth continuum plus Gaussian emission lines, normalised to 1 at mid-band.

    Parameters
    ----------
    wave_um : numpy.ndarray
        Wavelengths, micron.
    lines : bool
        Add three emission lines (their centres are drawn from ``rng``).
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    numpy.ndarray
        Spectrum at ``wave_um``.
    """
    mid = wave_um[wave_um.size // 2]
    spectrum = (wave_um / mid) ** -1.0
    if lines:
        lo, hi = wave_um.min(), wave_um.max()
        dlam = np.abs(np.gradient(wave_um))
        for frac in (0.3, 0.55, 0.8):
            centre = lo + frac * (hi - lo) + rng.uniform(-0.01, 0.01) * (hi - lo)
            width = 1.2 * np.interp(centre, wave_um, dlam)
            spectrum = spectrum + 3.0 * np.exp(-0.5 * ((wave_um - centre) / width) ** 2)
    return spectrum


def pixel_integrated_gaussian(rows, centre, sigma):
    """Fraction of a unit Gaussian falling in each pixel.

    Parameters
    ----------
    rows : numpy.ndarray
        Pixel centres.
    centre, sigma : numpy.ndarray or float
        Gaussian centre and sigma, pixels (broadcast against ``rows``).

    Returns
    -------
    numpy.ndarray
        Integral over each pixel.
    """
    return ndtr((rows + 0.5 - centre) / sigma) - ndtr((rows - 0.5 - centre) / sigma)


def slit_fraction(mode, sigma_arcsec, xpos):
    """Fraction of a Gaussian image inside the slit's open width, by numerical quadrature.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode (its width is `SLIT_WIDTH_ARCSEC`).
    sigma_arcsec : numpy.ndarray
        Sigma of the image at each wavelength, arcsec.
    xpos : float
        Image centre across the slit, slit widths from its middle.

    Returns
    -------
    numpy.ndarray
        Fraction kept at each wavelength.
    """
    width = SLIT_WIDTH_ARCSEC[mode.name]
    x = np.linspace(-0.5 * width, 0.5 * width, 2001)[:, None] - xpos * width
    density = np.exp(-0.5 * (x / sigma_arcsec[None, :]) ** 2) / (np.sqrt(2 * np.pi) * sigma_arcsec)
    return np.trapezoid(density, dx=width / 2000, axis=0)


def trace_wobble(wave, coeffs):
    """Deviation of the true trace from the predicted one, pixels.

    Parameters
    ----------
    wave : numpy.ndarray
        Wavelengths, micron.
    coeffs : sequence of float
        Legendre coefficients in wavelength scaled to -1 ... 1 (empty: none).

    Returns
    -------
    numpy.ndarray or float
        The deviation at each wavelength, or 0.0.
    """
    scaled = 2.0 * (wave - wave.min()) / np.ptp(wave) - 1.0
    return np.polynomial.legendre.legval(scaled, coeffs) if coeffs else 0.0


def slit_geometry(mode, n_exposures, rng, jitter):
    """Slit-centre row and the cutout of each exposure in window coordinates.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    n_exposures : int
        Exposures in the visit.
    rng : numpy.random.Generator
        Random generator (the centre is drawn first, then each cutout's jitter).
    jitter : bool
        Imitate real cutouts' habit of differing by a pixel or two in origin and
        size between exposures.

    Returns
    -------
    centre_row : float
        Window row of the slit centre at the middle column.
    cutouts : list of tuple of int
        ``(x0, y0, nx, ny)`` of each exposure's cutout.
    """
    centre_row = PAD + (mode.n_spatial - 1) / 2.0 + rng.uniform(-0.3, 0.3)
    cutouts = []
    for _ in range(n_exposures):
        dx, dy = rng.integers(-1, 2, size=2) if jitter else (0, 0)
        trim_x, trim_y = rng.integers(0, 2, size=2) if jitter else (0, 0)
        cutouts.append(
            (
                PAD + int(dx),
                PAD + int(dy),
                mode.n_dispersion - int(trim_x),
                mode.n_spatial - int(trim_y),
            )
        )
    return centre_row, cutouts
