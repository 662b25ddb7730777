"""``_cal`` exposures in, nod differences out: the adapter of ``nod_diff``.

`read_source` turns the slits of one source into the kernels' arrays (on a
common grid, jwst's path-loss correction taken out, the WCS maps evaluated
once); `write_source` puts the differences back on each slit with their DQ
flags and the `~nodcombine.contract.NodSlitRecord` and
`~nodcombine.contract.SlitGeometry` the later steps read.
"""

from dataclasses import dataclass

import numpy as np
from jwst.datamodels import ModelContainer

from nodcombine.contract import COMPLETE, SKIPPED, NodSlitRecord, skipped
from nodcombine.cutouts import DQ, SourceStack, stack_source
from nodcombine.errors import InputError
from nodcombine.modelio import write_array
from nodcombine.nod_diff.masks import MaskSettings
from nodcombine.pathloss import undo_jwst_factor
from nodcombine.slitwcs import SlitWcs
from nodcombine.variances import VARIANCE_COMPONENTS
from nodcombine.visit import exposure_refs, slits_of

__all__ = [
    "Members",
    "NodDiffInputs",
    "check_members",
    "check_visit",
    "exposure_positions",
    "exposure_status",
    "mask_settings",
    "outlier_pixels",
    "read_positions",
    "read_source",
    "skip_group",
    "write_skipped",
    "write_source",
]


@dataclass(frozen=True)
class NodDiffInputs:
    """The arrays of one source for `~nodcombine.nod_diff.noddiff.nod_difference`.

    Attributes
    ----------
    stack : SourceStack
        Data, variances and DQ of the usable slits on a common grid.
    positions : numpy.ndarray of int, shape (n_exp,)
        Nod position label of each member.
    barshadow : numpy.ndarray or None
        Bar-shadow throughput on the grid (None unless every member has one).
    shutter_index : numpy.ndarray of int or None
        MSA shutter of every pixel (None unless asked for and known).
    trace_rows : numpy.ndarray or None, shape (n_exp, nx)
        Predicted source row of each member per grid column.
    wavelengths : numpy.ndarray, shape (n_exp, nx)
        Wavelength at each member's trace per grid column, NaN off its cutout.
    geometries : list of SlitGeometry
        Each member's evaluated WCS maps, written back with the differences.
    pixel_wavelengths : list of numpy.ndarray or None
        Each member's wavelength per pixel where the WCS had to give it (no
        ``wavelength`` array), written back so that no later step evaluates it.
    """

    stack: SourceStack
    positions: np.ndarray
    barshadow: np.ndarray | None
    shutter_index: np.ndarray | None
    trace_rows: np.ndarray | None
    wavelengths: np.ndarray
    geometries: list
    pixel_wavelengths: list


def check_visit(container):
    """Raise `InputError` unless the input is a visit of two exposures or more.

    Parameters
    ----------
    container : ModelContainer or DataModel
        What the step opened.
    """
    if not isinstance(container, ModelContainer):
        name = getattr(container.meta, "filename", None) or type(container).__name__
        raise InputError(
            name, "input", "is a single exposure; nod differencing needs an association"
        )
    asn_type = (getattr(container, "asn_table", None) or {}).get("asn_type")
    if asn_type not in (None, "spec3", "spec2"):
        raise InputError("association", "asn_type", f"is {asn_type!r}, not a spec3 association")
    if len(container) < 2:
        raise InputError(
            "association", "members", f"hold {len(container)} exposure(s); need at least two"
        )


def mask_settings(**parameters):
    """`MaskSettings` with jwst's DQ bits and the step's mask parameters."""
    return MaskSettings(
        do_not_use=DQ["DO_NOT_USE"],
        failed_open=DQ["MSA_FAILED_OPEN"],
        other_bad=DQ["OTHER_BAD_PIXEL"],
        **parameters,
    )


def read_positions(refs, position_key):
    """The metadata value that identifies each slit's (or exposure's) nod position.

    Parameters
    ----------
    refs : list of SlitRef
    position_key : str
        ``auto`` takes the dither offset (arcsec) along the slit: ``y_offset``
        for NIRSpec, ``x_offset`` for MIRI LRS; ``shutter_state`` is a slit's.

    Returns
    -------
    list
        The value, or an `InputError` naming the missing field.
    """
    return [_position_value(ref, position_key) for ref in refs]


def exposure_positions(models, position_key):
    """`read_positions` of every exposure (None for ``shutter_state``, a slit's property).

    Dither offsets and position numbers belong to exposures: labelling them
    all at once keeps a position's label the same whichever slits are skipped.
    """
    if position_key == "shutter_state":
        return None
    return read_positions(exposure_refs(models), position_key)


