"""Cut one exposure of a slit out of its window and attach its WCS and truth.

NIRSpec cutouts keep the kernel orientation (dispersion along x); the MIRI LRS
slit runs along detector x and disperses along y, so its arrays are transposed.
"""

from dataclasses import dataclass

import numpy as np

from nodcombine.simulate.files import slit_name
from nodcombine.simulate.truth import SlitTruth
from nodcombine.simulate.wcs import miri_slit_wcs, nirspec_slit_wcs

__all__ = ["SlitCutout", "cut_out"]


@dataclass(frozen=True)
class SlitCutout:
    """One slit of one exposure, as written into a datamodel.

    Attributes
    ----------
    arrays : dict of str to numpy.ndarray
        ``data``, ``var_poisson``, ``var_rnoise``, ``var_flat``, ``err``, ``dq``,
        ``wavelength`` and (MOS) ``barshadow``, in the data orientation.
    wcs : gwcs.wcs.WCS
        WCS taking cutout pixel coordinates.
    origin : tuple of int
        ``(x0, y0)`` of the cutout in its window (kernel orientation).
    ra, dec : float
        Source position, degrees.
    source_xpos, source_ypos : float
        Planned source position across and along the slit (jwst's convention).
    truth : SlitTruth
        What was simulated.
    """

    arrays: dict
    wcs: object
    origin: tuple[int, int]
    ra: float
    dec: float
    source_xpos: float
    source_ypos: float
    truth: SlitTruth


def _nirspec_wcs(mode, window, offset, cutout, sky_pos):
    """WCS and ``source_ypos`` of a NIRSpec cutout.

    MOS ``slit_frame`` y = 0 is the centre of the shutter holding the source, so
    the slit frame moves one pitch with each nod and ``source_ypos`` stays put;
    a fixed slit's frame stays and ``source_ypos`` moves with the nod.
    """
    ox, oy, nx, ny = cutout
    shift = offset / mode.pixel_scale if mode.is_mos else 0.0
    ref_trace = (window.trace[0] + shift, window.trace[1], window.trace[2])
    ypos = window.source.offset_arcsec - (0.0 if mode.is_mos else offset)
    ypos = ypos / mode.slit_unit_arcsec
    wcs = nirspec_slit_wcs(mode, window.wave, ref_trace, (ox, oy), (ny, nx), (0.0, ypos), sky_pos)
    return wcs, ypos


def _miri_wcs(mode, window, offset, cutout, sky_pos):
    """WCS and ``source_ypos`` of a MIRI LRS cutout (data orientation: transposed)."""
    ox, oy, nx, ny = cutout
    along = offset - window.source.offset_arcsec
    slit_centre_dec = sky_pos[1] - along / 3600.0
    wcs = miri_slit_wcs(
        mode, window.wave, window.trace, (oy, ox), (nx, ny), sky_pos, slit_centre_dec
    )
    return wcs, along / mode.slit_unit_arcsec


def _slit_truth(mode, window, exposure, cutout, cosmic_rays):
    """The truth of one cutout; ``cosmic_rays`` is ``(mask, excess)`` as cut out."""
    ox, oy, nx, _ = cutout
    columns = slice(ox, ox + nx)
    k = window.source.index
    return SlitTruth(
        name=slit_name(mode, k),
        source_id=1000 + k,
        trace_row=exposure.source_row[columns] - oy,
        sigma_pix=window.sigma_pix[columns],
        column_flux=(exposure.column_flux * window.kept)[columns],
        total_flux=exposure.column_flux[columns],
        wavelength=window.wave[columns],
        cosmic_rays=cosmic_rays[0],
        cosmic_ray_excess=cosmic_rays[1],
        stuck_closed=window.source.stuck_closed_shutter is not None,
        profile=window.source.profile,
        shape=window.shape.select(columns),
        infinite_slit_flux=(window.amplitude * window.spectrum)[columns],
    )


def cut_out(mode, window, options, exposure, cutout):
    """Cut one exposure of a slit to its cutout; attach WCS and truth.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    window : SlitWindow
        The slit.
    options : VisitOptions
        Options of the visit (``source_xpos`` is used).
    exposure : Exposure
        The exposure on the window.
    cutout : tuple of int
        ``(x0, y0, nx, ny)`` of the cutout in the window.

    Returns
    -------
    SlitCutout
        The cutout.
    """
    ox, oy, nx, ny = cutout
    cut = (slice(oy, oy + ny), slice(ox, ox + nx))
    arrays = {key: val[cut] for key, val in exposure.arrays.items()}
    wavelength = np.where(window.illuminated, window.wave[None, :], np.nan)
    arrays["wavelength"] = wavelength[cut].astype(np.float32)
    if mode.is_mos:
        arrays["barshadow"] = window.bar[cut].astype(np.float32)
    k = window.source.index
    ra, dec = 214.86 + 0.001 * k, 52.88 + 0.002 * k
    if mode.is_nirspec:
        wcs, ypos = _nirspec_wcs(mode, window, exposure.offset, cutout, (ra, dec))
    else:
        wcs, ypos = _miri_wcs(mode, window, exposure.offset, cutout, (ra, dec))
        # the MIRI slit runs along detector x and disperses along y: transpose
        arrays = {key: val.T for key, val in arrays.items()}
    cosmic_rays = (arrays.pop("cr"), arrays.pop("cr_signal"))
    return SlitCutout(
        arrays=arrays,
        wcs=wcs,
        origin=(ox, oy),
        ra=ra,
        dec=dec,
        source_xpos=options.source_xpos,
        source_ypos=ypos,
        truth=_slit_truth(mode, window, exposure, cutout, cosmic_rays),
    )
