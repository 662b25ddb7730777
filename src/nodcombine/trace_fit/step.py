"""TraceFitStep: fit the spatial profile along the trace, jointly over the nod exposures."""

import logging
from functools import partial
from pathlib import Path

from nodcombine.errors import InputError
from nodcombine.nodsource import differenced_members
from nodcombine.parallel import MAXIMUM_CORES_SPEC, source_pool, timed_call
from nodcombine.stepbase import NodcombineStep
from nodcombine.trace_fit import io
from nodcombine.trace_fit.family import force_best_profile
from nodcombine.trace_fit.solution import TraceFitSettings
from nodcombine.trace_fit.tracefit import fit_trace
from nodcombine.visit import group_families

__all__ = ["TraceFitStep"]

log = logging.getLogger(__name__)

_DEFAULTS = TraceFitSettings()


class TraceFitStep(NodcombineStep):
    """Fit each source's profile width(λ) and trace offset over all its nod differences.

    The profile is a pixel-integrated Gaussian along the slit whose width is the
    nominal PSF in quadrature with a fitted source width, centred on the WCS
    prediction plus a polynomial offset in wavelength.  The model of every
    difference (positive and negative images) goes to each slit's
    ``trace_model``, the parameters to its ``trace_fit_record``.
    """

    class_alias = "trace_fit"

    spec = f"""
    output_use_model = boolean(default=True)  # name each _trace product after its input exposure
    min_snr = float(default={_DEFAULTS.min_snr}, min=0)  # source S/N below which the predicted position and nominal PSF width are kept
    width_snr = float(default={_DEFAULTS.width_snr}, min=0)  # S/N from which the intrinsic source width is fitted
    degree_snr = float_list(default=list({", ".join(map(str, _DEFAULTS.degree_snr))}))  # S/N from which each further degree of the trace-offset polynomial is fitted
    max_offset = float(default={_DEFAULTS.max_offset}, min=0.1)  # pixels: bound on each offset coefficient (also at most 0.45 of the nod throw)
    centre_prior = float(default={_DEFAULTS.centre_prior}, min=0.01)  # pixels: Gaussian prior width of the constant offset from the WCS-predicted position
    shape_prior = float(default={_DEFAULTS.shape_prior}, min=0.01)  # pixels: Gaussian prior width of the higher offset terms
    max_source_sigma = float(default={_DEFAULTS.max_source_sigma}, min=0.1)  # pixels: upper bound of the intrinsic source width (Gaussian sigma)
    huber_scale = float(default={_DEFAULTS.huber_scale}, min=0.5)  # residual (sigma) beyond which the loss grows linearly
    clip_sigma = float(default={_DEFAULTS.clip_sigma}, min=2)  # residual (sigma) beyond which a pixel is rejected before refitting
    max_width_degree = integer(default={_DEFAULTS.max_width_degree}, min=0, max=3)  # highest degree in wavelength of the source width² polynomial (the BIC chooses up to it)
    halo_snr = float(default={_DEFAULTS.halo_snr}, min=0)  # S/N from which a halo (a second, wider Gaussian: PSF wings, galaxy envelopes) may be added if the BIC takes it
    width_prior_arcsec = float(default={_DEFAULTS.width_prior_arcsec}, min=0)  # arcsec: intrinsic width (sigma) a compact source is expected to have: the prior that holds faint sources' widths
    width_prior_sigma_arcsec = float(default={_DEFAULTS.width_prior_sigma_arcsec}, min=0.001)  # arcsec: spread of that prior
    block_snr = float(default={_DEFAULTS.block_snr}, min=0.1)  # S/N per exposure a flux block reaches: faint spectra share fluxes over neighbouring columns while the profile is fitted
    background_degree = integer(default={_DEFAULTS.background_degree}, min=-1, max=5)  # degree in wavelength of each exposure's own background (uniform along the slit) that the BIC may add; -1: never
    fit_iterations = integer(default={_DEFAULTS.iterations}, min=1)  # rounds of fitting and rejection
    force_profile = boolean(default=True)  # a source seen with several dispersers gets the centre and width of its highest-S/N fit
    save_diagnostics = boolean(default=False)  # write a PNG per source into output_dir (differences, fitted trace, profile residuals)
    {MAXIMUM_CORES_SPEC}
    """  # noqa: E501

    def process(self, input_data):
        """Fit the profile of every source in a ``_nod`` container.

        Parameters
        ----------
        input_data : str, list or ModelContainer
            The ``_nod`` products of one visit (association, files or models).

        Returns
        -------
        ModelContainer
            The same exposures with ``trace_model`` and the fit (suffix ``_trace``).
        """
        self.check_parameters()
        container = self.prepare_output(input_data)
        try:
            io.check_visit(container)
        except InputError as err:
            return self.skip_input(container, err)
        groups, _ = self.group_sources(container)
        families = group_families(groups)
        fitted = 0
        # all fits go to the pool first, then are written in the visit's order (worker-free)
        with source_pool(self.maximum_cores, len(groups), shared=self.shared_pool) as pool:
            started = [self._per_family(f, partial(self._start_family, f, pool)) for f in families]
            for f, fits in zip(self.track(families), started, strict=True):
                if fits is not None:
                    fitted += self._per_family(f, partial(self._finish_family, f, *fits)) or 0
        return self.record_status(container, io.exposure_status, (fitted, len(groups)), "fitted")

    shared_pool = None  # an executor a pipeline keeps across its runs of the step

    def default_suffix(self):
        """Suffix of the products: ``trace``."""
        return "trace"

    def _per_family(self, family, work):
        skip = partial(io.skip_groups, family)
        return self.per_source(family[0].label, work, skip, model=family[0].members[0].model)

    def _start_family(self, family, pool):
        """Read each group of a family and hand its fit to ``pool``: ``(settings, started)``."""
        settings = io.settings_of(self)
        started = [self._start_group(group, settings, pool) for group in family]
        return settings, [entry for entry in started if entry is not None]

    def _start_group(self, group, settings, pool):
        """``(group, inputs, future)`` for one source, or None if it was skipped."""
        members, skipped = differenced_members(group)
        for ref, err in skipped:
            log.warning("SKIPPED %s", err)
            io.write_skipped([ref], str(err))

        def start():
            inputs = io.read_source(members)
            arguments = inputs.fit_arguments()
            return group, inputs, pool.submit(timed_call, fit_trace, **arguments, settings=settings)

        return self.per_source(group.label, start, lambda reason: io.write_skipped(members, reason))

    def _finish_family(self, family, settings, started):
        """Collect a family's fits; force the best fit on the rest; write. Return the count.

        Everything is fitted before anything is written, so a failure leaves no
        slit of the family half done.
        """
        fits = [fit for fit in (self._finish_group(*entry) for entry in started) if fit]
        solutions = [(fit[2], "") for fit in fits]
        if self.force_profile:
            solutions = force_best_profile(
                [(g.label, i.fit_arguments(), i.pixel_scale, sol) for g, i, sol, _ in fits],
                settings=settings,
            )
        for fit, (solution, forced_from) in zip(fits, solutions, strict=True):
            group, inputs, _, seconds = fit
            io.write_source(inputs, solution, forced_from=forced_from)
            self._report(group, inputs, solution, seconds)
        return len(fits)

    def _finish_group(self, group, inputs, future):
        """(group, inputs, solution, seconds), or None if the fit failed (logged, recorded)."""
        skip = partial(io.write_skipped, differenced_members(group)[0])
        fitted = self.per_source(group.label, future.result, skip)
        return None if fitted is None else (group, inputs, *fitted)

    def _report(self, group, inputs, solution, seconds):
        io.log_fit(group, inputs, solution, seconds)
        if self.save_diagnostics:
            stem = self.remove_suffix(Path(group.members[0].filename).stem)[0]
            # in a pipeline the step has no output_dir of its own: the pipeline's
            output_dir = Path(self.search_attr("output_dir") or ".")
            io.save_diagnostic_figure(group, inputs, solution, output_dir, stem)
