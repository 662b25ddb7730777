"""``_trace`` products in, ``_s2d`` slits out: the adapter of the rectification.

Reads what `nodcombine.rectify.rectify` needs from the fitted slits of one
source: the differences with their variances and the variance of the shared
reference, every pixel's wavelength, its distance along the slit from the fitted
trace (the WCS along-slit coordinate of the trace fit minus the fitted centre)
and its unit source profile.  Writes one rectified ``SlitModel`` per source:

``data``, ``err``, ``var_poisson``, ``var_rnoise``, ``var_flat``
    Weighted mean of the bin's pixels and its exact variance.
``dq``
    ``DO_NOT_USE | NON_SCIENCE`` in bins no pixel reached.
``wht``
    Sum of the pixel weights of the bin.
``wavelength``
    The bin centre of each column, repeated on every row (jwst reads it).
``rectified_profile`` (ASDF extension)
    Fraction of the source's flux in each bin (positive image only).
``rectify`` (dict, ASDF extension)
    Grid and weighting: ``wavelength_grid_um`` (the 1-D grid), ``offset0_pix``
    (offset of row 0 from the trace), ``nod_separation_pix``, ``weight_type``,
    ``linear_grid``, the trace-fit record and the members.
``meta.wcs``
    ``(x, y) -> (ra, dec, wavelength)``: the source position and the grid.
"""

import copy
from dataclasses import dataclass

import numpy as np
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling import models as am
from gwcs import WCS
from gwcs import coordinate_frames as cf
from stdatamodels.jwst import datamodels

from nodcombine.models.modelio import new_entry
from nodcombine.models.slits import DQ, REF_VARIANCE_ATTRS, to_grid
from nodcombine.models.trace import (
    FITTED_STATUSES,
    TRACE_FIT_KEY,
    extension_array,
    trace_fit_status,
    trace_inputs,
)
from nodcombine.noddiff import VARIANCE_COMPONENTS
from nodcombine.profile import pixel_fraction

__all__ = [
    "PROFILE_KEY",
    "RECTIFY_KEY",
    "RectifyInputs",
    "new_multislit",
    "rectified_slit",
    "rectified_wcs",
    "rectify_inputs",
    "trace_fit_problem",
]

#: slit entry holding the rectified unit profile
PROFILE_KEY = "rectified_profile"
#: slit entry holding the grid and weighting of the rectification
RECTIFY_KEY = "rectify"

_NATIVE_GRID_DISPERSERS = {"PRISM", "P750L"}


@dataclass(frozen=True)
class RectifyInputs:
    """One source's pixels, ready for `nodcombine.rectify.rectify`.

    Attributes
    ----------
    arrays : dict
        Keyword arguments of `rectify` except the weights and grid: ``data``,
        ``variances``, ``ref_variances``, ``wavelength``, ``offset``,
        ``profile``, ``positions``.
    trace_wavelengths : numpy.ndarray, shape (n_exp, nx)
        Wavelength at the trace of each exposure's columns (for the grid).
    exposure_time : numpy.ndarray, shape (n_exp,)
        Effective exposure time of each member, s.
    nod_separation : float
        Smallest distance between the source images of two nod positions, pixels.
    linear : bool
        Whether the disperser gets a linear wavelength grid.
    members : list of SlitRef
        The slits read.
    record : dict
        The source's ``trace_fit`` entry.
    pixel_scale : float
        Arcsec per pixel along the slit.
    half_height : int
        Half the cross-dispersion extent of the grid: the largest offset of a
        usable pixel from the trace, rounded up.
    """

    arrays: dict
    trace_wavelengths: np.ndarray
    exposure_time: np.ndarray
    nod_separation: float
    linear: bool
    members: list
    record: dict
    pixel_scale: float
    half_height: int


def rectify_inputs(members):
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
    ValueError
        Naming the file, slit and field, if a slit lacks what is needed.
    """
    record = _trace_record(members)
    inputs = trace_inputs(members)
    stack = inputs.stack
    centre = _columns_on_grid(stack, [_fit_array(r, "trace_fit_centre", stack) for r in members])
    sigma = _columns_on_grid(stack, [_fit_array(r, "trace_fit_sigma", stack) for r in members])
    centre_along = _centre_along(stack, inputs.along, centre)
    offset = inputs.along - centre_along[:, None, :]
    profile = pixel_fraction(inputs.along, centre_along[:, None, :], sigma[:, None, :])
    ref_variances = {
        c: to_grid(stack, [extension_array(r, REF_VARIANCE_ATTRS[c]) for r in members])
        for c in VARIANCE_COMPONENTS
    }
    wavelength = to_grid(stack, [_pixel_wavelength(r) for r in members])
    usable = inputs.usable
    data = np.where(usable, stack.data, np.nan)
    grating = _disperser(members[0])
    return RectifyInputs(
        arrays={
            "data": data,
            "variances": stack.variances,
            "ref_variances": ref_variances,
            "wavelength": wavelength,
            "offset": offset,
            "profile": profile,
            "positions": inputs.positions,
        },
        trace_wavelengths=stack.wavelengths,
        exposure_time=np.array([_exposure_time(r) for r in members]),
        nod_separation=_nod_separation(stack.trace_rows, inputs.positions),
        linear=grating not in _NATIVE_GRID_DISPERSERS,
        members=members,
        record=record,
        pixel_scale=float(np.median(inputs.pixel_scale)),
        half_height=_half_height(offset, np.isfinite(data)),
    )


def _half_height(offset, usable):
    extent = np.abs(offset[usable & np.isfinite(offset)])
    if extent.size == 0:
        raise ValueError("no usable pixel with a known position along the slit")
    return int(np.ceil(extent.max()))


def _trace_record(members):
    record = members[0].slit.instance.get(TRACE_FIT_KEY) or {}
    status = record.get("status")
    if status not in FITTED_STATUSES:
        raise ValueError(f"{members[0].label}: trace_fit status is {status!r}; run trace_fit first")
    return dict(record)


def _fit_array(ref, name, stack):
    values = ref.slit.instance.get(name)
    n_disp = ref.slit.data.shape[0 if stack.transposed else 1]
    if values is None or np.shape(values) != (n_disp,):
        raise ValueError(f"{ref.label}: {name!r} is missing or has the wrong shape")
    return np.asarray(values, dtype=float)


def _columns_on_grid(stack, arrays):
    """Per-member arrays along the dispersion pixels, on the grid's columns."""
    out = np.full((len(arrays), stack.data.shape[2]), np.nan)
    for k, values in enumerate(arrays):
        _, col0, _, n_cols = stack.windows[k]
        out[k, col0 : col0 + n_cols] = values
    return out


