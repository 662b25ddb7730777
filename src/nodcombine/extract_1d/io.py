"""``_s2d`` slits in, ``_x1d`` spectra out: the adapter of the 1-D extraction.

Reads a rectified slit (ours, with its `~nodcombine.contract.RectifyRecord`, or a
stock jwst one, whose profile comes from ``trace_model`` or a fit to the image),
converts the extracted flux to Jy and builds a standard ``SpecModel`` (with jwst's
1-D WCS).  Per-wavelength extras (path loss, profile fraction, widths) go in each
spectrum's `~nodcombine.contract.ExtractionExtras` (``extract_1d_extras``, in the
ASDF extension of the ``_x1d``): the ``spec_table`` may hold only its own columns.
"""

import functools
from dataclasses import dataclass

import numpy as np
from jwst.extract_1d.spec_wcs import create_spectral_wcs
from stdatamodels.jwst import datamodels

from nodcombine.contract import ExtractionExtras, RectifyRecord, TraceFitRecord
from nodcombine.cutouts import DQ
from nodcombine.errors import InputError
from nodcombine.extract_1d.stockprofile import profile_from_model
from nodcombine.modelio import new_entry
from nodcombine.pathloss import corrected_flux, open_width_arcsec, x_offset_arcsec
from nodcombine.psf import total_sigma_arcsec, width_error
from nodcombine.variances import VARIANCE_COMPONENTS

__all__ = ["ExtractionInputs", "append_spectra", "new_multispec", "read_slit", "spectrum_entry"]

_MJY_TO_JY = 1.0e6
_COPIED = (
    "name",
    "slitlet_id",
    "source_id",
    "source_name",
    "source_alias",
    "source_type",
    "source_ra",
    "source_dec",
    "source_xpos",
    "source_ypos",
    "shutter_state",
    "stellarity",
)


@dataclass(frozen=True)
class ExtractionInputs:
    """One rectified slit, ready for extraction.

    Attributes
    ----------
    label : str
        ``slit name (source id)`` for messages.
    data : numpy.ndarray, shape (n_offset, n_wave)
        The rectified image.
    variances : dict of str to numpy.ndarray
        Its variance components.
    profile : numpy.ndarray or None
        Fraction of the source flux in each bin; None for a stock slit with
        neither ``rectified_profile`` nor ``trace_model``.
    usable : numpy.ndarray of bool
        Bins not flagged ``DO_NOT_USE``.
    offset : numpy.ndarray, shape (n_offset,)
        Pixels along the slit from the source of each row.
    wavelength : numpy.ndarray, shape (n_wave,)
        Micron.
    to_jy : float
        Factor from the data unit times pixels to Jy.
    pixel_area_sr : float or None
        Solid angle of a pixel (None if not recorded).
    surface_brightness : bool
        The data are in MJy/sr (else MJy, NIRSpec point-source calibration).
    nod_separation : float
        Pixels between the source images of two nod positions (inf if unknown).
    sigma_arcsec : numpy.ndarray, shape (n_wave,)
        Gaussian width of the source image (PSF and source), arcsec.
    x_offset_arcsec : float
        Planned source position across the slit from its middle, arcsec.
    slit_width_arcsec : float or None
        Open width across the slit; None if unknown (no path-loss correction).
    profile_origin : str
        ``trace_fit``, ``trace_model`` or ``none``.
    """

    label: str
    data: np.ndarray
    variances: dict
    profile: np.ndarray | None
    usable: np.ndarray
    offset: np.ndarray
    wavelength: np.ndarray
    to_jy: float
    pixel_area_sr: float | None
    surface_brightness: bool
    nod_separation: float
    sigma_arcsec: np.ndarray
    x_offset_arcsec: float
    slit_width_arcsec: float | None
    profile_origin: str
    in_slit_fraction: np.ndarray | None = None
    halo: tuple = (0.0, 1.0)
    width: tuple | None = None

    def kernel_arguments(self):
        """Arrays and geometry as keyword arguments of the extraction kernel."""
        return {
            "data": self.data,
            "variances": self.variances,
            "usable": self.usable,
            "wavelength": self.wavelength,
            "offset": self.offset,
            "profile": self.profile,
            "sigma_arcsec": self.sigma_arcsec,
            "x_offset_arcsec": self.x_offset_arcsec,
            "slit_width_arcsec": self.slit_width_arcsec,
            "nod_separation": self.nod_separation,
            "in_slit_fraction": self.in_slit_fraction,
            "halo": self.halo,
            "width": self.width,
        }


