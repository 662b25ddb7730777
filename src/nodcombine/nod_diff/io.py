"""``_cal`` exposures in, nod differences out: the adapter of ``nod_diff``.

`read_source` turns the slits of one source into the kernels' arrays (on a
common grid, jwst's path-loss correction taken out, the WCS maps evaluated
once); `write_source` puts the differences back on each slit with their DQ
flags and the `~nodcombine.contract.NodSlitRecord` and
`~nodcombine.contract.SlitGeometry` the later steps read.
"""

import logging
from dataclasses import dataclass

import numpy as np

from nodcombine.contract import COMPLETE, SKIPPED, NodSlitRecord, skipped
from nodcombine.cutouts import DQ, SourceStack, stack_source
from nodcombine.errors import InputError
from nodcombine.modelio import write_array
from nodcombine.nod_diff.consistency import presubtracted_signature
from nodcombine.nod_diff.masks import MaskSettings
from nodcombine.slitwcs import SlitWcs
from nodcombine.variances import VARIANCE_COMPONENTS
from nodcombine.visit import exposure_refs, slits_of

log = logging.getLogger(__name__)

__all__ = [
    "NodDiffInputs",
    "exposure_positions",
    "exposure_status",
    "log_source",
    "mask_settings",
    "outlier_pixels",
    "read_positions",
    "read_source",
    "refuse_presubtracted",
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


def read_source(members, *, with_shutters):
    """Read one source's usable slits for differencing.

    Parameters
    ----------
    members : Members
        From `~nodcombine.inputchecks.check_members`, with two nod positions or more.
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
        "error_scale_uncertainty": float(error_scale.uncertainty[k]),
        "error_scale_applied": float(error_scale.applied[k]),
    }


def refuse_presubtracted(label, inputs):
    """Raise `InputError` if the source's exposures hold the other positions' negative images.

    The data's own record of a nod background already subtracted, for files
    whose ``bkg_subtract`` flag says otherwise (`presubtracted_signature`).
    """
    if inputs.trace_rows is None:
        return
    error = np.sqrt(sum(inputs.stack.variances[c] for c in VARIANCE_COMPONENTS))
    signature = presubtracted_signature(
        inputs.stack.data, error, inputs.trace_rows, inputs.positions
    )
    if signature.presubtracted:
        ratios = ", ".join(f"{r:+.2f}" for r in signature.ratio)
        raise InputError(
            label,
            "data",
            f"already holds negative nod images (level at the other positions' traces over "
            f"its own: {ratios}); the nod background was subtracted: rerun calwebb_spec2 "
            "with --steps.bkg_subtract.skip=true",
        )


def log_source(label, inputs, result, scale, stuck):
    """Log what was done to one source: error scales, stuck shutters, outliers."""
    for ref, line in zip(inputs.stack.members, scale.describe(), strict=True):
        log.info("%s: %s", ref.label, line)
    for shutter in stuck:
        log.info("%s: shutter %d of the slitlet is stuck closed", label, shutter)
    log.info(
        "%s: %d exposures at %d nod positions, %d outlier pixels",
        label,
        len(inputs.stack.members),
        len(set(inputs.positions.tolist())),
        result.outliers.sum(),
    )


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
