"""``_nod`` products in, fitted profiles out: the adapter of ``trace_fit``.

`read_source` gives `~nodcombine.trace_fit.tracefit.fit_trace` one source's
differences, each exposure's own variance, the along-slit coordinate of every
pixel and the nominal PSF width, all from the records ``nod_diff`` wrote
(`nodcombine.nodsource`).  `write_source` puts the solution on every slit:

``trace_model`` (TRACEMODEL)
    Model of the slit's nod difference in data units: the positive image and
    the negative images of the other nod positions, as jwst's ``trace_model``
    holds a model of the data.
`~nodcombine.contract.TraceFitRecord` and `~nodcombine.contract.TraceProfile`
    The fit parameters, and the fitted centre and width per dispersion pixel.
"""

import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from jwst.datamodels import ModelContainer

from nodcombine.contract import COMPLETE, SKIPPED, TraceFitRecord, TraceProfile
from nodcombine.errors import InputError
from nodcombine.modelio import write_array
from nodcombine.nodsource import NodSource, read_nod_source
from nodcombine.psf import psf_sigma_pix
from nodcombine.trace_fit.solution import TraceFitSettings
from nodcombine.trace_fit.tracemodel import rows_at
from nodcombine.visit import slits_of

log = logging.getLogger(__name__)

__all__ = [
    "TraceInputs",
    "check_visit",
    "exposure_status",
    "fit_record",
    "log_fit",
    "read_source",
    "save_diagnostic_figure",
    "settings_of",
    "skip_groups",
    "write_skipped",
    "write_source",
]


@dataclass(frozen=True)
class TraceInputs:
    """One source's arrays for `~nodcombine.trace_fit.tracefit.fit_trace`.

    Attributes
    ----------
    source : NodSource
        The differences and what ``nod_diff`` recorded about them.
    sigma_psf : numpy.ndarray, shape (n_exp, nx)
        Nominal point-source Gaussian width, pixels.
    """

    source: NodSource
    sigma_psf: np.ndarray

    @property
    def pixel_scale(self):
        """Arcsec per pixel along the slit (median over the members)."""
        return float(np.median(self.source.pixel_scale))

    def fit_arguments(self):
        """Arrays and masks as keyword arguments of ``fit_trace``."""
        source = self.source
        return {
            "data": source.stack.data,
            "variance": source.own_variance,
            "valid": source.valid,
            "positions": source.positions,
            "along": source.along,
            "wavelength": source.wavelengths,
            "sigma_psf": self.sigma_psf,
            "usable": source.usable,
            "pixel_scale": self.pixel_scale,
        }


def check_visit(models):
    """Raise `InputError` unless the input is a visit of exposures, some with nod differences."""
    if not isinstance(models, ModelContainer):
        name = getattr(models.meta, "filename", None) or type(models).__name__
        raise InputError(name, "input", "is a single exposure; the fit needs all nod exposures")
    undone = [
        model.meta.filename or f"exposure {i}"
        for i, model in enumerate(models)
        if getattr(model.meta.cal_step, "nod_diff", None) != COMPLETE
    ]
    if len(undone) == len(models):
        raise InputError(
            ", ".join(undone),
            "meta.cal_step.nod_diff",
            "is not COMPLETE; run nod_diff first (trace_fit needs the _nod products)",
        )


def read_source(members):
    """Read one source's differenced slits for the trace fit.

    Parameters
    ----------
    members : list of SlitRef
        The differenced slits of one source.

    Returns
    -------
    TraceInputs

    Raises
    ------
    InputError
        Naming the file, slit and field, if a slit lacks what the fit needs.
    """
    source = read_nod_source(members)
    sigma_psf = psf_sigma_pix(source.instrument, source.wavelengths, source.pixel_scale)
    return TraceInputs(source, sigma_psf)