def _position_value(ref, position_key):
    if position_key == "auto":
        position_key = "x_offset" if ref.instrument == "MIRI" else "y_offset"
    if position_key == "shutter_state":
        value, field_name = getattr(ref.slit, "shutter_state", None), "shutter_state"
    else:
        value = getattr(ref.model.meta.dither, position_key, None)
        field_name = f"meta.dither.{position_key}"
    if value is None:
        return ref.error(field_name, "is missing; cannot identify the nod position")
    return value


@dataclass(frozen=True)
class Members:
    """The slits of one source that can be differenced, and those that cannot.

    Attributes
    ----------
    refs : list of SlitRef
    positions : numpy.ndarray of int
        Nod position label of each of ``refs``.
    undo_pathloss : list of numpy.ndarray or None
        Per slit, the factor taking jwst's path-loss correction out.
    skipped : list of tuple of (SlitRef, InputError)
    """

    refs: list
    positions: np.ndarray
    undo_pathloss: list
    skipped: list


def check_members(members, labels):
    """Split one source's slits into those that can be differenced and the rest.

    Parameters
    ----------
    members : list of SlitRef
        The slits of one source.
    labels : list
        Nod position label of each member, or the `InputError` that it has none.

    Returns
    -------
    Members
    """
    refs, positions, factors, skipped_refs = [], [], [], []
    for ref, label in zip(members, labels, strict=True):
        try:
            if isinstance(label, Exception):
                raise label
            _check_slit(ref)
            factors.append(_jwst_pathloss_undo(ref))
        except InputError as err:
            skipped_refs.append((ref, err))
            continue
        refs.append(ref)
        positions.append(label)
    return Members(refs, np.asarray(positions, dtype=int), factors, skipped_refs)


def read_source(members, *, with_shutters):
    """Read one source's usable slits for differencing.

    Parameters
    ----------
    members : Members
        From `check_members`, with two nod positions or more.
    with_shutters : bool
        Also evaluate the MSA shutter map (for stuck-closed detection).

    Returns
    -------
    NodDiffInputs
    """
    stack = stack_source(members.refs, scale=members.undo_pathloss)
    maps = [SlitWcs(ref, stack.transposed) for ref in members.refs]
    geometries = [m.geometry() for m in maps]
    traces = [g.trace for g in geometries]
    trace_rows = stack.place_traces(traces) if all(t is not None for t in traces) else None
    return NodDiffInputs(
        stack=stack,
        positions=members.positions,
        barshadow=_barshadow(stack),
        shutter_index=_shutter_index(stack, maps) if with_shutters else None,
        trace_rows=trace_rows,
        wavelengths=stack.place_columns([g.wavelength for g in geometries]),
        geometries=geometries,
        pixel_wavelengths=[None if _has_wavelength(m.ref) else m.pixel_wavelength for m in maps],
    )


def _has_wavelength(ref):
    wave = getattr(ref.slit, "wavelength", None)
    return wave is not None and wave.shape == ref.slit.data.shape and np.isfinite(wave).any()


def _barshadow(stack):
    bars = [getattr(r.slit, "barshadow", None) for r in stack.members]
    shapes = [r.slit.data.shape for r in stack.members]
    if all(b is not None and b.shape == s for b, s in zip(bars, shapes, strict=True)):
        return stack.place(bars)
    return None


def _shutter_index(stack, maps):
    if stack.transposed:
        return None
    index = [m.shutter_map() for m in maps]
    return None if any(i is None for i in index) else stack.place(index, -1, int)


def _check_array(ref, name):
    array = getattr(ref.slit, name, None)
    if array is None or np.size(array) == 0 or array.shape != ref.slit.data.shape:
        raise ref.error(name, "is missing or has the wrong shape")


def _check_slit(ref):
    """Raise `InputError` naming the slit and field if it cannot be differenced."""
    data = getattr(ref.slit, "data", None)
    if data is None or data.ndim != 2 or data.size == 0:
        raise ref.error("data", "is not a 2-D array")
    if not np.isfinite(data).any():
        raise ref.error("data", "is all NaN")
    if ref.slit.meta.wcs is None:
        raise ref.error("meta.wcs", "is missing; run assign_wcs/extract_2d first")
    for name in VARIANCE_COMPONENTS:
        _check_array(ref, name)


