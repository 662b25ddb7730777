"""Slits of a visit: grouping by source, stacking on a common grid, nod differences.

Groups the slits of a visit by source, aligns cutouts by ``xstart``/``ystart``,
turns MIRI LRS images (dispersion along detector y) into the kernels' axis order
``(n_spatial, n_dispersion)``, evaluates the WCS for the predicted trace and the
shutter map, and writes nod differences back with their DQ flags.
"""

import logging
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np
from jwst.datamodels import ModelContainer
from stdatamodels.jwst import datamodels
from stdatamodels.jwst.datamodels import dqflags

from nodcombine.noddiff import VARIANCE_COMPONENTS

__all__ = [
    "DQ",
    "NIRSPEC_SHUTTER_PITCH",
    "REF_VARIANCE_ATTRS",
    "SlitRef",
    "SourceGroup",
    "SourceStack",
    "applied_pathloss",
    "check_member",
    "container_problem",
    "evaluated_once",
    "exposure_refs",
    "exposure_slits",
    "exposure_status",
    "group_by_source",
    "nod_offset",
    "outlier_pixels",
    "set_exposure_status",
    "set_slit_status",
    "slit_frame_y",
    "slits_of",
    "stack_source",
    "to_cutout",
    "to_grid",
    "write_array",
    "write_differences",
]

log = logging.getLogger(__name__)

DQ = dqflags.pixel

#: shutter pitch along the slit in NIRSpec ``slit_frame`` units (0.529″ / 0.46″)
NIRSPEC_SHUTTER_PITCH = 1.15

_KNOWN_DISPERSERS = {
    "NIRSPEC": {"PRISM", "G140M", "G235M", "G395M", "G140H", "G235H", "G395H"},
    "MIRI": {"P750L"},
}
_SLIT_EXP_TYPES = {"NRS_MSASPEC", "NRS_FIXEDSLIT", "MIR_LRS-FIXEDSLIT"}

#: extra arrays written on each ``_nod`` slit: variance of the subtracted reference
REF_VARIANCE_ATTRS = {c: f"nod_ref_{c}" for c in VARIANCE_COMPONENTS}


@dataclass
class SlitRef:
    """One slit of one exposure: where it lives and how to read it."""

    exposure: int
    model: object
    slit: object
    filename: str

    @property
    def label(self):
        """``file[slit]`` for messages."""
        return f"{self.filename}[slit {getattr(self.slit, 'name', None) or 'image'}]"


@dataclass
class SourceGroup:
    """The slits of all exposures that saw one source with one disperser."""

    key: tuple
    members: list = field(default_factory=list)

    @property
    def label(self):
        """Readable name: program, observation, disperser, slit and source."""
        return "/".join(str(k) for k in self.key[3:])


def _filename(model, index):
    return model.meta.filename or f"exposure {index}"


def exposure_refs(models):
    """One `SlitRef` per exposure (the model itself), for exposure-level metadata."""
    return [
        SlitRef(index, model, model, _filename(model, index)) for index, model in enumerate(models)
    ]


def outlier_pixels(slit):
    """Pixels ``nod_diff`` flagged as cross-exposure outliers (DQ ``OUTLIER``)."""
    return (np.asarray(slit.dq) & DQ["OUTLIER"]) > 0


def _disperser(model):
    instrument = (model.meta.instrument.name or "").upper()
    if instrument == "MIRI":
        return instrument, model.meta.instrument.filter
    return instrument, model.meta.instrument.grating


def exposure_slits(model, index):
    """The slits of one exposure and the reason if it cannot be used.

    Parameters
    ----------
    model : DataModel
        A ``MultiSlitModel``, ``SlitModel`` or (MIRI LRS) ``ImageModel``.
    index : int
        Position of the exposure in the input, for messages and bookkeeping.

    Returns
    -------
    slits : list of SlitRef
    problem : str or None
        Why the exposure is unusable, naming the file and field.
    """
    name = _filename(model, index)
    exp_type = model.meta.exposure.type
    if exp_type not in _SLIT_EXP_TYPES:
        return [], f"{name}: meta.exposure.type={exp_type!r} is not nodded slit data"
    instrument, disperser = _disperser(model)
    if disperser not in _KNOWN_DISPERSERS.get(instrument, ()):
        field_name = "filter" if instrument == "MIRI" else "grating"
        return [], f"{name}: unknown meta.instrument.{field_name}={disperser!r}"
    if isinstance(model, datamodels.MultiSlitModel):
        return [SlitRef(index, model, slit, name) for slit in model.slits], None
    if isinstance(model, (datamodels.SlitModel, datamodels.ImageModel)):
        return [SlitRef(index, model, model, name)], None
    return [], f"{name}: a {type(model).__name__} is not slit data"


