"""WCS evaluation of one slit: the maps the steps need, evaluated once.

``nod_diff`` evaluates them for every slit it differences and writes them in
the slit's `~nodcombine.contract.SlitGeometry`; ``trace_fit`` and ``rectify``
read that record instead of evaluating the WCS again (with the full NIRSpec
transform chain one evaluation costs ~20 ms a slit).

NIRSpec slits carry a ``slit_frame``: the position along the slit of every
pixel is ``detector -> slit_frame`` y, and the source's predicted trace is
``slit_frame -> detector`` at the planned ``(source_xpos, source_ypos)``.
MIRI LRS has no slit frame: the trace is ``world -> detector`` at the
target's RA/Dec and positions along the slit are pixel offsets from it.

The WCS of a rectified slit (``rectify``'s ``_s2d``) is made here too:
`rectified_wcs` and, for a linear grid, its FITS form `fits_wcsinfo`.
"""

import warnings
from functools import cached_property

import numpy as np
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling import models as am
from gwcs import WCS
from gwcs import coordinate_frames as cf

from nodcombine.contract import SlitGeometry

__all__ = ["NIRSPEC_SHUTTER_PITCH", "SlitWcs", "fits_wcsinfo", "interp_columns", "rectified_wcs"]

#: shutter pitch along the slit in NIRSpec ``slit_frame`` units (0.529″ / 0.46″)
NIRSPEC_SHUTTER_PITCH = 1.15


