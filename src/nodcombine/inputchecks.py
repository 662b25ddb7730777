"""Checks a visit's ``_cal`` exposures pass before any step uses them.

One home for what the record of an exposure says was done to it and whether
the chain can use it: the association's members (`check_visit`), the
background state (`check_background_state`: a nod background already
subtracted is refused), each slit's arrays, WCS and path-loss state
(`check_members`, which confines a bad slit to itself) and, for extraction,
whether the slits are rectified at all (`check_rectified`).
"""

import logging
from dataclasses import dataclass

import numpy as np
from jwst.datamodels import ModelContainer

from nodcombine.contract import COMPLETE
from nodcombine.cutouts import cutout_origin
from nodcombine.errors import InputError, RefusedError
from nodcombine.pathloss import undo_jwst_factor
from nodcombine.variances import VARIANCE_COMPONENTS

__all__ = [
    "Members",
    "check_background_state",
    "check_members",
    "check_rectified",
    "check_visit",
    "partners_missing",
]

log = logging.getLogger(__name__)

#: ``meta.wcsinfo.dispersion_direction`` of each instrument's slit spectra
_DISPERSION_DIRECTION = {"NIRSPEC": 1, "MIRI": 2}

#: |source_ypos| beyond which a NIRSpec source is outside its shutter (slit_frame
#: units: the shutter spans -0.5 to 0.5; a little margin for the MSA's rounding)
_MAX_SOURCE_YPOS = 0.55


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
    # "None": what jwst's asn_from_list writes by default
    asn_type = (getattr(container, "asn_table", None) or {}).get("asn_type")
    if asn_type not in (None, "None", "spec3", "spec2"):
        raise InputError("association", "asn_type", f"is {asn_type!r}, not a spec3 association")
    if len(container) < 2:
        raise InputError(
            "association", "members", f"hold {len(container)} exposure(s); need at least two"
        )


def check_background_state(container):
    """Refuse exposures whose nod background was already subtracted.

    ``calwebb_spec2``'s defaults subtract the other nod positions
    (``bkg_subtract``); differenced again, every flux would come out 1.5×
    (3-point) or 2× (2-point) with no other sign.  A ``master_background``
    that was applied subtracted a sky model, not the source's other images:
    the nod difference removes what it left, so it is only logged.

    Parameters
    ----------
    container : ModelContainer

    Raises
    ------
    RefusedError
        Naming the first such file, with the remedy.
    """
    for index, model in enumerate(container):
        steps = model.meta.instance.get("cal_step") or {}
        name = model.meta.filename or f"exposure {index}"
        if COMPLETE in (steps.get("rectify"), steps.get("optimal_extract_1d")):
            continue  # an _s2d or _x1d among the _cal files: skipped by name per exposure
        if steps.get("bkg_subtract") == COMPLETE:
            raise RefusedError(
                name,
                "meta.cal_step.bkg_subtract",
                "is COMPLETE: the nod background was already subtracted; rerun calwebb_spec2 "
                "with --steps.bkg_subtract.skip=true (or strun calwebb_spec2_nod)",
            )
        if steps.get("nod_diff") == COMPLETE:
            raise RefusedError(
                name, "meta.cal_step.nod_diff", "is COMPLETE: a _nod product; give the _cal files"
            )
        if steps.get("master_background") == COMPLETE:
            log.info("%s: master_background was applied; the nod difference removes its rest", name)


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
    refs, positions, factors = _consistent_pathloss(refs, positions, factors, skipped_refs)
    refs, positions, factors = _consistent_origins(refs, positions, factors, skipped_refs)
    return Members(refs, np.asarray(positions, dtype=int), factors, skipped_refs)


