"""``_s2d`` slits in, ``_x1d`` spectra out: the adapter of the 1-D extraction.

Reads a rectified slit (ours, with ``rectified_profile``, or a stock jwst one,
whose profile comes from ``trace_model`` or a fit to the image), converts the
extracted flux to Jy and builds a standard ``SpecModel``.  Per-wavelength
extras (path-loss factor, slit transmission, profile fraction) go in the
``extract_1d_extras`` entry of each spectrum (ASDF extension) and in the
companion ``_x1dextra`` product (`companion_tree`).
"""

import copy
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from stdatamodels.jwst import datamodels

from nodcombine.models.modelio import new_entry
from nodcombine.models.rectify import PROFILE_KEY, RECTIFY_KEY
from nodcombine.models.slits import DQ
from nodcombine.models.trace import TRACE_FIT_KEY
from nodcombine.noddiff import VARIANCE_COMPONENTS
from nodcombine.pathloss import SLIT_OPEN_WIDTH_ARCSEC
from nodcombine.psf import FWHM_PER_SIGMA, psf_fwhm_arcsec

__all__ = [
    "EXTRAS_KEY",
    "ExtractionInputs",
    "companion_tree",
    "extraction_inputs",
    "new_multispec",
    "per_source_products",
    "product_name",
    "source_tag",
    "spec_model",
]

#: entry of each spectrum holding the per-wavelength extras
EXTRAS_KEY = "extract_1d_extras"

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


def extraction_inputs(slit, model):
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
    ValueError
        Naming the slit and field, if something needed is missing.
    """
    label = f"{model.meta.filename or 's2d'}[slit {slit.name}, source {slit.source_id}]"
    data = getattr(slit, "data", None)
    if data is None or data.ndim != 2 or not np.isfinite(data).any():
        raise ValueError(f"{label}: 'data' is missing or all NaN")
    variances = {}
    for c in VARIANCE_COMPONENTS:
        values = getattr(slit, c, None)
        if values is None or values.shape != data.shape:
            raise ValueError(f"{label}: array {c!r} is missing or has the wrong shape")
        variances[c] = np.asarray(values, dtype=float)
    grid = slit.instance.get(RECTIFY_KEY) or {}
    wavelength = _wavelength(slit, grid, label)
    offset, profile, origin = _profile(slit, grid)
    dq = getattr(slit, "dq", None)
    # a drizzled jwst _s2d may have no DQ array: its NaNs mark the empty pixels
    usable = np.isfinite(data)
    if dq is not None and np.shape(dq) == data.shape:
        usable &= (np.asarray(dq) & DQ["DO_NOT_USE"]) == 0
    scale = float(grid.get("pixel_scale_arcsec", 0.0)) or _pixel_scale(model)
    instrument = (model.meta.instrument.name or "").upper()
    return ExtractionInputs(
        label=label,
        data=np.asarray(data, dtype=float),
        variances=variances,
        profile=profile,
        usable=usable,
        offset=offset,
        wavelength=wavelength,
        to_jy=_to_jy(slit, model, label),
        pixel_area_sr=_pixel_area(slit, model),
        surface_brightness=_unit(slit, model) == "MJy/sr",
        nod_separation=float(grid.get("nod_separation_pix", np.inf)),
        sigma_arcsec=_sigma_arcsec(slit, instrument, wavelength, scale),
        x_offset_arcsec=_x_offset(slit, model),
        slit_width_arcsec=_slit_width(slit, model),
        profile_origin=origin,
    )


def _wavelength(slit, grid, label):
    if "wavelength_grid_um" in grid:
        return np.asarray(grid["wavelength_grid_um"], dtype=float)
    wave = getattr(slit, "wavelength", None)
    if wave is None or wave.shape != slit.data.shape or not np.isfinite(wave).any():
        ny, nx = slit.data.shape
        yy, xx = np.mgrid[:ny, :nx]
        try:
            wave = np.asarray(slit.meta.wcs(xx, yy)[-1], dtype=float)
        except Exception as err:
            raise ValueError(f"{label}: no 'wavelength' array and no usable WCS ({err})") from err
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(wave)
        counts = finite.sum(axis=0)
        sums = np.where(finite, wave, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _profile(slit, grid):
    """Row offsets from the source, the unit profile and where it came from."""
    ny = slit.data.shape[0]
    if PROFILE_KEY in slit.instance and "offset0_pix" in grid:
        offset = float(grid["offset0_pix"]) + np.arange(ny)
        return offset, np.asarray(slit.instance[PROFILE_KEY], dtype=float), "trace_fit"
    model = getattr(slit, "trace_model", None)
    if model is not None and model.shape == slit.data.shape and np.nansum(model) > 0:
        positive = np.clip(np.nan_to_num(np.asarray(model, dtype=float)), 0.0, None)
        column = positive.sum(axis=0)
        profile = positive / np.where(column > 0, column, 1.0)
        centre = np.average(np.arange(ny), weights=positive.sum(axis=1))
        return np.arange(ny) - centre, profile, "trace_model"
    return np.arange(ny) - (ny - 1) / 2.0, None, "none"


def _pixel_scale(model):
    area = (model.meta.instance.get("photometry") or {}).get("pixelarea_arcsecsq")
    return float(np.sqrt(area)) if area else 0.1


def _sigma_arcsec(slit, instrument, wavelength, scale):
    """Width of the source image: the PSF in quadrature with the fitted source width."""
    record = slit.instance.get(TRACE_FIT_KEY) or {}
    s2 = record.get("source_sigma2_pix2", 0.0)
    s2 = float(s2) if s2 is not None and np.isfinite(s2) else 0.0
    psf = psf_fwhm_arcsec(instrument or "NIRSPEC", wavelength) / FWHM_PER_SIGMA
    return np.sqrt(psf**2 + max(s2, 0.0) * scale**2)


def _first(*values):
    for value in values:
        if value is not None:
            return value
    return None


def _unit(slit, model):
    return _first(slit.meta.instance.get("bunit_data"), model.meta.instance.get("bunit_data"))


def _pixel_area(slit, model):
    photometry = _first(slit.meta.instance.get("photometry"), model.meta.instance.get("photometry"))
    area = (photometry or {}).get("pixelarea_steradians")
    return float(area) if area else None


def _to_jy(slit, model, label):
    unit = _unit(slit, model)
    if unit == "MJy":
        return _MJY_TO_JY
    if unit == "MJy/sr":
        area = _pixel_area(slit, model)
        if not area:
            raise ValueError(f"{label}: meta.photometry.pixelarea_steradians is missing")
        return area * _MJY_TO_JY
    raise ValueError(f"{label}: meta.bunit_data={unit!r}; need MJy/sr or MJy")


def _x_offset(slit, model):
    """Planned position across the slit, arcsec (source_xpos is in slit widths)."""
    width = _slit_width(slit, model)
    xpos = getattr(slit, "source_xpos", None)
    return float(xpos) * width if (xpos is not None and width) else 0.0


def _slit_width(slit, model):
    exp_type = model.meta.exposure.type
    if exp_type == "NRS_FIXEDSLIT":
        return SLIT_OPEN_WIDTH_ARCSEC.get(slit.name)
    return SLIT_OPEN_WIDTH_ARCSEC.get(exp_type)


def new_multispec(model):
    """An empty ``MultiSpecModel`` with the ``_s2d`` product's metadata."""
    output = datamodels.MultiSpecModel()
    output.update(model)
    return output


