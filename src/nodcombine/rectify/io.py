"""``_trace`` products in, ``_s2d`` slits out: the adapter of ``rectify``.

`read_source` gives `~nodcombine.rectify.nearest_bin.rectify` one source's
differences with their variances and the variance of the shared reference,
every pixel's wavelength, its distance along the slit from the fitted centre
(the along-slit coordinate ``nod_diff`` recorded minus the centre ``trace_fit``
recorded, both in the same coordinate) and its unit source profile.
`rectified_slit` builds one ``_s2d`` slit per source:

``data``, ``err``, ``var_poisson``, ``var_rnoise``, ``var_flat``
    Weighted mean of the bin's pixels and its exact variance.
``dq``
    ``DO_NOT_USE | NON_SCIENCE`` in bins no pixel reached.
``wht``
    Sum of the pixel weights of the bin.
``wavelength``
    The bin centre of each column, repeated on every row (jwst reads it).
`~nodcombine.contract.RectifyRecord`
    The grid, the rectified unit profile and the source's width per bin.
``meta.wcs``
    ``(x, y) -> (ra, dec, wavelength)``: the source position and the grid.
"""

import copy
from dataclasses import dataclass

import numpy as np
from stdatamodels.jwst import datamodels

from nodcombine.contract import COMPLETE, RectifyRecord, TraceFitRecord, TraceProfile
from nodcombine.cutouts import DQ
from nodcombine.errors import InputError
from nodcombine.modelio import new_entry, product_history
from nodcombine.nodsource import NodSource, read_nod_source
from nodcombine.profile import source_pixel_fraction
from nodcombine.rectify.nearest_bin import (
    columns_on_grid,
    difference_profile,
    in_slit_fraction,
)
from nodcombine.slitwcs import fits_wcsinfo, rectified_wcs
from nodcombine.variances import VARIANCE_COMPONENTS

__all__ = [
    "RectifyInputs",
    "append_slits",
    "check_image",
    "check_visit",
    "new_multislit",
    "product_history",
    "read_source",
    "rectified_slit",
    "rectified_wcs",
]

_NATIVE_GRID_DISPERSERS = {"PRISM", "P750L"}


@dataclass(frozen=True)
class RectifyInputs:
    """One source's pixels, ready for `~nodcombine.rectify.nearest_bin.rectify`.

    Attributes
    ----------
    source : NodSource
        The differences and what ``nod_diff`` recorded.
    record : TraceFitRecord
        The source's fit.
    wavelength : numpy.ndarray, shape (n_exp, ny, nx)
        Wavelength of every pixel, micron.
    offset : numpy.ndarray, shape (n_exp, ny, nx)
        Pixels along the slit from the fitted centre.
    profile : numpy.ndarray, shape (n_exp, ny, nx)
        Fraction of the source's flux in each pixel of each nod difference
        (positive image minus the negative images that fall there).
    data : numpy.ndarray, shape (n_exp, ny, nx)
        The differences, NaN where not usable.
    exposure_time : numpy.ndarray, shape (n_exp,)
        Effective exposure time of each member, s.
    linear : bool
        Whether the disperser gets a linear wavelength grid.
    half_height : int
        Half the cross-dispersion extent of the grid: the largest offset of a
        usable pixel from the trace, rounded up.
    sigma_arcsec : numpy.ndarray, shape (n_exp, nx)
        Fitted total width of the source image per exposure and grid column.
    in_slit : numpy.ndarray, shape (n_exp, nx)
        Fraction of each exposure's source image on the illuminated slit.
    """

    source: NodSource
    record: TraceFitRecord
    wavelength: np.ndarray
    offset: np.ndarray
    profile: np.ndarray
    data: np.ndarray
    exposure_time: np.ndarray
    linear: bool
    half_height: int
    sigma_arcsec: np.ndarray
    in_slit: np.ndarray

    @property
    def pixel_scale(self):
        """Arcsec per pixel along the slit (median over the members)."""
        return float(np.median(self.source.pixel_scale))

    def arrays(self):
        """Keyword arguments of ``rectify`` except the weights and grid."""
        return {
            "data": self.data,
            "variances": self.source.stack.variances,
            "ref_variances": self.source.ref_variances,
            "wavelength": self.wavelength,
            "offset": self.offset,
            "profile": self.profile,
            "positions": self.source.positions,
        }