def _consistent_origins(refs, positions, factors, skipped_refs):
    """Leave out slits whose cutout origin disagrees with the shift their WCS starts with.

    The exposures are put on one grid by ``xstart``/``ystart``; jwst's slit WCS
    starts from the same origin (``Shift(xstart - 1) & Shift(ystart - 1)``).
    Origin minus WCS shift is one constant for every slit of a source (0 for
    jwst's files); a slit off the majority's constant by a pixel or more would be
    differenced against the wrong pixels of the others (a 3-column error
    changed a flux by 2 % without a word).
    """
    offsets = [_origin_minus_wcs_shift(ref) for ref in refs]
    known = [o for o in offsets if o is not None]
    if len(known) < 2:
        return refs, positions, factors
    reference = np.median(np.array(known), axis=0)

    def disagreement(ref, offset):
        # with two slits the median is their mean: one pixel apart, both are left out
        if offset is None or np.max(np.abs(np.subtract(offset, reference))) < 0.5:
            return None
        x, y = cutout_origin(ref)
        shift = np.subtract(offset, reference).round(1).tolist()
        problem = f"({x}, {y}) disagree with the origin its WCS starts from by {shift} pixels"
        return ref.error("xstart/ystart", problem)

    errors = [disagreement(ref, offset) for ref, offset in zip(refs, offsets, strict=True)]
    return _leave_out(refs, positions, factors, errors, skipped_refs)


def _leave_out(refs, positions, factors, errors, skipped_refs):
    """The members whose error is None; the others go to ``skipped_refs`` with theirs."""
    kept = ([], [], [])
    for ref, position, factor, error in zip(refs, positions, factors, errors, strict=True):
        if error is not None:
            skipped_refs.append((ref, error))
            continue
        for values, value in zip(kept, (ref, position, factor), strict=True):
            values.append(value)
    return kept