def spec_model(slit, inputs, spectrum, *, pathloss, apply_pathloss, extras=None):
    """The spectrum of one source, as a ``SpecModel`` entry.

    Parameters
    ----------
    slit : SlitModel
        The rectified slit (its identity is copied).
    inputs : ExtractionInputs
    spectrum : OptimalSpectrum or BoxSpectrum
        Flux in the data unit times pixels; a `BoxSpectrum` also fills the
        ``BACKGROUND`` columns and the aperture's rows.
    pathloss : numpy.ndarray or None
        Fraction of the source's flux the extraction holds, per wavelength:
        the slit transmission (times, for a box, the profile inside the
        aperture); None: not known.
    apply_pathloss : bool
        Divide ``FLUX`` and its variances by ``pathloss``.
    extras : dict, optional
        More per-spectrum extras for ``extract_1d_extras``.

    Returns
    -------
    stdatamodels.properties.ObjectNode
        One entry of a ``MultiSpecModel``'s ``spec`` (a ``SpecModel`` costs
        25 ms to create and fill, more than the extraction).
    """
    correction = 1.0
    if apply_pathloss and pathloss is not None:
        # a column that holds none of the source has no corrected flux
        correction = np.where(np.asarray(pathloss) > 0, pathloss, np.nan)
    flux = spectrum.flux * inputs.to_jy / correction
    variances = {c: v * (inputs.to_jy / correction) ** 2 for c, v in spectrum.variances.items()}
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
    profile_used = getattr(spectrum, "profile_used", None)
    spec.instance[EXTRAS_KEY] = {
        "pathloss": _listed(pathloss),
        "pathloss_applied": bool(apply_pathloss and pathloss is not None),
        "profile_used": _listed(profile_used),
        "sigma_arcsec": _listed(inputs.sigma_arcsec),
        "x_offset_arcsec": inputs.x_offset_arcsec,
        "slit_width_arcsec": inputs.slit_width_arcsec,
        "profile_origin": inputs.profile_origin,
        **(extras or {}),
    }
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