def read_slit(slit, model):
    """Read one rectified slit.

    Parameters
    ----------
    slit : SlitModel
        A slit of an ``_s2d`` ``MultiSlitModel`` (or the model itself).
    model : DataModel
        The ``_s2d`` product (for exposure-level metadata).

    Returns
    -------
    ExtractionInputs

    Raises
    ------
    InputError
        Naming the file, slit and field, if something needed is missing.
    """
    where = f"{model.meta.filename or 's2d'}[slit {slit.name}, source {slit.source_id}]"
    data = getattr(slit, "data", None)
    if data is None or data.ndim != 2 or not np.isfinite(data).any():
        raise InputError(where, "data", "is missing or all NaN")
    variances = {}
    for c in VARIANCE_COMPONENTS:
        values = getattr(slit, c, None)
        if values is None or values.shape != data.shape:
            raise InputError(where, c, "is missing or has the wrong shape")
        variances[c] = np.asarray(values, dtype=float)
    record = RectifyRecord.from_tree(slit.instance)
    if record is not None:
        wavelength, offset = record.wavelength_grid_um, record.offsets
        profile, origin, sigma = record.profile, "trace_fit", record.sigma_arcsec
    else:
        wavelength = _stock_wavelength(slit, where)
        offset, profile, origin = _stock_profile(slit)
        sigma = _stock_sigma(slit, model, wavelength)
    dq = getattr(slit, "dq", None)
    # a drizzled jwst _s2d may have no DQ array: its NaNs mark the empty pixels
    usable = np.isfinite(data)
    if dq is not None and np.shape(dq) == data.shape:
        usable &= (np.asarray(dq) & DQ["DO_NOT_USE"]) == 0
    # the slit's own exposure, not the product's first: visits of two instruments mix
    width = open_width_arcsec(_meta(slit, model, "exposure", "type"), slit.name)
    return ExtractionInputs(
        label=where,
        data=np.asarray(data, dtype=float),
        variances=variances,
        profile=profile,
        usable=usable,
        offset=offset,
        wavelength=wavelength,
        to_jy=_to_jy(slit, model, where),
        pixel_area_sr=_pixel_area(slit, model),
        surface_brightness=_unit(slit, model) == "MJy/sr",
        nod_separation=np.inf if record is None else record.nod_separation_pix,
        sigma_arcsec=sigma,
        x_offset_arcsec=x_offset_arcsec(getattr(slit, "source_xpos", None), width),
        slit_width_arcsec=width,
        profile_origin=origin,
        in_slit_fraction=None if record is None else record.in_slit_fraction,
        halo=(0.0, 1.0) if record is None else record.halo,
        width=None if record is None else _fitted_width(slit, record),
    )


def _fitted_width(slit, record):
    """The fitted total width per bin (pixels) and its relative error, or None."""
    fit = TraceFitRecord.from_tree(slit.instance)
    if fit is None or not fit.width_covariance_pix4 or not fit.wave_range_um:
        return None
    n = round(np.sqrt(len(fit.width_covariance_pix4)))
    covariance = np.reshape(fit.width_covariance_pix4, (n, n))
    sigma = record.sigma_arcsec / record.pixel_scale_arcsec
    error = width_error(record.wavelength_grid_um, fit.wave_range_um, covariance, sigma)
    return sigma, error / sigma