def _source_key(ref):
    meta = ref.model.meta
    slit = ref.slit
    obs = meta.observation
    slit_name = getattr(slit, "name", None) or "LRS"
    source = getattr(slit, "source_id", None)
    if source is None:
        source = meta.target.catalog_name or meta.target.proposer_name or 0
    return (
        obs.program_number,
        obs.observation_number,
        obs.visit_number,
        meta.instrument.detector,
        "-".join(str(d) for d in _disperser(ref.model)),
        slit_name,
        source,
    )


def group_by_source(models):
    """Group the slits of a visit by source.

    The key is (program, observation, visit, detector, disperser, slit name,
    source id), so one source seen by two dispersers forms two groups.

    Parameters
    ----------
    models : sequence of DataModel
        The exposures.

    Returns
    -------
    groups : list of SourceGroup
        In order of first appearance.
    problems : dict of int to str
        Exposures that could not be used (by position in ``models``), with the reason.
    """
    groups, problems = {}, {}
    for index, model in enumerate(models):
        slits, problem = exposure_slits(model, index)
        if problem:
            problems[index] = problem
        for ref in slits:
            key = _source_key(ref)
            groups.setdefault(key, SourceGroup(key)).members.append(ref)
    return list(groups.values()), problems


def nod_offset(ref, position_key):
    """The quantity that identifies an exposure's nod position.

    Parameters
    ----------
    ref : SlitRef
        The slit.
    position_key : {"auto", "position_number", "shutter_state", "x_offset", "y_offset"}
        Which metadata to use; ``auto`` takes the dither offset (arcsec) along
        the slit: ``y_offset`` for NIRSpec, ``x_offset`` for MIRI LRS.

    Returns
    -------
    float or str
    """
    dither = ref.model.meta.dither
    if position_key == "auto":
        position_key = "x_offset" if ref.model.meta.instrument.name == "MIRI" else "y_offset"
    if position_key == "shutter_state":
        value = getattr(ref.slit, "shutter_state", None)
    else:
        value = getattr(dither, position_key, None)
    if value is None:
        field_name = (
            "shutter_state" if position_key == "shutter_state" else f"meta.dither.{position_key}"
        )
        raise ValueError(f"{ref.label}: {field_name} is missing; cannot identify the nod position")
    return value


@dataclass(frozen=True)
class SourceStack:
    """Arrays of one source's exposures on a common grid, kernel orientation.

    ``window`` gives each member's cutout within the grid as
    ``(row0, col0, n_rows, n_cols)`` in kernel orientation; ``wavelengths`` the
    wavelength (micron) of each member's columns on the grid, NaN off its cutout.
    """

    members: list
    data: np.ndarray
    variances: dict
    dq: np.ndarray
    barshadow: np.ndarray | None
    trace_rows: np.ndarray | None
    wavelengths: np.ndarray
    shutter_index: np.ndarray | None
    windows: list
    transposed: bool


def _origin(ref):
    """1-based detector origin (xstart, ystart) of a slit or image."""
    if ref.slit is ref.model and isinstance(ref.model, datamodels.ImageModel):
        sub = ref.model.meta.subarray
        return (sub.xstart or 1), (sub.ystart or 1)
    return (ref.slit.xstart or 1), (ref.slit.ystart or 1)


def _check_array(ref, name):
    array = getattr(ref.slit, name, None)
    if array is None or np.size(array) == 0 or array.shape != ref.slit.data.shape:
        raise ValueError(f"{ref.label}: array {name!r} is missing or has the wrong shape")