_UNITS = {
    "wavelength": "um",
    "flux": "Jy",
    "flux_error": "Jy",
    "flux_var_poisson": "Jy^2",
    "flux_var_rnoise": "Jy^2",
    "flux_var_flat": "Jy^2",
    "surf_bright": "MJy/sr",
    "sb_error": "MJy/sr",
    "sb_var_poisson": "(MJy/sr)^2",
    "sb_var_rnoise": "(MJy/sr)^2",
    "sb_var_flat": "(MJy/sr)^2",
    "background": "MJy/sr",
    "bkgd_error": "MJy/sr",
    "bkgd_var_poisson": "(MJy/sr)^2",
    "bkgd_var_rnoise": "(MJy/sr)^2",
    "bkgd_var_flat": "(MJy/sr)^2",
}


def _listed(values):
    return None if values is None else [float(v) for v in np.atleast_1d(values)]


def companion_tree(output):
    """The ``_x1dextra`` companion of an ``_x1d`` product: extras per source."""
    return {
        "x1d": output.meta.filename,
        "spectra": [
            {
                "name": spec.name,
                "source_id": spec.source_id,
                "wavelength_um": [float(w) for w in spec.spec_table["WAVELENGTH"]],
                **spec.instance.get(EXTRAS_KEY, {}),
            }
            for spec in output.spec
        ],
    }


def product_name(container):
    """Stem of the products of a visit: the association's product name, if any.

    Parameters
    ----------
    container : ModelContainer

    Returns
    -------
    str
    """
    table = getattr(container, "asn_table", None) or {}
    products = table.get("products") or []
    if products and products[0].get("name"):
        return str(products[0]["name"])
    first = container[0].meta.filename if len(container) else None
    return Path(first).stem.rsplit("_", 1)[0] if first else "nodcombine"


def source_tag(slit):
    """calwebb_spec3's source field: ``s``, ``b`` (background) or ``v`` (virtual) + 9 digits."""
    source_id = int(slit.source_id or 0)
    if "BKG" in str(slit.source_name or ""):
        return f"b{source_id:09d}"
    if source_id < 0:
        return f"v{-source_id:09d}"
    return f"s{source_id:09d}"


def _source_stem(product, slit):
    tag = source_tag(slit)
    stem = product
    if "{slit_name}" in stem:
        stem = stem.replace("{slit_name}", str(slit.name or "").lower())
    if "{source_id}" in stem:
        return stem.replace("{source_id}", tag)
    return f"{stem}_{tag}"


def per_source_products(product, s2d, x1d):
    """``(name, model)`` of each source's ``_s2d`` and ``_x1d``, calwebb_spec3 style.

    Parameters
    ----------
    product : str
        Product stem (see `product_name`); ``{source_id}`` and ``{slit_name}``
        are filled in as calwebb_spec3 does, else the source field is appended.
    s2d : MultiSlitModel
        Rectified slits.
    x1d : MultiSpecModel
        Spectra.

    Yields
    ------
    name : str
        File name without extension.
    model : DataModel
        ``MultiSlitModel`` with one slit, or ``MultiSpecModel`` with one spectrum.
    """
    spectra = {(spec.name, spec.source_id): spec for spec in x1d.spec}
    for slit in s2d.slits:
        stem = _source_stem(product, slit)
        yield f"{stem}_s2d", _one_of(datamodels.MultiSlitModel, s2d, "slits", slit)
        spec = spectra.get((slit.name, slit.source_id))
        if spec is not None:
            yield f"{stem}_x1d", _one_of(datamodels.MultiSpecModel, x1d, "spec", spec)


def _one_of(model_class, whole, key, item):
    """A product holding one item of ``whole`` and its metadata.

    Written to the tree (validated when saved): ``update`` and a validated
    append cost 0.1 s per source, more than saving the file.
    """
    one = model_class()
    one.instance["meta"] = copy.deepcopy(whole.instance["meta"])
    one.instance[key] = [item.instance]
    return one