def check_visit(models):
    """Raise `InputError` unless some slit of the input has a trace fit."""
    for model in models:
        if getattr(model.meta.cal_step, "trace_fit", None) == COMPLETE:
            return
    names = ", ".join(m.meta.filename or f"exposure {i}" for i, m in enumerate(models))
    raise InputError(
        names,
        "meta.cal_step.trace_fit",
        "is not COMPLETE; run trace_fit first (rectify needs _trace)",
    )


def read_source(members):
    """Read one source's fitted slits for the rectification.

    Parameters
    ----------
    members : list of SlitRef
        The differenced slits of one source with a trace fit.

    Returns
    -------
    RectifyInputs

    Raises
    ------
    InputError
        Naming the file, slit and field, if a slit lacks what is needed.
    """
    record = _trace_record(members[0]) if members else None
    source = read_nod_source(members)
    stack = source.stack
    profiles = [_trace_profile(ref, stack.transposed) for ref in members]
    centre = stack.place_columns([p.centre_along for p in profiles])[:, None, :]
    sigma = stack.place_columns([p.sigma for p in profiles])[:, None, :]
    offset = source.along - centre
    data = np.where(source.usable, stack.data, np.nan)
    wavelength = stack.place([_pixel_wavelength(ref) for ref in members])
    # each exposure's own image; the illuminated slit is where jwst gives the
    # pixels a wavelength (assign_wcs leaves those off the slit NaN)
    positive = source_pixel_fraction(source.along, centre, sigma, record.halo)
    return RectifyInputs(
        source=source,
        record=record,
        wavelength=wavelength,
        offset=offset,
        profile=difference_profile(positive, source.valid, source.positions),
        data=data,
        exposure_time=np.array([_exposure_time(ref) for ref in members]),
        linear=members[0].disperser not in _NATIVE_GRID_DISPERSERS,
        half_height=_half_height(offset, np.isfinite(data)),
        sigma_arcsec=sigma[:, 0, :] * source.pixel_scale[:, None],
        in_slit=in_slit_fraction(positive, np.isfinite(wavelength)),
    )


def check_image(label, image):
    """Refuse a rectified image without one finite bin (never an all-NaN ``_s2d``)."""
    if not np.isfinite(image.data).any():
        raise InputError(label, "data", "gives no rectified bin with a value")


def _half_height(offset, usable):
    extent = np.abs(offset[usable & np.isfinite(offset)])
    if extent.size == 0:
        raise ValueError("no usable pixel with a known position along the slit")
    return int(np.ceil(extent.max()))


def _trace_record(ref):
    record = TraceFitRecord.from_tree(ref.slit.instance)
    if record is None or not record.fitted:
        status = None if record is None else record.status
        raise ref.error(TraceFitRecord.KEY, f"status is {status!r}; run trace_fit first")
    return record


def _trace_profile(ref, vertical):
    profile = TraceProfile.from_tree(ref.slit.instance)
    n_disp = ref.slit.data.shape[0 if vertical else 1]
    if profile is None or profile.centre_along.shape != (n_disp,):
        raise ref.error(TraceProfile.CENTRE_ALONG_KEY, "is missing or has the wrong shape")
    return profile


def _pixel_wavelength(ref):
    wave = getattr(ref.slit, "wavelength", None)
    if wave is None or wave.shape != ref.slit.data.shape or not np.isfinite(wave).any():
        raise ref.error("wavelength", "is missing; run nod_diff (it records it) first")
    return np.asarray(wave, dtype=float)


def _exposure_time(ref):
    exposure = ref.model.meta.exposure
    return float(exposure.effective_exposure_time or exposure.exposure_time or 1.0)


def append_slits(output, slits):
    """Add the rectified slits (not None) to an ``_s2d`` product.

    Appended to the tree, not through the model: validating the growing list
    at each append costs 0.1 s per source; the product is validated once,
    when saved.
    """
    output.instance.setdefault("slits", []).extend(s.instance for s in slits if s is not None)


def new_multislit(models):
    """An empty ``MultiSlitModel`` with the first exposure's metadata and the visit's history."""
    output = datamodels.MultiSlitModel()
    output.update(models[0])
    cal_step, times = product_history(models)
    output.meta.instance["cal_step"] = cal_step
    output.meta.instance.setdefault("exposure", {}).update(times)
    return output


_SOURCE_FIELDS = (
    "name",
    "source_id",
    "source_name",
    "source_alias",
    "slitlet_id",
    "source_ra",
    "source_dec",
    "source_xpos",
    "source_ypos",
    "source_type",
    "shutter_state",
    "stellarity",
)


