"""RectifyStep: nearest-bin rectification of each source's nod differences."""

import logging
from functools import partial

from jwst.datamodels import ModelContainer

from nodcombine.errors import InputError
from nodcombine.nodsource import differenced_members
from nodcombine.rectify import io
from nodcombine.rectify.nearest_bin import (
    DEFAULT_WEIGHT_TYPE,
    WEIGHT_TYPES,
    pixel_weights,
    rectify,
    wavelength_grid,
)
from nodcombine.stepbase import NodcombineStep

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

    spec = f"""
    weight_type = option({", ".join(repr(w) for w in WEIGHT_TYPES)}, default={DEFAULT_WEIGHT_TYPE!r})  # pixel weights in a bin: ivm = 1/var_rnoise, poisson = 1/total variance, exptime, mask = equal
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
        self.check_parameters()
        container = self.prepare_output(input_data)
        if not isinstance(container, ModelContainer):
            container = ModelContainer([container])
        output = io.new_multislit(container)
        try:
            io.check_visit(container)
        except InputError as err:
            return self.skip_input(output, err)
        groups, _ = self.group_sources(container)
        slits = [
            self.per_source(g.label, partial(self._rectify, g), model=g.members[0].model)
            for g in self.track(groups)
        ]
        io.append_slits(output, slits)
        self.log_summary((len(output.slits), len(groups)), "rectified")
        output.meta.cal_step.rectify = "COMPLETE" if len(output.slits) else "SKIPPED"
        return output

    def default_suffix(self):
        """Suffix of the product: ``s2d``."""
        return "s2d"

    def _rectify(self, group):
        members, skipped = differenced_members(group)
        for _, err in skipped:
            log.info("left out %s", err)
        if not members:  # nod_diff skipped the whole source: its reason, once
            raise skipped[0][1]
        inputs = io.read_source(members)
        linear = inputs.linear if self.linear_grid == "auto" else self.linear_grid == "yes"
        weights = pixel_weights(
            self.weight_type, inputs.source.stack.variances, inputs.exposure_time
        )
        image = rectify(
            **inputs.arrays(),
            weights=weights,
            wave_grid=wavelength_grid(inputs.source.wavelengths, linear=linear),
            half_height=inputs.half_height,
        )
        io.check_image(group.label, image)
        log.info(
            "%s: %d exposures -> %d x %d bins (%s grid), %d empty",
            group.label,
            len(members),
            *image.data.shape,
            "linear" if linear else "native",
            int(image.empty.sum()),
        )
        return io.rectified_slit(inputs, image, weight_type=self.weight_type)