def _centre_along(stack, along, centre_rows):
    """Fitted centre in along-slit pixels per member and column.

    ``trace_fit_centre`` holds the centre as a row of the member's cutout; the
    along-slit coordinate of that row is interpolated in the column.
    """
    centre = np.full(centre_rows.shape, np.nan)
    for k in range(along.shape[0]):
        row0 = stack.windows[k][0]
        for x in np.flatnonzero(np.isfinite(centre_rows[k])):
            column = along[k, :, x]
            good = np.isfinite(column)
            if good.sum() >= 2:
                rows = np.flatnonzero(good)
                centre[k, x] = np.interp(centre_rows[k, x] + row0, rows, column[good])
    return centre


def _pixel_wavelength(ref):
    wave = getattr(ref.slit, "wavelength", None)
    if wave is not None and wave.shape == ref.slit.data.shape and np.isfinite(wave).any():
        return np.asarray(wave, dtype=float)
    ny, nx = ref.slit.data.shape
    yy, xx = np.mgrid[:ny, :nx]
    return np.asarray(ref.slit.meta.wcs(xx, yy)[-1], dtype=float)


def _exposure_time(ref):
    exposure = ref.model.meta.exposure
    return float(exposure.effective_exposure_time or exposure.exposure_time or 1.0)


def _disperser(ref):
    instrument = ref.model.meta.instrument
    return instrument.filter if (instrument.name or "").upper() == "MIRI" else instrument.grating


def _nod_separation(trace_rows, positions):
    """Smallest median distance between the predicted traces of two nod positions."""
    separations = [
        np.nanmedian(np.abs(trace_rows[j] - trace_rows[k]))
        for j in range(len(positions))
        for k in range(j)
        if positions[j] != positions[k]
    ]
    return float(min(separations)) if separations else np.inf


def trace_fit_problem(container):
    """Why a container cannot be rectified, or None."""
    if all(trace_fit_status(model) != "COMPLETE" for model in container):
        names = ", ".join(m.meta.filename or f"exposure {i}" for i, m in enumerate(container))
        return f"no slit has a trace fit in {names}; run trace_fit first (rectify needs _trace)"
    return None


def new_multislit(container):
    """An empty ``MultiSlitModel`` with the first exposure's metadata."""
    output = datamodels.MultiSlitModel()
    output.update(container[0])
    return output


def _source_fields(ref):
    """Identity and planned position of the source, from one member slit."""
    slit = ref.slit
    names = (
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
    fields = {name: getattr(slit, name, None) for name in names}
    if slit is ref.model:  # a SlitModel or MIRI ImageModel: use the target
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
    first = inputs.members[0]
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
    node[PROFILE_KEY] = image.profile.astype(np.float32)
    node[RECTIFY_KEY] = {
        "wavelength_grid_um": [float(w) for w in image.wavelength],
        "offset0_pix": float(image.offset[0]),
        "nod_separation_pix": float(inputs.nod_separation),
        "pixel_scale_arcsec": inputs.pixel_scale,
        "weight_type": weight_type,
        "linear_grid": bool(inputs.linear),
        "members": [ref.label for ref in inputs.members],
    }
    node[TRACE_FIT_KEY] = inputs.record
    node["meta"] = _slit_meta(first, image, source)
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
    meta["wcsinfo"] = {"dispersion_direction": 1}
    area = _first_meta(first, ("photometry", "pixelarea_steradians"))
    if area:
        meta.setdefault("photometry", {})["pixelarea_steradians"] = float(area)
    meta["wcs"] = rectified_wcs(image.wavelength, source["source_ra"], source["source_dec"])
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


def rectified_wcs(wave_grid, ra, dec):
    """``(x, y) -> (ra, dec, wavelength)`` of a rectified slit.

    Wavelength is the bin centre of column ``x`` (a lookup table); RA and Dec are
    the source's for every pixel (the slit is one source wide).
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
    return WCS([(detector, transform), (world, None)])
