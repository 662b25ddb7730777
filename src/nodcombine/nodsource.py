"""One source's nod differences as the steps after ``nod_diff`` read them.

``trace_fit`` and ``rectify`` both start from the ``_nod`` slits of a source:
the differences on a common grid, each exposure's own variance (the variance
of its difference minus that of the reference it shares with the other
exposures of its position), and the WCS maps ``nod_diff`` evaluated.  They
read them from the `~nodcombine.contract.NodSlitRecord` and
`~nodcombine.contract.SlitGeometry` of each slit; nothing is evaluated again.
"""

from dataclasses import dataclass

import numpy as np

from nodcombine.contract import NodSlitRecord, SlitGeometry
from nodcombine.cutouts import DQ, SourceStack, stack_source

__all__ = ["NodSource", "differenced_members", "read_nod_source"]


@dataclass(frozen=True)
class NodSource:
    """The differenced slits of one source on a common grid (kernel orientation).

    Attributes
    ----------
    stack : SourceStack
        The differences, their variances and DQ.
    positions : numpy.ndarray of int, shape (n_exp,)
        Nod position of each member, as ``nod_diff`` labelled it.
    ref_variances : dict of str to numpy.ndarray
        Variance of the reference subtracted from each member, per component.
    own_variance : numpy.ndarray, shape (n_exp, ny, nx)
        Variance of each exposure alone (difference minus reference).
    valid : numpy.ndarray of bool
        The differences ``nod_diff`` formed (finite data).
    usable : numpy.ndarray of bool
        Those a fit may use: not ``DO_NOT_USE``, with a positive own variance.
    along : numpy.ndarray, shape (n_exp, ny, nx)
        Pixels along the slit from the predicted source position; NaN off the
        member's cutout.
    wavelengths : numpy.ndarray, shape (n_exp, nx)
        Wavelength at each member's trace per grid column, micron.
    trace_rows : numpy.ndarray, shape (n_exp, nx)
        Predicted source row of each member per grid column.
    pixel_scale : numpy.ndarray, shape (n_exp,)
        Arcsec per pixel along the slit at the source.
    nod_separation : float
        Smallest distance between the images of two nod positions, pixels.
    """

    stack: SourceStack
    positions: np.ndarray
    ref_variances: dict
    own_variance: np.ndarray
    valid: np.ndarray
    usable: np.ndarray
    along: np.ndarray
    wavelengths: np.ndarray
    trace_rows: np.ndarray
    pixel_scale: np.ndarray
    nod_separation: float

    @property
    def members(self):
        """The slits, in the order of the first axis."""
        return self.stack.members

    @property
    def instrument(self):
        """``meta.instrument.name`` of the source's exposures."""
        return self.members[0].instrument


def differenced_members(group):
    """Split a source group into differenced slits and (slit, `InputError`) for the rest.

    A slit ``nod_diff`` skipped, or whose every difference is masked, entered
    no other exposure's reference, so leaving it out keeps a fit exact.
    """
    members, skipped = [], []
    for ref in group.members:
        status = NodSlitRecord.from_tree(ref.slit.instance).status
        data = getattr(ref.slit, "data", None)
        if status != "COMPLETE":
            skipped.append(
                (ref, ref.error(NodSlitRecord.STATUS_KEY, f"is {status!r}, not a difference"))
            )
        elif data is None or not np.isfinite(data).any():
            skipped.append((ref, ref.error("data", "has no valid difference (every pixel masked)")))
        else:
            members.append(ref)
    return members, skipped


def _records(ref):
    """The slit's nod record and geometry, checked."""
    record = NodSlitRecord.from_tree(ref.slit.instance)
    if record.position is None:
        raise ref.error(NodSlitRecord.POSITION_KEY, "is missing; not a nod_diff product")
    keys = NodSlitRecord.REF_VARIANCE_KEYS
    if record.ref_variances is None:
        raise ref.error(", ".join(keys.values()), "are missing; not a nod_diff product")
    for c, values in record.ref_variances.items():
        if values.shape != ref.slit.data.shape:
            raise ref.error(keys[c], "has the wrong shape")
    geometry = SlitGeometry.from_tree(ref.slit.instance)
    if geometry is None:
        raise ref.error(SlitGeometry.KEY, "is missing; run nod_diff (this version) first")
    if geometry.trace is None or geometry.along is None:
        raise ref.error(SlitGeometry.KEY, "has no predicted trace: the WCS gave none")
    if not np.isfinite(geometry.pixel_scale):
        raise ref.error(SlitGeometry.KEY, "has no pixel scale: the WCS gives no sky position")
    return record, geometry


def read_nod_source(members):
    """Read one source's differenced slits.

    Parameters
    ----------
    members : list of SlitRef
        The differenced slits of one source (see `differenced_members`).

    Returns
    -------
    NodSource

    Raises
    ------
    InputError
        Naming the file, slit and field, if a slit lacks what is needed.
    """
    if not members:
        raise ValueError("no differenced slit")
    records, geometries = zip(*(_records(ref) for ref in members), strict=True)
    stack = stack_source(members)
    ref_variances = {c: stack.place([r.ref_variances[c] for r in records]) for c in stack.variances}
    own = sum(stack.variances.values()) - sum(ref_variances.values())
    # nod_diff wrote NaN wherever it formed no difference
    valid = np.isfinite(stack.data)
    with np.errstate(invalid="ignore"):
        usable = valid & ((stack.dq & DQ["DO_NOT_USE"]) == 0) & np.isfinite(own) & (own > 0)
    return NodSource(
        stack=stack,
        positions=np.array([r.position for r in records]),
        ref_variances=ref_variances,
        own_variance=own,
        valid=valid,
        usable=usable,
        along=stack.place([g.along for g in geometries]),
        wavelengths=stack.place_columns([g.wavelength for g in geometries]),
        trace_rows=stack.place_traces([g.trace for g in geometries]),
        pixel_scale=np.array([g.pixel_scale for g in geometries]),
        nod_separation=min(r.nod_separation for r in records),
    )