def _check_slit(ref):
    """Raise ValueError naming the slit and field if it cannot be differenced."""
    data = getattr(ref.slit, "data", None)
    if data is None or data.ndim != 2 or data.size == 0:
        raise ValueError(f"{ref.label}: no 2-D 'data' array")
    if not np.isfinite(data).any():
        raise ValueError(f"{ref.label}: 'data' is all NaN")
    if ref.slit.meta.wcs is None:
        raise ValueError(f"{ref.label}: no WCS (meta.wcs); run assign_wcs/extract_2d first")
    for name in VARIANCE_COMPONENTS:
        _check_array(ref, name)


def _dispersion_is_vertical(ref):
    wcsinfo = getattr(ref.model.meta, "wcsinfo", None)
    return getattr(wcsinfo, "dispersion_direction", None) == 2


def _column_wavelength_um(ref, axis):
    """Wavelength of each dispersion pixel of the cutout, micron (NaN if unknown)."""
    wave = getattr(ref.slit, "wavelength", None)
    if wave is None or wave.shape != ref.slit.data.shape or not np.isfinite(wave).any():
        ny, nx = ref.slit.data.shape
        yy, xx = np.mgrid[:ny, :nx]
        wave = np.asarray(ref.slit.meta.wcs(xx, yy)[-1], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns off the slit
        return np.nanmedian(np.asarray(wave, dtype=float), axis=axis)


def _wavelength_along(ref, vertical, trace, fallback):
    """Wavelength at the source's position in each dispersion pixel, micron.

    Lines of equal wavelength are tilted on the detector, so a nod along the
    slit also moves the source in wavelength by a fraction of a pixel (0.6 px
    for one NIRSpec shutter): the wavelength at the trace row, not the column
    median, is what lines up the exposures.
    """
    wave = getattr(ref.slit, "wavelength", None)
    if trace is None or wave is None or wave.shape != ref.slit.data.shape:
        return fallback
    wave = np.asarray(wave, dtype=float)
    wave = wave.T if vertical else wave  # (along slit, dispersion)
    at_trace = _interp_columns(wave, trace)
    return np.where(np.isfinite(at_trace), at_trace, fallback)


def _interp_columns(image, rows):
    """``image[rows[x], x]`` interpolated linearly along each column; NaN outside.

    Per column as `numpy.interp` with ``left=right=NaN``, for all columns at once.
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


#: WCS evaluations per slit WCS object, dropped with it.  nod_diff, trace_fit and
#: rectify evaluate the same maps of the same slits; with the full NIRSpec
#: transform chain one evaluation costs ~20 ms.
_WCS_EVALUATIONS = weakref.WeakKeyDictionary()


def evaluated_once(ref, key, compute):
    """``compute()`` for this slit's WCS and ``key``, evaluated once and kept read-only.

    ``key`` must hold everything besides the WCS that the result depends on.
    """
    cache = _WCS_EVALUATIONS.setdefault(ref.slit.meta.wcs, {})
    if key not in cache:
        value = compute()
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
        cache[key] = value
    return cache[key]


def _predicted_trace(ref, vertical, wave_um):
    """Source position along the slit per dispersion pixel, cutout coordinates.

    NIRSpec: ``slit_frame -> detector`` at the planned (source_xpos, source_ypos);
    MIRI LRS: ``world -> detector`` at the target's RA/Dec.  ``wave_um`` is the
    wavelength of each dispersion pixel.
    """
    wcs = ref.slit.meta.wcs
    n_disp = ref.slit.data.shape[0 if vertical else 1]
    ok = np.isfinite(wave_um)
    if "slit_frame" in wcs.available_frames:
        xpos = getattr(ref.slit, "source_xpos", None) or 0.0
        ypos = getattr(ref.slit, "source_ypos", None) or 0.0
        key = ("slit_frame->detector", xpos, ypos, wave_um.tobytes())
        to_detector = wcs.get_transform("slit_frame", "detector")
        x, y = evaluated_once(
            ref,
            key,
            lambda: np.array(
                to_detector(np.full(ok.sum(), xpos), np.full(ok.sum(), ypos), wave_um[ok] * 1e-6)
            ),
        )
    else:
        target = ref.model.meta.target
        ra = getattr(ref.slit, "source_ra", None) or target.ra
        dec = getattr(ref.slit, "source_dec", None) or target.dec
        if ra is None or dec is None:
            return None
        key = ("world->detector", ra, dec, wave_um.tobytes())
        x, y = evaluated_once(
            ref,
            key,
            lambda: np.array(
                wcs.backward_transform(np.full(ok.sum(), ra), np.full(ok.sum(), dec), wave_um[ok])
            ),
        )
    along, disp = (np.asarray(x), np.asarray(y)) if vertical else (np.asarray(y), np.asarray(x))
    good = np.isfinite(along) & np.isfinite(disp)
    if good.sum() < 2:
        return None
    order = np.argsort(disp[good])
    return np.interp(np.arange(n_disp), disp[good][order], along[good][order])


def _shutter_map(ref):
    """Index of the MSA shutter (position in ``shutter_state``) of each pixel; -1 elsewhere."""
    state = getattr(ref.slit, "shutter_state", None)
    wcs = ref.slit.meta.wcs
    if not state or "x" not in state or "slit_frame" not in wcs.available_frames:
        return None
    with np.errstate(invalid="ignore"):
        index = np.rint(slit_frame_y(ref) / NIRSPEC_SHUTTER_PITCH) + state.index("x")
    index = np.where(np.isfinite(index), index, -1).astype(int)
    index[(index < 0) | (index >= len(state))] = -1
    return index


@dataclass(frozen=True)
class _Grid:
    """The union of a source's cutouts, and how to place arrays on it."""

    origins: list
    shapes: list
    x0: int
    y0: int
    nx: int
    ny: int
    vertical: bool

    @classmethod
    def of(cls, members):
        origins = [_origin(ref) for ref in members]
        shapes = [ref.slit.data.shape for ref in members]
        x0 = min(o[0] for o in origins)
        y0 = min(o[1] for o in origins)
        nx = max(o[0] + s[1] for o, s in zip(origins, shapes, strict=True)) - x0
        ny = max(o[1] + s[0] for o, s in zip(origins, shapes, strict=True)) - y0
        return cls(origins, shapes, x0, y0, nx, ny, _dispersion_is_vertical(members[0]))

    def place(self, arrays, fill, dtype):
        """Stack per-member cutout arrays on the grid, kernel orientation."""
        shape = (
            (len(arrays), self.nx, self.ny) if self.vertical else (len(arrays), self.ny, self.nx)
        )
        windows = [self.window(k) for k in range(len(arrays))]
        return _place(arrays, windows, shape, self.vertical, fill, dtype)

    def window(self, k):
        """``(row0, col0, n_rows, n_cols)`` of member ``k`` in kernel orientation."""
        (xs, ys), (h, w) = self.origins[k], self.shapes[k]
        if self.vertical:
            return xs - self.x0, ys - self.y0, w, h
        return ys - self.y0, xs - self.x0, h, w


def stack_source(members, *, with_shutters=False):
    """Put one source's exposures on a common grid in kernel orientation.

    Parameters
    ----------
    members : list of SlitRef
        Checked slits of one source (see `check_member`).
    with_shutters : bool, optional
        Also evaluate the MSA shutter map (for stuck-closed detection).

    Returns
    -------
    SourceStack
    """
    grid = _Grid.of(members)
    vertical = grid.vertical
    n = len(members)
    # the light outside the slit is corrected for at extraction, from the fitted
    # profile; jwst's own correction is taken out first
    undo = [applied_pathloss(ref) for ref in members]
    data = grid.place(
        [_times(ref.slit.data, f) for ref, f in zip(members, undo, strict=True)], np.nan, float
    )
    variances = {
        c: grid.place(
            [_times(getattr(r.slit, c), f, 2) for r, f in zip(members, undo, strict=True)],
            np.nan,
            float,
        )
        for c in VARIANCE_COMPONENTS
    }
    dq = grid.place(
        [np.asarray(r.slit.dq, dtype=np.uint32) for r in members], DQ["DO_NOT_USE"], np.uint32
    )
    bars = [getattr(r.slit, "barshadow", None) for r in members]
    have_bars = all(
        b is not None and b.shape == r.slit.data.shape for b, r in zip(bars, members, strict=True)
    )
    barshadow = grid.place(bars, np.nan, float) if have_bars else None

    windows, traces = [], []
    wavelengths = np.full((n, data.shape[2]), np.nan)
    for k, ref in enumerate(members):
        row0, col0, n_rows, n_cols = grid.window(k)
        windows.append((row0, col0, n_rows, n_cols))
        wave_um = _column_wavelength_um(ref, axis=1 if vertical else 0)
        trace = _predicted_trace(ref, vertical, wave_um)
        wavelengths[k, col0 : col0 + n_cols] = _wavelength_along(ref, vertical, trace, wave_um)
        if trace is not None:
            cols = np.arange(data.shape[2]) - col0
            traces.append(np.interp(cols, np.arange(n_cols), trace) + row0)
    trace_rows = np.stack(traces) if len(traces) == n else None

    shutter_index = None
    if with_shutters and not vertical:
        maps = [_shutter_map(r) for r in members]
        if all(m is not None for m in maps):
            shutter_index = grid.place(maps, -1, int)
    return SourceStack(
        members,
        data,
        variances,
        dq,
        barshadow,
        trace_rows,
        wavelengths,
        shutter_index,
        windows,
        vertical,
    )


def applied_pathloss(ref):
    """The factor that takes jwst's path-loss correction out of a ``_cal`` slit, or None.

    jwst's ``pathloss`` step divides NIRSpec data by ``pathloss_point``
    (point sources) or ``pathloss_uniform`` and the variances by its square,
    recording which in ``pathloss_correction_type``; MIRI LRS data it
    multiplies by ``pathloss_point``.  The factor returned multiplies the data
    (its square, the variances) back.  A NIRSpec slit jwst left alone (no
    correction type, no array) and a slit ``nod_diff`` wrote (differences of
    data already restored) give None.

    Parameters
    ----------
    ref : SlitRef

    Returns
    -------
    numpy.ndarray or None

    Raises
    ------
    ValueError
        Naming the slit and field, if the correction recorded is missing.
    """
    step = (ref.model.meta.instance.get("cal_step") or {}).get("pathloss")
    if step != "COMPLETE" or ref.slit.instance.get("nod_diff_status") == "COMPLETE":
        return None
    miri = str(ref.model.meta.instance.get("instrument", {}).get("name", "")).upper() == "MIRI"
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
        raise ValueError(
            f"{ref.label}: meta.cal_step.pathloss is COMPLETE but {name!r} is missing; "
            "cannot take jwst's path-loss correction out"
        )
    values = np.asarray(values, dtype=float)
    correction = np.where(np.isfinite(values) & (values > 0), values, 1.0)
    return 1.0 / correction if miri else correction


def _times(values, factor, power=1):
    values = np.asarray(values, dtype=float)
    return values if factor is None else values * factor**power


def check_member(ref):
    """Return None if the slit can be differenced, else the reason (file, slit, field)."""
    try:
        _check_slit(ref)
        applied_pathloss(ref)
    except ValueError as err:
        return str(err)
    return None


def write_differences(stack, result, *, mask_flags, positions):
    """Write nod differences into each member slit, on its own cutout.

    Parameters
    ----------
    stack : SourceStack
        The grid the result was computed on.
    result : NodDiffResult
        Kernel output.
    mask_flags : numpy.ndarray of uint32, shape of ``stack.data``
        DQ bits for pixels removed by masks (failed-open, stuck, bar, edge).
    positions : sequence of int
        Nod position label of each member, as identified from all exposures.
    """
    flags = mask_flags.copy()
    flags[result.outliers] |= DQ["OUTLIER"] | DQ["DO_NOT_USE"]
    flags[~result.valid] |= DQ["DO_NOT_USE"]
    for k, ref in enumerate(stack.members):

        def back(grid, dtype=np.float32, k=k):
            return to_cutout(stack, grid, k, dtype)

        slit = ref.slit
        write_array(slit, "data", back(result.data))
        total = np.zeros(slit.data.shape, dtype=np.float32)
        for c in VARIANCE_COMPONENTS:
            var = back(result.variances[c])
            write_array(slit, c, var)
            # not in the SlitModel schema: stored in the ASDF extension on save
            slit.instance[REF_VARIANCE_ATTRS[c]] = back(result.ref_variances[c])
            total = total + var
        write_array(slit, "err", np.sqrt(total))
        write_array(slit, "dq", np.asarray(slit.dq, dtype=np.uint32) | back(flags, np.uint32))
        slit.instance["nod_position"] = int(positions[k])
        set_slit_status(ref, "COMPLETE")


def _place(arrays, windows, shape, vertical, fill, dtype):
    """Cutout arrays (slit orientation) into their windows of a kernel-orientation grid."""
    grid = np.full(shape, fill, dtype=dtype)
    for k, (arr, (row0, col0, n_rows, n_cols)) in enumerate(zip(arrays, windows, strict=True)):
        grid[k, row0 : row0 + n_rows, col0 : col0 + n_cols] = arr.T if vertical else arr
    return grid


def to_grid(stack, arrays, fill=np.nan, dtype=float):
    """Per-member cutout arrays on the stack's grid, kernel orientation (see `to_cutout`)."""
    return _place(arrays, stack.windows, stack.data.shape, stack.transposed, fill, dtype)


def slit_frame_y(ref):
    """``detector -> slit_frame`` y of every pixel of a NIRSpec slit (read-only, as stored)."""
    ny, nx = ref.slit.data.shape

    def evaluate():
        yy, xx = np.mgrid[:ny, :nx]
        transform = ref.slit.meta.wcs.get_transform("detector", "slit_frame")
        return np.asarray(transform(xx, yy)[1], dtype=float)

    return evaluated_once(ref, ("detector->slit_frame y", ny, nx), evaluate)


def to_cutout(stack, grid, k, dtype=np.float32):
    """Member ``k``'s cutout of a grid array, in the slit's own orientation.

    Parameters
    ----------
    stack : SourceStack
        The grid's layout.
    grid : numpy.ndarray, shape (n_exp, ny, nx)
        Array on the common grid, kernel orientation.
    k : int
        Member index.
    dtype : numpy.dtype, optional
        Output type.

    Returns
    -------
    numpy.ndarray
        Shaped like the member's ``data``.
    """
    row0, col0, n_rows, n_cols = stack.windows[k]
    arr = grid[k, row0 : row0 + n_rows, col0 : col0 + n_cols]
    return np.ascontiguousarray(arr.T if stack.transposed else arr).astype(dtype)


def slits_of(model):
    """The slits of an exposure (the model itself for a single slit or image)."""
    return model.slits if isinstance(model, datamodels.MultiSlitModel) else [model]


def set_exposure_status(model, status):
    """Set ``nod_diff_status`` on every slit of an exposure (see `set_slit_status`)."""
    for slit in slits_of(model):
        slit.instance["nod_diff_status"] = status


def exposure_status(model):
    """``COMPLETE`` if at least one slit of the exposure was differenced, else ``SKIPPED``."""
    statuses = [slit.instance.get("nod_diff_status") for slit in slits_of(model)]
    return "COMPLETE" if "COMPLETE" in statuses else "SKIPPED"


def set_slit_status(ref, status):
    """Record on one slit whether it holds a nod difference (``nod_diff_status``).

    ``meta.cal_step.nod_diff`` speaks for a whole exposure; a slit that could not be
    differenced keeps its input data and says so here, for the later steps.
    """
    ref.slit.instance["nod_diff_status"] = status


def write_array(node, name, values):
    """Set a schema array, in place when shape and dtype allow.

    Assigning a new array to a datamodel attribute re-validates it against the
    schema, which costs ~15 ms an array (schema files are re-read); writing into
    the existing buffer does not.
    """
    current = getattr(node, name, None)
    if isinstance(current, np.ndarray) and current.shape == values.shape:
        current[...] = values.astype(current.dtype, copy=False)
    elif current is None:
        # a new array: validated when the model is saved
        node.instance[name] = values
    else:
        setattr(node, name, values)


def container_problem(container):
    """Why an input cannot be nod differenced at all, or None.

    Parameters
    ----------
    container : ModelContainer or DataModel
        What the step opened.

    Returns
    -------
    str or None
    """
    if not isinstance(container, ModelContainer):
        name = getattr(container.meta, "filename", None) or type(container).__name__
        return f"{name}: a single exposure; nod differencing needs an association of exposures"
    asn_type = (getattr(container, "asn_table", None) or {}).get("asn_type")
    if asn_type not in (None, "spec3", "spec2"):
        return f"association has asn_type={asn_type!r}, not a spec3 association"
    if len(container) < 2:
        return f"{len(container)} exposure(s); nod differencing needs at least two"
    return None
