"""TraceFitStep: fit the spatial profile along the trace, jointly over the nod exposures."""

import logging
import time
from pathlib import Path

import numpy as np
from jwst.datamodels import ModelContainer

from nodcombine import models as adapter
from nodcombine.steps.base import NodcombineStep
from nodcombine.tracefit import TraceFitSettings, fit_trace, transfer_profile

__all__ = ["TraceFitStep"]

log = logging.getLogger(__name__)


class TraceFitStep(NodcombineStep):
    """Fit each source's profile width(λ) and trace offset over all its nod differences.

    The profile is a pixel-integrated Gaussian along the slit whose width is the
    nominal PSF in quadrature with a fitted source width, centred on the WCS
    prediction plus a polynomial offset in wavelength.  The model of every
    difference (positive and negative images) goes to each slit's
    ``trace_model``, the parameters to its ``trace_fit`` entry.
    """

    class_alias = "trace_fit"

    spec = """
    output_use_model = boolean(default=True)  # name each _trace product after its input exposure
    min_snr = float(default=10.0, min=0)  # source S/N below which the predicted position and nominal PSF width are kept
    width_snr = float(default=20.0, min=0)  # S/N from which the intrinsic source width is fitted
    degree_snr = float_list(default=list(40.0, 80.0))  # S/N from which each further degree of the trace-offset polynomial is fitted
    max_offset = float(default=3.0, min=0.1)  # pixels: bound on each offset coefficient (also at most 0.45 of the nod throw)
    centre_prior = float(default=1.5, min=0.01)  # pixels: Gaussian prior width of the constant offset from the WCS-predicted position
    shape_prior = float(default=0.5, min=0.01)  # pixels: Gaussian prior width of the higher offset terms
    max_source_sigma = float(default=8.0, min=0.1)  # pixels: upper bound of the intrinsic source width (Gaussian sigma)
    huber_scale = float(default=2.0, min=0.5)  # residual (sigma) beyond which the loss grows linearly
    clip_sigma = float(default=5.0, min=2)  # residual (sigma) beyond which a pixel is rejected before refitting
    block_snr = float(default=5.0, min=0.1)  # S/N per exposure a flux block reaches: faint spectra share fluxes over neighbouring columns while the profile is fitted
    fit_iterations = integer(default=3, min=1)  # rounds of fitting and rejection
    force_profile = boolean(default=True)  # a source seen with several dispersers gets the centre and width of its highest-S/N fit
    save_diagnostics = boolean(default=False)  # write a PNG per source (differences, fitted trace, profile residuals)
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
        container = self.prepare_output(input_data)
        if not isinstance(container, ModelContainer):
            return self._skip(container, "a single exposure; the fit needs all nod exposures")
        problem = adapter.nod_diff_problem(container)
        if problem:
            return self._skip(container, problem)
        groups, problems = adapter.group_by_source(container)
        for message in problems.values():
            log.warning("SKIPPED %s", message)
        settings = self._settings()
        fitted = sum(
            self._fit_family_safely(family, settings) for family in adapter.group_families(groups)
        )
        log.info("trace_fit: %d of %d sources fitted", fitted, len(groups))
        for model in container:
            model.meta.cal_step.trace_fit = adapter.trace_fit_status(model)
        return container

    def default_suffix(self):
        """Suffix of the products: ``trace``."""
        return "trace"

    def _settings(self):
        return TraceFitSettings(
            min_snr=self.min_snr,
            width_snr=self.width_snr,
            degree_snr=tuple(self.degree_snr or ()),
            max_offset=self.max_offset,
            centre_prior=self.centre_prior,
            shape_prior=self.shape_prior,
            max_source_sigma=self.max_source_sigma,
            huber_scale=self.huber_scale,
            clip_sigma=self.clip_sigma,
            iterations=self.fit_iterations,
            block_snr=self.block_snr,
        )

    def _fit_family_safely(self, family, settings):
        """`_fit_family`, with any failure confined to the family's slits."""
        try:
            return self._fit_family(family, settings)
        except Exception as err:  # one bad source never stops a visit
            reason = f"unexpected {type(err).__name__}: {err}"
            log.exception("SKIPPED source %s: %s", family[0].label, reason)
            for group in family:
                for ref in group.members:
                    adapter.set_trace_skipped(ref, reason)
            return 0

    def _fit_family(self, family, settings):
        """Fit the groups of one source; force the best fit on the rest. Return the count.

        Everything is fitted before anything is written, so a failure leaves no
        slit of the family half done.
        """
        fits = [fit for fit in (self._fit_group(g, settings) for g in family) if fit]
        best = max(fits, key=lambda fit: fit[2].snr, default=None)
        results = []
        for group, inputs, solution, seconds in fits:
            forced_from = ""
            if self.force_profile and group is not best[0] and best[2].status == "FIT":
                ratio = np.median(best[1].pixel_scale) / np.median(inputs.pixel_scale)
                forced = transfer_profile(best[2], scale_ratio=ratio, label=best[0].label)
                solution = _fit(inputs, settings, forced)
                forced_from = best[0].label
            results.append((group, inputs, solution, forced_from, seconds))
        for _, inputs, solution, forced_from, _ in results:
            adapter.write_trace_fit(inputs, solution, forced_from=forced_from)
        for group, inputs, solution, _, seconds in results:
            self._report(group, inputs, solution, seconds)
        return len(fits)

    def _fit_group(self, group, settings):
        """(group, inputs, solution, seconds) for one source, or None if it was skipped."""
        members, skipped = adapter.usable_members(group)
        for ref, reason in skipped:
            log.warning("SKIPPED %s", reason)
            adapter.set_trace_skipped(ref, reason)
        try:
            inputs = adapter.trace_inputs(members)
            start = time.perf_counter()
            solution = _fit(inputs, settings)
        except ValueError as err:
            log.warning("SKIPPED source %s: %s", group.label, err)
            for ref in members:
                adapter.set_trace_skipped(ref, str(err))
            return None
        return group, inputs, solution, time.perf_counter() - start

    def _report(self, group, inputs, solution, seconds):
        scale = float(np.median(inputs.pixel_scale))
        level = logging.WARNING if solution.status == "FALLBACK" else logging.INFO
        log.log(
            level,
            '%s: %s %s; offset %+.3f px, source sigma %.3f px (%.3f"), chi2/dof %.3f, %.2f s',
            group.label,
            solution.status,
            solution.message,
            float(np.nanmedian(solution.centre)),
            solution.source_sigma,
            solution.source_sigma * scale,
            solution.chi2 / max(solution.dof, 1),
            seconds,
        )
        if self.save_diagnostics:
            self._save_figure(group, inputs, solution)

    def _save_figure(self, group, inputs, solution):
        """Diagnostic PNG of one source; a failure here costs the figure, not the fit."""
        from nodcombine.plotting import save_trace_fit_figure

        name = "_".join(str(k) for k in group.key[3:]).replace("/", "-")
        path = Path(self.output_dir or ".") / f"{name}_trace_fit.png"
        try:
            save_trace_fit_figure(
                inputs.stack.data, inputs.variance, inputs.along, solution, path, group.label
            )
        except (OSError, ValueError, ImportError) as err:
            log.warning("%s: no diagnostic figure (%s: %s)", group.label, type(err).__name__, err)
            return
        log.info("%s: diagnostic figure %s", group.label, path)


def _fit(inputs, settings, forced=None):
    return fit_trace(**inputs.fit_arguments(), settings=settings, forced=forced)