def fit_record(solution, pixel_scale, forced_from=""):
    """The fit parameters of one source as a `TraceFitRecord`.

    Parameters
    ----------
    solution : TraceSolution
    pixel_scale : float
        Arcsec per pixel along the slit.
    forced_from : str, optional
        Source group whose profile was forced.

    Returns
    -------
    TraceFitRecord
    """
    sigma = solution.source_sigma
    s2_err = solution.source_sigma2_err
    # one-sided step of sqrt(s2) by one error of s2: s2_err / 2σ for a resolved
    # source, sqrt(s2_err) for an unresolved one, continuous in between
    sigma_err = np.sqrt(max(solution.source_sigma2, 0.0) + s2_err) - sigma
    return TraceFitRecord(
        status=solution.status,
        message=solution.message,
        snr=float(solution.snr),
        snr_column=float(solution.snr_column),
        degree=int(solution.degree),
        width_free=bool(solution.width_free),
        width_degree=int(solution.width_degree),
        offset_coeffs_pix=_floats(solution.coeffs),
        offset_coeffs_err_pix=_floats(solution.coeffs_err),
        wave_range_um=_floats(solution.wave_range),
        width_coeffs_pix2=_floats(solution.width_coeffs),
        width_coeffs_err_pix2=_floats(solution.width_coeffs_err),
        width_covariance_pix4=_floats(np.ravel(solution.width_covariance)),
        halo_fraction=float(solution.halo_fraction),
        halo_scale=float(solution.halo_scale),
        wings_beta=float(solution.wings_beta) if math.isfinite(solution.wings_beta) else None,
        skew=float(solution.skew) if solution.skew != 0.0 else None,
        source_sigma2_pix2=float(solution.source_sigma2),
        source_sigma2_err_pix2=float(s2_err),
        source_sigma_pix=sigma,
        source_sigma_err_pix=float(sigma_err),
        source_sigma_arcsec=sigma * float(pixel_scale),
        pixel_scale_arcsec=float(pixel_scale),
        chi2=float(solution.chi2),
        dof=int(solution.dof),
        n_clipped=int(solution.clipped.sum()),
        forced_from=forced_from,
    )


def _floats(values):
    return tuple(float(v) for v in values)


def write_source(inputs, solution, *, forced_from=""):
    """Write the trace model, the fitted centre and width, and the parameters on each slit.

    Parameters
    ----------
    inputs : TraceInputs
        What the fit was given.
    solution : TraceSolution
        The fit.
    forced_from : str, optional
        Label of the source group whose profile was forced on this one.
    """
    source = inputs.source
    stack = source.stack
    for k, ref in enumerate(source.members):
        rows, cols = stack.window_slices(k)
        centre = solution.centre[k, cols]
        profile = TraceProfile(
            centre_along=centre,
            centre_rows=rows_at(source.along[k][rows, cols], centre),
            sigma=solution.sigma[k, cols],
        )
        record = fit_record(solution, source.pixel_scale[k], forced_from)
        write_array(ref.slit, "trace_model", stack.to_cutout(solution.model, k))
        ref.slit.instance.update(profile.to_tree())
        ref.slit.instance.update(record.to_tree())


def write_skipped(refs, reason):
    """Record on slits that they have no trace fit, and why."""
    record = TraceFitRecord(status=SKIPPED, message=reason)
    for ref in refs:
        ref.slit.instance.update(record.to_tree())


def skip_groups(groups, reason):
    """`write_skipped` on every slit of some source groups."""
    write_skipped([ref for group in groups for ref in group.members], reason)


def exposure_status(model):
    """``COMPLETE`` if at least one slit of the exposure has a fitted profile."""
    for slit in slits_of(model):
        record = TraceFitRecord.from_tree(slit.instance)
        if record is not None and record.fitted:
            return COMPLETE
    return SKIPPED


def save_diagnostic_figure(group, inputs, solution, output_dir, stem):
    """Diagnostic PNG of one source in ``output_dir``; a failure costs only the figure."""
    from nodcombine.plotting import save_trace_fit_figure, trace_fit_figure_name

    path = Path(output_dir) / trace_fit_figure_name(stem, group.key)
    try:
        save_trace_fit_figure(inputs.source, solution, path, group.label)
    except (OSError, ValueError, ImportError) as err:
        log.warning("%s: no diagnostic figure (%s: %s)", group.label, type(err).__name__, err)
        return
    log.info("%s: diagnostic figure %s", group.label, path)


def settings_of(step):
    """The `TraceFitSettings` a `TraceFitStep`'s parameters give."""
    names = {f.name: f.name for f in fields(TraceFitSettings)} | {"iterations": "fit_iterations"}
    values = {f: getattr(step, name) for f, name in names.items()}
    return TraceFitSettings(**values | {"degree_snr": tuple(step.degree_snr or ())})


def log_fit(group, inputs, solution, seconds):
    """One line per fitted source; a warning for a fallback to the prediction."""
    level = logging.WARNING if solution.status == "FALLBACK" else logging.INFO
    summary = solution.summary(inputs.pixel_scale)
    log.log(level, "%s: %s, %.2f s", group.label, summary, seconds)