def _source_fields(ref):
    """Identity and planned position of the source, from one member slit."""
    fields = {name: getattr(ref.slit, name, None) for name in _SOURCE_FIELDS}
    if ref.slit is ref.model:  # a SlitModel or MIRI ImageModel: use the target
        target = ref.model.meta.target
        fields["source_ra"] = fields["source_ra"] or target.ra
        fields["source_dec"] = fields["source_dec"] or target.dec
        fields["name"] = fields["name"] or ref.model.meta.aperture.name
    return fields


def rectified_slit(inputs, image, *, weight_type):
    """Build the ``_s2d`` slit of one source.

    The slit's tree is written directly: validating every assignment cost
    0.2 s per source, 40 times the rectification itself, and a new
    ``SlitModel`` 9 ms.  The product is validated once, when it is saved.

    Parameters
    ----------
    inputs : RectifyInputs
    image : RectifiedImage
    weight_type : str
        How the pixels were weighted.

    Returns
    -------
    stdatamodels.properties.ObjectNode
        One entry of a ``MultiSlitModel``'s ``slits``.
    """
    n_off, n_wave = image.data.shape
    dq = np.zeros((n_off, n_wave), dtype=np.uint32)
    dq[image.empty] = DQ["DO_NOT_USE"] | DQ["NON_SCIENCE"]
    first = inputs.source.members[0]
    source = _source_fields(first)
    slit = new_entry(datamodels.MultiSlitModel, "slits")
    node = slit.instance
    node.update({key: value for key, value in source.items() if value is not None})
    node.update(
        data=image.data.astype(np.float32),
        err=np.sqrt(image.variance).astype(np.float32),
        dq=dq,
        wht=image.weight.astype(np.float32),
        wavelength=np.broadcast_to(image.wavelength, (n_off, n_wave)).astype(np.float32),
        xstart=1,
        ystart=1,
        xsize=n_wave,
        ysize=n_off,
        **{c: image.variances[c].astype(np.float32) for c in VARIANCE_COMPONENTS},
    )
    record = RectifyRecord(
        wavelength_grid_um=image.wavelength,
        offset0_pix=float(image.offset[0]),
        nod_separation_pix=inputs.source.nod_separation,
        pixel_scale_arcsec=inputs.pixel_scale,
        sigma_arcsec=columns_on_grid(
            image.wavelength, inputs.source.wavelengths, inputs.sigma_arcsec
        ),
        in_slit_fraction=columns_on_grid(
            image.wavelength, inputs.source.wavelengths, inputs.in_slit
        ),
        halo=inputs.record.halo,
        weight_type=weight_type,
        linear_grid=inputs.linear,
        members=tuple(ref.label for ref in inputs.source.members),
        profile=image.profile,
    )
    node.update(record.to_tree())
    node.update(inputs.record.to_tree())
    node["meta"] = _slit_meta(first, image, source)
    # the source's own exposures: their steps, then its rectification; their total time
    exposures = {id(ref.model): ref.model for ref in inputs.source.members}.values()
    cal_step, times = product_history(exposures)
    node["meta"]["cal_step"] = {**cal_step, "rectify": COMPLETE}
    node["meta"].setdefault("exposure", {}).update(times)
    return slit


#: exposure metadata a rectified slit carries (what jwst's extract_1d reads from a slit)
_SLIT_META = (
    "instrument",
    "exposure",
    "observation",
    "program",
    "target",
    "aperture",
    "photometry",
    "subarray",
    "filename",
)


def _slit_meta(first, image, source):
    """The exposure's metadata for the slit, which now disperses along x.

    jwst's slits carry their exposure's metadata; its extract_1d reads the
    instrument and units from the slit.
    """
    # not the detector's wcsinfo (it would give the rectified image a wrong FITS WCS)
    exposure = first.model.meta.instance
    meta = copy.deepcopy({k: exposure[k] for k in _SLIT_META if k in exposure})
    unit = _first_meta(first, ("bunit_data",)) or "MJy/sr"
    meta.update(bunit_data=unit, bunit_err=unit)
    meta["wcsinfo"] = fits_wcsinfo(np.asarray(image.wavelength, float), float(image.offset[0]))
    area = _first_meta(first, ("photometry", "pixelarea_steradians"))
    if area:
        meta.setdefault("photometry", {})["pixelarea_steradians"] = float(area)
    meta["wcs"] = rectified_wcs(
        image.wavelength, source["source_ra"], source["source_dec"], n_offset=image.data.shape[0]
    )
    return meta


def _first_meta(ref, path):
    """A ``meta`` entry of the slit, else of its exposure, else None."""
    for node in (ref.slit, ref.model):
        value = node.meta.instance
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None