def _jwst_pathloss_undo(ref):
    """The factor that takes jwst's path-loss correction out of a ``_cal`` slit, or None.

    The light outside the slit is corrected for at extraction, from the fitted
    profile, so jwst's own correction (``meta.cal_step.pathloss``) comes out
    first.  ``pathloss_correction_type`` says which array jwst used; a NIRSpec
    slit jwst left alone (no type, no array) is read as it is.
    """
    step = (ref.model.meta.instance.get("cal_step") or {}).get("pathloss")
    if step != COMPLETE:
        return None
    miri = ref.instrument == "MIRI"
    kind = str(ref.slit.instance.get("pathloss_correction_type") or "").upper()
    if miri:
        name = "pathloss_point"
    elif kind:
        name = "pathloss_point" if kind == "POINT" else "pathloss_uniform"
    elif not any(k in ref.slit.instance for k in ("pathloss_point", "pathloss_uniform")):
        return None  # jwst skipped this slit (source outside it, no model)
    else:
        source_type = str(getattr(ref.slit, "source_type", None) or "").upper()
        name = "pathloss_point" if source_type == "POINT" else "pathloss_uniform"
    values = ref.slit.instance.get(name)
    if values is None or np.shape(values) != ref.slit.data.shape:
        raise ref.error(
            name,
            "is missing while meta.cal_step.pathloss is COMPLETE; "
            "cannot take jwst's path-loss correction out",
        )
    return undo_jwst_factor(values, multiplied=miri)


def write_source(inputs, result, *, mask_flags, error_scale=None):
    """Write the nod differences into each member slit, on its own cutout.

    Parameters
    ----------
    inputs : NodDiffInputs
        What the kernel was given.
    result : NodDiffResult
        Its output.
    mask_flags : numpy.ndarray of uint32, shape of ``inputs.stack.data``
        DQ bits for pixels removed by masks (failed-open, stuck, bar, edge).
    error_scale : ErrorScale, optional
        Measured and applied error scale of each member, for its record.
    """
    stack = inputs.stack
    flags = mask_flags.copy()
    flags[result.outliers] |= DQ["OUTLIER"] | DQ["DO_NOT_USE"]
    flags[~result.valid] |= DQ["DO_NOT_USE"]
    for k, ref in enumerate(stack.members):
        slit = ref.slit
        write_array(slit, "data", stack.to_cutout(result.data, k))
        total = np.zeros(slit.data.shape, dtype=np.float32)
        for c in VARIANCE_COMPONENTS:
            var = stack.to_cutout(result.variances[c], k)
            write_array(slit, c, var)
            total = total + var
        write_array(slit, "err", np.sqrt(total))
        dq = np.asarray(slit.dq, dtype=np.uint32) | stack.to_cutout(flags, k, np.uint32)
        write_array(slit, "dq", dq)
        record = NodSlitRecord(
            status=COMPLETE,
            position=int(inputs.positions[k]),
            ref_variances={
                c: stack.to_cutout(result.ref_variances[c], k) for c in VARIANCE_COMPONENTS
            },
            nod_separation=result.nod_separation,
            **_error_scale_fields(error_scale, k),
        )
        if inputs.pixel_wavelengths[k] is not None:
            write_array(slit, "wavelength", inputs.pixel_wavelengths[k].astype(np.float32))
        # not in the SlitModel schema: kept in the ASDF extension on save
        slit.instance.update(record.to_tree())
        slit.instance.update(inputs.geometries[k].to_tree())


def _error_scale_fields(error_scale, k):
    """The `NodSlitRecord` fields of member ``k``'s error scale (none without one)."""
    if error_scale is None:
        return {}
    return {
        "error_scale_measured": float(error_scale.measured[k]),
        "error_scale_applied": float(error_scale.applied[k]),
    }


def write_skipped(slits, reason):
    """Record on slits that they hold no difference, and why (their data stay the input's).

    A slit that already says why it was skipped keeps its own reason.
    """
    for slit in slits:
        if NodSlitRecord.from_tree(slit.instance).status is None:
            slit.instance.update(NodSlitRecord(status=skipped(reason)).to_tree())


def skip_group(group, reason):
    """`write_skipped` on every slit of a source group that has no status yet."""
    write_skipped([ref.slit for ref in group.members], reason)


def exposure_status(model):
    """``COMPLETE`` if at least one slit of the exposure was differenced, else ``SKIPPED``."""
    for slit in slits_of(model):
        if NodSlitRecord.from_tree(slit.instance).differenced:
            return COMPLETE
    return SKIPPED


def outlier_pixels(slit):
    """Pixels ``nod_diff`` flagged as cross-exposure outliers (DQ ``OUTLIER``) on a slit."""
    return (np.asarray(slit.dq) & DQ["OUTLIER"]) > 0