def _origin_minus_wcs_shift(ref):
    """``(xstart - 1, ystart - 1)`` minus the WCS's first shifts; None if it starts otherwise."""
    wcs = (ref.slit.meta.instance or {}).get("wcs")
    try:
        first = wcs.get_transform(wcs.available_frames[0], wcs.available_frames[1])
        shifts = (first[0], first[1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if not all(type(s).__name__ == "Shift" for s in shifts):
        return None
    x, y = cutout_origin(ref)
    return (x - 1 - float(shifts[0].offset.value), y - 1 - float(shifts[1].offset.value))


def partners_missing(label, err, skipped):
    """The `InputError` of a source left with fewer than two nod positions, and why.

    Parameters
    ----------
    label : str
        The source.
    err : ValueError
        What `~nodcombine.nod_diff.noddiff.check_partners` found.
    skipped : list of (SlitRef, InputError)
        The slits left out; the first one's reason is quoted.
    """
    why = f" (left out: {skipped[0][1]}" + (
        f", and {len(skipped) - 1} more)" if len(skipped) > 1 else ")"
    )
    return InputError(label, "nod positions", f"{err}{why if skipped else ''}")


def _consistent_pathloss(refs, positions, factors, skipped_refs):
    """Leave out members without jwst's path-loss arrays when the others have them.

    jwst records no array on a slit it did not correct; if one exposure of a
    source lacks it while the others carry it, the exposures were calibrated
    differently and differencing them would mix corrected and uncorrected
    light (the flux of a real visit came out 97 % low).
    """
    if all(f is None for f in factors) or all(f is not None for f in factors):
        return refs, positions, factors
    problem = (
        "is missing while meta.cal_step.pathloss is COMPLETE and the other "
        "exposures of this source carry it"
    )
    errors = [
        ref.error("pathloss_point", problem)
        if factor is None and _pathloss_state(ref) == COMPLETE
        else None
        for ref, factor in zip(refs, factors, strict=True)
    ]
    return _leave_out(refs, positions, factors, errors, skipped_refs)


def _pathloss_state(ref):
    return (ref.model.meta.instance.get("cal_step") or {}).get("pathloss")


def _check_array(ref, name):
    array = getattr(ref.slit, name, None)
    if array is None or np.size(array) == 0 or array.shape != ref.slit.data.shape:
        raise ref.error(name, "is missing or has the wrong shape")
    if np.any(array < 0):  # NaN compares false: those pixels are masked later
        raise ref.error(name, f"has negative values (min {np.nanmin(array):g})")
    if name == "var_rnoise" and not np.any(array > 0):
        # every weight and every error of the rectified image would be infinite
        raise ref.error(name, "is zero everywhere; the detector noise is not recorded")


def _check_dispersion_direction(ref):
    """The exposure's recorded dispersion direction must be its instrument's.

    The cutouts of a source are stacked in the orientation its first slit
    records; a NIRSpec exposure saying 2 (along y) stacked every exposure of
    the visit sideways.
    """
    wcsinfo = ref.model.meta.instance.get("wcsinfo") or {}
    recorded = wcsinfo.get("dispersion_direction")
    expected = _DISPERSION_DIRECTION.get(ref.instrument)
    if recorded is not None and expected is not None and recorded != expected:
        axis = "x (1)" if expected == 1 else "y (2)"
        raise ref.error(
            "meta.wcsinfo.dispersion_direction",
            f"is {recorded}, but {ref.instrument} disperses along {axis}",
        )


def _check_planned_position(ref):
    """A NIRSpec source planned outside its own shutter (or slit) is not where we look."""
    ypos = getattr(ref.slit, "source_ypos", None) if ref.instrument == "NIRSPEC" else None
    if ypos is not None and np.isfinite(ypos) and abs(ypos) > _MAX_SOURCE_YPOS:
        raise ref.error(
            "source_ypos",
            f"is {ypos:g}: the planned position is outside its shutter (|y| <= 0.5)",
        )


def _check_slit(ref):
    """Raise `InputError` naming the slit and field if it cannot be differenced."""
    data = getattr(ref.slit, "data", None)
    if data is None or data.ndim != 2 or data.size == 0:
        raise ref.error("data", "is not a 2-D array")
    finite = np.isfinite(data)
    if not finite.any():
        raise ref.error("data", "is all NaN")
    low, high = np.min(data[finite]), np.max(data[finite])
    if low == high:  # no sky, no noise: not an exposure (an all-zero SCI gave FLUX 0)
        raise ref.error("data", f"is constant ({low:g} in every pixel); not a sky exposure")
    # read from the tree: the attribute of a slit without one raised
    if (ref.slit.meta.instance or {}).get("wcs") is None:
        raise ref.error("meta.wcs", "is missing; run assign_wcs/extract_2d first")
    for name in VARIANCE_COMPONENTS:
        _check_array(ref, name)
    _check_planned_position(ref)
    _check_dispersion_direction(ref)


def _jwst_pathloss_undo(ref):
    """The factor that takes jwst's path-loss correction out of a ``_cal`` slit, or None.

    The light outside the slit is corrected for at extraction, from the fitted
    profile, so jwst's own correction (``meta.cal_step.pathloss``) comes out
    first.  ``pathloss_correction_type`` says which array jwst used; a NIRSpec
    slit jwst left alone (no type, no array) is read as it is.
    """
    if _pathloss_state(ref) != COMPLETE:
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


#: ``meta.cal_step`` entries of the steps that make a rectified ``_s2d``
_RECTIFYING_STEPS = ("rectify", "resample", "resample_spec")


def check_rectified(model):
    """Refuse a ``calwebb_spec2`` ``_cal`` product: its slits are not rectified.

    Extracted as it is, a ``_cal`` gives a spectrum with the sky in it (twice
    the flux of a nodded source) from curved, unrectified rows.

    Raises
    ------
    InputError
        Naming the file and ``meta.cal_step``, if ``extract_2d`` ran and no
        rectifying step did.
    """
    steps = model.meta.instance.get("cal_step") or {}
    if steps.get("extract_2d") == "COMPLETE" and not any(
        steps.get(name) == "COMPLETE" for name in _RECTIFYING_STEPS
    ):
        raise InputError(
            model.meta.filename or type(model).__name__,
            "meta.cal_step",
            "shows an unrectified _cal (extract_2d, no rectify or resample_spec); "
            "run the nodcombine pipeline, or nod_diff, trace_fit and rectify, first",
        )
