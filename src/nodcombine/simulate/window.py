"""What every exposure of one simulated slit shares: the slit's window.

`build_window` lays out one slit (trace, illumination, sky, source spectrum and
profile shape) once; the exposures then only move the source along the slit and draw
their own noise (`nodcombine.simulate.exposures`).
"""

from dataclasses import dataclass

import numpy as np

from nodcombine.simulate.options import SlitSource
from nodcombine.simulate.scene import (
    PAD,
    sky_image,
    slit_geometry,
    slit_illumination,
    source_spectrum,
    trace_polynomial,
    trace_wobble,
    window_wavelengths,
)
from nodcombine.simulate.shapes import ProfileShape

__all__ = ["SlitWindow", "build_window"]


@dataclass(frozen=True)
class SlitWindow:
    """One slit's padded window, shared by its exposures (kernel orientation).

    Attributes
    ----------
    source : SlitSource
        The slit's source and defects.
    rows : numpy.ndarray, shape (n_rows, 1)
        Window row coordinates.
    wave : numpy.ndarray, shape (n_cols,)
        Wavelength of each window column, micron.
    mid_row : numpy.ndarray, shape (n_cols,)
        Row of the slit (MOS: middle shutter) centre in each column.
    trace : tuple of float
        ``mid_row`` as a quadratic in window column.
    bar, illuminated, light : numpy.ndarray, shape (n_rows, n_cols)
        Bar-shadow throughput, open slit, and pixels receiving light.
    sky : numpy.ndarray, shape (n_rows, n_cols)
        Sky, MJy/sr.
    sky_red : float
        Sky at the red end, MJy/sr.
    shape : ProfileShape
        The source's profile along the slit at each column, pixels.
    sigma_pix : numpy.ndarray, shape (n_cols,)
        Its second-moment width (the sigma of a Gaussian family), pixels.
    spectrum : numpy.ndarray, shape (n_cols,)
        Source spectrum, 1 at mid-band.
    amplitude : float
        Scale making the continuum ``source.peak`` MJy/sr at mid-band in the
        pixel centred on the source (before slit loss): the source's total
        flux along an infinite slit at each column is ``amplitude * spectrum``,
        in MJy/sr times pixels.
    kept : numpy.ndarray or float
        Fraction of the light inside the slit's width (1.0 without slit loss).
    wobble : numpy.ndarray or float
        True minus predicted trace, pixels.
    failed_band : tuple of int or None
        Window rows ``[start, stop)`` a failed-open shutter lights.
    cutouts : list of tuple of int
        ``(x0, y0, nx, ny)`` of each exposure's cutout.
    """

    source: SlitSource
    rows: np.ndarray
    wave: np.ndarray
    mid_row: np.ndarray
    trace: tuple[float, float, float]
    bar: np.ndarray
    illuminated: np.ndarray
    light: np.ndarray
    sky: np.ndarray
    sky_red: float
    shape: ProfileShape
    sigma_pix: np.ndarray
    spectrum: np.ndarray
    amplitude: float
    kept: np.ndarray | float
    wobble: np.ndarray | float
    failed_band: tuple[int, int] | None
    cutouts: list

    def source_row(self, mode, offset):
        """True source centre row in each window column at nod offset ``offset``.

        Parameters
        ----------
        mode : InstrumentMode
            Observing mode.
        offset : float
            Along-slit nod offset of the exposure, arcsec.

        Returns
        -------
        numpy.ndarray, shape (n_cols,)
            Source rows.
        """
        true_offset = self.source.true_offset_arcsec
        return (
            self.mid_row - true_offset / mode.pixel_scale + offset / mode.pixel_scale + self.wobble
        )


def _centre_trace(mode, centre_row):
    """Slit-centre row per window column and its window-column polynomial."""
    c0, c1, c2 = trace_polynomial(mode, centre_row)
    # the polynomial is about cutout columns; the window starts PAD columns earlier
    x = np.arange(mode.n_dispersion + 2 * PAD, dtype=float) - PAD
    mid_row = c0 + c1 * x + c2 * x**2
    return mid_row, (c0 - c1 * PAD + c2 * PAD**2, c1 - 2 * c2 * PAD, c2)


def _source_scale(mode, shape, spectrum, peak):
    """Amplitude making the pixel centred on the source ``peak`` at mid-band."""
    mid = (mode.n_dispersion + 2 * PAD) // 2
    peak_fraction = shape.select(mid).pixel_fractions(np.array([0.0]), 0.0)[0]
    return peak / (spectrum[mid] * peak_fraction)


def build_window(mode, source, options, n_exposures, rng):
    """Lay out one slit for all its exposures.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    source : SlitSource
        The slit's source and defects.
    options : VisitOptions
        Options of the visit.
    n_exposures : int
        Exposures in the visit.
    rng : numpy.random.Generator
        Random generator.  The draws' order (slit centre, each cutout's jitter,
        then the emission lines) is part of a seeded visit's output.

    Returns
    -------
    SlitWindow
        The slit's window.
    """
    centre_row, cutouts = slit_geometry(mode, n_exposures, rng, options.jitter_cutouts)
    rows = np.arange(mode.n_spatial + 2 * PAD, dtype=float)[:, None]
    wave = window_wavelengths(mode)
    mid_row, trace = _centre_trace(mode, centre_row)
    illuminated, bar, light = slit_illumination(mode, mid_row, rows, source.stuck_closed_shutter)
    sky, sky_red = sky_image(mode, wave, options.sky_scale, rows.size)
    shape = source.profile.shape(mode, wave, source.sigma_arcsec)
    spectrum = source_spectrum(wave, options.emission_lines, rng)
    kept = 1.0
    if options.slit_loss:
        kept = shape.across_slit_fraction(mode, options.source_xpos)
    failed_band = None
    if source.failed_open:
        r0 = round(centre_row) + 6
        failed_band = (r0 - 2, r0 + 3)  # light in 5 rows, flagged in the inner 3
    return SlitWindow(
        source=source,
        rows=rows,
        wave=wave,
        mid_row=mid_row,
        trace=trace,
        bar=bar,
        illuminated=illuminated,
        light=light,
        sky=sky,
        sky_red=sky_red,
        shape=shape,
        sigma_pix=shape.width(),
        spectrum=spectrum,
        amplitude=_source_scale(mode, shape, spectrum, source.peak),
        kept=kept,
        wobble=trace_wobble(wave, options.trace_wobble_pix),
        failed_band=failed_band,
        cutouts=cutouts,
    )
