"""gwcs objects for simulated slit cutouts.

NIRSpec slits get the frames real products carry, ``detector -> slit_frame ->
world``, with the wavelength in metres in ``slit_frame`` and in microns in
``world``, and exact inverses; MIRI LRS gets ``detector -> world``.  Both take
cutout pixel coordinates, as the WCS of a real extracted slit does.
"""

import numpy as np
from astropy import coordinates
from astropy import units as u
from astropy.modeling import models
from gwcs import coordinate_frames as cf
from gwcs.wcs import WCS

__all__ = ["miri_slit_wcs", "nirspec_slit_wcs", "slit_frames"]


def slit_frames():
    """The detector, slit_frame and world frames of a NIRSpec slit.

    Returns
    -------
    tuple of gwcs.coordinate_frames.CoordinateFrame
        ``(detector, slit_frame, world)``.
    """
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    spatial = cf.Frame2D(
        name="slit_spatial", axes_order=(0, 1), unit=("", ""), axes_names=("x_slit", "y_slit")
    )
    spectral_m = cf.SpectralFrame(
        name="spectral", axes_order=(2,), unit=(u.m,), axes_names=("wavelength",)
    )
    slit_frame = cf.CompositeFrame([spatial, spectral_m], name="slit_frame")
    sky = cf.CelestialFrame(
        name="sky", axes_order=(0, 1), reference_frame=coordinates.ICRS(), unit=(u.deg, u.deg)
    )
    spectral_um = cf.SpectralFrame(
        name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",)
    )
    world = cf.CompositeFrame([sky, spectral_um], name="world")
    return detector, slit_frame, world


def nirspec_slit_wcs(mode, wave_um, trace_coeffs, origin, shape, source_pos, sky_pos):
    """Gwcs detector -> slit_frame -> world for one NIRSpec cutout.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode (pixel scale, slit unit).
    wave_um : numpy.ndarray
        Wavelength of each window column, micron.
    trace_coeffs : tuple of float
        Row of slit y = 0 as a quadratic in window column.
    origin : tuple of int
        ``(x0, y0)`` of the cutout in the window, so the WCS takes cutout pixels
        as real slit WCSs do.
    shape : tuple of int
        ``(ny, nx)`` of the cutout (sets the bounding box).
    source_pos : tuple of float
        ``(source_xpos, source_ypos)`` in slit units: where world = sky_pos.
    sky_pos : tuple of float
        ``(ra, dec)`` of the source, degrees.

    Returns
    -------
    gwcs.wcs.WCS
        The WCS, with exact inverses.
    """
    c0, c1, c2 = trace_coeffs
    upr = 1.0 / mode.rows_per_unit
    x_pix = np.arange(wave_um.size, dtype=float)
    to_lambda = models.Tabular1D(
        points=x_pix, lookup_table=wave_um * 1e-6, bounds_error=False, fill_value=np.nan
    )
    from_lambda = models.Tabular1D(
        points=wave_um * 1e-6, lookup_table=x_pix, bounds_error=False, fill_value=np.nan
    )
    y_slit = models.Polynomial2D(2, c0_0=upr * c0, c1_0=upr * c1, c2_0=upr * c2, c0_1=-upr)
    forward = models.Mapping((0, 0, 1, 0)) | (models.Const1D(0.0) & y_slit & to_lambda)
    row_of = models.Polynomial2D(2, c0_0=c0, c1_0=c1, c2_0=c2, c0_1=-1.0 / upr)
    forward.inverse = (
        models.Mapping((2, 1))
        | (from_lambda & models.Identity(1))
        | models.Mapping((0, 0, 1))
        | (models.Identity(1) & row_of)
    )
    det2slit = (models.Shift(origin[0]) & models.Shift(origin[1])) | forward

    xpos, ypos = source_pos
    ra, dec = sky_pos
    arcsec = 1.0 / 3600.0
    slit2world = (
        (
            models.Shift(-xpos)
            | models.Scale(0.2 * arcsec / np.cos(np.deg2rad(dec)))
            | models.Shift(ra)
        )
        & (models.Shift(-ypos) | models.Scale(mode.slit_unit_arcsec * arcsec) | models.Shift(dec))
        & models.Scale(1e6)
    )
    detector, slit_frame, world = slit_frames()
    wcs = WCS([(detector, det2slit), (slit_frame, slit2world), (world, None)])
    wcs.bounding_box = ((-0.5, shape[1] - 0.5), (-0.5, shape[0] - 0.5))
    return wcs


def miri_slit_wcs(mode, wave_um, trace_coeffs, origin, shape, sky_pos, slit_centre_dec):
    """Gwcs detector -> world for a MIRI LRS slit image (dispersion along y).

    MIRI LRS has no ``slit_frame``; the along-slit sky offset is (x - centre(y))
    times the pixel scale, so the inverse from (ra, dec, wavelength) is exact.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode (pixel scale).
    wave_um : numpy.ndarray
        Wavelength of each window row of the image (column of the kernel
        orientation), micron.
    trace_coeffs : tuple of float
        Slit-centre column as a quadratic in window row.
    origin : tuple of int
        ``(x0, y0)`` of the cutout in the (transposed) window.
    shape : tuple of int
        ``(ny, nx)`` of the image (sets the bounding box).
    sky_pos : tuple of float
        ``(ra, dec)`` of the source, degrees.
    slit_centre_dec : float
        Declination of the slit centre, degrees (the slit runs along dec).

    Returns
    -------
    gwcs.wcs.WCS
        The WCS, with an exact inverse.
    """
    c0, c1, c2 = trace_coeffs
    y_pix = np.arange(wave_um.size, dtype=float)
    to_lambda = models.Tabular1D(
        points=y_pix, lookup_table=wave_um, bounds_error=False, fill_value=np.nan
    )
    from_lambda = models.Tabular1D(
        points=wave_um, lookup_table=y_pix, bounds_error=False, fill_value=np.nan
    )
    arcsec = 1.0 / 3600.0
    # along-slit offset in arcsec from the slit centre: (x - c(y)) * scale
    s = mode.pixel_scale
    along = models.Polynomial2D(2, c0_0=-s * c0, c0_1=-s * c1, c0_2=-s * c2, c1_0=s)
    forward = (
        models.Mapping((0, 1, 1))
        | (along & to_lambda)
        | models.Mapping((0, 0, 1))
        | (
            (models.Scale(0.0) | models.Shift(sky_pos[0]))
            & (models.Scale(arcsec) | models.Shift(slit_centre_dec))
            & models.Identity(1)
        )
    )
    column_of = models.Polynomial2D(2, c0_0=c0, c1_0=1.0 / s, c0_1=c1, c0_2=c2)
    forward.inverse = (
        models.Mapping((1, 2))
        | ((models.Shift(-slit_centre_dec) | models.Scale(3600.0)) & from_lambda)
        | models.Mapping((0, 1, 1))
        | (column_of & models.Identity(1))
    )
    full = (models.Shift(origin[0]) & models.Shift(origin[1])) | forward
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    _, _, world = slit_frames()
    wcs = WCS([(detector, full), (world, None)])
    wcs.bounding_box = ((-0.5, shape[1] - 0.5), (-0.5, shape[0] - 0.5))
    return wcs
