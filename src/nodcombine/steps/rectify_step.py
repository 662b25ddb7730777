"""RectifyStep: nearest-bin rectification of each source's nod differences."""

import logging

from jwst.datamodels import ModelContainer

from nodcombine import models as adapter
from nodcombine.rectify import pixel_weights, rectify, wavelength_grid
from nodcombine.steps.base import NodcombineStep

__all__ = ["RectifyStep"]

log = logging.getLogger(__name__)


class RectifyStep(NodcombineStep):
    """Rectify every source's nod differences onto a (wavelength, slit offset) grid.

    Each usable pixel of each exposure goes whole into the bin nearest to its
    wavelength and to its distance from the fitted trace; a bin holds the
    weighted mean of its pixels with the variance of that estimator, so bins are
    independent.  One rectified slit per source, in one ``MultiSlitModel``.
    """

    class_alias = "rectify"

    spec = """
    weight_type = option('ivm', 'poisson', 'exptime', 'mask', default='ivm')  # pixel weights in a bin: ivm = 1/var_rnoise, poisson = 1/total variance, exptime, mask = equal
    linear_grid = option('auto', 'yes', 'no', default='auto')  # linear wavelength grid (auto: gratings yes, PRISM/P750L native sampling)
    """  # noqa: E501

    def process(self, input_data):
        """Rectify the sources of a ``_trace`` container.

        Parameters
        ----------
        input_data : str, list or ModelContainer
            The ``_trace`` products of one visit.

        Returns
        -------
        MultiSlitModel
            One rectified slit per source (suffix ``_s2d``).
        """
        container = self.prepare_output(input_data)
        if not isinstance(container, ModelContainer):
            container = ModelContainer([container])
        output = adapter.new_multislit(container)
        problem = adapter.trace_fit_problem(container)
        if problem:
            return self._skip(output, problem)
        groups, problems = adapter.group_by_source(container)
        for message in problems.values():
            log.warning("SKIPPED %s", message)
        slits = [slit for slit in map(self._rectify_safely, groups) if slit is not None]
        # appended to the tree, not through the model: validating the growing
        # list at each append costs 0.1 s per source; the product is validated
        # once, when saved
        output.instance.setdefault("slits", []).extend(slit.instance for slit in slits)
        log.info("rectify: %d of %d sources rectified", len(output.slits), len(groups))
        output.meta.cal_step.rectify = "COMPLETE" if len(output.slits) else "SKIPPED"
        return output

    def default_suffix(self):
        """Suffix of the product: ``s2d``."""
        return "s2d"

    def _rectify_safely(self, group):
        try:
            return self._rectify(group)
        except ValueError as err:
            log.warning("SKIPPED source %s: %s", group.label, err)
        except Exception as err:  # one bad source never stops a visit
            log.exception(
                "SKIPPED source %s: unexpected %s: %s", group.label, type(err).__name__, err
            )
        return None

    def _rectify(self, group):
        members, skipped = adapter.usable_members(group)
        for _, reason in skipped:
            log.info("left out %s", reason)
        inputs = adapter.rectify_inputs(members)
        linear = inputs.linear if self.linear_grid == "auto" else self.linear_grid == "yes"
        arrays = inputs.arrays
        weights = pixel_weights(self.weight_type, arrays["variances"], inputs.exposure_time)
        image = rectify(
            **arrays,
            weights=weights,
            wave_grid=wavelength_grid(inputs.trace_wavelengths, linear=linear),
            half_height=inputs.half_height,
        )
        log.info(
            "%s: %d exposures -> %d x %d bins (%s grid), %d empty",
            group.label,
            len(members),
            *image.data.shape,
            "linear" if linear else "native",
            int(image.empty.sum()),
        )
        return adapter.rectified_slit(inputs, image, weight_type=self.weight_type)