def _stock_wavelength(slit, where):
    """Mean wavelength of each column of a stock ``_s2d``."""
    wave = getattr(slit, "wavelength", None)
    if wave is None or wave.shape != slit.data.shape or not np.isfinite(wave).any():
        ny, nx = slit.data.shape
        yy, xx = np.mgrid[:ny, :nx]
        try:
            wave = np.asarray(slit.meta.wcs(xx, yy)[-1], dtype=float)
        except Exception as err:
            raise InputError(where, "wavelength", f"is missing and the WCS fails ({err})") from err
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(wave)
        counts = finite.sum(axis=0)
        sums = np.where(finite, wave, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _stock_profile(slit):
    """Row offsets from the source, the unit profile and where it came from (stock ``_s2d``)."""
    ny = slit.data.shape[0]
    model = getattr(slit, "trace_model", None)
    if model is not None and model.shape == slit.data.shape and np.nansum(model) > 0:
        centre, profile = profile_from_model(model)
        return np.arange(ny) - centre, profile, "trace_model"
    return np.arange(ny) - (ny - 1) / 2.0, None, "none"


def _stock_sigma(slit, model, wavelength):
    """Width of the source image of a stock ``_s2d``: the PSF (and a fitted width, if any)."""
    area = _meta(slit, model, "photometry", "pixelarea_arcsecsq")
    scale = float(np.sqrt(area)) if area else 0.1
    record = TraceFitRecord.from_tree(slit.instance)
    s2 = None if record is None else record.source_sigma2_pix2
    instrument = str(_meta(slit, model, "instrument", "name") or "").upper()
    return total_sigma_arcsec(instrument or "NIRSPEC", wavelength, s2, scale)


def _meta(slit, model, *path):
    """A ``meta`` entry of the slit (its own exposure's), else of the product."""
    for node in (slit, model):
        value = node.meta.instance
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def _unit(slit, model):
    return _meta(slit, model, "bunit_data")


def _pixel_area(slit, model):
    area = _meta(slit, model, "photometry", "pixelarea_steradians")
    return float(area) if area else None


def _to_jy(slit, model, where):
    unit = _unit(slit, model)
    if unit == "MJy":
        return _MJY_TO_JY
    if unit == "MJy/sr":
        area = _pixel_area(slit, model)
        if not area:
            raise InputError(where, "meta.photometry.pixelarea_steradians", "is missing")
        return area * _MJY_TO_JY
    raise InputError(where, "meta.bunit_data", f"is {unit!r}; need MJy/sr or MJy")


def append_spectra(output, spectra):
    """Add the spectra that were extracted (not None) to an ``_x1d`` product.

    Added to the tree, not through the model: validating the growing list at
    each append is slower than the extraction; the product is validated when
    saved.
    """
    output.instance.setdefault("spec", []).extend(s.instance for s in spectra if s is not None)


def new_multispec(model):
    """An empty ``MultiSpecModel`` with the ``_s2d``'s metadata: all of ``cal_step``, too."""
    output = datamodels.MultiSpecModel()
    output.update(model)  # copies only the entries with a FITS keyword, not this package's
    output.meta.instance["cal_step"] = dict(model.meta.instance.get("cal_step") or {})
    return output


def spectrum_entry(slit, inputs, result, *, apply_pathloss):
    """The spectrum of one source, as a ``SpecModel`` entry.

    Parameters
    ----------
    slit : SlitModel
        The rectified slit (its identity is copied).
    inputs : ExtractionInputs
    result : SourceExtraction
        The kernel's extraction: its spectrum (data unit times pixels; a box
        also fills the ``BACKGROUND`` columns and the aperture's rows), the
        in-slit fraction, path loss and flux-scale error.
    apply_pathloss : bool
        Divide ``FLUX`` and its variances by the path loss.

    Returns
    -------
    stdatamodels.properties.ObjectNode
        One entry of a ``MultiSpecModel``'s ``spec`` (a ``SpecModel`` costs
        25 ms to create and fill, more than the extraction).
    """
    spectrum, pathloss, in_slit = result.spectrum, result.pathloss, result.in_slit
    scale = inputs.to_jy if in_slit is None else inputs.to_jy * np.asarray(in_slit)
    flux, variances = corrected_flux(
        spectrum.flux * scale,
        {c: v * scale**2 for c, v in spectrum.variances.items()},
        pathloss if apply_pathloss else None,
    )
    npix = np.asarray(spectrum.npixels, dtype=float)
    per_pixel = np.where(npix > 0, 1.0 / np.maximum(npix, 1e-300), 0.0)
    # mean surface brightness of the extracted bins, as in the slit (MJy/sr); jwst
    # writes 0 for data in MJy (NIRSpec point-source calibration)
    sb_scale = per_pixel * inputs.surface_brightness
    table = np.zeros(flux.size, dtype=_spec_table_dtype())
    table["WAVELENGTH"] = inputs.wavelength
    table["FLUX"] = flux
    table["FLUX_ERROR"] = np.sqrt(sum(variances.values()))
    for c in VARIANCE_COMPONENTS:
        table[f"FLUX_{c.upper()}"] = variances[c]
        table[f"SB_{c.upper()}"] = spectrum.variances[c] * sb_scale**2
    table["SURF_BRIGHT"] = spectrum.flux * sb_scale
    table["SB_ERROR"] = spectrum.error * sb_scale
    table["DQ"] = np.where(np.isfinite(flux), 0, DQ["DO_NOT_USE"])
    table["NPIXELS"] = npix
    _background_columns(table, spectrum, per_pixel, inputs)
    spec = new_entry(datamodels.MultiSpecModel, "spec")
    spec.spec_table = table
    for column, unit in _UNITS.items():
        spec.spec_table.columns[column].unit = unit
    for name in _COPIED:
        value = getattr(slit, name, None)
        if value is not None:
            setattr(spec, name, value)
    _aperture_limits(spec, spectrum, flux.size)
    wcs = create_spectral_wcs(spec.source_ra or 0.0, spec.source_dec or 0.0, inputs.wavelength)
    spec.instance["meta"] = {"wcs": wcs}  # as jwst's spectra: combine_1d reads it
    extras = ExtractionExtras(
        pathloss=_listed(pathloss),
        pathloss_applied=bool(apply_pathloss and pathloss is not None),
        profile_used=_listed(getattr(spectrum, "profile_used", None)),
        sigma_arcsec=_listed(inputs.sigma_arcsec),
        x_offset_arcsec=inputs.x_offset_arcsec,
        slit_width_arcsec=inputs.slit_width_arcsec,
        profile_origin=inputs.profile_origin,
        aperture_profile_fraction=_listed(result.aperture_fraction),
        in_slit_fraction=_listed(in_slit),
        flux_scale_error=_listed(result.flux_scale_error),
    )
    spec.instance.update(extras.to_tree())
    return spec


@functools.cache
def _spec_table_dtype():
    # a SpecModel is created once to read its schema's column types
    return datamodels.SpecModel().get_dtype("spec_table")


def _background_columns(table, spectrum, per_pixel, inputs):
    """Mean background per pixel of a box aperture, in MJy/sr (as jwst)."""
    background = getattr(spectrum, "background", None)
    if background is None:
        return
    scale = per_pixel
    if not inputs.surface_brightness:
        scale = per_pixel / inputs.pixel_area_sr if inputs.pixel_area_sr else per_pixel * np.nan
    table["BACKGROUND"] = background * scale
    for c in VARIANCE_COMPONENTS:
        table[f"BKGD_{c.upper()}"] = spectrum.background_variances[c] * scale**2
    table["BKGD_ERROR"] = np.sqrt(sum(spectrum.background_variances.values())) * scale


def _aperture_limits(spec, spectrum, n_wave):
    """1-based, inclusive extent of the extraction (jwst's ``EXTR_X/YSTART``...)."""
    limits = getattr(spectrum, "limits", None)
    if limits is None:
        spec.extraction_xstart, spec.extraction_xstop = 1, n_wave
        return
    lower, upper, left, right = limits
    spec.extraction_ystart, spec.extraction_ystop = lower + 1.0, upper + 1.0
    if left is not None:
        spec.extraction_xstart, spec.extraction_xstop = left + 1.0, right + 1.0


#: units of the spec_table columns: flux in Jy, surface brightness and background in MJy/sr
_UNITS = {"wavelength": "um", "flux": "Jy", "flux_error": "Jy"}
_UNITS |= {f"flux_{c}": "Jy^2" for c in VARIANCE_COMPONENTS}
_UNITS |= {f"{kind}_{c}": "(MJy/sr)^2" for kind in ("sb", "bkgd") for c in VARIANCE_COMPONENTS}
_UNITS |= {name: "MJy/sr" for name in ("surf_bright", "sb_error", "background", "bkgd_error")}


def _listed(values):
    return None if values is None else tuple(float(v) for v in np.atleast_1d(values))