class SlitWcs:
    """The WCS maps of one slit, each evaluated at most once.

    Parameters
    ----------
    ref : nodcombine.visit.SlitRef
        The slit.
    vertical : bool
        Whether the slit disperses along detector y (MIRI LRS); the maps are
        then returned in the kernels' orientation, dispersion along the last axis.
    """

    def __init__(self, ref, vertical):
        self.ref = ref
        self.vertical = vertical
        self.wcs = ref.slit.meta.wcs
        self.shape = ref.slit.data.shape
        self.has_slit_frame = "slit_frame" in self.wcs.available_frames

    @property
    def n_disp(self):
        """Dispersion pixels of the cutout."""
        return self.shape[0 if self.vertical else 1]

    @cached_property
    def pixel_wavelength(self):
        """Wavelength of every pixel, micron, slit orientation (the ``wavelength`` array)."""
        wave = getattr(self.ref.slit, "wavelength", None)
        if wave is not None and wave.shape == self.shape and np.isfinite(wave).any():
            return np.asarray(wave, dtype=float)
        yy, xx = np.mgrid[: self.shape[0], : self.shape[1]]
        return np.asarray(self.wcs(xx, yy)[-1], dtype=float)

    @cached_property
    def column_wavelength(self):
        """Median wavelength of each dispersion pixel, micron (NaN off the slit)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns off the slit
            return np.nanmedian(self.pixel_wavelength, axis=1 if self.vertical else 0)

    @cached_property
    def slit_frame_y(self):
        """``detector -> slit_frame`` y of every pixel (NIRSpec), slit orientation."""
        yy, xx = np.mgrid[: self.shape[0], : self.shape[1]]
        transform = self.wcs.get_transform("detector", "slit_frame")
        return np.asarray(transform(xx, yy)[1], dtype=float)

    @cached_property
    def trace(self):
        """Predicted source position along the slit per dispersion pixel, or None."""
        wave_um = self.column_wavelength
        ok = np.isfinite(wave_um)
        if self.has_slit_frame:
            xpos = getattr(self.ref.slit, "source_xpos", None) or 0.0
            ypos = getattr(self.ref.slit, "source_ypos", None) or 0.0
            to_detector = self.wcs.get_transform("slit_frame", "detector")
            n = ok.sum()
            x, y = to_detector(np.full(n, xpos), np.full(n, ypos), wave_um[ok] * 1e-6)
        else:
            target = self.ref.model.meta.target
            ra = getattr(self.ref.slit, "source_ra", None) or target.ra
            dec = getattr(self.ref.slit, "source_dec", None) or target.dec
            if ra is None or dec is None:
                return None
            n = ok.sum()
            x, y = self.wcs.backward_transform(np.full(n, ra), np.full(n, dec), wave_um[ok])
        x, y = np.asarray(x), np.asarray(y)
        along, disp = (x, y) if self.vertical else (y, x)
        good = np.isfinite(along) & np.isfinite(disp)
        if good.sum() < 2:
            return None
        order = np.argsort(disp[good])
        return np.interp(np.arange(self.n_disp), disp[good][order], along[good][order])

    @cached_property
    def trace_wavelength(self):
        """Wavelength at the predicted source position per dispersion pixel, micron.

        Lines of equal wavelength are tilted on the detector, so a nod along
        the slit also moves the source in wavelength by a fraction of a pixel
        (0.6 px for one NIRSpec shutter): the wavelength at the trace, not the
        column median, is what lines up the exposures.
        """
        fallback = self.column_wavelength
        wave = getattr(self.ref.slit, "wavelength", None)
        if self.trace is None or wave is None or wave.shape != self.shape:
            return fallback
        wave = np.asarray(wave, dtype=float)
        at_trace = interp_columns(wave.T if self.vertical else wave, self.trace)
        return np.where(np.isfinite(at_trace), at_trace, fallback)

    @cached_property
    def along(self):
        """Pixels along the slit from the predicted source position, slit orientation.

        NIRSpec: ``slit_frame`` y minus ``source_ypos``, divided by the
        slit-frame length of one pixel in that column.  MIRI LRS: pixel
        coordinate across the dispersion minus the predicted trace.
        """
        if self.trace is None:
            return None
        if not self.has_slit_frame:
            n_rows = self.shape[1] if self.vertical else self.shape[0]
            along = np.arange(n_rows, dtype=float)[:, None] - self.trace[None, :]
            return along.T if self.vertical else along
        y_slit = self.slit_frame_y.T if self.vertical else self.slit_frame_y
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # columns off the slit
            per_pixel = np.nanmedian(np.gradient(y_slit, axis=0), axis=0)
        ypos = getattr(self.ref.slit, "source_ypos", None) or 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            along = (y_slit - ypos) / per_pixel[None, :]
        return along.T if self.vertical else along

    @cached_property
    def pixel_scale(self):
        """Arcsec on the sky between neighbouring pixels along the slit at the source (or NaN)."""
        trace = self.trace
        if trace is None:
            return np.nan
        cols = np.unique(np.linspace(0.2, 0.8, 15) * (self.n_disp - 1)).astype(int)
        cols = cols[np.isfinite(trace[cols])]
        along = trace[cols]
        if self.vertical:
            lo, hi = (along - 0.5, cols), (along + 0.5, cols)
        else:
            lo, hi = (cols, along - 0.5), (cols, along + 0.5)
        # both ends in one WCS call: its cost is mostly per call, not per point
        points = np.hstack([lo, hi])
        ra, dec = np.array(self.wcs(*points)[:2], dtype=float)
        (ra0, ra1), (dec0, dec1) = np.split(ra, 2), np.split(dec, 2)
        separation = np.hypot((ra1 - ra0) * np.cos(np.deg2rad(dec0)), dec1 - dec0) * 3600.0
        separation = separation[np.isfinite(separation) & (separation > 0)]
        return float(np.median(separation)) if separation.size else np.nan

    def shutter_map(self):
        """Index of the MSA shutter (position in ``shutter_state``) of each pixel; -1 elsewhere.

        None for slits without a ``shutter_state`` holding the source (``x``) or
        without a slit frame.
        """
        state = getattr(self.ref.slit, "shutter_state", None)
        if not state or "x" not in state or not self.has_slit_frame:
            return None
        with np.errstate(invalid="ignore"):
            index = np.rint(self.slit_frame_y / NIRSPEC_SHUTTER_PITCH) + state.index("x")
        index = np.where(np.isfinite(index), index, -1).astype(int)
        index[(index < 0) | (index >= len(state))] = -1
        return index

    def geometry(self):
        """The maps the later steps read, as a `~nodcombine.contract.SlitGeometry`."""
        return SlitGeometry(
            wavelength=self.trace_wavelength,
            trace=self.trace,
            along=self.along,
            pixel_scale=self.pixel_scale,
        )


def interp_columns(image, rows):
    """``image[rows[x], x]`` interpolated linearly along each column; NaN outside.

    Per column as `numpy.interp` with ``left=right=NaN``, for all columns at once.

    Parameters
    ----------
    image : numpy.ndarray, shape (n_rows, n_cols)
    rows : numpy.ndarray, shape (n_cols,)
        Fractional row sought in each column.

    Returns
    -------
    numpy.ndarray, shape (n_cols,)
    """
    n_rows, n_cols = image.shape
    if n_rows < 2:
        return np.full(n_cols, np.nan)
    inside = (rows >= 0) & (rows <= n_rows - 1)
    below = np.clip(np.floor(np.where(inside, rows, 0)), 0, n_rows - 2).astype(int)
    frac = np.where(inside, rows, 0) - below
    cols = np.arange(n_cols)
    lo, hi = image[below, cols], image[below + 1, cols]
    with np.errstate(invalid="ignore"):
        # a row hit exactly takes that pixel alone, as numpy.interp does
        value = np.where(frac == 0, lo, np.where(frac == 1, hi, lo + (hi - lo) * frac))
    return np.where(inside, value, np.nan)


def fits_wcsinfo(wave, offset0):
    """``DISPAXIS`` and, for a linear grid, a FITS WCS giving the bin centres exactly.

    jdaviz's ``2D Spectrum`` loader reads only the header's WCS.  A non-uniform
    grid (the PRISM's native sampling) would need a ``-TAB`` table extension:
    its wavelengths are in the gwcs and the ``WAVELENGTH`` array only.
    """
    info = {"dispersion_direction": 1}
    step = (wave[-1] - wave[0]) / max(wave.size - 1, 1)
    # linear to the float32 precision of the WAVELENGTH array
    if step > 0 and np.allclose(wave, wave[0] + step * np.arange(wave.size), rtol=1e-7, atol=0):
        # axis 2, untyped (linear): pixels along the slit from the source
        info.update(wcsaxes=2, ctype1="WAVE", cunit1="um", crpix1=1.0, crpix2=1.0, cdelt2=1.0)
        info.update(crval1=float(wave[0]), cdelt1=float(step), crval2=float(offset0))
    return info


def rectified_wcs(wave_grid, ra, dec, *, n_offset):
    """``(x, y) -> (ra, dec, wavelength)`` of a rectified slit of ``n_offset`` rows.

    Wavelength is the bin centre of column ``x`` (a lookup table: exact for
    any grid); RA and Dec are the source's for every pixel (the slit is one
    source wide).  The bounding box covers the image: specutils' ``JWST s2d``
    reader evaluates the WCS on the pixels of the box.
    """
    ra = float(ra) if ra is not None else 0.0
    dec = float(dec) if dec is not None else 0.0
    wave = am.Tabular1D(
        points=np.arange(len(wave_grid), dtype=float),
        lookup_table=np.asarray(wave_grid, dtype=float),
        bounds_error=False,
        fill_value=np.nan,
        method="linear",
    )
    transform = am.Mapping((0, 0, 0), n_inputs=2) | (am.Const1D(ra) & am.Const1D(dec) & wave)
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(name="sky", axes_order=(0, 1), reference_frame=coord.ICRS())
    spec = cf.SpectralFrame(
        name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",)
    )
    world = cf.CompositeFrame([sky, spec], name="world")
    wcs = WCS([(detector, transform), (world, None)])
    # pixel centres are integers: the box runs half a pixel beyond the first and last
    wcs.bounding_box = ((-0.5, len(wave_grid) - 0.5), (-0.5, n_offset - 0.5))
    return wcs
