"""``_nod`` products in, fitted profiles out: the adapter of the trace fit.

Reads what `nodcombine.tracefit.fit_trace` needs from the slits of one source
(differences, the variance of each exposure alone, the along-slit coordinate of
every pixel from the WCS, the pixel scale and the nominal PSF width) and writes
the solution back on each slit:

``trace_model`` (TRACEMODEL)
    Model of the slit's nod difference in data units: the positive image and the
    negative images of the other nod positions, as jwst's ``trace_model`` holds a
    model of the data.
``trace_fit`` (dict, ASDF extension)
    Fit parameters and their errors (see `fit_record`).
``trace_fit_centre``, ``trace_fit_sigma`` (1-D, ASDF extension)
    Fitted source position along the slit in the slit's own pixel coordinates
    (row, or column for MIRI LRS) and total Gaussian width in pixels, per
    dispersion pixel.

The extension entries are not in the jwst schemas; stdatamodels keeps them in
the ASDF extension of the FITS file, so they survive save and open.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from nodcombine.models.slits import (
    DQ,
    REF_VARIANCE_ATTRS,
    SourceStack,
    check_member,
    evaluated_once,
    slit_frame_y,
    slits_of,
    stack_source,
    to_cutout,
    to_grid,
    write_array,
)
from nodcombine.noddiff import VARIANCE_COMPONENTS
from nodcombine.psf import FWHM_PER_SIGMA, psf_fwhm_arcsec
from nodcombine.tracemodel import rows_at

__all__ = [
    "FITTED_STATUSES",
    "TRACE_FIT_KEY",
    "TraceInputs",
    "extension_array",
    "fit_record",
    "group_families",
    "nod_diff_problem",
    "set_trace_skipped",
    "trace_fit_status",
    "trace_inputs",
    "usable_members",
    "write_trace_fit",
]

#: slit entry holding the fit parameters
TRACE_FIT_KEY = "trace_fit"

#: trace_fit statuses that leave a profile on the slit
FITTED_STATUSES = ("FIT", "FORCED", "FALLBACK")


@dataclass(frozen=True)
class TraceInputs:
    """The arrays of one source for `nodcombine.tracefit.fit_trace`.

    Attributes
    ----------
    stack : SourceStack
        The differences on the common grid (kernel orientation).
    positions : numpy.ndarray of int, shape (n_exp,)
        Nod position of each member, as ``nod_diff`` labelled it.
    variance : numpy.ndarray, shape (n_exp, ny, nx)
        Variance of each exposure alone (difference minus reference variance).
    valid : numpy.ndarray of bool, shape (n_exp, ny, nx)
        The differences ``nod_diff`` formed (finite data).
    usable : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Those the fit may use: not DO_NOT_USE, with a positive variance.
    along : numpy.ndarray, shape (n_exp, ny, nx)
        Pixels along the slit from the source position the WCS predicts in each
        exposure; NaN off the member's cutout.
    pixel_scale : numpy.ndarray, shape (n_exp,)
        Arcsec per pixel along the slit at the source.
    sigma_psf : numpy.ndarray, shape (n_exp, nx)
        Nominal point-source Gaussian width, pixels.
    instrument : str
        ``meta.instrument.name``.
    """

    stack: SourceStack
    positions: np.ndarray
    variance: np.ndarray
    valid: np.ndarray
    usable: np.ndarray
    along: np.ndarray
    pixel_scale: np.ndarray
    sigma_psf: np.ndarray
    instrument: str

    def fit_arguments(self):
        """Arrays and masks as keyword arguments of `nodcombine.tracefit.fit_trace`."""
        return {
            "data": self.stack.data,
            "variance": self.variance,
            "valid": self.valid,
            "positions": self.positions,
            "along": self.along,
            "wavelength": self.stack.wavelengths,
            "sigma_psf": self.sigma_psf,
            "usable": self.usable,
        }


def nod_diff_problem(container):
    """Why a container cannot be trace-fitted, or None.

    Parameters
    ----------
    container : ModelContainer or DataModel
        What the step opened.

    Returns
    -------
    str or None
    """
    models = container if hasattr(container, "__len__") else [container]
    undone = [
        model.meta.filename or f"exposure {i}"
        for i, model in enumerate(models)
        if getattr(model.meta.cal_step, "nod_diff", None) != "COMPLETE"
    ]
    if len(undone) == len(models):
        return (
            f"meta.cal_step.nod_diff is not COMPLETE in {', '.join(undone)}; "
            "run nod_diff first (trace_fit needs the _nod products)"
        )
    return None


def usable_members(group):
    """Split a source group into differenced slits and (slit, reason) for the rest.

    A slit ``nod_diff`` skipped, or whose every difference is masked, entered no
    other exposure's reference, so leaving it out keeps the fit exact.
    """
    members, skipped = [], []
    for ref in group.members:
        status = ref.slit.instance.get("nod_diff_status")
        data = getattr(ref.slit, "data", None)
        if status != "COMPLETE":
            skipped.append((ref, f"{ref.label}: nod_diff_status is {status!r}, not a difference"))
        elif data is None or not np.isfinite(data).any():
            skipped.append((ref, f"{ref.label}: no valid difference (every pixel masked)"))
        else:
            members.append(ref)
    return members, skipped


def group_families(groups):
    """Group sources seen by several dispersers (or detectors) into families.

    A family shares program, observation, visit, instrument and a real
    ``source_id`` (fixed slits also the slit: jwst numbers the primary source of
    every fixed-slit observation 1); the groups of a family are fitted together
    so that the best one can force its profile on the others.  Different
    pointings are never mixed: an offset from the planned position belongs to
    one pointing.

    Parameters
    ----------
    groups : list of SourceGroup

    Returns
    -------
    list of list of SourceGroup
    """
    families = {}
    for index, group in enumerate(groups):
        program, observation, visit, _, disperser, slit, source = group.key
        instrument = disperser.split("-")[0]
        real_id = isinstance(source, int | np.integer) and source > 0
        fixed_slit = group.members[0].model.meta.exposure.type == "NRS_FIXEDSLIT"
        key = (program, observation, visit, instrument, source, slit if fixed_slit else "")
        families.setdefault(key if real_id else ("group", index), []).append(group)
    return list(families.values())


def trace_inputs(members):
    """Read one source's differenced slits for the trace fit.

    Parameters
    ----------
    members : list of SlitRef
        The differenced slits of one source (see `usable_members`).

    Returns
    -------
    TraceInputs

    Raises
    ------
    ValueError
        Naming the file, slit and field, if a slit lacks what the fit needs.
    """
    if not members:
        raise ValueError("no differenced slit")
    for ref in members:
        problem = check_member(ref)
        if problem:
            raise ValueError(problem)
    stack = stack_source(members)
    if stack.trace_rows is None:
        raise ValueError(f"{members[0].label}: no predicted trace from the WCS")
    positions = np.array([_nod_position(ref) for ref in members])
    own = sum(stack.variances.values()) - sum(
        to_grid(stack, [extension_array(r, REF_VARIANCE_ATTRS[c]) for r in members])
        for c in VARIANCE_COMPONENTS
    )
    # nod_diff wrote NaN wherever it formed no difference
    valid = np.isfinite(stack.data)
    with np.errstate(invalid="ignore"):
        usable = valid & ((stack.dq & DQ["DO_NOT_USE"]) == 0) & np.isfinite(own) & (own > 0)
    along = np.full(stack.data.shape, np.nan)
    scales = np.empty(len(members))
    for k, ref in enumerate(members):
        row0, col0, n_rows, n_cols = stack.windows[k]
        trace = stack.trace_rows[k, col0 : col0 + n_cols] - row0
        along[k, row0 : row0 + n_rows, col0 : col0 + n_cols] = _along_slit(ref, stack, trace)
        scales[k] = _pixel_scale(ref, stack.transposed, trace)
    instrument = (members[0].model.meta.instrument.name or "").upper()
    fwhm = psf_fwhm_arcsec(instrument, stack.wavelengths)
    sigma_psf = fwhm / FWHM_PER_SIGMA / scales[:, None]
    return TraceInputs(stack, positions, own, valid, usable, along, scales, sigma_psf, instrument)


def _nod_position(ref):
    position = ref.slit.instance.get("nod_position")
    if position is None:
        raise ValueError(f"{ref.label}: no 'nod_position'; not a nod_diff product")
    return int(position)


def extension_array(ref, name):
    """A per-pixel ASDF-extension array of a slit (e.g. ``nod_ref_var_rnoise``), checked."""
    values = ref.slit.instance.get(name)
    if values is None or np.shape(values) != ref.slit.data.shape:
        raise ValueError(f"{ref.label}: {name!r} is missing or has the wrong shape")
    return np.asarray(values, dtype=float)


def _along_slit(ref, stack, trace):
    """Pixels along the slit from the predicted source position, kernel orientation.

    NIRSpec: ``detector -> slit_frame`` y of every pixel minus ``source_ypos``,
    divided by the slit-frame length of one pixel in that column.  MIRI LRS has
    no slit frame: pixel coordinates across the dispersion direction minus the
    predicted trace.
    """
    wcs = ref.slit.meta.wcs
    shape = ref.slit.data.shape
    if "slit_frame" not in wcs.available_frames:
        n_rows = shape[1] if stack.transposed else shape[0]
        return np.arange(n_rows, dtype=float)[:, None] - trace[None, :]
    y_slit = slit_frame_y(ref)
    if stack.transposed:
        y_slit = y_slit.T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns off the slit
        per_pixel = np.nanmedian(np.gradient(y_slit, axis=0), axis=0)
    ypos = getattr(ref.slit, "source_ypos", None) or 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return (y_slit - ypos) / per_pixel[None, :]


def _pixel_scale(ref, vertical, trace):
    """Arcsec on the sky between neighbouring pixels along the slit, at the source."""
    n_disp = trace.size
    cols = np.unique(np.linspace(0.2, 0.8, 15) * (n_disp - 1)).astype(int)
    cols = cols[np.isfinite(trace[cols])]
    along = trace[cols]
    if vertical:
        lo, hi = (along - 0.5, cols), (along + 0.5, cols)
    else:
        lo, hi = (cols, along - 0.5), (cols, along + 0.5)
    # both ends in one WCS call: its cost is mostly per call, not per point
    points = np.hstack([lo, hi])
    ra, dec = evaluated_once(
        ref,
        ("detector->world", points.tobytes()),
        lambda: np.array(ref.slit.meta.wcs(*points)[:2], dtype=float),
    )
    (ra0, ra1), (dec0, dec1) = np.split(ra, 2), np.split(dec, 2)
    separation = np.hypot((ra1 - ra0) * np.cos(np.deg2rad(dec0)), dec1 - dec0) * 3600.0
    separation = separation[np.isfinite(separation) & (separation > 0)]
    if separation.size == 0:
        raise ValueError(f"{ref.label}: the WCS gives no sky position along the slit")
    return float(np.median(separation))


def fit_record(solution, pixel_scale, forced_from=""):
    """The fit parameters of one source as a plain dict, for the ``trace_fit`` entry.

    Offsets are Legendre coefficients in pixels along the slit of the wavelength
    scaled to −1 … 1 over ``wave_range_um``; they add to the position the WCS
    predicts from ``source_ypos`` (MIRI LRS: the target's RA/Dec).  Errors are
    1σ; NaN where a quantity was not fitted.

    Parameters
    ----------
    solution : TraceSolution
    pixel_scale : float
        Arcsec per pixel along the slit.
    forced_from : str, optional
        Source group whose profile was forced.

    Returns
    -------
    dict
    """
    sigma = solution.source_sigma
    s2_err = solution.source_sigma2_err
    # one-sided step of sqrt(s2) by one error of s2: s2_err / 2σ for a resolved
    # source, sqrt(s2_err) for an unresolved one, continuous in between
    sigma_err = np.sqrt(max(solution.source_sigma2, 0.0) + s2_err) - sigma
    return {
        "status": solution.status,
        "message": solution.message,
        "snr": float(solution.snr),
        "snr_column": float(solution.snr_column),
        "degree": int(solution.degree),
        "width_free": bool(solution.width_free),
        "offset_coeffs_pix": [float(c) for c in solution.coeffs],
        "offset_coeffs_err_pix": [float(c) for c in solution.coeffs_err],
        "wave_range_um": [float(w) for w in solution.wave_range],
        "source_sigma2_pix2": float(solution.source_sigma2),
        "source_sigma2_err_pix2": float(s2_err),
        "source_sigma_pix": sigma,
        "source_sigma_err_pix": float(sigma_err),
        "source_sigma_arcsec": sigma * float(pixel_scale),
        "pixel_scale_arcsec": float(pixel_scale),
        "chi2": float(solution.chi2),
        "dof": int(solution.dof),
        "n_clipped": int(solution.clipped.sum()),
        "forced_from": forced_from,
    }


def write_trace_fit(inputs, solution, *, forced_from=""):
    """Write the trace model, fitted centre and width, and parameters on each slit.

    Parameters
    ----------
    inputs : TraceInputs
        What the fit was given.
    solution : TraceSolution
        The fit.
    forced_from : str, optional
        Label of the source group whose profile was forced on this one.
    """
    stack = inputs.stack
    for k, ref in enumerate(stack.members):
        slit = ref.slit
        write_array(slit, "trace_model", to_cutout(stack, solution.model, k))
        row0, col0, n_rows, n_cols = stack.windows[k]
        window = (slice(row0, row0 + n_rows), slice(col0, col0 + n_cols))
        centre = solution.centre[k, window[1]]
        centre_rows = rows_at(inputs.along[k][window], centre)
        slit.instance["trace_fit_centre"] = centre_rows.astype(np.float32)
        slit.instance["trace_fit_sigma"] = solution.sigma[k, window[1]].astype(np.float32)
        slit.instance[TRACE_FIT_KEY] = fit_record(solution, inputs.pixel_scale[k], forced_from)


def set_trace_skipped(ref, reason):
    """Record on a slit that it has no trace fit, and why."""
    ref.slit.instance[TRACE_FIT_KEY] = {"status": "SKIPPED", "message": reason}


def trace_fit_status(model):
    """``COMPLETE`` if at least one slit of the exposure has a fitted profile."""
    for slit in slits_of(model):
        record = slit.instance.get(TRACE_FIT_KEY) or {}
        if record.get("status") in FITTED_STATUSES:
            return "COMPLETE"
    return "SKIPPED"
